"""Region-proposal filtering before pairing (docs/method.md §0, as UPT's prepare_region_proposals).

Per-class NMS at IoU 0.5; keep score >= 0.2; keep between 3 and 15 humans and between
3 and 15 objects (the top ones by score when fewer pass the threshold, as long as they
exist). Boxes are first clipped to the image.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from linkhoi.detections.base import Detections


def _keep_group(
    scores: torch.Tensor, members: torch.Tensor, passed: torch.Tensor, low: int, high: int
) -> torch.Tensor:
    """Indices of one group (humans or objects), best score first.

    scores: (N,); members, passed: (N,) bool. Fewer than `low` above the threshold: the top
    `low` members regardless of score; more than `high`: the top `high`; else those above.
    """
    idx = torch.nonzero(members).squeeze(1)
    idx = idx[torch.argsort(scores[idx], descending=True, stable=True)]
    n_passed = int(passed[idx].sum())
    if n_passed < low:
        return idx[:low]
    if n_passed > high:
        return idx[:high]
    return idx[passed[idx]]


def filter_proposals(
    dets: Detections,
    human_label: int,
    *,
    nms_iou: float = 0.5,
    score_threshold: float = 0.2,
    min_humans: int = 3,
    max_humans: int = 15,
    min_objects: int = 3,
    max_objects: int = 15,
    drop_empty: bool = True,
) -> Detections:
    """Filtered detections: humans first, then objects, each by decreasing score.

    `human_label` is the object position of people. Boxes are clipped to
    (0, 0, width, height); with `drop_empty`, boxes left with no area (entirely outside the
    image) are dropped before NMS since no feature can be pooled from them.
    """
    if len(dets) == 0:
        return dets
    w, h = dets.image_size
    boxes = dets.boxes
    if w > 0 and h > 0:
        boxes = clip_boxes_to_image(boxes, (h, w))
    dets = Detections(boxes, dets.labels, dets.scores, dets.image_size)
    if drop_empty:
        dets = dets.select((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    keep = batched_nms(dets.boxes, dets.scores, dets.labels, nms_iou)  # sorted by score
    dets = dets.select(keep)
    passed = dets.scores >= score_threshold
    is_human = dets.labels == human_label
    keep_h = _keep_group(dets.scores, is_human, passed, min_humans, max_humans)
    keep_o = _keep_group(dets.scores, ~is_human, passed, min_objects, max_objects)
    return dets.select(torch.cat([keep_h, keep_o]))
