"""`DetectionSource`s over transformers detectors saved in a local folder (``save_pretrained``).

`HFDetector` runs any model that ``AutoModelForObjectDetection`` loads (DETR, Conditional /
Deformable DETR, DAB-DETR, RT-DETR, RT-DETRv2, ...) with the folder's own image processor and
its ``post_process_object_detection``; class names of the model's ``id2label`` are mapped to
the label space's objects (spaces and underscores alike, "dining table" -> "dining_table").
Detections of classes the label space lacks are dropped and counted (``dropped``).

Open-vocabulary folders (OWL-ViT, OWLv2, Grounding DINO) are in `linkhoi.detections.hf_open`;
`load_hf_detector(folder, ...)` picks the adapter from the folder's ``config.json``.
Nothing is downloaded: models and processors are read with ``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from linkhoi.detections.base import DetectionError, Detections
from linkhoi.labels import LabelError, LabelSpace, load

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def read_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict; one `DetectionError` when it is not a model
    folder."""
    path = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        raise DetectionError("transformers detector folder not found", folder)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DetectionError(
            f"not a transformers model folder (save_pretrained writes config.json): {err}", path
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise DetectionError("config.json has no model_type", path, field="model_type")
    return config


def weights_hash(folder: str | Path) -> str:
    """sha256 (first 16 hex digits) of the folder's config and weight files: a detector's
    identity for caching its output."""
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.suffix == ".json"):
            h.update(path.relative_to(root).as_posix().encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """sha256 (first 16 hex digits) of one file."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def class_table(names: list[str], label_space: LabelSpace) -> torch.Tensor:
    """(C,) int64: class index -> object position in `label_space`, -1 when absent."""
    table = torch.full((len(names),), -1, dtype=torch.int64)
    for i, name in enumerate(names):
        with contextlib.suppress(LabelError):  # object_position forgives case/spaces/underscores
            table[i] = label_space.object_position(name)
    return table


class TransformersSource:
    """What the transformers adapters share: folder, device, label mapping, drop counting and
    the batched ``detect``. Subclasses define ``_run(images) -> list of (boxes, class, scores)``
    in the library's own post-processed form and set ``self.names`` (class index -> name)."""

    folder: Path
    names: list[str]

    def _setup(
        self,
        folder: str | Path,
        label_space: LabelSpace | str,
        score_threshold: float,
        device: str | torch.device | None,
        batch_size: int,
    ) -> None:
        from linkhoi.devices import resolve_device

        if not isinstance(batch_size, int) or batch_size < 1:
            raise DetectionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise DetectionError(f"score_threshold {score_threshold!r} must be in [0, 1]")
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.label_space = load(label_space)
        self.score_threshold = float(score_threshold)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.dropped: Counter[str] = Counter()  # class name -> detections dropped
        self._hash: str | None = None

    def _map_names(self) -> None:
        self.table = class_table(self.names, self.label_space)
        self.unmapped = [n for n, p in zip(self.names, self.table.tolist(), strict=True) if p < 0]

    @property
    def cache_key(self) -> str:
        """Identity of the detector's output: weights hash, class names and threshold."""
        if self._hash is None:
            self._hash = weights_hash(self.folder)
        extra = json.dumps([type(self).__name__, self.names, self.score_threshold])
        return f"{self._hash}-{hashlib.sha256(extra.encode()).hexdigest()[:8]}"

    @torch.no_grad()
    def detect_batch(self, images: list[Image.Image]) -> list[Detections]:
        """Detections of RGB images, ``batch_size`` per forward pass."""
        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            for im, (boxes, classes, scores) in zip(chunk, self._run(chunk), strict=True):
                out.append(self._convert(boxes, classes, scores, im.size))
        return out

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        """Detections of one image; opens `file_name` (EXIF-rotated, RGB) when no image is given."""
        if image is None:
            from linkhoi.data import load_image

            image = load_image(file_name)
        return self.detect_batch([image])[0]

    def _convert(
        self, boxes: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor, size: tuple
    ) -> Detections:
        """Library output (boxes (N, 4) xyxy pixels, classes (N,), scores (N,)) -> Detections
        in label-space positions; unknown classes dropped and counted, boxes clipped to the
        image (DETR-style heads may reach past its border)."""
        classes = classes.to(torch.int64).cpu()
        inside = (classes >= 0) & (classes < len(self.table))
        positions = torch.full_like(classes, -1)
        positions[inside] = self.table[classes[inside]]
        for c in classes[positions < 0].tolist():
            if 0 <= c < len(self.names):  # others were counted by the adapter (phrases)
                self.dropped[self.names[c]] += 1
        keep = positions >= 0
        w, h = size
        boxes = boxes[keep.to(boxes.device)].float().cpu()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        scores = scores[keep.to(scores.device)].float().clamp(0, 1).cpu()
        return Detections(boxes, positions[keep], scores, size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.folder)!r}, label_space={self.label_space.name!r}, "
            f"device={str(self.device)!r})"
        )


class HFDetector(TransformersSource):
    """A closed-set transformers detector from a local folder; a `DetectionSource`.

    Args:
        folder: written by ``save_pretrained`` (config.json, weights, preprocessor_config.json).
        label_space: the label space whose object positions the detections use.
        score_threshold: passed to ``post_process_object_detection`` as its threshold.
        device: default cuda if available else cpu.
        batch_size: images per forward pass in `detect_batch`.
    """

    def __init__(
        self,
        folder: str | Path,
        label_space: LabelSpace | str,
        score_threshold: float = 0.05,
        device: str | torch.device | None = None,
        batch_size: int = 8,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one "Loading weights" bar per load is noise here
        self._setup(folder, label_space, score_threshold, device, batch_size)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.folder, local_files_only=True)
            model = AutoModelForObjectDetection.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DetectionError(f"cannot load transformers detector: {first}", folder) from None
        self.model = model.to(self.device).eval()
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.names = [id2label.get(i, f"LABEL_{i}") for i in range(max(id2label) + 1)]
        self._map_names()

    def _run(self, images: list[Image.Image]) -> list[tuple[Any, Any, Any]]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        sizes = [(im.size[1], im.size[0]) for im in images]  # (height, width)
        results = self.processor.post_process_object_detection(
            outputs, threshold=self.score_threshold, target_sizes=sizes
        )
        return [(r["boxes"], r["labels"], r["scores"]) for r in results]


def zero_shot_types() -> set[str]:
    """model_type values of transformers' zero-shot (text-prompted) detectors."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES,
    )

    return set(MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES)


def load_hf_detector(
    folder: str | Path,
    label_space: LabelSpace | str,
    objects: list[str] | None = None,
    **kwargs: Any,
) -> TransformersSource:
    """The adapter for a transformers folder: open-vocabulary (`OpenVocabDetector`, prompted
    with `objects` or the label space's object names) when its model type is one of
    transformers' zero-shot detectors, else `HFDetector`."""
    model_type = read_config(folder)["model_type"]
    if model_type in zero_shot_types():
        from linkhoi.detections.hf_open import OpenVocabDetector

        return OpenVocabDetector(folder, label_space, objects=objects, **kwargs)
    if objects:
        raise DetectionError(
            f"--objects needs an open-vocabulary detector; {model_type!r} has fixed classes",
            folder,
        )
    return HFDetector(folder, label_space, **kwargs)
