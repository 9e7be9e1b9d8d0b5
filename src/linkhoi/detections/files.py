"""Detections read from files: the project's json, or COCO results + a COCO-style file.

Project format (docs/internals.md; a bare list of image records is accepted too)::

    {"format": "linkhoi-detections", "version": 1,
     "images": [{"file_name": "a.jpg", "width": 640, "height": 480,
                 "detections": [{"box": [x1, y1, x2, y2], "label": "person", "score": 0.98}]}]}

`label` is an object name; `label_id` (the official object id) may replace or accompany it,
which SWiG-HOI's duplicated names need. COCO results: see `linkhoi.detections.coco`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from linkhoi.detections.base import (
    DetectionError,
    Detections,
    check_detections,
    check_image_size,
    position_by_id,
)
from linkhoi.detections.coco import Record, read_coco_results
from linkhoi.io import atomic_open, brief, is_number, is_size, load_json
from linkhoi.labels import AmbiguousNameError, LabelError, LabelSpace, load

FORMAT = "linkhoi-detections"


class FileDetections:
    """A `DetectionSource` backed by a detection file (project json or COCO results).

    Image sizes come from the image passed to `detect` (which must then agree with a size the
    file states), else the file (`width`, `height`), `image_sizes`, or the image header under
    `image_root` (EXIF orientation applied, as `linkhoi.data.load_image` does).
    """

    def __init__(
        self,
        path: str | Path,
        label_space: LabelSpace | str,
        categories: str | Path | Mapping[str, Any] | None = None,
        image_root: str | Path | None = None,
        image_sizes: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.path = Path(path)
        self.label_space = load(label_space)
        self.image_root = None if image_root is None else Path(image_root)
        self._records: dict[str, Record] = {}
        self._sizes: dict[str, tuple[int, int]] = dict(image_sizes or {})
        self._name_cache: dict[str, int] = {}
        data = load_json(self.path, DetectionError)
        if (
            isinstance(data, list)
            and data
            and isinstance(data[0], Mapping)
            and "image_id" in data[0]
        ):
            if categories is None:
                raise self._err(
                    "COCO results need the COCO-style file with `images` (and `categories`):"
                    " pass categories="
                )
            self._records = read_coco_results(
                data, categories, self.label_space, self.path, self._sizes
            )
        else:
            self._read_project(data)

    def _err(self, msg: str, image: str | None = None, field: str | None = None) -> DetectionError:
        return DetectionError(msg, self.path, image, field)

    # ----------------------------------------------------------------- public
    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        """Detections of one image; empty when the file has no record for it."""
        size = self._size(file_name, image)
        rec = self._records.get(file_name)
        if rec is None:
            return Detections.empty(size)
        boxes, labels, scores = rec
        if file_name not in self._sizes:  # size learnt only now: check the boxes against it
            check_detections(boxes, scores, size, file=self.path, image=file_name)
        # Copies: a caller editing the tensors in place must not change the stored record.
        return Detections(
            torch.from_numpy(boxes.copy()),
            torch.from_numpy(labels.copy()),
            torch.from_numpy(scores.copy()),
            size,
        )

    @property
    def file_names(self) -> list[str]:
        """File names with a record, in file order."""
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, file_name: object) -> bool:
        return file_name in self._records

    def items(self) -> Iterator[tuple[str, Detections]]:
        """(file_name, Detections) for every record (sizes must be known)."""
        for name in self._records:
            yield name, self.detect(name)

    # ----------------------------------------------------------------- sizes
    def _size(self, file_name: str, image: Image.Image | None) -> tuple[int, int]:
        known = self._sizes.get(file_name)
        if image is not None:
            if known is not None:
                check_image_size(known, image.size, "the file", file=self.path, image=file_name)
            return image.size
        if known is not None:
            return known
        if self.image_root is not None:
            from linkhoi.data.images import ImageError, image_size

            path = self.image_root / file_name
            try:
                self._sizes[file_name] = image_size(path)  # header only, EXIF applied
            except ImageError as err:
                raise DetectionError(f"cannot read image size: {err}", path, file_name) from None
            return self._sizes[file_name]
        raise self._err(
            "image size unknown: the file has no width/height; pass image=, image_root= or"
            " image_sizes=",
            file_name,
        )

    # ----------------------------------------------------------------- labels
    def _position_of_name(self, name: Any, image: str, fld: str) -> int:
        pos = self._name_cache.get(name) if isinstance(name, str) else None
        if pos is None:
            if not isinstance(name, str):
                raise self._err(f"label must be an object name, got {brief(name)}", image, fld)
            try:
                pos = self.label_space.object_position(name)
            except LabelError as err:
                raise self._err(str(err), image, fld) from None
            self._name_cache[name] = pos
        return pos

    # ----------------------------------------------------------------- project format
    def _read_project(self, data: Any) -> None:
        where = "images"
        if isinstance(data, Mapping):
            fmt = data.get("format", FORMAT)
            if fmt != FORMAT:
                raise self._err(f"unknown format {fmt!r} (expected {FORMAT!r})", field="format")
            if data.get("version", 1) != 1:
                raise self._err(
                    f"unsupported version {brief(data.get('version'))}", field="version"
                )
            named = data.get("label_space")
            if isinstance(named, str) and named != self.label_space.name:
                # Checked before the records: their labels would fail one by one otherwise.
                raise self._err(
                    f"is {named!r} but the detections are read for label space "
                    f"{self.label_space.name!r}; use detections of that label space",
                    field="label_space",
                )
            images = data.get("images")
        else:
            images, where = data, ""
        if not isinstance(images, list):
            raise self._err("must be a list of image records", field=where or "<top>")
        bar = tqdm(
            images, desc=f"reading {self.path.name}", disable=len(images) < 5000, leave=False
        )
        for i, rec in enumerate(bar):
            fld = f"{where}[{i}]"
            if not isinstance(rec, Mapping):
                raise self._err("image record must be a mapping", field=fld)
            name = rec.get("file_name")
            if not isinstance(name, str) or not name:
                raise self._err(f"missing or bad file_name {brief(name)}", field=f"{fld}.file_name")
            if name in self._records:
                raise self._err("duplicate file name", name, f"{fld}.file_name")
            size = None
            if "width" in rec or "height" in rec:
                w, h = rec.get("width"), rec.get("height")
                if not (is_size(w) and is_size(h)):
                    raise self._err(f"bad width/height {brief(w)}/{brief(h)}", name, f"{fld}.width")
                size = (int(w), int(h))
                self._sizes[name] = size
            dets = rec.get("detections", [])
            if not isinstance(dets, list):
                raise self._err("must be a list", name, f"{fld}.detections")
            self._records[name] = self._parse_dets(dets, name, size or self._sizes.get(name))

    def _parse_dets(self, dets: list, image: str, size: tuple[int, int] | None) -> Record:
        fast = self._parse_dets_fast(dets, image)
        if fast is not None:
            boxes, labels, scores = fast
            check_detections(boxes, scores, size, file=self.path, image=image)
            return boxes.astype(np.float32), labels, scores.astype(np.float32)
        return self._parse_dets_checked(dets, image, size)

    def _parse_dets_fast(self, dets: list, image: str) -> Record | None:
        """Vectorised parse of well-formed records (most files); None sends the image to the
        per-detection parser, which finds and names the first problem."""
        try:
            if any("label_id" in d for d in dets):
                return None
            boxes = np.array([d["box"] for d in dets])
            scores = np.array([d["score"] for d in dets])
            names = [d["label"] for d in dets]
        except (KeyError, TypeError, ValueError):
            return None
        n = len(dets)
        if boxes.dtype.kind not in "iuf" or boxes.shape != (n, 4) or scores.shape != (n,):
            return None
        if n and scores.dtype.kind not in "iuf":
            return None
        cache = self._name_cache
        labels = np.empty(n, dtype=np.int64)
        for k, name in enumerate(names):
            pos = cache.get(name) if isinstance(name, str) else None
            labels[k] = (
                self._position_of_name(name, image, f"detections[{k}].label")
                if pos is None
                else pos
            )
        return boxes.astype(np.float64), labels, scores.astype(np.float64)

    def _parse_dets_checked(self, dets: list, image: str, size: tuple[int, int] | None) -> Record:
        n = len(dets)
        boxes = np.zeros((n, 4), dtype=np.float64)
        labels = np.zeros(n, dtype=np.int64)
        scores = np.zeros(n, dtype=np.float64)
        for k, d in enumerate(dets):
            fld = f"detections[{k}]"
            if not isinstance(d, Mapping):
                raise self._err("detection must be a mapping", image, fld)
            box = d.get("box")
            if not (isinstance(box, list | tuple) and len(box) == 4 and all(map(is_number, box))):
                raise self._err(
                    f"box must be 4 numbers [x1, y1, x2, y2], got {brief(box)}", image, f"{fld}.box"
                )
            score = d.get("score")
            if not is_number(score):
                raise self._err(
                    f"score must be a number, got {brief(score)}", image, f"{fld}.score"
                )
            boxes[k], scores[k] = box, score
            if "label_id" in d:
                labels[k] = position_by_id(
                    self.label_space, d["label_id"], self.path, image, f"{fld}.label_id"
                )
                if "label" in d and d["label"] != self.label_space.objects[labels[k]]:
                    raise self._err(
                        f"label {d['label']!r} disagrees with label_id {brief(d['label_id'])}",
                        image,
                        f"{fld}.label",
                    )
            elif "label" in d:
                labels[k] = self._position_of_name(d["label"], image, f"{fld}.label")
            else:
                raise self._err("missing label (an object name) or label_id", image, f"{fld}.label")
        check_detections(boxes, scores, size, file=self.path, image=image)
        return boxes.astype(np.float32), labels, scores.astype(np.float32)


def _record_from_detections(
    file_name: str, dets: Detections, label_space: LabelSpace
) -> dict[str, Any]:
    boxes = dets.boxes.detach().cpu().double().numpy()
    scores = dets.scores.detach().cpu().double().numpy()
    labels = dets.labels.detach().cpu().numpy()
    check_detections(boxes, scores, dets.image_size, image=file_name)
    out = []
    for b, lab, s in zip(boxes.tolist(), labels.tolist(), scores.tolist(), strict=True):
        if not 0 <= lab < len(label_space.objects):
            raise DetectionError(
                f"label position {lab} out of range", image=file_name, field="labels"
            )
        det: dict[str, Any] = {"box": b, "label": label_space.objects[lab], "score": s}
        try:
            label_space.object_position(det["label"])
        except AmbiguousNameError:  # SWiG: duplicated names need the official id
            det["label_id"] = label_space.object_ids[lab]
        out.append(det)
    rec: dict[str, Any] = {"file_name": file_name}
    if dets.image_size[0] > 0 and dets.image_size[1] > 0:
        rec["width"], rec["height"] = dets.image_size
    rec["detections"] = out
    return rec


def write_detections(
    path: str | Path,
    records: Iterable[tuple[str, Detections]]
    | Iterable[Mapping[str, Any]]
    | Mapping[str, Detections],
    label_space: LabelSpace | str | None = None,
) -> Path:
    """Write a project detection json atomically (temporary file, then rename).

    `records`: (file_name, Detections) pairs or a mapping of them (needs `label_space` to
    name the labels), or image records already in the file format.
    """
    path = Path(path)
    ls = None if label_space is None else load(label_space)
    items = records.items() if isinstance(records, Mapping) else records
    seen: set[str] = set()
    with atomic_open(path) as fh:
        header = {"format": FORMAT, "version": 1}
        if ls is not None:
            header["label_space"] = ls.name
        fh.write(json.dumps(header)[:-1] + ', "images": [')
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                rec = dict(item)
            else:
                name, dets = item
                if ls is None:
                    raise DetectionError("writing Detections needs label_space=", path)
                rec = _record_from_detections(name, dets, ls)
            name = rec.get("file_name")
            if name in seen:
                raise DetectionError("duplicate file name", path, name, f"images[{i}].file_name")
            seen.add(name)
            fh.write(("\n" if i == 0 else ",\n") + json.dumps(rec))
        fh.write("\n]}\n")
    return path
