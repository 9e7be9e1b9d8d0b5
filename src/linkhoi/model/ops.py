"""Small pure tensor functions of the LINK head (torchvision.ops style): box frames, sine
encodings, the 36-d box-pair spatial code, pair enumeration, padding.

Boxes are ``[x1, y1, x2, y2]`` corners everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _scale(image_size: tuple[int, int], like: Tensor) -> Tensor:
    w, h = image_size
    return torch.tensor([w, h, w, h], dtype=like.dtype, device=like.device)


def boxes_to_frame(boxes: Tensor, image_size: tuple[int, int], size: int) -> Tensor:
    """Map boxes from original pixels to the ``size x size`` frame the whole image is resized to.

    Args: boxes (N, 4) in an image of ``image_size = (width, height)``. Returns (N, 4).
    """
    return boxes * (size / _scale(image_size, boxes))


def normalize_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Boxes (N, 4) in pixels -> (N, 4) divided by (w, h, w, h) and clamped to [0, 1]."""
    return (boxes / _scale(image_size, boxes)).clamp(0.0, 1.0)


def sine_encoding(x: Tensor, dims: int = 128, temperature: float = 20.0) -> Tensor:
    """DETR/UPT sine encoding of scalars in [0, 1].

    Channel ``2i`` is ``sin(2*pi*x / t^(2i/dims))`` and ``2i+1`` the matching cosine.
    Args: x (...,). Returns (..., dims).
    """
    i = torch.arange(dims, dtype=torch.float32, device=x.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / dims)
    angle = x.float().unsqueeze(-1) * (2 * math.pi) / freq
    return torch.stack((angle[..., 0::2].sin(), angle[..., 1::2].cos()), dim=-1).flatten(-2)


def point_encoding(points: Tensor, dims: int = 128, temperature: float = 20.0) -> Tensor:
    """Sine encoding of 2-D points (..., 2) in [0, 1] -> (..., 2*dims): PE(x) ⊕ PE(y)."""
    return sine_encoding(points, dims, temperature).flatten(-2)


def box_encoding(norm_boxes: Tensor, dims: int = 128, temperature: float = 20.0) -> Tensor:
    """Box PE (docs/method.md §2.2): PE(cx, cy) ⊕ PE(w, h) of normalised boxes.

    Args: norm_boxes (N, 4) in [0, 1]. Returns (N, 4*dims) (512 for dims=128).
    """
    centre = (norm_boxes[:, :2] + norm_boxes[:, 2:]) / 2
    size = norm_boxes[:, 2:] - norm_boxes[:, :2]
    return torch.cat(
        [point_encoding(centre, dims, temperature), point_encoding(size, dims, temperature)], -1
    )


