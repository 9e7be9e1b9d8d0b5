"""Per-image detection folders: one json per image, the cache layout of UPT / SCG-style
pipelines (fredzzhang/hicodet ``detections/preprocessing.py`` and ``h_detr_cache.py``).

``<folder>/<image path without suffix>.json`` (``HICO_test2015_00000001.jpg`` ->
``HICO_test2015_00000001.json``) holds::

    {"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "scores": [...], "size": [h, w]}

``labels`` are object names, or integers read as ``label_kind`` says: ``"positions"``
(0-based index into the label space's objects: for ``hico_det`` that is HICO-DET's official
object order, which those caches use) or ``"ids"`` (official object ids; COCO category ids for
``hico_det`` and ``vcoco``). ``size`` (optional, [height, width] as DETR writes it) is the
frame the boxes are in: when it differs from the image's, the boxes are rescaled to the image.
Every file gets the checks of a detection file (finite, ordered boxes inside the image, scores
in [0, 1], known labels), errors naming the file, the image and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from linkhoi.detections.base import (
    DetectionError,
    Detections,
    check_detections,
    labels_to_positions,
    position_by_id,
)
from linkhoi.io import is_number, is_size, load_json
from linkhoi.labels import LabelSpace, load

LABEL_KINDS = ("positions", "ids")


class FolderDetections:
    """A `DetectionSource` over a folder of per-image json files (see the module doc).

    An image without a file gets no detections (``missing`` counts them). Image sizes come
    from the image passed to `detect`, else the header of ``image_root / file_name``.
    """

    def __init__(
        self,
        folder: str | Path,
        label_space: LabelSpace | str,
        label_kind: str = "positions",
        image_root: str | Path | None = None,
    ) -> None:
        if label_kind not in LABEL_KINDS:
            raise DetectionError(f"label_kind {label_kind!r}: choose one of {LABEL_KINDS}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DetectionError("detection folder not found", self.folder)
        self.label_space = load(label_space)
        self.label_kind = label_kind
        self.image_root = None if image_root is None else Path(image_root)
        self.missing = 0

    def path_of(self, file_name: str) -> Path | None:
        """The json of image `file_name` (its relative path, else its base name), or None."""
        for rel in (Path(file_name), Path(Path(file_name).name)):
            path = self.folder / rel.with_suffix(".json")
            if path.is_file():
                return path
        return None

    def __contains__(self, file_name: object) -> bool:
        return isinstance(file_name, str) and self.path_of(file_name) is not None

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        """Detections of one image; empty when the folder has no file for it."""
        size = self._image_size(file_name, image)
        path = self.path_of(file_name)
        if path is None:
            self.missing += 1
            return Detections.empty(size)
        boxes, labels, scores = self._read(path, file_name, size)
        return Detections(torch.from_numpy(boxes), torch.from_numpy(labels), scores, size)

    def _image_size(self, file_name: str, image: Image.Image | None) -> tuple[int, int]:
        if image is not None:
            return image.size
        from linkhoi.data.images import ImageError, image_size

        path = Path(file_name) if self.image_root is None else self.image_root / file_name
        try:
            return image_size(path)  # header only, EXIF applied
        except ImageError as err:
            raise DetectionError(f"cannot read image size: {err}", path, file_name) from None

    def _read(
        self, path: Path, image: str, size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        data = load_json(path, DetectionError)
        if not isinstance(data, dict):
            raise DetectionError("must be a mapping with boxes, labels, scores", path, image)
        for key in ("boxes", "labels", "scores"):
            if not isinstance(data.get(key), list):
                raise DetectionError(f"missing or non-list {key!r}", path, image, key)
        n = len(data["boxes"])
        if not len(data["labels"]) == len(data["scores"]) == n:
            raise DetectionError(
                f"boxes, labels and scores differ in length: {n}, {len(data['labels'])}, "
                f"{len(data['scores'])}",
                path,
                image,
                "labels",
            )
        for i, box in enumerate(data["boxes"]):
            if not (isinstance(box, list) and len(box) == 4 and all(map(is_number, box))):
                raise DetectionError(
                    f"box must be 4 numbers [x1, y1, x2, y2], got {box!r}",
                    path,
                    image,
                    f"boxes[{i}]",
                )
        for i, score in enumerate(data["scores"]):
            if not is_number(score):
                raise DetectionError(
                    f"score must be a number, got {score!r}", path, image, f"scores[{i}]"
                )
        boxes = np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(data["scores"], dtype=np.float64).reshape(-1)
        if "size" in data:
            boxes = self._rescale(boxes, data["size"], size, path, image)
        labels = self._labels(data["labels"], path, image)
        check_detections(boxes, scores, size, file=path, image=image, field="boxes")
        return boxes.astype(np.float32), labels, torch.from_numpy(scores.astype(np.float32))

    def _rescale(
        self, boxes: np.ndarray, stated: Any, size: tuple[int, int], path: Path, image: str
    ) -> np.ndarray:
        """Boxes in a frame of `stated` [h, w] -> the image's (w, h) frame."""
        if not (isinstance(stated, list) and len(stated) == 2 and all(map(is_size, stated))):
            raise DetectionError(
                f"size must be [height, width], got {stated!r}", path, image, "size"
            )
        h, w = int(stated[0]), int(stated[1])
        if (w, h) == tuple(size):
            return boxes
        sx, sy = size[0] / w, size[1] / h
        if abs(sx / sy - 1) > 0.05:  # not a resize of this image: another frame or transposed
            raise DetectionError(
                f"size {stated} (height, width) is not a resize of the {size[0]}x{size[1]} image",
                path,
                image,
                "size",
            )
        return boxes * np.array([sx, sy, sx, sy])

    def _labels(self, labels: list, path: Path, image: str) -> np.ndarray:
        if self.label_kind == "ids" and not any(isinstance(v, str) for v in labels):
            return np.array(
                [
                    position_by_id(self.label_space, v, path, image, f"labels[{i}]")
                    for i, v in enumerate(labels)
                ],
                dtype=np.int64,
            )
        return labels_to_positions(labels, self.label_space, file=path, image=image)

    def __repr__(self) -> str:
        return (
            f"FolderDetections({str(self.folder)!r}, label_space={self.label_space.name!r}, "
            f"label_kind={self.label_kind!r})"
        )
