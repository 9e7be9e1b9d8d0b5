"""SWiG-HOI evaluator: per-interaction 11-point AP as THID / CMD-SE's ``SWiGEvaluator``.

Protocol: docs/evaluation.md (SWiG-HOI). Per evaluated interaction the predictions
are ranked by score and only the first 19,999 are read; each is matched to the GT pair of its
image with the largest ``min(IoU_h, IoU_o)`` (continuous IoU, first pair wins ties); a used or
too-far pair makes it an FP (no fallback); predictions on images without GT of the class,
including images absent from the GT file, are FPs. AP is 11-point with thresholds ``i / 10.0``.

Matching is vectorised over all predictions at once: "used" only changes on a TP, so a
prediction is a TP exactly when it is a candidate (best pair with m >= 0.5) and no
higher-ranked candidate of its class chose the same GT pair.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.eval.ap import DECIMAL_11_POINTS, rank_by_class
from linkhoi.eval.base import (
    EvalError,
    EvalResult,
    Evaluator,
    check_one_key_per_image,
)
from linkhoi.eval.batch import BatchRefused, all_structs, image_views, resolve_batch
from linkhoi.eval.resolve import resolve_triplets
from linkhoi.eval.triplets import TripletFileError
from linkhoi.io import atomic_write_text

IOU_THRESHOLD = 0.5
MAX_PREDICTIONS = 19999  # the official loop reads range(min(len(idx), 19999))


def iou_continuous(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU without the +1 convention, float64, as the official ``iou(bb1, bb2)``.

    Args:
        det, gt: (M, 4) boxes [x1, y1, x2, y2], compared row by row.
    Returns:
        (M,) float64; 0 where the boxes do not overlap (iw <= 0 or ih <= 0).
    """
    det = np.asarray(det, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    w1 = np.maximum(det[:, 2] - det[:, 0], 0.0)
    h1 = np.maximum(det[:, 3] - det[:, 1], 0.0)
    w2 = np.maximum(gt[:, 2] - gt[:, 0], 0.0)
    h2 = np.maximum(gt[:, 3] - gt[:, 1], 0.0)
    iw = np.maximum(np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]), 0.0)
    ih = np.maximum(np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]), 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # 1e300 boxes: IoU 0
        inter = iw * ih
        out = inter / (w1 * h1 + w2 * h2 - inter)
    return np.where(inter <= 0, 0.0, out)


