"""HICO-DET evaluation equal to the official MATLAB code (ho-rcnn eval_one.m).

The rules (docs/evaluation.md, HICO-DET protocol): +1 pixel IoU on 1-based inclusive boxes, a pair
matches when min(IoU_human, IoU_object) >= 0.5, detections sorted by score with MATLAB's
stable sort (ties: ground-truth image order, then input order), greedy VOC matching without
fallback, 11-point AP on MATLAB's 0:0.1:1 grid, AP 0 for classes without ground truth, means
over 600 / 138 / 462 classes, no top-K.

Matching is vectorised: for each detection only its own (class, image) ground-truth block is
compared, all blocks at once with numpy. The greedy rule needs, per detection, only the
argmax ground truth and the max overlap; a detection is a TP iff its overlap is >= 0.5 and it
is the first qualifying detection (in ranked order) pointing at that ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.eval.ap import MATLAB_11_POINTS, ap_11_point, precision_recall
from linkhoi.eval.base import EvalError, EvalResult, Evaluator
from linkhoi.eval.batch import BatchRefused, all_structs, image_views, resolve_batch
from linkhoi.eval.hico_labels import read_image_labels
from linkhoi.eval.hico_match import match_details, match_ranked, pixel_iou
from linkhoi.eval.resolve import resolve_triplets
from linkhoi.eval.triplets import gc_paused

__all__ = ["HICOEvaluator", "pixel_iou", "read_image_labels"]

SETTINGS = ("default", "known_object")
SPLITS = ("full", "rf_uc", "nf_uc", "uo", "uv")


class HICOEvaluator(Evaluator):
    """HICO-DET evaluator (official protocol, Default or Known-Object, zero-shot splits).

    Args:
        samples: the test set in ground-truth file order (this fixes MATLAB's ``list_test``).
        label_space: the ``hico_det`` LabelSpace (loaded when None).
        setting: ``"default"`` or ``"known_object"``.
        split: ``"full"`` (Full/Rare/Non-rare) or a zero-shot split (Full/Seen/Unseen).
        image_labels: optional (H, N) array aligned with ``samples`` (HOI positions x images):
            the official ``anno_test``; Known-Object keeps, for class c of object o, the images
            where any HOI of o is labelled 1. Without it the box annotations decide.
        strict: raise on predictions for images not in the ground truth and on (verb, object)
            combinations that are not HICO-DET classes, instead of ignoring and counting them.
        source: the annotation file name, used in messages.
    """

    benchmark = "hico_det"

    def __init__(
        self,
        samples: Sequence[Any],
        label_space: Any = None,
        setting: str = "default",
        split: str = "full",
        image_labels: np.ndarray | None = None,
        strict: bool = False,
        source: str | os.PathLike[str] = "<annotations>",
    ) -> None:
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if label_space is None:
            from linkhoi.labels import load

            label_space = load("hico_det")
        self.label_space = label_space
        self.setting, self.split, self.strict, self.source = setting, split, strict, str(source)
        self.predictions_source = "<predictions>"
        self.file_names = [s.file_name for s in samples]
        self.image_index = {n: i for i, n in enumerate(self.file_names)}
        if len(self.image_index) != len(self.file_names):
            raise EvalError(f"{source}: duplicate file names in the ground truth")
        n_img, n_hoi = len(samples), len(label_space.hois)
        self.hoi_object = np.asarray(label_space.hoi_object_positions(), dtype=np.int64)

        # Ground-truth pairs, grouped by (class, image) block with a stable sort so that
        # rows keep their file order inside a block (MATLAB's j loop, ties to the first row).
        img, hoi, hb, ob = [], [], [], []
        for i, s in enumerate(samples):
            for p in s.pairs:
                img.append(i)
                hoi.append(p.hoi)
                hb.append(s.boxes[p.human])
                ob.append(s.boxes[p.object])
        gt_img = np.asarray(img, dtype=np.int64)
        gt_hoi = np.asarray(hoi, dtype=np.int64)
        key = gt_hoi * n_img + gt_img
        order = np.argsort(key, kind="stable")
        self.gt_key = key[order]
        self.gt_hbox = np.asarray(hb, dtype=np.float64).reshape(-1, 4)[order]
        self.gt_obox = np.asarray(ob, dtype=np.float64).reshape(-1, 4)[order]
        self.npos = np.bincount(gt_hoi, minlength=n_hoi)

        # Known-Object: known[o, i] = image i is "known" to hold object o.
        self.known: np.ndarray | None = None
        self.image_labels_given = image_labels is not None
        if setting == "known_object":
            n_obj = len(label_space.objects)
            if image_labels is not None:
                labels = np.asarray(image_labels)
                if labels.shape != (n_hoi, n_img):
                    raise EvalError(
                        f"image labels have shape {labels.shape}, expected ({n_hoi}, {n_img}) "
                        "(HOI classes x ground-truth images)"
                    )
                known = np.zeros((n_obj, n_img), dtype=bool)
                np.logical_or.at(known, self.hoi_object, labels == 1)
                # eval_one.m asserts every ground truth of c lies in its known images
                bad = ~known[self.hoi_object[gt_hoi], gt_img]
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    raise EvalError(
                        f"image labels disagree with {source}: image "
                        f"{self.file_names[gt_img[k]]!r} has a ground-truth pair of HOI "
                        f"{label_space.hois[gt_hoi[k]].id} but no positive label of its object"
                    )
            else:
                known = np.zeros((n_obj, n_img), dtype=bool)
                known[self.hoi_object[gt_hoi], gt_img] = True
            self.known = known
        self.reset()

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def from_files(
        cls,
        annotations: str | os.PathLike[str],
        setting: str = "default",
        split: str = "full",
        image_labels: str | os.PathLike[str] | None = None,
        strict: bool = False,
        label_space: Any = None,
    ) -> HICOEvaluator:
        """Build from ``test_hico.json`` (PPDM), ``instances_test2015.json`` (fredzzhang) or
        ``anno_bbox.mat``; ``image_labels`` is the official ``anno.mat`` (Known-Object)."""
        from linkhoi.data.hico import read_hico
        from linkhoi.labels import load

        space = label_space if label_space is not None else load("hico_det")
        with gc_paused():  # the reader builds ~10^5 small objects; skip repeated full GCs
            samples = read_hico(annotations, split="test", label_space=space)
        labels = None
        if image_labels is not None:
            labels = read_image_labels(image_labels, [s.file_name for s in samples], space)
        return cls(samples, space, setting, split, labels, strict, source=annotations)

    # ---------------------------------------------------------------- protocol
    # Counters live in the stored per-image records, so gather() merges them across ranks:
    # a known image stores (hois, scores, human, object, n_non_hoi); an unknown one (None, n).
    @property
    def unknown_images(self) -> list[str]:
        """Processed images that are not in the ground truth (their detections are ignored)."""
        return [k for k, v in self._predictions.items() if v[0] is None]

    @property
    def unknown_detections(self) -> int:
        return sum(v[1] for v in self._predictions.values() if v[0] is None)

    @property
    def non_hoi_detections(self) -> int:
        """Detections whose (verb, object) is not a HICO-DET class (ignored)."""
        return sum(v[4] for v in self._predictions.values() if v[0] is not None)

    @property
    def num_processed_known(self) -> int:
        """Processed images that are in the ground truth."""
        return sum(v[0] is not None for v in self._predictions.values())

    def image_keys(self) -> list[str]:
        return self.file_names

    @property
    def num_gt_images(self) -> int:
        return len(self.file_names)

    @property
    def num_gt_pairs(self) -> int:
        return int(self.npos.sum())

    def convert(self, image_key: str, detections: list[dict]) -> Any:
        """Keep (hois, scores, human boxes, object boxes) of the detections that are classes."""
        if image_key not in self.image_index and self.strict:
            raise EvalError(
                f"{self.predictions_source}: image {image_key!r} (field 'file_name') is not "
                f"in the ground truth {self.source}"
            )
        a = resolve_triplets(detections, self.label_space, self.predictions_source, image_key)
        if image_key not in self.image_index:
            # Ignored as the official code does, once checked like every other record.
            return (None, len(detections))
        keep = a.hois >= 0
        if not keep.all() and self.strict:
            j = int(np.flatnonzero(~keep)[0])
            v, o = a.verbs[j], a.objects[j]
            obj = self.label_space.objects[o] if o >= 0 else None
            raise EvalError(
                f"{self.predictions_source}: image {image_key!r}, detection {j}: "
                f"(verb {self.label_space.verbs[v]!r}, object {obj!r}) is not a HICO-DET class"
            )
        n_bad = int(len(keep) - keep.sum())
        if not n_bad:  # the usual case: no copies
            return (a.hois, a.scores, a.human_boxes, a.object_boxes, 0)
        return (a.hois[keep], a.scores[keep], a.human_boxes[keep], a.object_boxes[keep], n_bad)

    def process_batch(self, items: list[tuple[str, list]]) -> None:
        """:meth:`process` for several images at once (:func:`~linkhoi.eval.batch.resolve_batch`);
        all or nothing: anything to report goes the per-image way (BatchRefused)."""
        keys = [k for k, _ in items]
        dets = [d for _, d in items]
        if not (self._batch_keys_free(keys) and all_structs(dets)):
            return super().process_batch(items)
        idx = np.fromiter(map(lambda k: self.image_index.get(k, -1), keys), np.int64, len(keys))
        if self.strict and (idx < 0).any():
            raise BatchRefused("an image not in the ground truth, under --strict")
        a, counts = resolve_batch(dets, self.label_space, self.predictions_source)
        keep = a.hois >= 0
        if self.strict and not keep.all():
            raise BatchRefused("a detection that is no class, under --strict")
        row_image = np.repeat(np.arange(len(keys)), counts)
        img = idx[row_image]
        n_bad = np.bincount(row_image[~keep], minlength=len(keys))
        sel = keep & (img >= 0)
        img, hoi, sc, hb, ob = (
            img[sel],
            a.hois[sel],
            a.scores[sel],
            a.human_boxes[sel],
            a.object_boxes[sel],
        )
        kept = np.bincount(row_image[sel], minlength=len(keys))
        values = {}
        for i, (key, view) in enumerate(zip(keys, image_views(kept, hoi, sc, hb, ob), strict=True)):
            # an image outside the ground truth is ignored as the official code does, once checked
            values[key] = (None, int(counts[i])) if idx[i] < 0 else (*view, int(n_bad[i]))
        self._record_batch(values, (img, hoi, sc, hb, ob))

    def export_official(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the 80 ``detections_XX.mat`` files of the official evaluator (see export.py)."""
        from linkhoi.eval.export import write_hico_official

        return write_hico_official(directory, self._collect(), self.file_names, self.label_space)

    def _collect(self) -> tuple[np.ndarray, ...]:
        """Concatenate processed detections in ground-truth image order, then input order.

        Returns (img (D,), hoi (D,), score (D,), human (D, 4), object (D, 4)).
        """
        batched = self._batch_arrays()
        if batched is not None:  # every image came in through process_batch
            img, *rest = batched
            if len(img) and (np.diff(img) < 0).any():
                order = np.argsort(img, kind="stable")
                img, rest = img[order], [x[order] for x in rest]
            return (img, *rest)
        parts = [(self.image_index[k], v) for k, v in self._predictions.items() if v[0] is not None]
        parts.sort(key=lambda t: t[0])
        if not parts:
            z = np.zeros(0)
            return z.astype(np.int64), z.astype(np.int64), z, z.reshape(0, 4), z.reshape(0, 4)
        img = np.concatenate([np.full(len(v[0]), i, np.int64) for i, v in parts])
        hoi = np.concatenate([v[0] for _, v in parts])
        score = np.concatenate([v[1] for _, v in parts])
        hb = np.concatenate([v[2] for _, v in parts])
        ob = np.concatenate([v[3] for _, v in parts])
        return img, hoi, score, hb, ob

    def _gt(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.gt_key, self.gt_hbox, self.gt_obox

    def match_details(self) -> dict[str, np.ndarray]:
        """Rank and match every detection (:func:`linkhoi.eval.hico_match.match_details`)."""
        return match_details(self._collect(), self.known, self.hoi_object,
                             len(self.file_names), self._gt(), pixel_iou)  # fmt: skip

    def match(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rank and match every detection.

        Returns:
            hoi (D,) class position per ranked detection (grouped by class, ascending),
            tp (D,) bool, and ``bounds`` (H + 1,) so that class c is ``[bounds[c], bounds[c+1])``.
        """
        n_hoi = len(self.label_space.hois)
        hoi, tp = match_ranked(self._collect(), self.known, self.hoi_object,
                               len(self.file_names), self._gt(), pixel_iou, n_hoi)  # fmt: skip
        return hoi, tp, np.searchsorted(hoi, np.arange(n_hoi + 1))

    def class_ap(self, hoi: np.ndarray, tp: np.ndarray, npos: np.ndarray) -> np.ndarray:
        """(H,) AP per class position (11-point, MATLAB grid; 0 for classes without GT) of
        detections ranked by class, then score: ``hoi``, ``tp`` (D,), ``npos`` (H,)."""
        bounds = np.searchsorted(hoi, np.arange(len(npos) + 1), side="left")
        ap = np.zeros(len(npos))
        for c in np.flatnonzero((bounds[1:] > bounds[:-1]) & (npos > 0)):
            rec, prec = precision_recall(tp[bounds[c] : bounds[c + 1]], int(npos[c]))
            ap[c] = ap_11_point(rec, prec, MATLAB_11_POINTS)
        return ap

    def per_class_ap(self) -> np.ndarray:
        """(H,) AP per class position (11-point, MATLAB grid; 0 for classes without GT)."""
        hoi, tp, _ = self.match()
        return self.class_ap(hoi, tp, self.npos)

    def diagnose(self) -> dict[str, Any]:
        """TIDE-style error diagnosis of the Full mAP (:mod:`linkhoi.eval.diagnose`)."""
        from linkhoi.eval.diagnose import PairDetections, PairGroundTruth, diagnose

        d = self.match_details()
        n_img = max(len(self.file_names), 1)
        det = PairDetections(d["img"], d["hoi"], d["score"], d["hb"], d["ob"], d["tp"],
                             d["gt_row"], d["seq"])  # fmt: skip
        gt = PairGroundTruth(self.gt_key % n_img, self.gt_key // n_img, self.gt_hbox,
                             self.gt_obox, self.npos)  # fmt: skip
        return diagnose(det, gt, self.hoi_object, pixel_iou, self.class_ap, lambda a: a.mean())

    def evaluate(self) -> EvalResult:
        """Per-class AP and the means of the chosen split."""
        ls = self.label_space
        ap = self.per_class_ap()
        ids = [int(h.id) for h in ls.hois]
        if self.split == "full":
            groups = {
                "full": np.ones(len(ap), dtype=bool),
                "rare": ls.subset_mask("rare"),
                "non_rare": ls.subset_mask("non_rare"),
            }
        else:
            unseen = ls.subset_mask(self.split)
            groups = {"full": np.ones(len(ap), dtype=bool), "seen": ~unseen, "unseen": unseen}
        means = {k: float(ap[m].mean()) if m.any() else 0.0 for k, m in groups.items()}
        per_class = {str(i): float(a) for i, a in zip(ids, ap, strict=True)}
        summary = {
            "benchmark": self.benchmark,
            "setting": self.setting,
            "split": self.split,
            "map": means,
            "per_class_ap": per_class,
        }
        counts = " / ".join(f"{k} {int(m.sum())}" for k, m in groups.items())
        ko = (
            "Known-Object (image labels of anno.mat)"
            if self.setting == "known_object" and self.image_labels_given
            else "Known-Object (objects of the box annotations)"
            if self.setting == "known_object"
            else "Default (all test images)"
        )
        protocol = {
            "benchmark": "HICO-DET, official MATLAB protocol (ho-rcnn eval_one.m)",
            "setting": ko,
            "split": self.split,
            "ap": "VOC 11-point, MATLAB grid 0:0.1:1 (0.3 = 0.30000000000000004); "
            "AP 0 for classes without ground truth",
            "matching": "greedy VOC: argmax GT, taken => FP (no fallback); stable score sort",
            "box_convention": "1-based inclusive pixels, IoU with +1; min(human, object) >= 0.5",
            "classes": counts,
            "ground_truth": f"{len(self.file_names)} images, {int(self.npos.sum())} pairs "
            f"({self.source})",
        }
        processed = self.num_processed_known
        notes = [f"predictions for {processed} of {len(self.file_names)} ground-truth images"]
        unknown, non_hoi = self.unknown_images, self.non_hoi_detections
        if unknown:
            notes.append(
                f"{self.unknown_detections} detection(s) on {len(unknown)} image(s) not in the "
                f"ground truth were ignored, as the official code does (e.g. {unknown[0]!r})"
            )
        if non_hoi:
            notes.append(
                f"{non_hoi} detections whose (verb, object) is not one of the "
                "600 HICO-DET classes were ignored"
            )
        return EvalResult(self.benchmark, summary, per_class, protocol, notes,
                          self._classes_without_gt())  # fmt: skip

    def classes_without_gt(self) -> np.ndarray:
        """Positions of the classes with no ground-truth pair (each is AP 0 in every mean by
        the official rule)."""
        return np.flatnonzero(self.npos == 0)

    def _classes_without_gt(self) -> list[str]:
        """A warning when classes have no ground-truth pair: the official rule counts each as
        AP 0 in every mean (the real test set has all 600), so a subset or a small custom test
        set silently caps the mAP."""
        missing = self.classes_without_gt()
        if not len(missing):
            return []
        hois = self.label_space.hois
        named = ", ".join(f"'{hois[c].verb} {hois[c].object}'" for c in missing[:3])
        return [
            f"{len(missing)} of {len(hois)} classes have no ground-truth pair in {self.source} "
            f"(e.g. {named}); by the official rule each counts as AP 0 in every mean, so the "
            f"Full mAP here cannot exceed {100 * (1 - len(missing) / len(hois)):.1f} %"
        ]
