"""The HOI triplet file: read, validate and write it.

Format: docs/evaluation.md, "The triplet file"; the writer is
:mod:`linkhoi.eval.triplets_writer`. ``.json`` holds one object with an ``images`` list (a bare
list of image records is accepted too); ``.jsonl`` holds one image object per line, optionally
preceded by a header line without ``file_name``. Either may end in ``.gz``.

Validation is vectorised per image (numpy on the image's lists); only when a check fails does
a slow per-detection pass run to name the exact detection and field. Resolving class names and
ids against a label space is :mod:`linkhoi.eval.resolve`.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from linkhoi.io import (
    InputError,
    brief,
    is_number,
    read_limited,
    text_lines,
    too_deep,
)

FORMAT = "hoi-triplets"
VERSION = 1
_RECORD_KEYS = frozenset(("file_name", "detections"))
_INT_MIN, _INT_LIMIT = -(2**63), 2**64  # json ints numpy holds (int64 / uint64)


class TripletFileError(InputError):
    """A triplet file that cannot be used; the message names file, image, detection and field."""


def _where(path: Any, image: Any, index: int | None = None, det: int | None = None) -> str:
    parts = [str(path)]
    if image is not None:
        parts.append(f"image {image!r}")
    elif index is not None:
        parts.append(f"image record #{index}")
    if det is not None:
        parts.append(f"detection {det}")
    return ": ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _is_jsonl(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith((".jsonl", ".ndjson"))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building a million small dicts otherwise triggers
    repeated full collections that traverse all of them (about half the load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_json(path: Path) -> Any:
    try:
        data = read_limited(path, TripletFileError)
        with gc_paused():
            return json.loads(data)
    except json.JSONDecodeError as err:
        raise TripletFileError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}); "
            "the file may be truncated"
        ) from None
    except RecursionError:
        raise TripletFileError(f"{path}: {too_deep()}") from None
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as err:
        raise TripletFileError(
            f"{path}: cannot be read ({err}); the file may be truncated"
        ) from None


def _json_line(line: str, path: Path, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise TripletFileError(
            f"{path}: line {lineno} is not valid JSON ({err.msg}, column "
            f"{err.colno}); the file may be truncated"
        ) from None
    except RecursionError:
        raise TripletFileError(f"{path}: line {lineno} is {too_deep()}") from None


def check_header(header: dict, path: Any) -> None:
    """Raise TripletFileError naming the header field (all optional) this reader cannot use."""
    fmt, version = header.get("format", FORMAT), header.get("version", VERSION)
    if fmt != FORMAT:
        raise TripletFileError(f"{path}: field 'format' is {brief(fmt)}; expected {FORMAT!r}")
    if not (is_number(version) and version == VERSION):
        raise TripletFileError(
            f"{path}: field 'version' is {brief(version)}; only version {VERSION} is supported"
        )
    space = header.get("label_space")
    if space is not None and not (isinstance(space, str) and space):
        raise TripletFileError(
            f"{path}: field 'label_space' must be a label-space name (a string), got {brief(space)}"
        )


def _iter_records(path: Path, header: dict | None = None) -> Iterator[tuple[int, Any]]:
    """(record index, image record) in file order; top-level keys (a JSON Lines file's first
    line without ``file_name`` and ``detections``) go to ``header``, checked."""
    if _is_jsonl(path):
        try:
            index, first = 0, True
            for lineno, line in enumerate(text_lines(path, TripletFileError), start=1):
                if not line.strip():
                    continue
                rec = _json_line(line, path, lineno)
                if first and isinstance(rec, dict) and not rec.keys() & _RECORD_KEYS:
                    check_header(rec, path)  # header line: format, version, label_space
                    if header is not None:
                        header.update(rec)
                    first = False
                    continue
                first = False
                yield index, rec
                index += 1
        except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as err:
            raise TripletFileError(
                f"{path}: cannot be read ({err}); the file may be truncated"
            ) from None
        return
    data = _load_json(path)
    if isinstance(data, dict):
        if "images" not in data:
            raise TripletFileError(f"{path}: missing top-level key 'images'")
        check_header(data, path)
        if header is not None:
            header.update((k, v) for k, v in data.items() if k != "images")
        data = data["images"]
    if not isinstance(data, list):
        raise TripletFileError(f"{path}: 'images' must be a list of image records")
    del header
    for i in range(len(data)):
        rec, data[i] = data[i], None  # free each image once consumed: lower peak memory
        yield i, rec


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level keys other than ``images`` (``format``, ``version``, ``label_space``...)."""
    path = Path(path)
    if _is_jsonl(path):
        for lineno, line in enumerate(text_lines(path, TripletFileError), start=1):
            if line.strip():
                rec = _json_line(line, path, lineno)
                if isinstance(rec, dict) and "file_name" not in rec:
                    return rec
                return {}
        return {}
    data = _load_json(path)
    return {k: v for k, v in data.items() if k != "images"} if isinstance(data, dict) else {}


