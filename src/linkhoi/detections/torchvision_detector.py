"""A `DetectionSource` over torchvision's COCO detection models, weights from a local file.

The model is built with ``weights=None, weights_backbone=None`` (nothing is downloaded) and
its state dict is read from ``weights`` (``torch.save`` file, loaded with
``weights_only=True``, or ``.safetensors``). COCO category ids (torchvision's 91-entry index
space) are mapped to the label space's object names, spaces and underscores alike
("dining table" -> "dining_table"); detections of classes the label space lacks are dropped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.models import detection as tvd
from torchvision.transforms.functional import pil_to_tensor

from linkhoi.detections.base import DetectionError, Detections
from linkhoi.labels import LabelError, LabelSpace, load

# torchvision's COCO index space: 91 entries, "__background__" at 0 and "N/A" for ids COCO
# never used (the list of torchvision.models.detection weights' meta["categories"]).
COCO_CATEGORIES: tuple[str, ...] = tuple(
    tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
)

# Builders that accept num_classes=91 and return {"boxes", "labels", "scores"} per image.
BUILDERS: tuple[str, ...] = (
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn_v2",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)  # not keypointrcnn_resnet50_fpn: its weights detect people only (2 classes)


def coco_to_label_space(label_space: LabelSpace) -> torch.Tensor:
    """(91,) int64: torchvision COCO index -> object position in `label_space`, -1 if absent."""
    table = torch.full((len(COCO_CATEGORIES),), -1, dtype=torch.int64)
    for i, name in enumerate(COCO_CATEGORIES):
        if name in ("__background__", "N/A"):
            continue
        # object_position is forgiving about case, spaces and underscores.
        with contextlib.suppress(LabelError):
            table[i] = label_space.object_position(name)
    return table


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DetectionError("detector weights file not found", path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as err:  # a foreign or truncated file
            raise DetectionError(f"cannot read detector weights ({err})", path) from None
    else:
        from linkhoi.weights import load_torch_file

        state = load_torch_file(path, DetectionError, "detector weights file")
    for key in ("model", "state_dict"):  # training checkpoints wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DetectionError("not a state dict of tensors", path)
    return state


class TorchvisionDetector:
    """Detect objects with a torchvision COCO detector; a `DetectionSource`.

    Args:
        name: a builder of ``torchvision.models.detection`` (see ``BUILDERS``).
        weights: the model's state dict file (``.pth``/``.pt`` or ``.safetensors``).
        label_space: the label space whose object positions the detections use.
        score_threshold: detections scoring below it are dropped.
        device: default cuda if available else cpu.
        **model_kwargs: passed to the builder (e.g. ``min_size``, ``max_size``).
    """

    def __init__(
        self,
        name: str,
        weights: str | Path,
        label_space: LabelSpace | str,
        score_threshold: float = 0.05,
        device: str | torch.device | None = None,
        **model_kwargs: Any,
    ) -> None:
        builder = getattr(tvd, name, None) if name in BUILDERS else None
        if builder is None:
            raise DetectionError(
                f"unknown torchvision detector {name!r}; choose one of {', '.join(BUILDERS)}"
            )
        self.name = name
        self.weights = Path(weights)
        self.label_space = load(label_space)
        self.score_threshold = float(score_threshold)
        from linkhoi.devices import resolve_device

        self.device = resolve_device(device)
        state = _read_state_dict(self.weights)  # before building: bad files fail fast
        model = builder(weights=None, weights_backbone=None, num_classes=91, **model_kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:  # missing keys or shape mismatches: another architecture
            # torch's first line only says "Error(s) in loading state_dict"; the next names a key.
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
            detail = "; ".join(lines[1:2]) or lines[0]
            raise DetectionError(
                f"weights do not fit torchvision detector {name!r}: {detail[:300]}", self.weights
            ) from None
        self.model = model.to(self.device).eval()
        self.table = coco_to_label_space(self.label_space).to(self.device)

    @torch.no_grad()
    def detect_batch(self, images: list[Image.Image]) -> list[Detections]:
        """Detections of several RGB images (one batched forward pass)."""
        if not images:
            return []
        tensors = [pil_to_tensor(im.convert("RGB")).to(self.device).float() / 255 for im in images]
        outputs = self.model(tensors)
        return [self._convert(out, im.size) for out, im in zip(outputs, images, strict=True)]

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        """Detections of one image; opens `file_name` (EXIF-rotated, RGB) when no image is given."""
        if image is None:
            from linkhoi.data import load_image

            image = load_image(file_name)
        return self.detect_batch([image])[0]

    def _convert(self, out: dict[str, torch.Tensor], size: tuple[int, int]) -> Detections:
        coco = out["labels"].to(torch.int64)
        inside = (coco >= 0) & (coco < len(self.table))
        positions = torch.full_like(coco, -1)
        positions[inside] = self.table[coco[inside]]
        keep = (positions >= 0) & (out["scores"] >= self.score_threshold)
        return Detections(
            out["boxes"][keep].float().cpu(),
            positions[keep].cpu(),
            out["scores"][keep].float().clamp(0, 1).cpu(),
            size,
        )

    @property
    def cache_key(self) -> str:
        """Identity of the detector's output: builder, weights file hash and threshold."""
        from linkhoi.detections.hf import file_hash

        return f"tv-{self.name}-{file_hash(self.weights)}-{self.score_threshold:g}"

    def __repr__(self) -> str:
        return (
            f"TorchvisionDetector({self.name!r}, weights={str(self.weights)!r}, "
            f"label_space={self.label_space.name!r})"
        )