def ap_11_point_segments(
    tp: np.ndarray, starts: np.ndarray, ends: np.ndarray, npos: np.ndarray
) -> np.ndarray:
    """11-point AP (thresholds ``i / 10.0``) of many ranked classes at once.

    Bit-identical to :func:`linkhoi.eval.ap.precision_recall` + :func:`ap_11_point` per class
    (same float operations in the same order), without a Python loop over 5,539 classes.

    Args:
        tp: (K,) bool, ranked predictions of all classes, each class a contiguous slice.
        starts, ends: (C,) slice bounds of the C classes, non-empty and in order.
        npos: (C,) GT pairs per class; 0 gives NaN recall, hence AP 0 (official).
    Returns:
        (C,) float64 AP.
    """
    counts = ends - starts
    first = np.cumsum(counts) - counts
    sel = np.repeat(starts - first, counts) + np.arange(counts.sum())
    t = tp[sel].astype(np.int64)
    ctp_all = np.cumsum(t)
    offset = np.repeat(ctp_all[first] - t[first], counts)
    ctp = (ctp_all - offset).astype(np.float64)
    rank = (np.arange(len(sel)) - np.repeat(first, counts) + 1).astype(np.float64)
    n = np.repeat(npos.astype(np.float64), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(n > 0, ctp / n, np.nan)
        prec = ctp / rank
    ap = np.zeros(len(starts))
    for thr in DECIMAL_11_POINTS:
        best = np.maximum.reduceat(np.where(rec >= thr, prec, -1.0), first) if len(sel) else ap
        ap = ap + np.where(best >= 0, best, 0.0) / 11.0
    return ap


class SWIGEvaluator(Evaluator):
    """SWiG-HOI mAP: Non-rare / Rare / Unseen / Full (unseen included) and Full seen-only.

    Detections (``process``) name the interaction by ``hoi_id`` (the interaction id), by
    ``verb_id`` + ``object_id``, or by unambiguous names; ``object_box`` is required.
    Predictions of interactions that are not evaluated, or of (action, object) pairs that are
    no interaction, are ignored and counted in the notes.

    Args:
        samples: GT from :func:`linkhoi.data.read_swig` (``image_id`` = the file's ``img_id``).
        label_space: the ``swig_hoi`` label space (subsets ``evaluated``, ``non_rare``,
            ``rare``, ``unseen`` are the metadata flags).
        strict: raise on predictions for images absent from the GT instead of counting FPs.
    """

    benchmark = "swig_hoi"

    def __init__(self, samples: list[Any], label_space: Any, strict: bool = False) -> None:
        super().__init__()
        self.label_space = label_space
        self.strict = strict
        self.samples = samples
        n_h = len(label_space.hois)
        self.hoi_ids = np.asarray([int(h.id) for h in label_space.hois], dtype=np.int64)
        subsets = label_space.subsets
        self.evaluated = np.zeros(n_h, dtype=bool)
        self.evaluated[sorted(subsets["evaluated"])] = True
        self.buckets = {
            name: np.asarray(sorted(p for p in subsets[name] if self.evaluated[p]), np.int64)
            for name in ("non_rare", "rare", "unseen")
        }
        self.index: dict[str, int] = {}
        hoi, img, boxes = [], [], []
        for i, s in enumerate(samples):
            self.index[s.file_name] = i
            if s.image_id is not None:
                self.index.setdefault(str(s.image_id), i)
            for p in s.pairs:
                if p.object is None:
                    raise EvalError(
                        f"ground truth image {s.file_name!r}, field 'pairs': a SWiG-HOI pair "
                        "needs an object box"
                    )
                hoi.append(p.hoi)
                img.append(i)
                boxes.append(np.concatenate([s.boxes[p.human], s.boxes[p.object]]))
        self.gt_hoi = np.asarray(hoi, dtype=np.int64)
        self.gt_img = np.asarray(img, dtype=np.int64)
        self.gt_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 8)
        self.npos = np.bincount(self.gt_hoi, minlength=n_h)
        # GT pairs grouped by (interaction, image), annotation order kept inside a group.
        n_img = max(len(samples), 1)
        gkey = self.gt_hoi * n_img + self.gt_img
        self._gt_order = np.argsort(gkey, kind="stable")
        self._group_keys, self._group_start, self._group_count = np.unique(
            gkey[self._gt_order], return_index=True, return_counts=True
        )
        self._n_img = n_img

    @classmethod
    def from_files(
        cls, annotations: str | os.PathLike[str], label_space: Any = None, strict: bool = False
    ) -> SWIGEvaluator:
        """Build the GT from a SWiG-HOI json (``swig_test_1000.json``)."""
        from linkhoi import labels
        from linkhoi.data import read_swig

        ls = labels.load("swig_hoi") if label_space is None else label_space
        if isinstance(ls, str):
            ls = labels.load(ls)
        return cls(read_swig(annotations, label_space=ls), ls, strict=strict)

    def image_keys(self) -> list[str]:
        return list(self.index)

    @property
    def num_gt_images(self) -> int:
        return len(self.samples)

    @property
    def num_gt_pairs(self) -> int:
        return len(self.gt_hoi)

    # ---------------------------------------------------------------- per image
    def convert(self, image_key: str, detections: list[dict]) -> Any:
        """One image's predictions: (image index or -1, HOI positions, scores, (D, 8) boxes)."""
        src = getattr(self, "predictions_source", "predictions")  # set by eval.cli
        image = self.index.get(image_key, -1)
        if image < 0 and self.strict:
            raise EvalError(
                f"{src}: image {image_key!r} (field 'file_name') is not in the SWiG-HOI ground truth; "
                "the official protocol counts its predictions as false positives "
                "(run without --strict to do so)"
            )
        if not detections:
            return image, np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 8))
        try:
            arr = resolve_triplets(detections, self.label_space, src, image_key)
        except TripletFileError as err:
            raise EvalError(str(err)) from None
        boxes = np.concatenate([arr.human_boxes, arr.object_boxes], axis=1)
        bad = np.flatnonzero(~(np.isfinite(boxes).all(axis=1) & np.isfinite(arr.scores)))
        if bad.size:
            j = int(bad[0])
            raise EvalError(
                f"{src}: image {image_key!r}, detection {j}: 'object_box' is required and boxes and "
                "'score' must be finite"
            )
        if self.strict and (arr.hois < 0).any():
            j = int(np.flatnonzero(arr.hois < 0)[0])
            raise EvalError(
                f"{src}: image {image_key!r}, detection {j}: (verb, object) is not a SWiG-HOI "
                "interaction (ignored without --strict)"
            )
        return image, arr.hois, arr.scores, boxes

    def process_batch(self, items: list[tuple[str, list]]) -> None:
        """:meth:`convert` for several images at once (:func:`~linkhoi.eval.batch.resolve_batch`);
        all or nothing: anything to report goes the per-image way (BatchRefused)."""
        keys, dets = [k for k, _ in items], [d for _, d in items]
        if not (self._batch_keys_free(keys) and all_structs(dets)):
            return super().process_batch(items)
        idx = np.fromiter(map(lambda k: self.index.get(k, -1), keys), np.int64, len(keys))
        if self.strict and (idx < 0).any():
            raise BatchRefused("an image not in the ground truth, under --strict")
        src = getattr(self, "predictions_source", "predictions")
        a, counts = resolve_batch(dets, self.label_space, src)
        boxes = np.concatenate([a.human_boxes, a.object_boxes], axis=1)
        if not (np.isfinite(boxes).all() and np.isfinite(a.scores).all()):
            raise BatchRefused("a null object box")
        if self.strict and (a.hois < 0).any():
            raise BatchRefused("a detection that is no class, under --strict")
        views = image_views(counts, a.hois, a.scores, boxes)
        values = {k: (i, *v) for k, i, v in zip(keys, idx.tolist(), views, strict=True)}
        self._record_batch(values, (np.repeat(idx, counts), a.hois, a.scores, boxes))

    # ---------------------------------------------------------------- evaluation
    def _arrays(self) -> tuple[np.ndarray, ...]:
        check_one_key_per_image((k, v[0]) for k, v in self._predictions.items())
        batched = self._batch_arrays()
        if batched is not None:  # every image came in through process_batch, in this order
            return batched
        parts = list(self._predictions.values())
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 8))
        img = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
        return (img, *(np.concatenate([p[k] for p in parts]) for k in range(1, 4)))

    def match(self) -> dict[str, np.ndarray]:
        """Rank and match the read predictions of the evaluated interactions.

        Returns dict with ``hoi``, ``tp`` (K,) of the K read predictions, ranked by (HOI
        position ascending, score descending, input order), plus ``ignored`` (count of
        predictions of non-evaluated or unknown interactions) and ``capped`` (count beyond
        the 19,999 cap).
        """
        img, hoi, score, boxes = self._arrays()
        valid = hoi >= 0
        valid[valid] = self.evaluated[hoi[valid]]
        ignored = int((~valid).sum())
        rows = np.flatnonzero(valid)
        rows = rows[rank_by_class(hoi[rows], score[rows])]
        h = hoi[rows]
        first = np.searchsorted(h, h, side="left")
        read = (np.arange(len(h)) - first) < MAX_PREDICTIONS
        capped = int((~read).sum())
        rows, h = rows[read], h[read]
        pimg = img[rows]
        # Locate each prediction's GT group (interaction, image).
        pkey = h * self._n_img + pimg
        pos = np.searchsorted(self._group_keys, pkey)
        pos = np.minimum(pos, max(len(self._group_keys) - 1, 0))
        found = (pimg >= 0) & (len(self._group_keys) > 0)
        if len(self._group_keys):
            found &= self._group_keys[pos] == pkey
        tp = np.zeros(len(rows), dtype=bool)
        f = np.flatnonzero(found)
        if f.size:
            c = self._group_count[pos[f]]
            rep = np.repeat(f, c)
            offs = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
            g = self._gt_order[self._group_start[pos[rep]] + offs]
            pb, gb = boxes[rows[rep]], self.gt_boxes[g]
            m = np.minimum(
                iou_continuous(pb[:, :4], gb[:, :4]), iou_continuous(pb[:, 4:], gb[:, 4:])
            )
            starts = np.cumsum(c) - c
            seg_max = np.maximum.reduceat(m, starts)
            seg_of = np.repeat(np.arange(len(f)), c)
            hit = np.flatnonzero(m == seg_max[seg_of])
            best = g[hit[np.unique(seg_of[hit], return_index=True)[1]]]  # first pair wins ties
            cand = np.zeros(len(rows), dtype=bool)
            cand[f] = seg_max >= IOU_THRESHOLD
            pair = np.full(len(rows), -1, np.int64)
            pair[f] = best
            idx = np.flatnonzero(cand)
            tp[idx[np.unique(pair[idx], return_index=True)[1]]] = True
        return {"hoi": h, "tp": tp, "ignored": np.int64(ignored), "capped": np.int64(capped)}

    def evaluate(self) -> EvalResult:
        """Per-interaction AP over the evaluated set and the bucket means."""
        m = self.match()
        h, tp = m["hoi"], m["tp"]
        eval_pos = np.flatnonzero(self.evaluated)
        lo = np.searchsorted(h, eval_pos, side="left")
        hi = np.searchsorted(h, eval_pos, side="right")
        ap = np.zeros(len(self.hoi_ids))  # no prediction: AP 0
        some = hi > lo
        ap[eval_pos[some]] = ap_11_point_segments(tp, lo[some], hi[some], self.npos[eval_pos[some]])
        seen = np.union1d(self.buckets["non_rare"], self.buckets["rare"])
        summary = {
            "benchmark": "swig_hoi",
            "map": {
                "non_rare": _mean(ap[self.buckets["non_rare"]]),
                "rare": _mean(ap[self.buckets["rare"]]),
                "unseen": _mean(ap[self.buckets["unseen"]]),
                "full": _mean(ap[eval_pos]),
                "full_seen_only": _mean(ap[seen]),
            },
            "per_class_ap": {str(int(self.hoi_ids[p])): float(ap[p]) for p in eval_pos},
        }
        return EvalResult(
            "swig_hoi", summary, dict(summary["per_class_ap"]), self._protocol(), self._notes(m)
        )

    def _protocol(self) -> dict[str, str]:
        b = self.buckets
        return {
            "ap": "11-point interpolated AP, thresholds i/10.0 (THID SWiGEvaluator)",
            "box_convention": "[x1, y1, x2, y2] as stored, continuous IoU (no +1)",
            "matching": "min(IoU_h, IoU_o) >= 0.5 with the best GT pair, no fallback; "
            f"first {MAX_PREDICTIONS} predictions per interaction",
            "classes": f"{int(self.evaluated.sum())} evaluated: {len(b['non_rare'])} non-rare, "
            f"{len(b['rare'])} rare, {len(b['unseen'])} unseen (metadata flags)",
            "full": "all evaluated interactions, unseen included (THID/CMD-SE); "
            "full_seen_only = non-rare + rare (CHOIR)",
        }

    def _notes(self, m: dict[str, Any]) -> list[str]:
        notes = []
        unknown = [k for k, v in self._predictions.items() if v[0] < 0]
        if unknown:
            n = sum(len(self._predictions[k][1]) for k in unknown)
            notes.append(
                f"{len(unknown)} predicted image(s) ({n} predictions) are not in the ground truth; "
                "their predictions count as false positives (official protocol)"
            )
        if int(m["ignored"]):
            notes.append(
                f"{int(m['ignored'])} predictions of non-evaluated interactions (or of "
                "(verb, object) pairs that are no interaction) ignored"
            )
        if int(m["capped"]):
            notes.append(f"{int(m['capped'])} predictions beyond the 19,999 per class not read")
        no_gt = int((self.npos[self.evaluated] == 0).sum())
        if no_gt:
            notes.append(f"{no_gt} evaluated interactions have no GT pair in this file (AP 0)")
        return notes

    # ---------------------------------------------------------------- export
    def export_official(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``swig_predictions.json``: the THID ``SWiGEvaluator.update`` input.

        ``{img_id: [[hoi_id, score, hx1, hy1, hx2, hy2, ox1, oy1, ox2, oy2], ...]}`` (json keys
        are strings; convert with ``{int(k): v}``). Images absent from the GT get their numeric
        key, or negative ids -1, -2, ... (still false positives). Predictions of (action,
        object) pairs that are no interaction have no id and are left out.
        """
        out: dict[str, list[list[float]]] = {}
        fresh = 0
        for key, (image, hoi, score, boxes) in self._predictions.items():
            if image >= 0 and self.samples[image].image_id is not None:
                img_id = int(self.samples[image].image_id)
            elif key.isdigit() and key not in self.index:
                img_id = int(key)
            else:
                fresh -= 1
                img_id = fresh
            ok = hoi >= 0
            rows = np.column_stack([self.hoi_ids[hoi[ok]], score[ok], boxes[ok]]).tolist()
            for r in rows:
                r[0] = int(r[0])
            out.setdefault(str(img_id), []).extend(rows)
        path = Path(directory) / "swig_predictions.json"
        atomic_write_text(path, json.dumps(out))
        return path


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
