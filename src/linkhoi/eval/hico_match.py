"""HICO-DET ranking and greedy matching, vectorised over all detections at once.

The rules are eval_one.m's (docs/evaluation.md, HICO-DET protocol): per class, detections
ranked by score with MATLAB's stable sort (ties: ground-truth image order, then input order);
each detection compared with the ground-truth pairs of its own (class, image) block only;
its best pair is the first row reaching the maximum of min(IoU_human, IoU_object); it is a
true positive iff that maximum is >= 0.5 and no detection ranked before it took that pair.

:func:`match_details` ranks and matches everything (the diagnosis needs every detection's
boxes in ranked order). :func:`match_ranked` returns only what the AP needs and does the box
work only for detections whose (class, image) block holds ground truth, which at full scale
is a small fraction of them; both give the same true positives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from linkhoi.eval.ap import rank_by_class

# a dense (class, image) -> block table is used up to this many cells (int32: 4 bytes each)
_DENSE_CELLS = 1 << 25


def pixel_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of (P, 4) boxes in 1-based inclusive pixels (the "+1" rule).

    Same operations, in the same order, as VOCevaldet_bboxpair.m; 0 where the boxes do not
    share a pixel (iw <= 0 or ih <= 0). A huge box (1e300) has an infinite area: IoU 0.
    """
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    with np.errstate(over="ignore", invalid="ignore"):
        inter = iw * ih
        ua = (
            (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
            + (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
            - inter
        )
    ok = (iw > 0) & (ih > 0)
    out = np.zeros(len(a))
    np.divide(inter, ua, out=out, where=ok)
    return out


def _blocks(gt_key: np.ndarray, key: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) (D,) of each detection's ground-truth block in ``gt_key`` (sorted)."""
    if n_cells <= _DENSE_CELLS and len(key) > 4 * len(gt_key) > 0:
        uniq, first, size = np.unique(gt_key, return_index=True, return_counts=True)
        table = np.full(n_cells, -1, np.int32)
        table[uniq] = np.arange(len(uniq), dtype=np.int32)
        block = table[key]
        has = block >= 0
        start = np.where(has, first[block], 0)
        return start, np.where(has, size[block], 0)
    start = np.searchsorted(gt_key, key, side="left")
    return start, np.searchsorted(gt_key, key, side="right") - start


def _best_pairs(
    hb: np.ndarray, ob: np.ndarray, start: np.ndarray, count: np.ndarray,
    gt_hbox: np.ndarray, gt_obox: np.ndarray, iou: Callable,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(max overlap (D,), ground-truth row reaching it first (D,), -1 / -inf without GT)."""
    n = len(count)
    offsets = np.concatenate(([0], np.cumsum(count)))
    total = int(offsets[-1])
    rep = np.repeat(np.arange(n), count)  # detection of each (detection, gt) pair
    gt = start[rep] + (np.arange(total) - offsets[:-1][rep])
    ov = np.minimum(iou(hb[rep], gt_hbox[gt]), iou(ob[rep], gt_obox[gt]))
    ov_max = np.full(n, -np.inf)
    j_max = np.full(n, -1, dtype=np.int64)
    has = count > 0
    if total:
        seg = offsets[:-1][has]
        ov_max[has] = np.maximum.reduceat(ov, seg)
        # first GT row reaching the max (MATLAB updates only on a strictly larger overlap)
        pos = np.where(ov == ov_max[rep], np.arange(total), total)
        j_max[has] = gt[np.minimum.reduceat(pos, seg)]
    return ov_max, j_max


def match_details(
    collected: tuple[np.ndarray, ...], known: np.ndarray | None, hoi_object: np.ndarray,
    n_img: int, gt: tuple[np.ndarray, np.ndarray, np.ndarray], iou: Callable,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Rank and match every detection (D detections, ranked by class, then score).

    Args:
        collected: (img, hoi, score, human (D, 4), object (D, 4)) in image order, then input
            order (``HICOEvaluator._collect``).
        known: Known-Object table (objects x images) or None; ``hoi_object`` (H,).
        gt: (gt_key, human boxes, object boxes) sorted by (class, image) block.

    Returns dict of (D,) arrays ``img``, ``hoi``, ``score``, ``tp`` (bool), ``gt_row`` (the
    ground-truth row a true positive took, -1 otherwise), ``seq`` (position in image order,
    then input order: the tie order), and (D, 4) ``hb``, ``ob``.
    """
    img, hoi, score, hb, ob = collected
    seq = np.arange(len(img))
    if known is not None:
        keep = known[hoi_object[hoi], img]
        img, hoi, score, hb, ob, seq = (x[keep] for x in (img, hoi, score, hb, ob, seq))
    order = rank_by_class(hoi, score)  # ties keep image / input order
    img, hoi, score, hb, ob, seq = (x[order] for x in (img, hoi, score, hb, ob, seq))
    gt_key, gt_hbox, gt_obox = gt
    start = np.searchsorted(gt_key, hoi * n_img + img, side="left")
    count = np.searchsorted(gt_key, hoi * n_img + img, side="right") - start
    ov_max, j_max = _best_pairs(hb, ob, start, count, gt_hbox, gt_obox, iou)
    qualified = np.flatnonzero(ov_max >= 0.5)
    # greedy VOC: the first qualifying detection of a GT takes it; later ones are FPs
    _, first = np.unique(j_max[qualified], return_index=True)
    tp = np.zeros(len(hoi), dtype=bool)
    tp[qualified[first]] = True
    return {"img": img, "hoi": hoi, "score": score, "hb": hb, "ob": ob, "seq": seq,
            "tp": tp, "gt_row": np.where(tp, j_max, -1)}  # fmt: skip


def match_ranked(
    collected: tuple[np.ndarray, ...], known: np.ndarray | None, hoi_object: np.ndarray,
    n_img: int, gt: tuple[np.ndarray, np.ndarray, np.ndarray], iou: Callable, n_hoi: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The true positives of :func:`match_details` without ranking the boxes.

    Same arguments as :func:`match_details`, plus ``n_hoi`` (H). Returns ``hoi`` (D,) class
    positions ranked by class, then score (stable), and ``tp`` (D,) bool in that order.
    """
    img, hoi, score, hb, ob = collected
    if known is not None:
        keep = known[hoi_object[hoi], img]
        img, hoi, score, hb, ob = (x[keep] for x in (img, hoi, score, hb, ob))
    gt_key, gt_hbox, gt_obox = gt
    start, count = _blocks(gt_key, hoi * n_img + img, max(n_hoi * n_img, 1))
    cand = np.flatnonzero(count)  # detections whose block holds ground truth, input order
    ov_max, j_max = _best_pairs(hb[cand], ob[cand], start[cand], count[cand], gt_hbox,
                                gt_obox, iou)  # fmt: skip
    q = cand[ov_max >= 0.5]
    jq = j_max[ov_max >= 0.5]
    # greedy VOC: per GT row, the qualifying detection ranked first (highest score, then the
    # lowest position: the stable sort's tie order) takes it; a row belongs to one class
    first = np.lexsort((q, -score[q], jq))
    take = np.ones(len(first), dtype=bool)
    take[1:] = jq[first][1:] != jq[first][:-1]
    tp = np.zeros(len(hoi), dtype=bool)
    tp[q[first[take]]] = True
    order = rank_by_class(hoi, score)  # by class, then score descending, ties in input order
    return hoi[order], tp[order]
