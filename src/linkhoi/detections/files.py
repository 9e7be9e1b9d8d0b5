"""Detections read from files: the project's json, or COCO results + a COCO-style file.

Project format (docs/internals.md; a bare list of image records is accepted too)::

    {"format": "linkhoi-detections", "version": 1,
     "images": [{"file_name": "a.jpg", "width": 640, "height": 480,
                 "detections": [{"box": [x1, y1, x2, y2], "label": "person", "score": 0.98}]}]}

`label` is an object name; `label_id` (the official object id) may replace or accompany it,
which SWiG-HOI's duplicated names need. COCO results are a list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with a COCO-style file whose
`images` map ids to file names (and sizes) and whose `categories` map ids to names (without
`categories`, category ids are the label space's official object ids). COCO boxes become
[x, y, x + w, y + h].
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from linkhoi.detections.base import DetectionError, Detections, check_detections, first_problem
from linkhoi.labels import AmbiguousNameError, LabelError, LabelSpace, load

FORMAT = "linkhoi-detections"
_Record = tuple[
    np.ndarray, np.ndarray, np.ndarray
]  # boxes (N,4) f32, labels (N,) i64, scores (N,) f32


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DetectionError("file not found", path) from None
    except json.JSONDecodeError as err:
        raise DetectionError(
            f"invalid JSON (truncated?) at line {err.lineno} column {err.colno}: {err.msg}", path
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DetectionError(f"cannot read: {err}", path) from None


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class FileDetections:
    """A `DetectionSource` backed by a detection file (project json or COCO results).

    Image sizes come, in order, from the image passed to `detect`, the file (`width`,
    `height`), `image_sizes`, or the image header under `image_root`.
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
        self._records: dict[str, _Record] = {}
        self._sizes: dict[str, tuple[int, int]] = dict(image_sizes or {})
        self._name_cache: dict[str, int] = {}
        data = _read_json(self.path)
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
            self._read_coco(data, categories)
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
        if image is not None:
            return image.size
        if file_name in self._sizes:
            return self._sizes[file_name]
        if self.image_root is not None:
            path = self.image_root / file_name
            try:
                with Image.open(path) as im:  # reads the header only
                    self._sizes[file_name] = im.size
                    return im.size
            except OSError as err:
                raise DetectionError(f"cannot read image size: {err}", path, file_name) from None
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
                raise self._err(f"label must be an object name, got {name!r}", image, fld)
            try:
                pos = self.label_space.object_position(name)
            except LabelError as err:
                raise self._err(str(err), image, fld) from None
            self._name_cache[name] = pos
        return pos

    def _position_of_id(self, oid: Any, image: str, fld: str) -> int:
        try:
            return self.label_space.object_position_by_id(oid)
        except LabelError as err:
            raise self._err(str(err), image, fld) from None

    # ----------------------------------------------------------------- project format
    def _read_project(self, data: Any) -> None:
        where = "images"
        if isinstance(data, Mapping):
            fmt = data.get("format", FORMAT)
            if fmt != FORMAT:
                raise self._err(f"unknown format {fmt!r} (expected {FORMAT!r})", field="format")
            if data.get("version", 1) != 1:
                raise self._err(f"unsupported version {data.get('version')!r}", field="version")
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
                raise self._err(f"missing or bad file_name {name!r}", field=f"{fld}.file_name")
            if name in self._records:
                raise self._err("duplicate file name", name, f"{fld}.file_name")
            size = None
            if "width" in rec or "height" in rec:
                w, h = rec.get("width"), rec.get("height")
                if not (_is_num(w) and _is_num(h) and w > 0 and h > 0):
                    raise self._err(f"bad width/height {w!r}/{h!r}", name, f"{fld}.width")
                size = (int(w), int(h))
                self._sizes[name] = size
            dets = rec.get("detections", [])
            if not isinstance(dets, list):
                raise self._err("must be a list", name, f"{fld}.detections")
            self._records[name] = self._parse_dets(dets, name, size or self._sizes.get(name))

    def _parse_dets(self, dets: list, image: str, size: tuple[int, int] | None) -> _Record:
        fast = self._parse_dets_fast(dets, image)
        if fast is not None:
            boxes, labels, scores = fast
            check_detections(boxes, scores, size, file=self.path, image=image)
            return boxes.astype(np.float32), labels, scores.astype(np.float32)
        return self._parse_dets_checked(dets, image, size)

    def _parse_dets_fast(self, dets: list, image: str) -> _Record | None:
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

    def _parse_dets_checked(self, dets: list, image: str, size: tuple[int, int] | None) -> _Record:
        n = len(dets)
        boxes = np.zeros((n, 4), dtype=np.float64)
        labels = np.zeros(n, dtype=np.int64)
        scores = np.zeros(n, dtype=np.float64)
        for k, d in enumerate(dets):
            fld = f"detections[{k}]"
            if not isinstance(d, Mapping):
                raise self._err("detection must be a mapping", image, fld)
            box = d.get("box")
            if not (isinstance(box, list | tuple) and len(box) == 4 and all(map(_is_num, box))):
                raise self._err(
                    f"box must be 4 numbers [x1, y1, x2, y2], got {box!r}", image, f"{fld}.box"
                )
            score = d.get("score")
            if not _is_num(score):
                raise self._err(f"score must be a number, got {score!r}", image, f"{fld}.score")
            boxes[k], scores[k] = box, score
            if "label_id" in d:
                labels[k] = self._position_of_id(d["label_id"], image, f"{fld}.label_id")
                if "label" in d and d["label"] != self.label_space.objects[labels[k]]:
                    raise self._err(
                        f"label {d['label']!r} disagrees with label_id {d['label_id']!r}",
                        image,
                        f"{fld}.label",
                    )
            elif "label" in d:
                labels[k] = self._position_of_name(d["label"], image, f"{fld}.label")
            else:
                raise self._err("missing label (an object name) or label_id", image, f"{fld}.label")
        check_detections(boxes, scores, size, file=self.path, image=image)
        return boxes.astype(np.float32), labels, scores.astype(np.float32)

    # ----------------------------------------------------------------- COCO results
    def _read_coco(self, results: list, categories: str | Path | Mapping[str, Any]) -> None:
        cat_src: Path | str = "<categories>"
        if not isinstance(categories, Mapping):
            cat_src = Path(categories)
            categories = _read_json(cat_src)
            if not isinstance(categories, Mapping):
                raise DetectionError("COCO-style file must be a mapping", cat_src, field="<top>")
        imgs = categories.get("images")
        if not isinstance(imgs, list):
            raise DetectionError("needs an `images` list (id, file_name)", cat_src, field="images")
        name_of_image: dict[Any, str] = {}
        seen: set[str] = set()
        for i, im in enumerate(imgs):
            if (
                not isinstance(im, Mapping)
                or "id" not in im
                or not isinstance(im.get("file_name"), str)
            ):
                raise DetectionError(
                    "image entry needs id and file_name", cat_src, field=f"images[{i}]"
                )
            name = im["file_name"]
            if name in seen:
                raise DetectionError("duplicate file name", cat_src, name, f"images[{i}].file_name")
            if im["id"] in name_of_image:
                raise DetectionError(
                    f"duplicate image id {im['id']!r}", cat_src, name, f"images[{i}].id"
                )
            seen.add(name)
            name_of_image[im["id"]] = name
            if _is_num(im.get("width")) and _is_num(im.get("height")):
                self._sizes[name] = (int(im["width"]), int(im["height"]))
        cat_pos: dict[Any, int] = {}
        cats = categories.get("categories")
        cat_name: dict[Any, Any] = {}
        if cats is not None:
            if not isinstance(cats, list):
                raise DetectionError("must be a list of {id, name}", cat_src, field="categories")
            for i, c in enumerate(cats):
                if (
                    not isinstance(c, Mapping)
                    or "id" not in c
                    or not isinstance(c.get("name"), str)
                ):
                    raise DetectionError(
                        "category needs id and name", cat_src, field=f"categories[{i}]"
                    )
                cat_name[c["id"]] = c["name"]
        n = len(results)
        boxes = np.zeros((n, 4), dtype=np.float64)
        scores = np.zeros(n, dtype=np.float64)
        labels = np.zeros(n, dtype=np.int64)
        names: list[str] = []
        for k, r in enumerate(results):
            fld = f"[{k}]"
            if not isinstance(r, Mapping):
                raise self._err("result must be a mapping", field=fld)
            name = name_of_image.get(r.get("image_id"))
            if name is None:
                raise self._err(
                    f"image_id {r.get('image_id')!r} is not in the COCO-style file {cat_src}",
                    field=f"{fld}.image_id",
                )
            cid = r.get("category_id")
            if cid not in cat_pos:
                cat_pos[cid] = self._coco_category(cid, cat_name, cats is None, name, fld)
            bbox, score = r.get("bbox"), r.get("score")
            if not (isinstance(bbox, list | tuple) and len(bbox) == 4 and all(map(_is_num, bbox))):
                raise self._err(
                    f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}", name, f"{fld}.bbox"
                )
            if not _is_num(score):
                raise self._err(f"score must be a number, got {score!r}", name, f"{fld}.score")
            x, y, w, h = bbox
            boxes[k] = (x, y, x + w, y + h)
            scores[k], labels[k] = score, cat_pos[cid]
            names.append(name)
        sizes = np.array([self._sizes.get(nm, (0, 0)) for nm in names], dtype=np.float64)
        problem = first_problem(boxes, scores, sizes.reshape(-1, 2))
        if problem is not None:
            k, msg, key = problem
            raise self._err(msg, names[k], f"[{k}].{'bbox' if key == 'box' else key}")
        groups: dict[str, list[int]] = {}  # file order of first appearance
        for k, name in enumerate(names):
            groups.setdefault(name, []).append(k)
        for name, rows in groups.items():
            idx = np.array(rows, dtype=np.int64)
            self._records[name] = (
                boxes[idx].astype(np.float32),
                labels[idx],
                scores[idx].astype(np.float32),
            )

    def _coco_category(
        self, cid: Any, cat_name: dict[Any, str], use_ids: bool, image: str, fld: str
    ) -> int:
        if use_ids:  # no `categories`: category ids are the label space's official ids
            return self._position_of_id(cid, image, f"{fld}.category_id")
        if cid not in cat_name:
            raise self._err(f"unknown category id {cid!r}", image, f"{fld}.category_id")
        try:
            return self.label_space.object_position(cat_name[cid])
        except LabelError as err:
            raise self._err(
                f"category {cid!r} ({cat_name[cid]!r}): {err}", image, f"{fld}.category_id"
            ) from None


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    seen: set[str] = set()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
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
                    raise DetectionError(
                        "duplicate file name", path, name, f"images[{i}].file_name"
                    )
                seen.add(name)
                fh.write(("\n" if i == 0 else ",\n") + json.dumps(rec))
            fh.write("\n]}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
