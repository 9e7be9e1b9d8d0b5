"""The loss of one optimizer step (docs/method.md §5-§6), what the trainer back-propagates.

An optimizer step covers ``accumulate`` micro-batches. ``step_targets`` computes their targets and
counts the positives of all of them before any forward pass (pairs and targets depend on the boxes
alone), and ``StepLoss`` gives each micro-batch its share: L_M divided by that count, the distillation
terms (means) divided by the number of micro-batches. The step's gradient is then the one a
single batch of all its images would give.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from linkhoi.train import distributed
from linkhoi.train.distill import Distiller
from linkhoi.train.losses import count_positives, loss_inputs, matching_loss


@torch.no_grad()
def step_targets(
    model: nn.Module,
    prepared: list[dict[str, Any]],
    class_mask: torch.Tensor | None,
    num_classes: int,
) -> tuple[torch.Tensor, list[tuple[list[torch.Tensor], list[torch.Tensor] | None]]]:
    """The targets of one optimizer step's micro-batches and L_M's divisor for the step:
    max(1, positives of all of them averaged across processes), what one batch of
    ``batch_size x accumulate`` images gives.

    Args: model: the ``LinkModel`` (``pair_layout``); prepared: ``TrainData.prepare`` batches.
    Returns (normaliser, per micro-batch ``loss_inputs``: targets (P_i, K) and pairs to skip).
    """
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    inputs = []
    for batch in prepared:
        outs = []
        for det in batch["dets"]:
            pairs, valid = model.pair_layout(det.labels)
            outs.append({"pairs": pairs, "boxes": det.boxes.float(), "valid": valid})
        targets, ignore = loss_inputs(outs, batch, num_classes)
        total = total + count_positives(outs, targets, class_mask, ignore)
        inputs.append((targets, ignore))
    return distributed.all_reduce_mean(total).clamp(min=1.0), inputs


class StepLoss(nn.Module):
    """Student (+ distillation adapters) computing a micro-batch's loss; what DDP wraps."""

    def __init__(self, model: nn.Module, distiller: Distiller | None, optim, num_classes: int):
        super().__init__()
        self.model = model
        self.distiller = distiller
        self.optim = optim
        self.num_classes = num_classes

    def forward(
        self,
        batch: dict[str, Any],
        class_mask: torch.Tensor | None,
        normaliser: torch.Tensor | None = None,
        group: int = 1,
        inputs: tuple[list[torch.Tensor], list[torch.Tensor] | None] | None = None,
    ):
        """This micro-batch's share of one optimizer step's loss: L_M divided by the step's
        ``normaliser`` (its positives), KD (a mean) divided by the ``group`` size. ``inputs``:
        its targets from ``step_targets`` (computed here when not given)."""
        cfg = self.optim
        feats = batch["features"]
        out = self.model(None, batch["dets"], features=feats[0], aux_logits=cfg.aux_loss)
        targets, ignore = loss_inputs(out, batch, self.num_classes) if inputs is None else inputs
        loss, stats = matching_loss(
            out,
            targets,
            class_mask,
            cfg.focal_alpha,
            cfg.focal_gamma,
            cfg.aux_loss,
            ignore,
            normaliser,
        )
        if self.distiller is not None:
            teacher_inputs = [(None, f) for f in feats[1:]]
            t_out = self.distiller.teacher_outputs(teacher_inputs, batch["dets"])
            kd, kd_stats = self.distiller.loss(out, t_out, class_mask)
            loss = loss + kd / group
            stats.update({k: v / group for k, v in kd_stats.items()})
        # The loss of the whole global batch (each process holds its share of it).
        stats["loss"] = float(distributed.all_reduce_mean(loss.detach()))
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"loss is {stats['loss']}: {stats}")
        return loss, stats
