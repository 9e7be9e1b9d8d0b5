"""The one sample type every reader returns, and the error every reader raises.

`Sample` and `HOIPair` are fixed by docs/internals.md. `validate_sample` holds the checks
shared by all readers (finite, ordered boxes inside the image; indices in range), so each
reader only has to parse its own format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DatasetError(ValueError):
    """Malformed annotation input. The message names the file, the image and the field."""

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        image: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.image = image
        self.field = field
        self.reason = message
        where = []
        if file is not None:
            where.append(f"file {str(file)!r}")
        if image is not None:
            where.append(f"image {image!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class HOIPair:
    """One ground-truth interaction: indices into `Sample.boxes` and an HOI class position."""

    human: int
    object: int | None  # None for agent-only (V-COCO) pairs
    hoi: int


@dataclass(eq=False)
class Sample:
    """One annotated image.

    boxes: (N, 4) float64 [x1, y1, x2, y2] in the dataset's own convention;
    labels: (N,) int64 object positions; unannotated: (N,) bool (V-COCO ignored persons).
    width/height are 0 when the file does not state them and the image was not found.
    """

    file_name: str
    image_path: Path | None
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    pairs: list[HOIPair]
    unannotated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    image_id: int | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.unannotated = np.asarray(self.unannotated, dtype=bool).reshape(-1)
        if len(self.unannotated) == 0 and len(self.boxes) > 0:
            self.unannotated = np.zeros(len(self.boxes), dtype=bool)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def __eq__(self, other: object) -> bool:
        # numpy arrays make the dataclass-generated __eq__ ambiguous; compare field by field.
        if not isinstance(other, Sample):
            return NotImplemented
        return (
            self.file_name == other.file_name
            and self.image_path == other.image_path
            and (self.width, self.height, self.image_id)
            == (other.width, other.height, other.image_id)
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.unannotated, other.unannotated)
            and self.pairs == other.pairs
        )

    __hash__ = None  # mutable


def parse_box(value: object, file: str | Path, image: str, field: str) -> list[float]:
    """Four finite numbers [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1, or DatasetError."""
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != 4:
        raise DatasetError(f"expected a box of 4 numbers, got {value!r}", file, image, field)
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise DatasetError(f"box has a non-numeric value: {value!r}", file, image, field) from None
    if not all(math.isfinite(v) for v in box):
        raise DatasetError(f"box has a NaN or infinite value: {box}", file, image, field)
    if box[2] < box[0] or box[3] < box[1]:
        raise DatasetError(f"inverted box (x2 < x1 or y2 < y1): {box}", file, image, field)
    return box


def parse_index(value: object, file: str | Path, image: str, field: str) -> int:
    """An integer id; tolerates strings such as "12\\n" (seen in PPDM-style files)."""
    if isinstance(value, bool):
        raise DatasetError(f"expected an integer, got {value!r}", file, image, field)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise DatasetError(f"expected an integer, got {value!r}", file, image, field)


def validate_sample(sample: Sample, num_objects: int, num_hois: int, file: str | Path) -> None:
    """Check a parsed sample; raise DatasetError naming the first offending field.

    Boxes must be finite and ordered, and lie inside the image with a one-pixel tolerance
    (whatever the box convention) when the size is known (width, height > 0).
    """
    name = sample.file_name
    n = sample.num_boxes
    if len(sample.labels) != n or len(sample.unannotated) != n:
        raise DatasetError("boxes, labels and unannotated differ in length", file, name, "boxes")
    for i, box in enumerate(sample.boxes):
        where = f"boxes[{i}]"
        parse_box(list(box), file, name, where)
        if sample.width > 0 and sample.height > 0:
            x1, y1, x2, y2 = box
            if x1 < -1 or y1 < -1 or x2 > sample.width + 1 or y2 > sample.height + 1:
                raise DatasetError(
                    f"box {box.tolist()} lies outside the {sample.width}x{sample.height} image "
                    "by more than a pixel",
                    file,
                    name,
                    where,
                )
    for i, label in enumerate(sample.labels):
        if not 0 <= label < num_objects:
            raise DatasetError(f"object position {label} out of range", file, name, f"labels[{i}]")
    for k, pair in enumerate(sample.pairs):
        if not 0 <= pair.human < n:
            raise DatasetError(
                f"human index {pair.human} out of range (image has {n} boxes)",
                file,
                name,
                f"pairs[{k}].human",
            )
        if pair.object is not None and not 0 <= pair.object < n:
            raise DatasetError(
                f"object index {pair.object} out of range (image has {n} boxes)",
                file,
                name,
                f"pairs[{k}].object",
            )
        if not 0 <= pair.hoi < num_hois:
            raise DatasetError(f"HOI position {pair.hoi} out of range", file, name, f"pairs[{k}]")


def check_unique_names(samples: list[Sample], file: str | Path) -> None:
    """Raise DatasetError on the first file name that appears twice."""
    seen: set[str] = set()
    for sample in samples:
        if sample.file_name in seen:
            raise DatasetError("duplicate file name", file, sample.file_name, "file_name")
        seen.add(sample.file_name)


def load_json(path: str | Path) -> object:
    """Parse a JSON file; a missing, truncated or malformed file gives one DatasetError."""
    import json

    path = Path(path)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError("file not found", path) from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"not UTF-8 text ({err.reason})", path) from None
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"invalid or truncated JSON at line {err.lineno} column {err.colno}: {err.msg}",
            path,
            field="<json>",
        ) from None


def resolve_label_space(label_space: object, default: str) -> object:
    """A LabelSpace from an instance, a packaged name or a path; `default` when None."""
    from linkhoi import labels

    if label_space is None:
        label_space = default
    if isinstance(label_space, str | Path):
        return labels.load(str(label_space))
    return label_space
