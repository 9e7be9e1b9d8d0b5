"""Average precision shared by every evaluator: VOC 11-point and VOC2010 all-point.

All functions take the per-class detections already ranked (highest score first) and work on
1-D numpy arrays; they never re-sort, so the tie order chosen by the caller is kept.
"""

from __future__ import annotations

import numpy as np

# MATLAB's `0:0.1:1` (HICO-DET eval_one.m). The colon operator builds the first half as
# a + k*d and the second half as b - (n-k)*d, so 0.3 is 0.30000000000000004 while 0.6 and 0.7
# are the ordinary doubles (docs/evaluation.md, HICO-DET protocol). numpy.arange/linspace give 0.6000000000000001
# and 0.7000000000000001 instead, which drops the term of a class whose recall is exactly 0.6.
MATLAB_11_POINTS: np.ndarray = np.array(
    [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], dtype=np.float64
)
MATLAB_11_POINTS.flags.writeable = False

# The exact decimals i / 10.0 (SWiG-HOI, docs/evaluation.md).
DECIMAL_11_POINTS: np.ndarray = np.array([i / 10.0 for i in range(11)], dtype=np.float64)
DECIMAL_11_POINTS.flags.writeable = False


def stable_descending(scores: np.ndarray) -> np.ndarray:
    """Indices that sort `scores` (D,) high to low; equal scores keep their input order.

    MATLAB's `sort` is stable, numpy's default quicksort is not (docs/evaluation.md, HICO-DET protocol).
    """
    return np.argsort(-np.asarray(scores), kind="stable")


def rank_by_class(classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices that order detections by class (ascending), then score (high to low), equal
    scores in input order: ``np.lexsort((-scores, classes))``, computed as a stable sort by
    score, then a stable sort by class (a radix sort when the classes fit in int16).

    Args:
        classes: (D,) int class (or key) per detection; scores: (D,) float.
    """
    order = stable_descending(scores)
    ranked = np.asarray(classes)[order]
    if len(ranked) and ranked.min() >= 0 and ranked.max() < 2**15:
        ranked = ranked.astype(np.int16)
    return order[np.argsort(ranked, kind="stable")]


def precision_recall(
    tp: np.ndarray, npos: int, fp: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision curves of ranked detections.

    Args:
        tp: (D,) bool, True where the detection at that rank is a true positive.
        npos: number of ground-truth instances of the class. 0 gives an all-NaN recall (the
            official 0/0), which every AP function turns into AP 0 or NaN as documented.
        fp: optional (D,) bool of false positives; default ``~tp``. Pass it when some ranked
            detections are neither TP nor FP.

    Returns:
        (rec, prec), both (D,) float64: ``rec = cumTP / npos``, ``prec = cumTP / (cumTP + cumFP)``.
    """
    tp = np.asarray(tp, dtype=bool)
    fp = ~tp if fp is None else np.asarray(fp, dtype=bool)
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(fp, dtype=np.float64)
    rec = ctp / float(npos) if npos > 0 else np.full(ctp.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).tiny)
    return rec, prec


def ap_11_point(rec: np.ndarray, prec: np.ndarray, thresholds: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP: ``sum_t max(prec[rec >= t]) / 11``.

    Args:
        rec, prec: (D,) curves from :func:`precision_recall`.
        thresholds: (11,) recall thresholds, :data:`MATLAB_11_POINTS` or :data:`DECIMAL_11_POINTS`.

    A threshold no recall reaches contributes 0; NaN recall (no ground truth) reaches none,
    so it gives AP 0, as in the official code. Terms are added one by one in threshold order,
    like the MATLAB loop ``ap = ap + p / 11``.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    ap = 0.0
    n = float(len(thresholds))
    for t in thresholds:
        mask = rec >= t  # NaN >= t is False
        p = float(prec[mask].max()) if mask.any() else 0.0
        ap = ap + p / n
    return ap


def ap_all_point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2010 all-point AP (area under the interpolated curve), as V-COCO's ``voc_ap``.

    Adds recall sentinels 0 and 1 and precision sentinels 0 and 0, makes precision monotone
    non-increasing from the right, and sums ``delta_recall * precision`` where recall changes.

    Args:
        rec, prec: (D,) curves. Returns NaN when ``rec`` holds NaN (npos = 0), which the
        official V-COCO means skip with nanmean/nansum.
    """
    rec = np.asarray(rec)
    prec = np.asarray(prec)
    if rec.size and np.isnan(rec).any():
        return float("nan")
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
