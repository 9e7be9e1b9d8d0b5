"""Ground-truth matching and the matching loss L_M (docs/method.md §5).

- ``pair_targets``: a candidate (human, object) pair is positive for HOI class k when a
  ground-truth pair of class k overlaps both its human and its object box with IoU >= 0.5.
- ``focal_loss``: binary focal loss on the prior-fused logits Ψ over valid classes.
- ``matching_loss``: L_M over a batch of model outputs, normalised by the number of positives
  averaged over processes (DDP averages gradients, so the result equals the loss of one
  process seeing the whole global batch).
- ``remove_unseen``: the zero-shot training annotations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from linkhoi.train import distributed


def gt_pair_tensor(pairs: Sequence, device: torch.device | None = None) -> Tensor:
    """``HOIPair`` list -> (G, 3) int64 [human, object (-1 when None), hoi position]."""
    rows = [[p.human, -1 if p.object is None else p.object, p.hoi] for p in pairs]
    return torch.tensor(rows, dtype=torch.int64, device=device).reshape(-1, 3)


def pair_targets(
    pairs: Tensor,
    boxes: Tensor,
    gt_boxes: Tensor,
    gt_pairs: Tensor,
    num_classes: int,
    iou_threshold: float = 0.5,
) -> Tensor:
    """Binary targets of candidate pairs.

    Args:
        pairs: (P, 2) int64 indices [human, object] into ``boxes``.
        boxes: (N, 4) candidate boxes [x1, y1, x2, y2].
        gt_boxes: (M, 4) ground-truth boxes, same convention as ``boxes``.
        gt_pairs: (G, 3) int64 [human, object, hoi] into ``gt_boxes``; object -1 marks an
            agent-only pair (V-COCO), matched on the human box alone.
        num_classes: K.
    Returns:
        (P, K) float: 1 where some GT pair of class k has IoU >= threshold with both boxes.
    """
    device = boxes.device
    targets = torch.zeros(len(pairs), num_classes, device=device)
    if len(pairs) == 0 or len(gt_pairs) == 0:
        return targets
    gt_boxes = gt_boxes.to(device=device, dtype=boxes.dtype)
    gt_pairs = gt_pairs.to(device)
    iou = box_iou(boxes, gt_boxes)  # (N, M)
    human_ok = iou[pairs[:, 0]][:, gt_pairs[:, 0]] >= iou_threshold  # (P, G)
    has_object = gt_pairs[:, 1] >= 0
    obj_iou = iou[pairs[:, 1]][:, gt_pairs[:, 1].clamp(min=0)]
    object_ok = (obj_iou >= iou_threshold) | ~has_object  # (P, G)
    match = (human_ok & object_ok).to(targets.dtype)  # (P, G)
    onehot = F.one_hot(gt_pairs[:, 2], num_classes).to(targets.dtype)  # (G, K)
    return (match @ onehot).clamp_(max=1.0)


def unannotated_pairs(
    pairs: Tensor, boxes: Tensor, gt_boxes: Tensor, unannotated: Tensor, iou_threshold: float = 0.5
) -> Tensor:
    """(P,) bool: pairs whose human box matches (IoU >= threshold) a person whose interactions
    are not annotated (V-COCO); their negatives are unknown, so the loss skips them.

    Args: pairs (P, 2), boxes (N, 4), gt_boxes (M, 4), unannotated (M,) bool.
    """
    if len(pairs) == 0 or not bool(unannotated.any()):
        return torch.zeros(len(pairs), dtype=torch.bool, device=boxes.device)
    gt = gt_boxes.to(device=boxes.device, dtype=boxes.dtype)[unannotated.to(boxes.device)]
    return (box_iou(boxes[pairs[:, 0]], gt) >= iou_threshold).any(1)


def focal_loss(
    logits: Tensor, targets: Tensor, mask: Tensor, alpha: float = 0.5, gamma: float = 0.1
) -> Tensor:
    """Summed binary focal loss over the entries where ``mask`` is True.

    Args: logits, targets, mask: (P, K). Returns a scalar.
    The modulating factor (1 - p_t)^γ is computed as exp(γ · log σ(±x)) because with
    γ < 1 the plain power has an infinite gradient when p_t saturates to 1 (NaN losses);
    torchvision's ``sigmoid_focal_loss`` uses the plain power.
    """
    # Masked entries may hold -inf; zero them first so 0 * inf never makes a NaN.
    logits = torch.where(mask, logits.float(), torch.zeros((), device=logits.device))
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    log_one_minus_pt = F.logsigmoid(logits * (1 - 2 * targets))  # log(1 - p_t) for t in {0, 1}
    loss = ce * torch.exp(gamma * log_one_minus_pt)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return (loss * mask.to(loss.dtype)).sum()


def batch_targets(
    outputs: list[dict], gt_boxes: list[Tensor], gt_pairs: list[Tensor], num_classes: int
) -> list[Tensor]:
    """``pair_targets`` for every image of a batch (model outputs give pairs and boxes)."""
    return [
        pair_targets(out["pairs"], out["boxes"], gb, gp, num_classes)
        for out, gb, gp in zip(outputs, gt_boxes, gt_pairs, strict=True)
    ]


def loss_inputs(
    outputs: list[dict], batch: dict, num_classes: int
) -> tuple[list[Tensor], list[Tensor] | None]:
    """Targets (P_i, K) and, when the batch has persons without labels (V-COCO), the pairs to
    skip (P_i,) per image. ``outputs`` need only ``pairs`` and ``boxes`` (``LinkModel.pair_layout``
    gives them before the forward pass); ``batch`` holds ``gt_boxes``, ``gt_pairs``,
    ``unannotated`` per image."""
    targets = batch_targets(outputs, batch["gt_boxes"], batch["gt_pairs"], num_classes)
    if not any(u.any() for u in batch["unannotated"]):
        return targets, None
    ignore = [
        unannotated_pairs(o["pairs"], o["boxes"], gb, u)
        for o, gb, u in zip(outputs, batch["gt_boxes"], batch["unannotated"], strict=True)
    ]
    return targets, ignore


def loss_masks(
    outputs: list[dict],
    targets: list[Tensor],
    class_mask: Tensor | None = None,
    ignore: list[Tensor] | None = None,
) -> list[Tensor]:
    """(P_i, K) bool per image: the entries L_M is computed on (valid for the pair's object,
    seen, and not a negative of a person without labels)."""
    masks = []
    for i, (out, tgt) in enumerate(zip(outputs, targets, strict=True)):
        valid = out["valid"]
        if class_mask is not None:
            valid = valid & class_mask.to(valid.device)
        if ignore is not None:
            skip = ignore[i].to(valid.device) & (tgt.sum(1) == 0)
            valid = valid & ~skip.unsqueeze(1)
        masks.append(valid)
    return masks


def count_positives(
    outputs: list[dict],
    targets: list[Tensor],
    class_mask: Tensor | None = None,
    ignore: list[Tensor] | None = None,
) -> Tensor:
    """The number of positive (pair, class) entries L_M is computed on (a scalar tensor)."""
    masks = loss_masks(outputs, targets, class_mask, ignore)
    device = targets[0].device if targets else torch.device("cpu")
    return sum(
        ((t * m).sum() for t, m in zip(targets, masks, strict=True)), torch.zeros((), device=device)
    )


def matching_loss(
    outputs: list[dict],
    targets: list[Tensor],
    class_mask: Tensor | None = None,
    alpha: float = 0.5,
    gamma: float = 0.1,
    aux_loss: bool = True,
    ignore: list[Tensor] | None = None,
    normaliser: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L_M over a batch: focal loss on Ψ (and every earlier decoder layer when ``aux_loss``).

    Args:
        outputs: model outputs (internals.md), one dict per image.
        targets: (P_i, K) per image from ``pair_targets``.
        class_mask: (K,) bool, classes that take part (False for unseen zero-shot classes).
        ignore: per image (P_i,) bool, pairs left out unless they have a positive class
            (``unannotated_pairs``).
        normaliser: what to divide by; default max(1, this batch's positives averaged across
            processes). Gradient accumulation passes the count of the whole optimizer step.
    Returns:
        (loss, stats): the normalised loss; stats holds the float values of its parts and the
        local number of positives.
    """
    device = targets[0].device if targets else torch.device("cpu")
    total = torch.zeros((), device=device)
    aux = torch.zeros((), device=device)
    positives = torch.zeros((), device=device)
    masks = loss_masks(outputs, targets, class_mask, ignore)
    for out, tgt, valid in zip(outputs, targets, masks, strict=True):
        positives = positives + (tgt * valid).sum()
        total = total + focal_loss(out["fused_logits"], tgt, valid, alpha, gamma)
        if aux_loss:
            # The last decoder layer's logits are Ψ itself; the earlier ones are auxiliary.
            for layer in out.get("layer_logits", [])[:-1]:
                aux = aux + focal_loss(layer, tgt, valid, alpha, gamma)
    if normaliser is None:
        normaliser = distributed.all_reduce_mean(positives.detach()).clamp(min=1.0)
    n = normaliser
    loss = (total + aux) / n
    stats = {
        "loss_match": float(total.detach() / n),
        "loss_aux": float(aux.detach() / n),
        "positives": float(positives),
    }
    return loss, stats


def remove_unseen(samples: Iterable, unseen_positions: Iterable[int]) -> list:
    """Zero-shot training annotations: drop the pairs of unseen HOI classes.

    Only those pairs go; an image stays while at least one seen pair remains (docs/method.md §5);
    an image that had no pairs to begin with is kept as it is. Samples are dataclasses
    (``linkhoi.data.Sample``); the originals are not modified.
    """
    unseen = {int(u) for u in unseen_positions}
    kept = []
    for sample in samples:
        pairs = [p for p in sample.pairs if p.hoi not in unseen]
        if pairs or not sample.pairs:
            kept.append(dataclasses.replace(sample, pairs=pairs))
    return kept