def read_triplets(
    path: str | os.PathLike[str],
    validate: bool = True,
    check_detections: bool = True,
    header: dict | None = None,
) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(file_name, detections)`` per image, in file order, validated.

    Args:
        path: ``.json`` / ``.jsonl``, optionally ``.gz``. JSON Lines files are streamed.
        validate: check image records (``file_name``, ``detections``, duplicate names).
        check_detections: also check every detection (:func:`validate_detections`). An
            evaluator that calls :func:`linkhoi.eval.resolve.resolve_triplets` repeats these
            checks on its arrays, so it may pass False to save the second pass.
        header: if given, filled with the top-level keys (``label_space``...) before the
            first image is yielded.

    Raises:
        TripletFileError: on the first problem, naming the file, the image and the detection.
    """
    path = Path(path)
    if not path.is_file():
        raise TripletFileError(f"{path}: no such predictions file")
    seen: set[str] = set()
    for index, rec in _iter_records(path, header):
        if not isinstance(rec, dict):
            raise TripletFileError(f"{_where(path, None, index)}: must be an object")
        name = rec.get("file_name")
        if not isinstance(name, str) or not name:
            raise TripletFileError(f"{_where(path, None, index)}: missing or empty key 'file_name'")
        dets = rec.get("detections")
        if not isinstance(dets, list):
            raise TripletFileError(
                f"{_where(path, name)}: missing key 'detections' (a list; [] for no detections)"
            )
        if validate:
            if name in seen:
                raise TripletFileError(
                    f"{_where(path, name)}: duplicate file_name; an image may appear only once"
                )
            seen.add(name)
            if check_detections:
                validate_detections(dets, path, name)
        yield name, dets


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_detections(dets: list[dict], path: Any = "<memory>", image: Any = None) -> None:
    """Check one image's detections; raise TripletFileError naming the first bad one.

    Required per detection: ``human_box`` (4 numbers), ``object_box`` (4 numbers or null),
    ``score`` (finite number), and a class: ``verb``, ``verb_id`` or ``hoi_id``.
    """
    if dets:
        _detection_arrays(dets, path, image, check_class=True)


def _detection_arrays(
    dets: list[dict], path: Any, image: Any, check_class: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(human boxes (D, 4), object boxes (D, 4) NaN where null, scores (D,)), float64.

    Checks run vectorised on the arrays (:func:`_box_arrays`); only when one fails does a
    per-detection pass (:func:`_raise_first_problem`) find and name the first bad detection
    and field. ``check_class`` also requires a class key.
    """
    try:
        arrays = _box_arrays(
            [d["human_box"] for d in dets],
            [d["object_box"] for d in dets],
            [d["score"] for d in dets],
        )
        ok = arrays is not None
        if ok and check_class:  # every detection names a class somehow
            ok = all(("verb" in d or "verb_id" in d or "hoi_id" in d) for d in dets)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        _raise_first_problem(dets, path, image)
    return arrays  # type: ignore[return-value]


