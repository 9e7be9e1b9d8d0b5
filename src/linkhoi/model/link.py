"""The whole LINK model (docs/method.md §0-§4): frozen CLIP backbone -> Geometrical Encoder ->
Linking Decoder -> CLIP-text-initialised classifier with object masking and detection prior."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import Tensor, nn

from linkhoi.labels import LabelError, LabelSpace
from linkhoi.model import ops
from linkhoi.model.config import ConfigError, LinkConfig
from linkhoi.model.decoder import LinkingDecoder
from linkhoi.model.geometry import GeometryEncoder


def valid_class_table(label_space: LabelSpace) -> Tensor:
    """(num_objects, K) bool: HOI class k is valid for a pair whose object has that label
    (its object matches, or the class accepts any object as in V-COCO)."""
    table = torch.zeros(len(label_space.objects), len(label_space.hois), dtype=torch.bool)
    for o in range(len(label_space.objects)):
        rows = label_space.hoi_positions_for_object(o).tolist()
        table[o, torch.tensor(rows, dtype=torch.int64)] = True
    return table


class LinkModel(nn.Module):
    """LINK: HOI scores for every (human, other detection) pair of each image.

    Args:
        config: sizes and switches.
        label_space: the HOI classes (K of them) and objects.
        backbone: a frozen ``Backbone`` (``forward(images) -> (F (B,C,h,w), global (B,C))``).
        text_embeddings: (K, C_text) L2-normalised prompt embeddings initialising the
            classifier (C_text = ``backbone.text_dim``, which equals C for CLIP).
    """

    def __init__(
        self,
        config: LinkConfig,
        label_space: LabelSpace,
        backbone: nn.Module,
        text_embeddings: Tensor,
    ):
        super().__init__()
        k, c = len(label_space.hois), int(backbone.embed_dim)
        c_text = int(getattr(backbone, "text_dim", 0) or c)
        if tuple(text_embeddings.shape) != (k, c_text):
            raise ValueError(
                f"text embeddings have shape {tuple(text_embeddings.shape)}, expected "
                f"({k}, {c_text}) "
                f"for label space {label_space.name!r} and backbone {backbone.name!r}"
            )
        if config.use_semantic_branch and c % config.num_heads:
            raise ConfigError(
                f"LinkConfig.num_heads={config.num_heads} does not divide the width C={c} of "
                f"backbone {backbone.name!r} (the semantic branch attends over F with C channels)"
            )
        self.config = config
        self.label_space = label_space
        self.human_label = label_space.human_position
        self.backbone = backbone
        self.geometry = GeometryEncoder(config, c)
        self.decoder = LinkingDecoder(config, c)
        self.classifier = nn.Linear(config.d_pair, c_text)  # into the text width
        text = text_embeddings.detach().float().clone()
        self.text = nn.Parameter(text)  # trainable T (§4)
        self.register_buffer("text_init", text.clone())  # the CLIP initialisation, frozen
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        self.register_buffer("valid_table", valid_class_table(label_space), persistent=False)

    @property
    def image_size(self) -> int:
        return int(self.backbone.image_size)

    def pair_layout(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The candidate pairs of one image and their valid classes, from its detection labels
        alone (before any forward pass): labels (N,) -> pairs (P, 2), valid (P, K) bool."""
        pairs = ops.enumerate_pairs(labels, self.human_label)
        return pairs, self.valid_table[labels[pairs[:, 1]]]

    def propose(self, detections: Any) -> Any:
        """Proposal filtering (docs/method.md §0) with ``config.proposals``, as in training:
        raw ``Detections`` of one image -> the kept ones (humans first, by score)."""
        from linkhoi.detections import filter_proposals

        return filter_proposals(detections, self.human_label, **self.config.proposals)

    def preprocess(self, image: Image.Image) -> Tensor:
        """PIL image -> (3, R, R) CLIP-normalised tensor (the backbone's own transform)."""
        return self.backbone.preprocess(image)

    def classify(self, queries: Tensor) -> Tensor:
        """Pair queries (P, d_pair) -> raw logits O = s · q̂ T̂ᵀ (P, K)."""
        q = nnf.normalize(self.classifier(queries), dim=-1)
        t = nnf.normalize(self.text, dim=-1).to(q.dtype)
        scale = self.logit_scale.exp().clamp(max=self.config.logit_scale_max)
        return scale * q @ t.t()

    def forward(
        self,
        images: Tensor | None,
        detections: list[Any],
        targets: Any = None,
        features: tuple[Tensor, Tensor] | Tensor | None = None,
        aux_logits: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Score every pair of every image.

        Args:
            images: (B, 3, R, R) CLIP-normalised, or None when ``features`` is given.
            detections: B ``Detections`` (already filtered), boxes in original pixels.
            targets: ignored; losses are computed from the outputs by ``linkhoi.train``.
            features: precomputed backbone output ``(F (B, C, h, w), global (B, C))`` (or F
                alone), used instead of running the backbone.
            aux_logits: classify every decoder layer (for auxiliary losses), not only the last;
                default: in training mode only (inference skips P x K products it never uses).
        Returns:
            B dicts as docs/internals.md lists: ``pairs`` (P, 2), ``boxes`` (N, 4),
            ``object_labels`` (N,), ``det_scores`` (N,), ``logits`` O (P, K), ``fused_logits``
            Ψ at λ_train (P, K, not masked: use ``valid``), ``scores`` σ(Ψ) at λ_test (P, K, 0
            where invalid), ``valid`` (P, K) bool, ``latent_map`` (d_latent, h, w) or None when
            the spatial branch is off, ``unary_queries`` per encoder layer (N, d),
            ``pair_queries`` per decoder layer (P, d_pair), ``layer_logits`` per decoder layer
            (P, K) Ψ at λ_train (the last equals ``fused_logits``; only that one unless
            ``aux_logits``).
        """
        del targets
        if features is None:
            if images is None:
                raise ValueError("LinkModel.forward needs images or precomputed features")
            with torch.no_grad():
                fmap, _ = self.backbone(images)
        else:
            fmap = features[0] if isinstance(features, (tuple, list)) else features
        device = self.text.device
        fmap = fmap.to(device=device, dtype=self.text.dtype)
        if fmap.shape[0] != len(detections):
            raise ValueError(
                f"{fmap.shape[0]} images/feature maps but {len(detections)} detection sets"
            )
        r = self.image_size
        boxes = [d.boxes.to(device=device, dtype=torch.float32) for d in detections]
        labels = [d.labels.to(device) for d in detections]
        n_obj = self.valid_table.shape[0]
        for b, lab in enumerate(labels):
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= n_obj):
                raise ValueError(
                    f"detections of image {b}: field 'labels' holds object positions outside "
                    f"0..{n_obj - 1} of label space {self.label_space.name!r}"
                )
        sizes = [tuple(d.image_size) for d in detections]

        # §2 Geometrical Encoder.
        unary = self.geometry.unary_queries(
            fmap, [ops.boxes_to_frame(b, s, r) for b, s in zip(boxes, sizes, strict=True)], r
        )
        norm = [ops.normalize_boxes(b, s) for b, s in zip(boxes, sizes, strict=True)]
        unary_layers = self.geometry.encode(unary, norm)
        layouts = [self.pair_layout(lab) for lab in labels]
        pairs = [p for p, _ in layouts]
        pair_q = [
            self.geometry.pair_queries(u, b, p, s)
            for u, b, p, s in zip(unary_layers[-1], boxes, pairs, sizes, strict=True)
        ]

        # §3 Linking Decoder.
        latent = self.decoder.latent_map(fmap)
        pair_layers = self.decoder(fmap, latent, pair_q, norm, pairs)

        # §4 Scores.
        aux = self.training if aux_logits is None else aux_logits
        classified = pair_layers if aux else pair_layers[-1:]
        outputs = []
        for b, det in enumerate(detections):
            p = pairs[b]
            det_scores = det.scores.to(device=device, dtype=torch.float32)
            pair_prior = det_scores[p[:, 0]] * det_scores[p[:, 1]]  # s_h * s_o, (P,)
            prior_train = pair_prior.pow(self.config.prior_lambda_train).unsqueeze(1)
            prior_test = pair_prior.pow(self.config.prior_lambda_test).unsqueeze(1)
            valid = layouts[b][1]
            layer_logits = [self.classify(layer[b]) for layer in classified]
            logits = layer_logits[-1]
            fused = [ops.prior_fused_logits(o, prior_train) for o in layer_logits]
            scores = torch.where(
                valid, prior_test * torch.sigmoid(logits), torch.zeros_like(logits)
            )
            outputs.append(
                {
                    "pairs": p,
                    "boxes": boxes[b],
                    "object_labels": labels[b],
                    "det_scores": det_scores,
                    "logits": logits,
                    "fused_logits": fused[-1],
                    "scores": scores,
                    "valid": valid,
                    "latent_map": None if latent is None else latent[b],
                    "unary_queries": [layer[b] for layer in unary_layers],
                    "pair_queries": [layer[b] for layer in pair_layers],
                    "layer_logits": fused,
                }
            )
        return outputs


def create_model(
    config: LinkConfig,
    label_space: LabelSpace | str,
    clip_weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    text_weights: str | Path | None = None,
) -> LinkModel:
    """Build a LINK model: the backbone of spec ``config.backbone`` (weights from a local file,
    or seeded random when ``clip_weights`` is None; see ``linkhoi.model.load_backbone``), the
    classifier initialised from cached text embeddings (from ``config.text_backbone``'s text
    tower, with ``text_weights``, when the backbone has none; ``config.tokenizer`` is a local
    tokenizer folder for it)."""
    from linkhoi import labels
    from linkhoi.devices import resolve_device
    from linkhoi.model.backbones import load_backbone
    from linkhoi.model.text import text_embeddings

    label_space = labels.load(label_space)
    device = resolve_device(device)
    backbone = load_backbone(
        config.backbone,
        clip_weights,
        config.image_size,
        device,
        text_backbone=config.text_backbone,
        text_weights=text_weights,
        tokenizer=config.tokenizer or None,
    )
    text = text_embeddings(backbone, backbone.info, label_space, config.text_template, cache_dir)
    return LinkModel(config, label_space, backbone, text).to(device)


@functools.cache
def _unique_names(label_space: LabelSpace) -> tuple[bool, ...]:
    """Per HOI class: do its (verb, object) names resolve to exactly it? (SWiG has clashes;
    there the triplets carry ids only, as the triplet format asks.)"""
    out = []
    for k, hoi in enumerate(label_space.hois):
        try:
            v = label_space.verb_position(hoi.verb)
            o = None if hoi.object is None else label_space.object_position(hoi.object)
            ok = o is None or label_space.hoi_position(v, o, hoi.role) == k
        except LabelError:
            ok = False
        out.append(ok)
    return tuple(out)


def _f32(value: np.float32) -> float:
    """A float32 as the Python float of its shortest round-tripping decimal."""
    return float(str(np.float32(value)))


def to_triplets(
    output: dict[str, Any], label_space: LabelSpace, top_k: int = 100, threshold: float = 0.0
) -> list[dict[str, Any]]:
    """Top-K valid (pair, class) scores of one image as triplet-format dicts (best first).

    Each dict has ``human_box``, ``object_box``, ``verb``, ``object``, ``hoi_id``, ``verb_id``,
    ``object_id``, ``score``; V-COCO classes add ``role``, and agent-only classes (role None)
    get ``object_box``/``object`` None and are kept once per human (its best pair). Boxes are in
    the detections' original pixels. Only scores > ``threshold`` are kept. Where names are
    ambiguous in the label space (SWiG-HOI) the ``verb``/``object`` keys are left out.
    """
    scores = output["scores"].detach().float()
    valid = output["valid"] & (scores > threshold)
    if scores.numel() == 0 or not bool(valid.any()):
        return []
    pairs = output["pairs"].cpu()
    # Shortest decimals that round-trip the float32 values: 241.9, not 241.89999389648438.
    boxes = [[_f32(v) for v in row] for row in output["boxes"].detach().float().cpu().numpy()]
    labels = output["object_labels"].cpu()
    flat = torch.where(valid, scores, torch.full_like(scores, -1.0)).flatten().cpu()
    order = torch.argsort(flat, descending=True, stable=True)
    num_classes = scores.shape[1]
    has_roles = any(h.role is not None for h in label_space.hois)
    unique = _unique_names(label_space)
    seen_agent: set[tuple[int, int]] = set()
    out: list[dict[str, Any]] = []
    for idx in order.tolist():
        if len(out) >= top_k or flat[idx] < 0:
            break
        pair, k = divmod(idx, num_classes)
        hoi = label_space.hois[k]
        h, o = int(pairs[pair, 0]), int(pairs[pair, 1])
        agent_only = has_roles and hoi.role is None
        if agent_only:
            if (h, k) in seen_agent:
                continue
            seen_agent.add((h, k))
        obj_pos = int(labels[o])
        obj_name = hoi.object if hoi.object is not None else label_space.objects[obj_pos]
        item: dict[str, Any] = {
            "human_box": boxes[h],
            "object_box": None if agent_only else boxes[o],
            "verb": hoi.verb,
            "object": None if agent_only else obj_name,
            "hoi_id": int(hoi.id),
            "verb_id": int(hoi.verb_id),
            "object_id": None if agent_only else int(label_space.object_ids[obj_pos]),
            "score": _f32(flat[idx].numpy()),
        }
        if has_roles:
            item["role"] = hoi.role
        if not unique[k]:
            del item["verb"], item["object"]
        elif not agent_only and hoi.object is None:
            try:  # the detected object's name, unless it is ambiguous
                label_space.object_position(obj_name)
            except LabelError:
                del item["object"]
        out.append(item)
    return out
