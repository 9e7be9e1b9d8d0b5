"""Stage 2 of the Progressive Learning Strategy: distillation from frozen teachers (docs/method.md §6).

``Distiller`` holds the frozen teachers (not registered as sub-modules: they are neither
trained, nor checkpointed with the student, nor wrapped by DDP) and the small learned
adapters that bridge width differences. ``Distiller.loss(student_out, teacher_outs)`` returns
the weighted sum of

- logit KD: Bernoulli KL(σ(Ψ_t/τ) ‖ σ(Ψ_s/τ)) per valid class on every candidate pair;
- query KD: KL of the channel softmax of teacher vs student unary (encoder) and pair (decoder)
  queries, averaged over layers; a linear adapter maps student widths to teacher widths;
- map KD: KL of the channel softmax of the latent maps after resampling the teacher's map to the
  student's shape: bilinear in space, linear interpolation along the channels (no parameters,
  so the target stays the teacher's: a learned map there would also be trained to move the
  target towards the student).

Every KL is multiplied by τ² (Hinton et al.) so its gradient scale does not depend on τ.
Several teachers: the target distributions are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linkhoi.train.config import ConfigError, DistillConfig, TrainConfig


def bernoulli_kl(teacher_prob: Tensor, student_logits: Tensor, tau: float) -> Tensor:
    """Elementwise KL(Bern(p_t) ‖ Bern(σ(x_s/τ))). Shapes broadcast; returns the same shape."""
    p = teacher_prob
    log_s, log_1s = F.logsigmoid(student_logits / tau), F.logsigmoid(-student_logits / tau)
    ent = torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)
    return ent - p * log_s - (1 - p) * log_1s


def softmax_kl(teacher_prob: Tensor, student_logits: Tensor, tau: float, dim: int) -> Tensor:
    """KL(p_t ‖ softmax(x_s/τ)) summed over ``dim``."""
    log_s = F.log_softmax(student_logits / tau, dim=dim)
    return (torch.special.xlogy(teacher_prob, teacher_prob) - teacher_prob * log_s).sum(dim)


def resample_map(t_map: Tensor, shape: Sequence[int]) -> Tensor:
    """Teacher latent map (B, C_t, h_t, w_t) -> (B, C_s, h_s, w_s) of ``shape``: bilinear in
    space, linear interpolation along the channel axis (channel ends kept, ``align_corners``)."""
    _, c_s, h_s, w_s = shape
    if t_map.shape[-2:] != (h_s, w_s):
        t_map = F.interpolate(t_map, size=(h_s, w_s), mode="bilinear", align_corners=False)
    if t_map.shape[1] != c_s:
        b, c_t, h, w = t_map.shape
        rows = t_map.permute(0, 2, 3, 1).reshape(b * h * w, 1, c_t)  # one channel row per cell
        rows = F.interpolate(rows, size=c_s, mode="linear", align_corners=True)
        t_map = rows.reshape(b, h, w, c_s).permute(0, 3, 1, 2)
    return t_map


def _width(model: nn.Module, name: str) -> int:
    return int(getattr(model.config, name))


class Distiller(nn.Module):
    """Distillation losses from frozen teachers to a student on the same detections.

    Args:
        student: the trained ``LinkModel`` (only its config is read here).
        teachers: frozen ``LinkModel`` teachers; put in eval mode with gradients off.
        config: ``DistillConfig`` (τ, per-level switches and weights).
    """

    def __init__(self, student: nn.Module, teachers: Sequence[nn.Module], config: DistillConfig):
        super().__init__()
        if not teachers:
            raise ConfigError("Distiller needs at least one teacher")
        self.config = config
        self.tau = float(config.temperature)
        for teacher in teachers:
            teacher.eval()
            teacher.requires_grad_(False)
        # A tuple attribute keeps teachers out of state_dict(), parameters() and DDP.
        self.teachers: tuple[nn.Module, ...] = tuple(teachers)

        def adapter(d_in: int, d_out: int) -> nn.Module:
            return nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)

        if config.query:
            for name in ("d_model", "d_pair"):
                widths = {_width(t, name) for t in teachers}
                if len(widths) > 1:
                    raise ConfigError(
                        f"distill.query: teachers differ in {name} {sorted(widths)}; their "
                        "query targets cannot be averaged (turn distill.query off)"
                    )
            d_t = _width(teachers[0], "d_model")
            self.unary_adapter = adapter(_width(student, "d_model"), d_t)
            self.pair_adapter = adapter(_width(student, "d_pair"), _width(teachers[0], "d_pair"))

    @torch.inference_mode()
    def teacher_outputs(
        self, inputs: Sequence[tuple[Tensor | None, tuple[Tensor, Tensor] | None]], detections: list
    ) -> list[list[dict]]:
        """Run every teacher (eval, inference mode) on the same detections.

        ``inputs[i]`` is ``(images, features)`` for teacher i: features computed once per
        batch when the teacher shares the student's backbone, else its own images/features.
        Inference mode (no autograd records, no version counters) is cheaper than no_grad; the
        outputs are inference tensors, which ``loss`` only reads through out-of-place ops (their
        results are ordinary tensors, so autograd may save them for the student's backward).
        """
        outs = []
        for teacher, (images, features) in zip(self.teachers, inputs, strict=True):
            if teacher.training:
                teacher.eval()
            outs.append(teacher(images, detections, features=features))
        return outs

    def loss(
        self,
        student_out: list[dict],
        teacher_outs: list[list[dict]],
        class_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Weighted KD loss over a batch. ``teacher_outs[t][i]`` is teacher t's image i."""
        cfg = self.config
        device = student_out[0]["fused_logits"].device if student_out else torch.device("cpu")
        total = torch.zeros((), device=device)
        stats: dict[str, float] = {}
        for out_t in teacher_outs:
            for s, t in zip(student_out, out_t, strict=True):
                if s["pairs"].shape != t["pairs"].shape or not torch.equal(s["pairs"], t["pairs"]):
                    raise RuntimeError(
                        "teacher and student pairs differ: they must see the same detections"
                    )
        if cfg.logit:
            value = self._logit_kd(student_out, teacher_outs, class_mask)
            total = total + cfg.logit_weight * value
            stats["kd_logit"] = float(value.detach())
        if cfg.query:
            value = self._query_kd(student_out, teacher_outs)
            total = total + cfg.query_weight * value
            stats["kd_query"] = float(value.detach())
        if cfg.map:
            value = self._map_kd(student_out, teacher_outs)
            total = total + cfg.map_weight * value
            stats["kd_map"] = float(value.detach())
        return total, stats

    def _logit_kd(self, student_out, teacher_outs, class_mask) -> Tensor:
        tau = self.tau
        s_logits = torch.cat([o["fused_logits"] for o in student_out]).float()
        valid = torch.cat([o["valid"] for o in student_out])
        if class_mask is not None:
            valid = valid & class_mask.to(valid.device)
        if not valid.any():
            return s_logits.sum() * 0.0
        zero = torch.zeros((), device=s_logits.device)
        p_t = torch.stack(
            [
                torch.sigmoid(
                    torch.where(valid, torch.cat([o["fused_logits"] for o in t]), zero).float()
                    / tau
                )
                for t in teacher_outs
            ]
        ).mean(0)
        kl = bernoulli_kl(p_t, torch.where(valid, s_logits, zero), tau)
        return kl[valid].mean() * tau**2

    def _query_kd(self, student_out, teacher_outs) -> Tensor:
        terms = []
        for key, adapter in (
            ("unary_queries", self.unary_adapter),
            ("pair_queries", self.pair_adapter),
        ):
            s_layers = [
                torch.cat(layer) for layer in zip(*(o[key] for o in student_out), strict=True)
            ]
            t_layers_per = [
                [torch.cat(layer) for layer in zip(*(o[key] for o in t), strict=True)]
                for t in teacher_outs
            ]
            # Layers are paired from the output end when the depths differ.
            depth = min(len(s_layers), *(len(t) for t in t_layers_per))
            for k in range(1, depth + 1):
                q_s = s_layers[-k]
                if q_s.shape[0] == 0:
                    continue
                p_t = torch.stack(
                    [torch.softmax(t[-k].float() / self.tau, dim=-1) for t in t_layers_per]
                ).mean(0)
                terms.append(softmax_kl(p_t, adapter(q_s).float(), self.tau, dim=-1).mean())
        if not terms:
            return torch.zeros((), device=student_out[0]["fused_logits"].device)
        return torch.stack(terms).mean() * self.tau**2

    def _map_kd(self, student_out, teacher_outs) -> Tensor:
        if any(o["latent_map"] is None for out in (student_out, *teacher_outs) for o in out):
            raise ConfigError("distill.map needs latent maps: the spatial branch is off")
        s_map = torch.stack([o["latent_map"] for o in student_out]).float()  # (B, d_s, h, w)
        probs = []
        for t_out in teacher_outs:
            t_map = resample_map(torch.stack([o["latent_map"] for o in t_out]).float(), s_map.shape)
            probs.append(torch.softmax(t_map / self.tau, dim=1))
        p_t = torch.stack(probs).mean(0)
        return softmax_kl(p_t, s_map, self.tau, dim=1).mean() * self.tau**2


def load_teachers(cfg: TrainConfig, label_space: Any, device: torch.device) -> list[nn.Module]:
    """The frozen teachers of ``distill.teachers``, each with its backbone weights
    (``distill.teacher_clip_weights`` / ``teacher_text_weights``, one entry per teacher, or
    the run's ``runtime.clip_weights`` / ``text_weights``); each must share the student's label
    space, class for class."""
    from linkhoi.model.checkpoint import load_model

    d = cfg.distill
    weights, texts = list(d.teacher_clip_weights), list(d.teacher_text_weights)
    for key, given in (("teacher_clip_weights", weights), ("teacher_text_weights", texts)):
        if given and len(given) != len(d.teachers):
            raise ConfigError(f"distill.{key} needs one entry per teacher (or none)")
    teachers = []
    for i, path in enumerate(d.teachers):
        clip = weights[i] if weights else (cfg.runtime.clip_weights or None)
        text = texts[i] if texts else (cfg.runtime.text_weights or None)
        teacher = load_model(
            path, clip_weights=clip or None, device=device, text_weights=text or None
        )
        if teacher.label_space != label_space:
            raise ConfigError(
                f"{path}: the teacher's label space {teacher.label_space.name!r} is not the "
                f"student's {label_space.name!r}: their classes must align one to one"
            )
        teachers.append(teacher)
    return teachers
