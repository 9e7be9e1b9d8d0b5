"""The one sample type every reader returns, the error every reader raises, shared parsing.

`Sample` and `HOIPair` are fixed by docs/internals.md. `validate_sample` holds the checks
shared by all readers (finite, ordered boxes inside the image; indices in range), and
`image_records` / `entries` / `parse_annotations` / `box_indices` / `finish` the loops
they share, so each reader
only has to parse its own format.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.io import InputError, box_faults, brief
from linkhoi.io import load_json as _load_json


class DatasetError(InputError):
    """Malformed annotation input. The message names the file, the image and the field."""


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


# Data-reader wording of the box rules of `linkhoi.io.box_faults`.
_BOX_FAULTS = {
    "not_finite": "box has a NaN or infinite value: {box}",
    "inverted": "inverted box (x2 < x1 or y2 < y1): {box}",
    "outside": "box {box} lies outside the {width}x{height} image by more than a pixel",
}


def parse_box(value: object, file: str | Path, image: str, field: str) -> list[float]:
    """Four finite numbers [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1, or DatasetError."""
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != 4:
        raise DatasetError(f"expected a box of 4 numbers, got {brief(value)}", file, image, field)
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int such as 10**400
        raise DatasetError(
            f"box has a non-numeric value: {brief(value)}", file, image, field
        ) from None
    # The rules of `box_faults`, one box at a time (numpy per box would slow big files down).
    if not all(math.isfinite(v) for v in box):
        raise DatasetError(_BOX_FAULTS["not_finite"].format(box=box), file, image, field)
    if box[2] < box[0] or box[3] < box[1]:
        raise DatasetError(_BOX_FAULTS["inverted"].format(box=box), file, image, field)
    return box


def parse_index(value: object, file: str | Path, image: str, field: str) -> int:
    """An integer id; tolerates strings such as "12\\n" (seen in PPDM-style files)."""
    if isinstance(value, bool):
        raise DatasetError(f"expected an integer, got {brief(value)}", file, image, field)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise DatasetError(f"expected an integer, got {brief(value)}", file, image, field)


def parse_size(record: dict, file: str | Path, image: str, prefix: str = "") -> tuple[int, int]:
    """(width, height): the integers ``record["width"]``, ``record["height"]``; ``prefix``
    is put before the field names in messages."""
    sides = []
    for key in ("width", "height"):
        side = parse_index(record.get(key), file, image, prefix + key)
        if side < 0:  # 0 is allowed: it means "size unknown" throughout linkhoi
            msg = f"expected a positive integer, got {brief(record.get(key))}"
            raise DatasetError(msg, file, image, prefix + key)
        if side >= 2**31:  # 10**400 would stop the box checks with an OverflowError
            raise DatasetError(
                f"image {key} {brief(side)} is beyond 2**31 - 1", file, image, prefix + key
            )
        sides.append(side)
    return sides[0], sides[1]


def parse_optional_index(value: object, file: str | Path, image: str, field: str) -> int | None:
    """`parse_index`, with None (a missing or null value) passed through."""
    return None if value is None else parse_index(value, file, image, field)


def parse_id(
    value: object,
    lookup: Callable[[int], int],
    file: str | Path,
    image: str,
    field: str,
    unknown: str,
) -> int:
    """The position of an official id: ``lookup`` (a label space's ``*_position_by_id``) of
    `parse_index`. An id it does not know raises DatasetError(``unknown`` formatted with the
    ``id`` and the lookup's ``err``)."""
    official = parse_index(value, file, image, field)
    try:
        return lookup(official)
    except (KeyError, ValueError) as err:
        raise DatasetError(unknown.format(id=official, err=err), file, image, field) from None


def validate_sample(sample: Sample, num_objects: int, num_hois: int, file: str | Path) -> None:
    """Check a parsed sample; raise DatasetError naming the first offending field.

    Boxes must be finite and ordered, and lie inside the image with a one-pixel tolerance
    (whatever the box convention) when the size is known (width, height > 0).
    """
    name = sample.file_name
    n = sample.num_boxes
    if len(sample.labels) != n or len(sample.unannotated) != n:
        raise DatasetError("boxes, labels and unannotated differ in length", file, name, "boxes")
    faults = box_faults(sample.boxes, (sample.width, sample.height))
    bad = np.flatnonzero(faults["not_finite"] | faults["inverted"] | faults["outside"])
    if len(bad):  # the first bad box, its first broken rule
        i = int(bad[0])
        rule = next(rule for rule, mask in faults.items() if mask[i])
        message = _BOX_FAULTS[rule].format(
            box=sample.boxes[i].tolist(), width=sample.width, height=sample.height
        )
        raise DatasetError(message, file, name, f"boxes[{i}]")
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


def finish(samples: list[Sample], label_space: Any, file: str | Path) -> list[Sample]:
    """The end of every reader: validate each sample, check the names are unique.

    The rules of :func:`validate_sample` are first checked on all samples at once; only when
    one fails does the per-sample pass run, to name the first offending field."""
    n_obj, n_hoi = len(label_space.objects), len(label_space.hois)
    if not _all_valid(samples, n_obj, n_hoi):
        for sample in samples:
            validate_sample(sample, n_obj, n_hoi, file)
    check_unique_names(samples, file)
    return samples


def _all_valid(samples: list[Sample], num_objects: int, num_hois: int) -> bool:
    """Do all samples pass :func:`validate_sample`? One vectorised pass (False may be wrong,
    True is not: the caller then runs the exact per-sample checks)."""
    if not samples:
        return True
    counts = np.array([s.num_boxes for s in samples])
    if any(
        len(s.labels) != n or len(s.unannotated) != n for s, n in zip(samples, counts, strict=True)
    ):
        return False
    if counts.sum():
        boxes = np.concatenate([s.boxes for s in samples])
        sizes = np.repeat(np.array([(s.width, s.height) for s in samples], float), counts, 0)
        faults = box_faults(boxes, sizes)
        if (faults["not_finite"] | faults["inverted"] | faults["outside"]).any():
            return False
        labels = np.concatenate([np.asarray(s.labels, dtype=np.int64) for s in samples])
        if labels.min() < 0 or labels.max() >= num_objects:
            return False
    for s, n in zip(samples, counts.tolist(), strict=True):
        for pair in s.pairs:
            if not (0 <= pair.human < n and 0 <= pair.hoi < num_hois) or (
                pair.object is not None and not 0 <= pair.object < n
            ):
                return False
    return True


def image_records(records: Iterable[object], file: str | Path) -> Iterator[tuple[dict, str]]:
    """(record, file_name) for each image record, which must be an object with a file_name."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
            raise DatasetError("record has no string 'file_name'", file, f"#{i}", "file_name")
        yield rec, rec["file_name"]


def entries(record: dict, key: str, file: str | Path, image: str) -> Iterator[tuple[str, dict]]:
    """(field, entry) for each entry of the list ``record[key]`` (missing: none); each entry
    must be an object."""
    values = record.get(key)
    values = [] if values is None else values  # missing or null: none; {} or 0 is an error
    if not isinstance(values, list):
        raise DatasetError(
            f"expected a list of objects, got {type(values).__name__}", file, image, key
        )
    for j, entry in enumerate(values):
        where = f"{key}[{j}]"
        if not isinstance(entry, dict):
            raise DatasetError("expected an object", file, image, where)
        yield where, entry


def parse_annotations(
    record: dict,
    key: str,
    label_space: Any,
    file: str | Path,
    image: str,
    unknown: str = "unknown object category id {id}",
) -> tuple[list[list[float]], list[int]]:
    """(boxes, object positions) of the COCO-style entries ``record[key]``, each
    ``{"bbox": [x1, y1, x2, y2], "category_id": official object id}`` (PPDM, SWiG-HOI);
    ``unknown`` words an unknown id (see `parse_id`)."""
    boxes, labels = [], []
    lookup = label_space.object_position_by_id
    for where, ann in entries(record, key, file, image):
        boxes.append(parse_box(ann.get("bbox"), file, image, where + ".bbox"))
        labels.append(
            parse_id(ann.get("category_id"), lookup, file, image, where + ".category_id", unknown)
        )
    return boxes, labels


def box_indices(
    entry: dict,
    keys: tuple[str, ...],
    num_boxes: int,
    file: str | Path,
    image: str,
    field: str,
    *,
    noun: str = "boxes",
    optional: tuple[str, ...] = (),
) -> list[int | None]:
    """The box indices ``entry[key]`` of one pair (the entry at ``field``), each in range;
    keys in ``optional`` may be null (None)."""
    values = [
        (parse_optional_index if key in optional else parse_index)(
            entry.get(key), file, image, f"{field}.{key}"
        )
        for key in keys
    ]
    for value, key in zip(values, keys, strict=True):
        if value is not None and not 0 <= value < num_boxes:
            raise DatasetError(
                f"index {brief(value)} out of range ({num_boxes} {noun})",
                file,
                image,
                f"{field}.{key}",
            )
    return values


def load_json(path: str | Path) -> object:
    """Parse a JSON file; a missing, truncated or malformed file gives one DatasetError."""
    return _load_json(path, DatasetError)


def resolve_label_space(label_space: object, default: str) -> object:
    """A LabelSpace from an instance, a packaged name or a path; `default` when None."""
    from linkhoi import labels

    if label_space is None:
        label_space = default
    if isinstance(label_space, str | Path):
        return labels.load(str(label_space))
    return label_space
