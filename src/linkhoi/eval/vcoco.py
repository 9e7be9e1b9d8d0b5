"""V-COCO evaluator: agent AP (26 actions) and role AP (Scenario 1 and 2), as ``vsrl_eval.py``.

Protocol: docs/evaluation.md (V-COCO). Every detection is matched on its own key
(``<action>_agent`` or ``<action>_<role>``) to the GT person with the largest IoU among *all*
persons of the image (+1 pixel convention, float32); a detection whose best person is ignored
(not V-COCO-annotated) is dropped, a duplicate or a wrong best person is an FP (no fallback).

Matching is vectorised over all detections at once: the "covered" state of the official loop
only ever changes on a TP, so a detection is a TP exactly when it is a candidate (right action,
IoU >= 0.5, role check) and no higher-ranked candidate of the same (key, person) precedes it.
The keys and the flattened GT persons are built in :mod:`linkhoi.eval.vcoco_gt`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.eval.ap import ap_all_point, precision_recall, rank_by_class
from linkhoi.eval.base import EvalError, EvalResult, Evaluator, check_one_key_per_image
from linkhoi.eval.batch import BatchRefused, all_structs, image_views, resolve_batch
from linkhoi.eval.resolve import ROLES, resolve_triplets
from linkhoi.eval.triplets import TripletFileError
from linkhoi.eval.vcoco_gt import _AMBIGUOUS_ROLE, _classes, _ground_truth

IOU_THRESHOLD = 0.5
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def iou_plus1(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU with the +1 pixel convention, in float32 like ``vsrl_eval.get_overlap``.

    Args:
        gt, pred: (M, 4) boxes [x1, y1, x2, y2], compared row by row (broadcastable).
    Returns:
        (M,) float32 IoU; NaN where a box holds NaN.
    """
    gt = np.asarray(gt, dtype=np.float32)
    pred = np.asarray(pred, dtype=np.float32)
    one = np.float32(1.0)
    # huge boxes overflow to an infinite area: IoU 0, no warning
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        iw = np.maximum(
            np.minimum(gt[..., 2], pred[..., 2]) - np.maximum(gt[..., 0], pred[..., 0]) + one,
            np.float32(0),
        )
        ih = np.maximum(
            np.minimum(gt[..., 3], pred[..., 3]) - np.maximum(gt[..., 1], pred[..., 1]) + one,
            np.float32(0),
        )
        inters = iw * ih
        uni = (
            (pred[..., 2] - pred[..., 0] + one) * (pred[..., 3] - pred[..., 1] + one)
            + (gt[..., 2] - gt[..., 0] + one) * (gt[..., 3] - gt[..., 1] + one)
            - inters
        )
        return inters / uni