def _box_arrays(
    human: Sequence[Any], objects: Sequence[Any], scores: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The field values of D detections as float64 arrays, or None when a check fails.

    ``human``, ``objects`` (a box or None each) and ``scores`` are the columns. Checked
    vectorised: shapes (D, 4) / (D,), numbers only, all finite, x2 >= x1 and y2 >= y1.
    Returns (human boxes (D, 4), object boxes (D, 4) NaN where null, scores (D,)).
    """
    n = len(scores)
    try:
        hb = np.array(human)
        sc = np.array(scores)
        try:
            some_none = None in objects  # C-level scan; the usual case
        except ValueError:  # numpy boxes compare element-wise
            some_none = any(b is None for b in objects)
        if not some_none:
            has_ob = None
            ob = np.array(objects)
        else:
            has_ob = np.fromiter((b is not None for b in objects), bool, n)
            ob = np.full((n, 4), np.nan)
            if has_ob.any():
                given = np.array([b for b in objects if b is not None])
                # checked first: the assignment would broadcast [1] or 5 and parse "0.5"
                if given.shape != (int(has_ob.sum()), 4) or given.dtype.kind not in "iuf":
                    return None
                ob[has_ob] = given
        if not (
            hb.shape == (n, 4) and ob.shape == (n, 4) and sc.shape == (n,)
            and hb.dtype.kind in "iuf" and sc.dtype.kind in "iuf" and ob.dtype.kind in "iuf"
        ):  # fmt: skip
            return None
    except (TypeError, ValueError):
        return None
    # fresh arrays: no copy needed when they already are float64
    hb, ob, sc = (x.astype(np.float64, copy=False) for x in (hb, ob, sc))
    boxes = np.concatenate((hb, ob if has_ob is None else ob[has_ob]))  # one check for both
    ok = np.isfinite(sc).all() and np.isfinite(boxes).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    return (hb, ob, sc) if ok else None


def _raise_first_problem(dets: list[Any], path: Any, image: Any) -> NoReturn:
    """The slow pass behind the vectorised checks: raise naming the first bad detection."""
    for j, d in enumerate(dets):
        _check_one(d, path, image, j)
    raise TripletFileError(f"{_where(path, image)}: malformed detections")


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _huge_int(v: Any) -> bool:
    """An integer numpy cannot hold as int64 / uint64 (``1e30`` written without a point)."""
    return isinstance(v, int) and not _INT_MIN <= v < _INT_LIMIT


def _check_box(box: Any, key: str, where: str) -> None:
    if hasattr(box, "tolist"):  # numpy / torch boxes from memory
        box = box.tolist()
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(_number(v) for v in box):
        raise TripletFileError(f"{where}: field {key!r} must be [x1, y1, x2, y2], got {brief(box)}")
    if any(_huge_int(v) for v in box):
        raise TripletFileError(
            f"{where}: field {key!r} holds an integer beyond 64 bits: {brief(box)}"
        )
    if not all(math.isfinite(v) for v in box):
        raise TripletFileError(f"{where}: field {key!r} holds a non-finite value: {brief(box)}")
    if box[2] < box[0] or box[3] < box[1]:
        raise TripletFileError(
            f"{where}: field {key!r} has x2 < x1 or y2 < y1: {brief(box)} (boxes are [x1, y1, x2, y2])"
        )


def _check_one(d: Any, path: Any, image: Any, j: int) -> None:
    where = _where(path, image, det=j)
    if not isinstance(d, dict):
        raise TripletFileError(f"{where}: a detection must be an object, got {type(d).__name__}")
    for key in ("human_box", "object_box", "score"):
        if key not in d:
            raise TripletFileError(f"{where}: missing key {key!r}")
    if not ("verb" in d or "verb_id" in d or "hoi_id" in d):
        raise TripletFileError(f"{where}: missing key 'verb' (or 'verb_id' / 'hoi_id')")
    _check_box(d["human_box"], "human_box", where)
    if d["object_box"] is not None:
        _check_box(d["object_box"], "object_box", where)
    s = d["score"]
    if hasattr(s, "item") and getattr(s, "ndim", 1) == 0:
        s = s.item()
    if not _number(s):
        raise TripletFileError(f"{where}: field 'score' must be a number, got {brief(s)}")
    if _huge_int(s):
        raise TripletFileError(f"{where}: field 'score' is {brief(s)}, an integer beyond 64 bits")
    if not math.isfinite(s):
        raise TripletFileError(f"{where}: field 'score' is {brief(s)}; scores must be finite")


# Writing: linkhoi.eval.triplets_writer (imported last: it uses the checks above)
from linkhoi.eval.triplets_writer import write_triplets  # noqa: E402, F401
