"""Why the mAP is what it is: a TIDE-style error diagnosis for human-object pairs.

Follows TIDE (Bolya et al., ECCV 2020): every false positive gets exactly one error type, then
the mAP is recomputed with only that type fixed; ``delta_map`` is that mAP minus the real one
(negative differences, possible when fixing moves detections between classes, count as 0, as
in TIDE). Adapted to pairs, with ``m = min(IoU_human, IoU_object)`` against the ground-truth
pairs of the detection's image, the types are tested in TIDE's order:

1. ``human_loc`` / ``object_loc`` / ``both_loc``: the best pair of the detection's class has
   0.1 <= m < 0.5; which box is off (IoU < 0.5) names the type. Fix: the detection becomes a
   true positive of that pair if the pair is still free and no higher-scored error claims it;
   otherwise it is removed.
2. ``verb`` / ``object_class``: both boxes match (m >= 0.5) a pair of another class; ``verb``
   when that class has the same object category, ``object_class`` otherwise. Fix: it becomes a
   true positive *of the pair's class*, with the same rule as above.
3. ``duplicate``: both boxes match a pair of its own class that another detection took.
   Fix: removed.
4. ``background``: no pair of the image reaches m >= 0.1. Fix: removed.
5. ``other``: none of the above (for example a pair of another class at 0.1 <= m < 0.5).
   Fix: removed.

``missed``: ground-truth pairs that no detection took and no error of types 1-2 points at.
Fix: they leave the ground truth (fewer positives). ``pair_recall`` is the fraction of
ground-truth pairs whose two boxes appear (m >= 0.5) in some detection of any class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

TYPES = ("human_loc", "object_loc", "both_loc", "verb", "object_class", "duplicate",
         "background", "other", "missed")  # fmt: skip
_FIXABLE = ("human_loc", "object_loc", "both_loc", "verb", "object_class")
FG, BG = 0.5, 0.1  # TIDE's foreground and background IoU thresholds


@dataclass
class PairDetections:
    """Ranked-or-not detections of one evaluation (D detections, G ground-truth pairs).

    Attributes:
        img: (D,) image index; cls: (D,) class position; score: (D,) float64;
        hbox, obox: (D, 4) boxes; tp: (D,) bool, the official matching's true positives;
        gt_row: (D,) ground-truth row a true positive took, -1 otherwise;
        seq: (D,) tie order of equal scores (the official ranking's input order).
    """

    img: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    hbox: np.ndarray
    obox: np.ndarray
    tp: np.ndarray
    gt_row: np.ndarray
    seq: np.ndarray


@dataclass
class PairGroundTruth:
    """G ground-truth pairs: img (G,), cls (G,), hbox and obox (G, 4); npos (C,) per class."""

    img: np.ndarray
    cls: np.ndarray
    hbox: np.ndarray
    obox: np.ndarray
    npos: np.ndarray


def _pairs_by_image(
    det_img: np.ndarray, gt_img: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, ground-truth pair) of the same image: (det index (K,), gt row (K,),
    per-detection pair count (D,))."""
    order = np.argsort(gt_img, kind="stable")
    sorted_img = gt_img[order]
    start = np.searchsorted(sorted_img, det_img, side="left")
    count = np.searchsorted(sorted_img, det_img, side="right") - start
    rep = np.repeat(np.arange(len(det_img)), count)
    offs = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return rep, order[start[rep] + offs], count


def _segment_argmax(values: np.ndarray, seg: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment id 0..n-1 (``seg`` sorted): (max value, -inf if empty; position of the
    first maximum in ``values``, -1 if empty)."""
    best = np.full(n, -np.inf)
    arg = np.full(n, -1, np.int64)
    if len(values):
        ids, starts = np.unique(seg, return_index=True)
        best[ids] = np.maximum.reduceat(values, starts)
        hit = np.flatnonzero(values == best[seg])
        first = np.unique(seg[hit], return_index=True)[1]
        arg[seg[hit[first]]] = hit[first]
    return best, arg


def classify(
    det: PairDetections, gt: PairGroundTruth, cls_object: np.ndarray, iou: Callable
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The error type of every false positive.

    Args:
        cls_object: (C,) object category of each class.
        iou: ``iou(a (K, 4), b (K, 4)) -> (K,)`` of the benchmark (row by row).

    Returns:
        type (D,) int64 index into :data:`TYPES` (-1 for true positives), target (D,) the
        ground-truth row a fixable error points at (-1 otherwise), and best (G,) the largest
        m any detection reaches with each ground-truth pair (for ``pair_recall``).
    """
    n = len(det.cls)
    rep, g, _ = _pairs_by_image(det.img, gt.img)
    m = np.minimum(iou(det.hbox[rep], gt.hbox[g]), iou(det.obox[rep], gt.obox[g]))
    m = np.nan_to_num(m, nan=0.0)  # a missing object box matches nothing
    best_gt = np.zeros(len(gt.cls))
    np.maximum.at(best_gt, g, m)
    types = np.full(n, -1, np.int64)
    target = np.full(n, -1, np.int64)
    fp = ~det.tp
    keep = fp[rep]  # only false positives are diagnosed
    rep, g, m = rep[keep], g[keep], m[keep]
    same = gt.cls[g] == det.cls[rep]
    used = np.zeros(len(gt.cls), bool)
    used[det.gt_row[det.tp]] = True
    # 1. localisation: the best pair of the own class at BG <= m < FG
    s_best, s_arg = _segment_argmax(np.where(same, m, -1.0), rep, n)
    loc = fp & (s_best >= BG) & (s_best < FG)
    k = s_arg[loc]
    ih = iou(det.hbox[loc], gt.hbox[g[k]])
    io = iou(det.obox[loc], gt.obox[g[k]])
    sub = np.where(ih >= FG, TYPES.index("object_loc"),
                   np.where(io >= FG, TYPES.index("human_loc"), TYPES.index("both_loc")))  # fmt: skip
    types[loc] = sub
    target[loc] = g[k]
    # 2. class: both boxes match a pair of another class
    o_best, o_arg = _segment_argmax(np.where(same, -1.0, m), rep, n)
    wrong = fp & (types < 0) & (o_best >= FG)
    k = o_arg[wrong]
    same_obj = cls_object[gt.cls[g[k]]] == cls_object[det.cls[wrong]]
    types[wrong] = np.where(same_obj, TYPES.index("verb"), TYPES.index("object_class"))
    target[wrong] = g[k]
    # 3. duplicate: a pair of its own class at m >= FG (taken: it is no true positive)
    types[fp & (types < 0) & (s_best >= FG)] = TYPES.index("duplicate")
    # 4. background: nothing of the image at m >= BG; 5. other
    a_best, _ = _segment_argmax(m, rep, n)
    types[fp & (types < 0) & (a_best < BG)] = TYPES.index("background")
    types[fp & (types < 0)] = TYPES.index("other")
    return types, target, best_gt


def diagnose(
    det: PairDetections,
    gt: PairGroundTruth,
    cls_object: np.ndarray,
    iou: Callable,
    class_ap: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    mean: Callable[[np.ndarray], float],
) -> dict[str, Any]:
    """The diagnosis: mAP, each type's ``delta_map`` and count, ``pair_recall``.

    Args:
        class_ap: ``class_ap(cls (K,), tp (K,), npos (C,)) -> (C,) AP`` for detections ranked
            by class, then score (the benchmark's AP rule).
        mean: the benchmark's headline mean of the (C,) per-class AP.

    Returns:
        ``{"map", "delta_map": {type: float}, "counts": {type: int}, "pair_recall"}``.
    """
    types, target, best_gt = classify(det, gt, cls_object, iou)
    used = np.zeros(len(gt.cls), bool)
    used[det.gt_row[det.tp]] = True
    # TIDE's BestGTMatch: of the errors pointing at a free pair, the highest-scored (first
    # in the ranking on ties) is the one a fix turns into its true positive
    fixable = np.flatnonzero((target >= 0) & ~used[np.maximum(target, 0)])
    rank = np.lexsort((det.seq[fixable], -det.score[fixable]))
    first = np.unique(target[fixable[rank]], return_index=True)[1]
    winner = np.zeros(len(types), bool)
    winner[fixable[rank][first]] = True
    claimed = np.zeros(len(gt.cls), bool)
    claimed[target[target >= 0]] = True
    missed = ~used & ~claimed

    def score(cls: np.ndarray, tp: np.ndarray, keep: np.ndarray, npos: np.ndarray) -> float:
        order = np.lexsort((det.seq[keep], -det.score[keep], cls[keep]))
        return float(mean(class_ap(cls[keep][order], tp[keep][order], npos)))

    everything = np.ones(len(types), bool)
    base = score(det.cls, det.tp, everything, gt.npos)
    delta, counts = {}, {}
    for t, name in enumerate(TYPES):
        if name == "missed":
            counts[name] = int(missed.sum())
            npos = gt.npos - np.bincount(gt.cls[missed], minlength=len(gt.npos))
            fixed = score(det.cls, det.tp, everything, npos)
        else:
            sel = types == t
            counts[name] = int(sel.sum())
            keep = ~sel
            cls, tp = det.cls, det.tp
            if name in _FIXABLE:
                win = sel & winner
                keep = keep | win
                tp = tp | win
                cls = np.where(win, gt.cls[np.maximum(target, 0)], cls)
            fixed = score(cls, tp, keep, gt.npos)
        delta[name] = max(fixed - base, 0.0)
    recall = float((best_gt >= FG).mean()) if len(best_gt) else float("nan")
    return {"map": base, "delta_map": delta, "counts": counts, "pair_recall": recall}


def format_diagnosis(diagnosis: Mapping[str, Any]) -> str:
    """The terminal table: per type, the count and the mAP gained by fixing it (points)."""
    lines = [
        "diagnosis (TIDE-style: mAP gained by fixing one error type, in points)",
        f"  {'type':<13} {'count':>9} {'delta mAP':>10}",
    ]
    for name in TYPES:
        lines.append(
            f"  {name:<13} {diagnosis['counts'][name]:>9} "
            f"{100.0 * diagnosis['delta_map'][name]:>+10.2f}"
        )
    lines.append(f"  mAP {100.0 * diagnosis['map']:.2f} %, pair recall "
                 f"{100.0 * diagnosis['pair_recall']:.2f} % (pairs found by some detection)")  # fmt: skip
    return "\n".join(lines)


def plot_diagnosis(path: Any, diagnosis: Mapping[str, Any], benchmark: str) -> Any:
    """Bar chart of ``delta_map`` per type (PNG, points), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linkhoi.io import atomic_path

    values = [100.0 * diagnosis["delta_map"][t] for t in TYPES]
    fig, ax = plt.subplots(figsize=(7.0, 3.8), dpi=100)
    ax.bar(range(len(TYPES)), values, color="tab:orange")
    ax.set_xticks(range(len(TYPES)), TYPES, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mAP gained if fixed (points)")
    ax.set_title(f"{benchmark}: mAP {100 * diagnosis['map']:.2f} %, "
                 f"pair recall {100 * diagnosis['pair_recall']:.1f} %")  # fmt: skip
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