def _first_max_per_segment(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty segment of ``values``: (max, index of its first occurrence, segment-local)."""
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    seg_max = np.maximum.reduceat(values, starts)
    seg_of = np.repeat(np.arange(len(counts)), counts)
    hit = np.flatnonzero(values == seg_max[seg_of])
    first = np.unique(seg_of[hit], return_index=True)[1]
    return seg_max, hit[first] - starts


def _first_in_group(candidate: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(D,) bool: candidate rows that are the first candidate of their group (rows ranked)."""
    out = np.zeros(len(candidate), dtype=bool)
    idx = np.flatnonzero(candidate)
    if idx.size:
        out[idx[np.unique(group[idx], return_index=True)[1]]] = True
    return out


class VCOCOEvaluator(Evaluator):
    """Official V-COCO agent and role AP over triplet-format detections.

    Detections (``process``): ``verb`` (or ``verb_id``/``hoi_id``), ``role`` (``"obj"``,
    ``"instr"`` or null), ``human_box``, ``object_box`` (null = "no object", the official empty
    role prediction), ``score``. Key of a detection: role null and no object box -> the
    ``<action>_agent`` score (agent AP reads only these); a role -> ``<action>_<role>``; role
    null with an object box -> the action's only role (error for hit/eat/cut, which have two;
    the agent key for stand/walk/run/smile, which have none).

    Args:
        samples: GT as built by :func:`linkhoi.data.read_vcoco` (persons flagged
            ``unannotated`` are the official ignored persons).
        label_space: the ``vcoco`` label space (26 actions, 29 action-role classes).
        strict: raise on predictions for images outside the split instead of ignoring them.
    """

    benchmark = "vcoco"

    def __init__(self, samples: list[Any], label_space: Any, strict: bool = False) -> None:
        super().__init__()
        self.label_space = label_space
        self.strict = strict
        self.cls = _classes(label_space)
        self.gt = _ground_truth(samples, label_space, self.cls)
        self.samples = samples

    @classmethod
    def from_files(
        cls,
        annotations: str | os.PathLike[str],
        instances: str | os.PathLike[str],
        ids: str | os.PathLike[str],
        label_space: Any = None,
        strict: bool = False,
        sort_ids: bool = False,
    ) -> VCOCOEvaluator:
        """Build the GT from ``vcoco_<split>.json``, the COCO instances file and the ids file.

        ``sort_ids`` sorts an unsorted ids file first (trainval/all; iCAN's fix), see
        :func:`linkhoi.data.read_vcoco`.
        """
        from linkhoi import labels
        from linkhoi.data import read_vcoco

        ls = labels.load("vcoco") if label_space is None else label_space
        if isinstance(ls, str):
            ls = labels.load(ls)
        samples = read_vcoco(annotations, instances, ids, label_space=ls, sort_ids=sort_ids)
        return cls(samples, ls, strict=strict)

    def image_keys(self) -> list[str]:
        return list(self.gt.index)

    @property
    def num_gt_images(self) -> int:
        return len(self.samples)

    @property
    def num_gt_pairs(self) -> int:
        return int(self.gt.npos.sum())

    # ---------------------------------------------------------------- per image
    def convert(self, image_key: str, detections: list[dict]) -> Any:
        """One image's detections as arrays: (image index, keys, scores, human, object boxes).

        Returns None for an image outside the split (ignored, as the official script does,
        after the same checks as every other image).
        """
        src = getattr(self, "predictions_source", "predictions")  # set by eval.cli
        image = self.gt.index.get(image_key)
        if image is None and self.strict:
            raise EvalError(
                f"{src}: image {image_key!r} (field 'file_name') is not in the V-COCO split; "
                "the official protocol ignores it (run without --strict to do so)"
            )
        n = len(detections)
        if n == 0 and image is None:
            return None
        if n == 0:
            return (image, np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4), np.float32),
                    np.zeros((0, 4), np.float32))  # fmt: skip
        try:
            arr = resolve_triplets(detections, self.label_space, src, image_key)
        except TripletFileError as err:
            raise EvalError(str(err)) from None
        if not (np.isfinite(arr.scores).all() and np.isfinite(arr.human_boxes).all()):
            j = int(
                np.flatnonzero(~(np.isfinite(arr.scores) & np.isfinite(arr.human_boxes).all(1)))[0]
            )
            raise EvalError(
                f"{src}: image {image_key!r}, detection {j}: non-finite 'score' or 'human_box'"
            )
        has_obj = ~np.isnan(arr.object_boxes).any(axis=1)
        keys = self.cls.key_table[arr.verbs, arr.roles, has_obj.astype(np.int64)]
        bad = np.flatnonzero(keys < 0)
        if bad.size:
            j = int(bad[0])
            verb = self.cls.actions[arr.verbs[j]]
            if keys[j] == _AMBIGUOUS_ROLE:
                msg = f"verb {verb!r} has two roles; field 'role' must be 'obj' or 'instr'"
            else:
                msg = f"verb {verb!r} has no role {ROLES[arr.roles[j]]!r}"
            raise EvalError(f"{src}: image {image_key!r}, detection {j}, field 'role': {msg}")
        if image is None:
            return None
        return (image, keys, arr.scores, _float32_boxes(arr.human_boxes),
                _float32_boxes(arr.object_boxes))  # fmt: skip

    def process_batch(self, items: list[tuple[str, list]]) -> None:
        """:meth:`convert` for several images at once (:func:`~linkhoi.eval.batch.resolve_batch`);
        all or nothing: anything to report goes the per-image way (BatchRefused)."""
        keys, dets = [k for k, _ in items], [d for _, d in items]
        if not (self._batch_keys_free(keys) and all_structs(dets)):
            return super().process_batch(items)
        image = [self.gt.index.get(k) for k in keys]
        if self.strict and None in image:
            raise BatchRefused("an image outside the split, under --strict")
        src = getattr(self, "predictions_source", "predictions")
        a, counts = resolve_batch(dets, self.label_space, src)
        if not (np.isfinite(a.scores).all() and np.isfinite(a.human_boxes).all()):
            raise BatchRefused("a non-finite score or human box")
        has_obj = ~np.isnan(a.object_boxes).any(axis=1)
        keys_ = self.cls.key_table[a.verbs, a.roles, has_obj.astype(np.int64)]
        if (keys_ < 0).any():
            raise BatchRefused("a verb without that role")
        inside = np.repeat(np.array([i is not None for i in image]), counts)
        img = np.repeat([-1 if i is None else i for i in image], counts).astype(np.int64)
        cols = (keys_, a.scores, _float32_boxes(a.human_boxes), _float32_boxes(a.object_boxes))
        views = image_views(counts, *cols)
        values = {k: None if i is None else (i, *v)
                  for k, i, v in zip(keys, image, views, strict=True)}  # fmt: skip
        self._record_batch(values, tuple(x[inside] for x in (img, *cols)))

    # ---------------------------------------------------------------- evaluation
    def _arrays(self) -> tuple[np.ndarray, ...]:
        check_one_key_per_image((k, v[0]) for k, v in self._predictions.items() if v is not None)
        batched = self._batch_arrays()
        if batched is not None:  # every image came in through process_batch, in this order
            return batched
        parts = [v for v in self._predictions.values() if v is not None]
        if not parts:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0), np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)
        img = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
        return (img, *(np.concatenate([p[k] for p in parts]) for k in range(1, 5)))

    def match(self) -> dict[str, np.ndarray]:
        """Match every detection; arrays over the D recorded detections.

        Returns dict with ``key`` (D,), ``score`` (D,), ``order`` (D,) ranking (key asc, score
        desc, stable), ``dropped`` (D,) bool and ``tp_s1``, ``tp_s2`` (D,) bool (agent keys
        have the same TP in both).
        """
        gt, cls = self.gt, self.cls
        img, key, score, hbox, obox = self._arrays()
        n_a = len(cls.actions)
        if len(gt.ignored) == 0:  # no GT person at all: every detection is an FP
            none = np.zeros(len(key), bool)
            order = rank_by_class(key, score)
            return {"key": key, "score": score, "order": order, "dropped": none,
                    "tp_s1": none, "tp_s2": none}  # fmt: skip
        counts = (gt.person_start[1:] - gt.person_start[:-1])[img]
        has_person = counts > 0
        # Pair every detection with every GT person of its image (few persons per image).
        rows = np.flatnonzero(has_person)
        c = counts[rows]
        det_rep = np.repeat(rows, c)
        offs = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        person_rep = gt.person_start[img[det_rep]] + offs
        ov_all = iou_plus1(gt.boxes[person_rep], hbox[det_rep])
        ov = np.zeros(len(key), np.float32)
        j = np.zeros(len(key), np.int64)
        if rows.size:
            seg_max, arg = _first_max_per_segment(ov_all, c)
            ov[rows] = seg_max
            j[rows] = gt.person_start[img[rows]] + arg
        # Images without persons cannot occur in the official data; count them as FPs.
        dropped = has_person & gt.ignored[j]
        is_role = key >= n_a
        action = np.where(is_role, 0, key)
        r = np.where(is_role, key - n_a, 0)
        if cls.role_keys:
            action[is_role] = np.asarray([a for a, _ in cls.role_keys])[r[is_role]]
        base = has_person & gt.positive[j, action] & (ov >= IOU_THRESHOLD)
        # Role check for the role keys.
        has_gt_role = gt.has_role[j, r] & is_role if cls.role_keys else np.zeros(len(key), bool)
        role_ov = iou_plus1(gt.role_boxes[j, r], obox) if cls.role_keys else np.zeros(len(key))
        role_hit = has_gt_role & (role_ov >= IOU_THRESHOLD)  # NaN fails
        empty = np.isnan(obox).all(axis=1) | (obox == 0).all(axis=1)
        s1 = ~is_role | role_hit | (~has_gt_role & empty)
        s2 = ~is_role | role_hit | ~has_gt_role
        order = rank_by_class(key, score)
        group = (key * max(len(gt.ignored), 1) + j)[order]
        keep = ~dropped[order]
        tp_s1 = np.zeros(len(key), bool)
        tp_s2 = np.zeros(len(key), bool)
        tp_s1[order] = _first_in_group((base & s1)[order] & keep, group)
        tp_s2[order] = _first_in_group((base & s2)[order] & keep, group)
        return {"key": key, "score": score, "order": order, "dropped": dropped,
                "tp_s1": tp_s1, "tp_s2": tp_s2}  # fmt: skip

    def evaluate(self) -> EvalResult:
        """Agent AP (26), role AP per scenario (25), the 24-class and 25-class means."""
        cls, gt = self.cls, self.gt
        m = self.match()
        n_a = len(cls.actions)
        ranked = m["order"][~m["dropped"][m["order"]]]
        key_sorted = m["key"][ranked]
        bounds = np.searchsorted(key_sorted, np.arange(cls.num_keys + 1))
        ap = {
            "scenario_1": np.full(cls.num_keys, np.nan),
            "scenario_2": np.full(cls.num_keys, np.nan),
        }
        for k in range(cls.num_keys):
            sel = ranked[bounds[k] : bounds[k + 1]]
            npos = int(gt.npos[k if k < n_a else cls.role_keys[k - n_a][0]])
            for name, tp in (("scenario_1", m["tp_s1"]), ("scenario_2", m["tp_s2"])):
                if npos == 0:
                    continue  # AP undefined (the official script asserts); NaN, skipped by means
                rec, prec = precision_recall(tp[sel], npos)
                ap[name][k] = ap_all_point(rec, prec) if sel.size else 0.0
        agent = ap["scenario_1"][:n_a]
        summary: dict[str, Any] = {
            "benchmark": "vcoco",
            "agent_ap": {
                "mean": float(np.nansum(agent) / n_a),
                "per_class": {a: float(agent[i]) for i, a in enumerate(cls.actions)},
            },
            "role_ap": {},
        }
        per_class = {f"agent/{a}": float(agent[i]) for i, a in enumerate(cls.actions)}
        for name in ("scenario_1", "scenario_2"):
            role = ap[name][n_a:]
            summary["role_ap"][name] = {
                "mean": _nanmean(role[cls.reporting_24]),
                "mean_25": _nanmean(role[cls.official_25]),
                "per_class": {cls.key_name(n_a + r): float(role[r]) for r in range(len(role))},
            }
            per_class.update(
                {f"{name}/{cls.key_name(n_a + r)}": float(role[r]) for r in range(len(role))}
            )
        return EvalResult("vcoco", summary, per_class, self._protocol(), self._notes(m))

    def _protocol(self) -> dict[str, str]:
        return {
            "ap": "VOC all-point AP per key (vsrl_eval voc_ap)",
            "box_convention": "inclusive pixels, IoU with +1 (float32), threshold >= 0.5",
            "matching": "argmax over all GT persons (ignored included), no fallback",
            "agent_mean": f"nansum over {len(self.cls.actions)} actions / {len(self.cls.actions)}",
            "role_mean": f"mean over {len(self.cls.reporting_24)} role classes (without point)",
            "role_mean_25": f"nanmean over {len(self.cls.official_25)} role classes (official)",
            "scenarios": "S1: empty prediction required when no GT role object; S2: ignored",
        }

    def _notes(self, m: dict[str, np.ndarray]) -> list[str]:
        notes = []
        outside = sum(v is None for v in self._predictions.values())
        if outside:
            notes.append(f"{outside} predicted image(s) are not in the split and were ignored")
        seen = {v[0] for v in self._predictions.values() if v is not None}
        if len(seen) < len(self.samples):
            notes.append(f"{len(self.samples) - len(seen)} split images had no predictions")
        notes.append(f"{int(m['dropped'].sum())} detections matched an ignored person (dropped)")
        no_gt = [self.cls.actions[a] for a in np.flatnonzero(self.gt.npos == 0)]
        if no_gt:
            notes.append(f"actions without GT positives (AP NaN): {', '.join(no_gt)}")
        notes.append("agent AP reads only agent-only detections (role and object_box null)")
        return notes

    # ---------------------------------------------------------------- export
    def export_official(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``vcoco_detections.pkl``, the input of the official ``vsrl_eval.py``.

        See :func:`linkhoi.eval.vcoco_official.write_official` for the layout.
        """
        from linkhoi.eval.vcoco_official import write_official

        return write_official(directory, self._predictions.values(), self.cls, self.gt.image_ids)


def _float32_boxes(boxes: np.ndarray) -> np.ndarray:
    """float32 copy of float64 boxes; coordinates beyond float32 (1e300) are clipped to its
    largest finite value rather than becoming inf (inf - inf would give a NaN IoU)."""
    return np.minimum(np.maximum(boxes, -_FLOAT32_MAX), _FLOAT32_MAX).astype(np.float32)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")
