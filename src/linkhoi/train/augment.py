"""Training augmentation (docs/method.md §7): horizontal flip and scale, applied alike to the image,
its detections and its ground-truth boxes.

The backbone sees the whole image resized to a fixed R x R canvas, so resizing the image alone
would change nothing the model sees. Scale therefore zooms: ``s > 1`` crops a window of
``(w/s, h/s)`` that keeps every ground-truth box (wider when they span more), ``s < 1`` pads the
image into a ``(w/s, h/s)`` canvas of CLIP's mean colour. On the canvas, objects then appear
about ``s`` times larger or smaller, as a multi-scale resize does for detectors of any input size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace

import torch
from open_clip.constants import OPENAI_DATASET_MEAN
from PIL import Image, ImageOps

PAD_COLOUR = tuple(round(255 * m) for m in OPENAI_DATASET_MEAN)  # zero after CLIP normalisation


def _window(lo: float, hi: float, full: int, s: float, rng: random.Random) -> tuple[int, int]:
    """(start, width) along one axis of ``full`` pixels: width ``full / s``, widened to hold
    ``[lo, hi]`` (the GT boxes' extent; empty when lo > hi), placed at random around it."""
    width = max(1, round(full / s))
    if lo > hi:
        return rng.randint(0, full - width), width
    lo, hi = max(0, math.floor(lo)), min(full, math.ceil(hi))
    width = min(full, max(width, hi - lo))
    return rng.randint(max(0, hi - width), min(full - width, lo)), width


def augment(
    image: Image.Image,
    dets,
    gt_boxes: torch.Tensor,
    rng: random.Random,
    scales: Sequence[float],
    flip_prob: float,
):
    """Random zoom (one of ``scales``) and horizontal flip (with ``flip_prob``).

    Args: image (w x h); dets: ``Detections`` of it (pixels); gt_boxes (N, 4) pixels.
    Returns ``(image, dets, gt_boxes)`` in the new image's pixels; detections are clipped to it
    and those left without area dropped; GT boxes stay whole.
    """
    s = rng.choice(list(scales)) if scales else 1.0
    flip = rng.random() < flip_prob
    w, h = image.size
    dx = dy = 0
    if s > 1.0:
        if len(gt_boxes):
            lo, hi = gt_boxes[:, :2].amin(0).tolist(), gt_boxes[:, 2:].amax(0).tolist()
        else:  # no GT box: lo > hi, the window may sit anywhere
            lo, hi = [math.inf, math.inf], [-math.inf, -math.inf]
        (x0, w), (y0, h) = (_window(lo[i], hi[i], n, s, rng) for i, n in enumerate(image.size))
        image, dx, dy = image.crop((x0, y0, x0 + w, y0 + h)), -x0, -y0
    elif s < 1.0:
        cw, ch = max(w, round(w / s)), max(h, round(h / s))
        dx, dy = rng.randint(0, cw - w), rng.randint(0, ch - h)
        canvas = Image.new("RGB", (cw, ch), PAD_COLOUR)
        canvas.paste(image.convert("RGB"), (dx, dy))
        image, w, h = canvas, cw, ch
    if flip:
        image = ImageOps.mirror(image)
    shift = torch.tensor([dx, dy, dx, dy], dtype=torch.float32)

    def move(boxes: torch.Tensor) -> torch.Tensor:
        boxes = boxes.float() + shift
        if flip:
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return boxes

    boxes = move(dets.boxes)
    if s > 1.0:  # detections reaching past the window are clipped, those left empty dropped
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=boxes.dtype))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        dets = replace(dets, boxes=boxes[keep], labels=dets.labels[keep], scores=dets.scores[keep])
        boxes = dets.boxes
    return image, replace(dets, boxes=boxes, image_size=(w, h)), move(gt_boxes)
