"""The PPDM-layout HICO-DET reader's fast path: all records' checks on arrays at once.

:func:`linkhoi.data.hico.read_hico_json` checks every annotation and every pair with its own
calls (``parse_box``, ``parse_id``, ``box_indices``...), about 0.3 s for the 9,658 test images.
:func:`ppdm_samples` builds the same samples from columns gathered over all records: one
type check per column, one array per column, then the range, box and class checks of the
whole file on those arrays.

It accepts only the plain case: lists of objects, boxes of four ``int``/``float`` values,
``int`` ids, every pair a HICO-DET class and no ``hoi_category_id`` that disagrees. Anything
else (a string id, a bool, a missing key, an invalid pair...) returns None and the caller runs
the per-record reader, which words the first problem exactly as ever (or, with
``on_invalid="warn"``, skips the pair with its warning). When it returns samples they are
equal to the per-record reader's (``Sample.__eq__``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.data.sample import DatasetError, HOIPair, Sample

_NUMBER_TYPES = frozenset((int, float))
_INT_TYPES = frozenset((int,))
_ABSENT = object()  # a hoi_category_id not given


class _Unusual(Exception):
    """Something the fast path does not handle: the per-record reader takes over."""


def _ints(values: list[Any]) -> np.ndarray:
    """(N,) int64 of Python ints (no bool, no float, no string), else _Unusual."""
    if not set(map(type, values)) <= _INT_TYPES:
        raise _Unusual
    try:
        return np.array(values, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise _Unusual from None


def _positions(ids: np.ndarray, by_id: dict[int, int]) -> np.ndarray:
    """Positions of official ids (N,) through ``by_id``; an unknown id is _Unusual."""
    keys = np.fromiter(by_id.keys(), np.int64, len(by_id))
    vals = np.fromiter(by_id.values(), np.int64, len(by_id))
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    at = np.searchsorted(keys, ids).clip(0, max(len(keys) - 1, 0))
    if len(ids) and (not len(keys) or (keys[at] != ids).any()):
        raise _Unusual
    return vals[at] if len(ids) else np.zeros(0, np.int64)


def _columns(records: list[Any]) -> tuple[list[str], list[list], list[list]]:
    """(file names, per record its annotation list, per record its pair list); _Unusual for
    anything but objects with a string ``file_name`` and lists (or nothing) of objects."""
    names, anns, hois = [], [], []
    for rec in records:
        if type(rec) is not dict or type(rec.get("file_name")) is not str:
            raise _Unusual
        a, h = rec.get("annotations"), rec.get("hoi_annotation")
        a, h = [] if a is None else a, [] if h is None else h  # {} or 0: the per-record error
        if type(a) is not list or type(h) is not list:
            raise _Unusual
        names.append(rec["file_name"])
        anns.append(a)
        hois.append(h)
    return names, anns, hois


def ppdm_samples(
    records: list[Any],
    path: Path,
    space: Any,
    root: Path | None,
    human: int,
    size: Callable[[dict, str], tuple[int, int]],
) -> list[Sample] | None:
    """The samples of a PPDM-layout record list, or None when the per-record reader must run.

    Args:
        records: the parsed JSON list (I image records).
        path: the file (for the size reader's messages).
        space: the HICO-DET label space.
        root: image folder or None (``Sample.image_path``).
        human: object position of people.
        size: ``(record, file_name) -> (width, height)`` as the per-record reader finds it.
    """
    try:
        return _samples(records, space, root, human, size)
    except (_Unusual, AttributeError, KeyError, TypeError, ValueError, DatasetError):
        return None  # AttributeError: an entry that is not an object (no .get)


def _samples(
    records: list[Any],
    space: Any,
    root: Path | None,
    human: int,
    size: Callable[[dict, str], tuple[int, int]],
) -> list[Sample]:
    names, anns, hois = _columns(records)
    n_box = np.fromiter(map(len, anns), np.int64, len(anns))
    n_pair = np.fromiter(map(len, hois), np.int64, len(hois))
    flat_anns = list(chain.from_iterable(anns))
    flat_hois = list(chain.from_iterable(hois))
    # boxes: (B, 4) float64; each a list of four int/float values, finite, x2 >= x1, y2 >= y1
    bbox = [a["bbox"] for a in flat_anns]
    if not all(type(b) is list and len(b) == 4 for b in bbox):
        raise _Unusual
    if not set(map(type, chain.from_iterable(bbox))) <= _NUMBER_TYPES:
        raise _Unusual
    try:
        boxes = np.array(bbox, dtype=np.float64).reshape(-1, 4)
    except OverflowError:
        raise _Unusual from None
    if not (np.isfinite(boxes).all() and (boxes[:, 2:] >= boxes[:, :2]).all()):
        raise _Unusual
    labels = _positions(_ints([a["category_id"] for a in flat_anns]), space._object_by_id)
    # pairs: box indices inside their own image, a person as subject, a valid (verb, object)
    sub = _ints([h["subject_id"] for h in flat_hois])
    obj = _ints([h["object_id"] for h in flat_hois])
    verb = _positions(_ints([h["category_id"] for h in flat_hois]), space._verb_by_id)
    n_of_pair = np.repeat(n_box, n_pair)
    if ((sub < 0) | (sub >= n_of_pair) | (obj < 0) | (obj >= n_of_pair)).any():
        raise _Unusual
    first_box = np.repeat(np.cumsum(n_box) - n_box, n_pair)
    if (labels[first_box + sub] != human).any():
        raise _Unusual
    hoi = np.asarray(space.hoi_table(None))[verb, labels[first_box + obj]]
    if (hoi < 0).any():
        raise _Unusual
    stated = [h.get("hoi_category_id", _ABSENT) for h in flat_hois]
    given = [j for j, s in enumerate(stated) if s is not _ABSENT]
    if given:  # each stated id must be the pair's class id
        ids = _ints([stated[j] for j in given])
        if (ids != space.hoi_ids()[hoi[given]]).any():
            raise _Unusual
    return _build(records, names, boxes, labels, (sub, obj, hoi), n_box, n_pair, root, size)


def _build(
    records: list[Any],
    names: list[str],
    boxes: np.ndarray,
    labels: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_box: np.ndarray,
    n_pair: np.ndarray,
    root: Path | None,
    size: Callable[[dict, str], tuple[int, int]],
) -> list[Sample]:
    """One Sample per record from the checked columns (views of ``boxes`` / ``labels``)."""
    all_pairs = list(map(HOIPair, *(p.tolist() for p in pairs)))
    box_end, pair_end = np.cumsum(n_box).tolist(), np.cumsum(n_pair).tolist()
    samples, b0, p0 = [], 0, 0
    for rec, name, b1, p1 in zip(records, names, box_end, pair_end, strict=True):
        width, height = size(rec, name)
        image_path = None if root is None else root / name
        sample = Sample(name, image_path, int(width), int(height), boxes[b0:b1],
                        labels[b0:b1], all_pairs[p0:p1])  # fmt: skip
        samples.append(sample)
        b0, p0 = b1, p1
    return samples
