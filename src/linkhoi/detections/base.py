"""The `Detections` type, the `DetectionSource` interface and `CallableDetector`.

Detections know boxes, labels and scores, nothing of CLIP (see docs/internals.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from linkhoi.io import InputError, box_faults, brief, image_sizes
from linkhoi.labels import LabelError, LabelSpace


class DetectionError(InputError):
    """Malformed detections. The message names the file, the image and the field."""

    invalid_json = "invalid JSON (truncated?)"
    invalid_json_field = None
    wrap_read_errors = True


@dataclass
class Detections:
    """Object detections of one image.

    boxes: (N, 4) float32 [x1, y1, x2, y2] in original image pixels (the dataset's convention);
    labels: (N,) int64 object positions in the label space; scores: (N,) float32 in [0, 1];
    image_size: (width, height).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64).reshape(-1)
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = self.boxes.shape[0]
        if self.labels.shape[0] != n or self.scores.shape[0] != n:
            raise DetectionError(
                f"boxes, labels and scores differ in length: {n}, {self.labels.shape[0]},"
                f" {self.scores.shape[0]}"
            )

    @classmethod
    def empty(cls, image_size: tuple[int, int], device: torch.device | str = "cpu") -> Detections:
        """No detections: boxes (0, 4), labels (0,), scores (0,)."""
        return cls(
            torch.zeros(0, 4, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros(0, device=device),
            image_size,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def to(self, device: torch.device | str) -> Detections:
        """A copy on `device` (no copy when already there)."""
        return Detections(
            self.boxes.to(device), self.labels.to(device), self.scores.to(device), self.image_size
        )

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> Detections:
        """Subset by integer indices (in that order), a boolean mask or a slice."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.boxes.device)
            if index.dtype != torch.bool:
                index = index.to(torch.int64).reshape(-1)
        return Detections(
            self.boxes[index], self.labels[index], self.scores[index], self.image_size
        )

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, image_size={self.image_size}, device={self.device})"


@runtime_checkable
class DetectionSource(Protocol):
    """Anything that gives the detections of an image by its file name."""

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections: ...


def first_problem(
    boxes: np.ndarray, scores: np.ndarray, sizes: Any = None, tolerance: float = 1.0
) -> tuple[int, str, str] | None:
    """The first bad row as (index, message, key "box"/"score"), or None if all are fine.

    boxes: (N, 4); scores: (N,); sizes: None, (2,) or (N, 2) (width, height), 0 = unknown.
    Checks: NaN/inf, x2 < x1 or y2 < y1, a score outside [0, 1], a box outside the image
    by more than `tolerance` pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    faults = box_faults(boxes, sizes, tolerance)
    checks = [
        (faults["not_finite"], "box is not finite", "box"),
        (~np.isfinite(scores), "score is not finite", "score"),
        (faults["inverted"], "inverted box (x2<x1 or y2<y1)", "box"),
        ((scores < 0) | (scores > 1), "score outside [0, 1]", "score"),
    ]
    if sizes is not None:
        wh = image_sizes(sizes, len(boxes))
        checks.append(
            (faults["outside"], f"box outside the image by more than {tolerance:g} pixel", "box")
        )
    for mask, what, key in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            i = int(bad[0])
            value = boxes[i].tolist() if key == "box" else float(scores[i])
            if "outside the image" in what:
                what = what.replace("the image", f"the {int(wh[i, 0])}x{int(wh[i, 1])} image")
            return i, f"{what}: {value}", key
    return None


def check_image_size(
    stated: tuple[int, int],
    actual: tuple[int, int],
    who: str,
    *,
    file: str | Path | None = None,
    image: str | None = None,
) -> None:
    """Raise one `DetectionError` (field ``width``) when the size a file or annotation states
    (``who`` says which) is not the loaded image's: the boxes would be in another frame, as for
    the raw frame of an EXIF-rotated photo."""
    if tuple(stated) != tuple(actual):
        raise DetectionError(
            f"{who} gives the image as {stated[0]}x{stated[1]} but it is {actual[0]}x{actual[1]} "
            "(upright, EXIF applied): the boxes are in another frame",
            file,
            image,
            "width",
        )


def check_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    image_size: tuple[int, int] | None,
    *,
    file: str | Path | None = None,
    image: str | None = None,
    field: str = "detections",
    tolerance: float = 1.0,
) -> None:
    """Raise one `DetectionError` naming file, image and `field[i].key` for the first bad
    row (see `first_problem`). boxes: (N, 4); scores: (N,)."""
    problem = first_problem(boxes, scores, image_size, tolerance)
    if problem is not None:
        i, msg, key = problem
        raise DetectionError(msg, file, image, f"{field}[{i}].{key}")


def position_by_id(
    label_space: LabelSpace,
    object_id: Any,
    file: str | Path | None = None,
    image: str | None = None,
    field: str | None = None,
) -> int:
    """The object position of an official object id; an unknown id raises DetectionError."""
    try:
        return label_space.object_position_by_id(object_id)
    except LabelError as err:
        raise DetectionError(str(err), file, image, field) from None


def labels_to_positions(
    labels: Any,
    label_space: LabelSpace,
    *,
    file: str | Path | None = None,
    image: str | None = None,
    field: str = "labels",
) -> np.ndarray:
    """(N,) int64 object positions from names or positions; unknown ones raise DetectionError."""
    values = labels.tolist() if isinstance(labels, np.ndarray | torch.Tensor) else list(labels)
    out = np.empty(len(values), dtype=np.int64)
    n_obj = len(label_space.objects)
    for i, v in enumerate(values):
        if isinstance(v, str):
            try:
                out[i] = label_space.object_position(v)
            except LabelError as err:
                raise DetectionError(str(err), file, image, f"{field}[{i}]") from None
        elif isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v < n_obj:
            out[i] = v
        else:
            raise DetectionError(
                f"label {brief(v)} is neither an object name nor a position in 0..{n_obj - 1}",
                file,
                image,
                f"{field}[{i}]",
            )
    return out


class CallableDetector:
    """Wrap a user function `image -> (boxes, labels, scores)` as a `DetectionSource`.

    boxes: (N, 4) [x1, y1, x2, y2] pixels; labels: names or object positions; scores: (N,).
    When `detect` gets no image, it opens `file_name` (joined to `image_root` if given).
    """

    def __init__(
        self,
        fn: Callable[[Image.Image], tuple[Any, Any, Any]],
        label_space: LabelSpace | str,
        image_root: str | Path | None = None,
    ) -> None:
        from linkhoi.labels import load

        self.fn = fn
        self.label_space = load(label_space)
        self.image_root = None if image_root is None else Path(image_root)

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        if image is None:  # upright and RGB, as every other source sees it
            from linkhoi.data.images import ImageError, load_image

            path = Path(file_name) if self.image_root is None else self.image_root / file_name
            try:
                image = load_image(path)
            except ImageError as err:
                raise DetectionError(f"cannot open image: {err}", path, file_name) from None
        where = {"file": getattr(self.fn, "__name__", repr(self.fn)), "image": file_name}
        try:
            boxes, labels, scores = self.fn(image)
        except (TypeError, ValueError) as err:
            raise DetectionError(
                f"detector must return (boxes, labels, scores): {err}", **where
            ) from None
        if boxes is None or labels is None or scores is None:
            raise DetectionError(
                "detector returned None instead of boxes, labels or scores", **where
            )
        try:  # numbers of the right shapes, or one error naming the field
            boxes = _numpy(boxes).astype(np.float32)
            if boxes.size and boxes.shape[-1] != 4:
                raise ValueError(f"shape {boxes.shape}, expected (N, 4)")
            boxes = boxes.reshape(-1, 4)
        except (TypeError, ValueError) as err:
            raise DetectionError(
                f"boxes are not an (N, 4) array of numbers: {err}", **where
            ) from None
        try:
            scores = _numpy(scores).astype(np.float32).reshape(-1)
        except (TypeError, ValueError) as err:
            raise DetectionError(
                f"scores are not an (N,) array of numbers: {err}", **where
            ) from None
        positions = labels_to_positions(labels, self.label_space, **where)
        if not len(boxes) == len(scores) == len(positions):
            raise DetectionError(
                f"boxes, labels and scores differ in length: {len(boxes)}, {len(positions)},"
                f" {len(scores)}",
                **where,
            )
        check_detections(boxes, scores, image.size, **where)
        return Detections(
            torch.from_numpy(boxes),
            torch.from_numpy(positions),
            torch.from_numpy(scores),
            image.size,
        )


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
