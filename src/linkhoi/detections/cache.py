"""A detection cache: a detector's output stored per image, keyed by the detector's weights
hash (and settings) and the image's pixels, so training epochs and repeated evaluations do
not run the detector again.

``<cache_dir>/<detector cache_key>/<image sha256>.json`` is a per-image detection file of
`linkhoi.detections.folder` (boxes, object names, scores, size [h, w]); a retrained or
re-thresholded detector has another key, an edited image another hash, so stale entries are
never read. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PIL import Image

from linkhoi.detections.base import DetectionError, Detections
from linkhoi.detections.folder import FolderDetections
from linkhoi.io import atomic_write_text


def image_key(image: Image.Image) -> str:
    """sha256 (first 24 hex digits) of an RGB image's size and pixels."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()[:24]


class CachedDetector:
    """Wrap a detector (anything with ``cache_key``, ``label_space`` and ``detect_batch``) so
    each image runs through it once; a `DetectionSource`. ``hits`` / ``misses`` count."""

    def __init__(self, source: Any, cache_dir: str | Path) -> None:
        key = getattr(source, "cache_key", None)
        if not isinstance(key, str) or not hasattr(source, "detect_batch"):
            raise DetectionError(
                f"{type(source).__name__} cannot be cached (it has no weights hash); cache "
                "detector models only"
            )
        self.source = source
        self.label_space = source.label_space
        self.folder = Path(cache_dir) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        self._reader = FolderDetections(self.folder, self.label_space)
        self.hits = 0
        self.misses = 0

    @property
    def cache_key(self) -> str:
        return str(self.source.cache_key)

    def detect_batch(self, images: list[Image.Image]) -> list[Detections]:
        """Detections of RGB images: cached ones read, the others detected in one batch."""
        keys = [image_key(im) for im in images]
        out: list[Detections | None] = []
        todo: list[int] = []
        for i, (key, image) in enumerate(zip(keys, images, strict=True)):
            if (self.folder / f"{key}.json").is_file():
                out.append(self._reader.detect(f"{key}.png", image))
                self.hits += 1
            else:
                out.append(None)
                todo.append(i)
        if todo:
            fresh = self.source.detect_batch([images[i] for i in todo])
            for i, dets in zip(todo, fresh, strict=True):
                self._write(keys[i], dets)
                out[i] = dets
            self.misses += len(todo)
        return out  # type: ignore[return-value]

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        if image is None:
            from linkhoi.data import load_image

            image = load_image(file_name)
        return self.detect_batch([image])[0]

    def _write(self, key: str, dets: Detections) -> None:
        names = [self.label_space.objects[i] for i in dets.labels.tolist()]
        record = {
            "boxes": dets.boxes.tolist(),
            "labels": names,
            "scores": dets.scores.tolist(),
            "size": [dets.image_size[1], dets.image_size[0]],
        }
        atomic_write_text(self.folder / f"{key}.json", json.dumps(record))

    def __getattr__(self, name: str) -> Any:  # dropped, names, ... of the wrapped detector
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)