def grid_encoding(
    height: int, width: int, dims: int = 128, temperature: float = 20.0, device=None
) -> Tensor:
    """2-D sine PE of the cells of an ``height x width`` map, cell centres normalised to [0, 1].

    Returns (height*width, 2*dims), row-major (the order of ``F.flatten(2)``).
    """
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return point_encoding(torch.stack([gx, gy], -1).reshape(-1, 2), dims, temperature)


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matching rows (P, 4) x (P, 4) -> (P,) (the diagonal of ``box_iou``, in O(P))."""
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def pair_spatial_code(
    h_boxes: Tensor,
    o_boxes: Tensor,
    image_size: tuple[int, int],
    eps: float = 1e-10,
    max_ratio: float = 1e4,
) -> Tensor:
    """The 36-d UPT box-pair code (docs/method.md §2.5), human box ``h`` and object box ``o``.

    With image width ``W``, height ``H``, centres ``(cx, cy)``, widths ``w``, heights ``h``,
    and ``dx = |cx_o - cx_h| / (w_h + eps)``, ``dy = |cy_o - cy_h| / (h_h + eps)``, the 18 features are
    ``cx_h/W, cy_h/H, cx_o/W, cy_o/H`` (centres), ``w_h/W, h_h/H, w_o/W, h_o/H`` (sizes),
    ``w_h h_h/(WH), w_o h_o/(WH)`` (areas), ``w_o h_o/(w_h h_h + eps)`` (area ratio),
    ``w_h/(h_h + eps), w_o/(h_o + eps)`` (aspect ratios), ``IoU(h, o)``, and the signed directional
    distances ``[cx_o > cx_h] dx, [cx_o < cx_h] dx, [cy_o > cy_h] dy, [cy_o < cy_h] dy``; then
    ``log(f + eps)`` of all 18 is appended (36). The ratios are capped at ``max_ratio``: a
    degenerate (near-zero-width) box would otherwise give values past float16's 65504, which
    turn into inf, then NaN, in the first Linear under mixed precision.

    Args: h_boxes, o_boxes (P, 4) pixels; image_size (W, H). Returns (P, 36).
    """
    W, H = (float(v) for v in image_size)
    ch = (h_boxes[:, :2] + h_boxes[:, 2:]) / 2
    co = (o_boxes[:, :2] + o_boxes[:, 2:]) / 2
    wh_h = h_boxes[:, 2:] - h_boxes[:, :2]
    wh_o = o_boxes[:, 2:] - o_boxes[:, :2]
    area_h = wh_h.prod(-1)
    area_o = wh_o.prod(-1)
    dx = (co[:, 0] - ch[:, 0]).abs() / (wh_h[:, 0] + eps)
    dy = (co[:, 1] - ch[:, 1]).abs() / (wh_h[:, 1] + eps)
    f = torch.stack(
        [
            ch[:, 0] / W,
            ch[:, 1] / H,
            co[:, 0] / W,
            co[:, 1] / H,
            wh_h[:, 0] / W,
            wh_h[:, 1] / H,
            wh_o[:, 0] / W,
            wh_o[:, 1] / H,
            area_h / (W * H),
            area_o / (W * H),
            area_o / (area_h + eps),
            wh_h[:, 0] / (wh_h[:, 1] + eps),
            wh_o[:, 0] / (wh_o[:, 1] + eps),
            pairwise_iou(h_boxes, o_boxes),
            (co[:, 0] > ch[:, 0]).to(dx.dtype) * dx,
            (co[:, 0] < ch[:, 0]).to(dx.dtype) * dx,
            (co[:, 1] > ch[:, 1]).to(dy.dtype) * dy,
            (co[:, 1] < ch[:, 1]).to(dy.dtype) * dy,
        ],
        dim=1,
    )
    f = f.clamp(0.0, max_ratio)
    return torch.cat([f, torch.log(f + eps)], dim=1)


def enumerate_pairs(labels: Tensor, human_label: int) -> Tensor:
    """Every ordered pair (i, j), i a human, j any other detection (human-human included).

    Args: labels (N,) int64. Returns (P, 2) int64, sorted by i then j; P = n_h * (N - 1).
    """
    n = labels.shape[0]
    idx = torch.arange(n, device=labels.device)
    humans = idx[labels == human_label]
    i = humans.repeat_interleave(n)
    j = idx.repeat(humans.numel())
    keep = i != j
    return torch.stack([i[keep], j[keep]], dim=1)


def pad_sequences(seqs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack variable-length (n_b, D) tensors into (B, n_max, D) zeros-padded, with a (B, n_max)
    bool mask that is True at padding (the ``key_padding_mask`` convention)."""
    n_max = max(s.shape[0] for s in seqs)
    out = seqs[0].new_zeros(len(seqs), n_max, *seqs[0].shape[1:])
    mask = torch.ones(len(seqs), n_max, dtype=torch.bool, device=seqs[0].device)
    for b, s in enumerate(seqs):
        out[b, : s.shape[0]] = s
        mask[b, : s.shape[0]] = False
    return out, mask


def prior_fused_logits(logits: Tensor, prior: Tensor) -> Tensor:
    """Ψ = log(P / (1 + e^(-O) - P)) computed stably, so that ``sigmoid(Ψ) = P * sigmoid(O)``.

    ``Ψ = log P - log(e^(-O) + (1 - P)) = log P - logaddexp(-O, log1p(-P))``: no exponential of a
    large O is formed, and P = 1 gives exactly Ψ = O. P is clamped to [1e-8, 1].
    Computed in float32 whatever the logits' dtype: under fp16 autocast a prior below ~6e-8
    would round to 0 and give Ψ = -inf (then NaN losses).
    Args: logits O (P, K); prior P broadcastable to it. Returns (P, K) float32.
    """
    p = prior.float().clamp(1e-8, 1.0)
    return torch.log(p) - torch.logaddexp(-logits.float(), torch.log1p(-p))
