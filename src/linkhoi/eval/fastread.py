"""The fast way in for triplet files: msgspec decodes straight into typed structs.

:func:`read_triplets` (the stdlib ``json`` module, a dict per detection) stays the reference
and the path that words every error. :func:`read_triplets_fast` decodes the same files with
``msgspec`` into :class:`Detection` structs: about three times faster than ``json.load`` and
without a dict per detection. A ``.json`` file is read as bytes and only its image list is
decoded at first; each image's ``detections`` stay raw bytes (views of the file) until that
image is reached, so at most one image's structs are alive at a time.

Anything the typed decoder does not accept (a NaN, a string score, a missing key, a duplicated
``file_name``...) raises :class:`FastPathUnavailable`; the caller then reads the file again
with :func:`read_triplets`, which names the file, the image, the detection and the field.
:func:`linkhoi.eval.resolve.resolve_triplets` takes lists of structs as well as of dicts
(:func:`resolve_structs`).

Given the label space's names (``names``), each image is first decoded into
:func:`named_type` structs, whose ``verb``, ``object`` and ``role`` may only be names of that
label space, written exactly, and whose id fields may only be null: the decoder then hands back
the label space's own string objects, so the class lookups of :mod:`linkhoi.eval.batch` hash
no new string. An image it refuses is decoded into :class:`Detection` structs instead (and
so is every later image of the file: a file with ids pays for one refusal only).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from linkhoi.eval.resolve import CLASS_FIELDS, TripletArrays
from linkhoi.eval.triplets import (
    TripletFileError,
    _check_one,
    _is_jsonl,
    _where,
    check_header,
)
from linkhoi.io import input_limit, read_limited

Box = tuple[float, float, float, float]


class Detection(msgspec.Struct, gc=False):
    """One detection of the triplet format, as decoded by msgspec (fields as in the format)."""

    human_box: Box
    object_box: Box | None
    score: float
    verb: str | None = None
    object: str | None = None
    verb_id: int | None = None
    object_id: int | None = None
    hoi_id: int | None = None
    role: str | None = None


class NamedBase(msgspec.Struct, gc=False):
    """Base of the :func:`named_type` structs (class fields: exact names of one label space)."""


@lru_cache(maxsize=8)
def named_type(verbs: tuple[str, ...], objects: tuple[str, ...], roles: tuple[str, ...]) -> type:
    """A :class:`Detection` whose ``verb`` (required), ``object`` and ``role`` are ``Literal``
    names of one label space and whose ``verb_id``, ``object_id``, ``hoi_id`` are null or
    absent. msgspec decodes a Literal name to the very string object given here."""

    def one_of(names: tuple[str, ...]) -> Any:  # a name or null; only null without names
        return Literal[tuple(dict.fromkeys(names))] | None if names else None  # type: ignore[valid-type]

    fields = [
        ("human_box", Box),
        ("object_box", Box | None),
        ("score", float),
        ("verb", Literal[tuple(dict.fromkeys(verbs))]),  # type: ignore[valid-type]
        ("object", one_of(objects), None),
        ("verb_id", None, None),
        ("object_id", None, None),
        ("hoi_id", None, None),
        ("role", one_of(roles), None),
    ]
    return msgspec.defstruct("NamedDetection", fields, bases=(NamedBase,), gc=False)


@lru_cache(maxsize=8)
def _named_decoders(
    names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
) -> tuple[msgspec.json.Decoder, msgspec.json.Decoder]:
    """(decoder of a detection list, decoder of a JSON Lines image) into named structs."""
    det = named_type(*names)
    line = msgspec.defstruct("NamedImage", [("file_name", str), ("detections", list[det])],
                             gc=False)  # fmt: skip
    return msgspec.json.Decoder(list[det]), msgspec.json.Decoder(line)


def label_names(ls: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """(verb names, object names, role names) of a label space, for ``read_triplets_fast``."""
    if ls is None:
        return None
    roles = tuple(sorted({h.role for h in ls.hois if h.role is not None}))
    return tuple(ls.verbs), tuple(ls.objects), roles


class _LazyImage(msgspec.Struct, gc=False):
    file_name: str
    detections: msgspec.Raw


class _Image(msgspec.Struct, gc=False):
    file_name: str
    detections: list[Detection]


class _File(msgspec.Struct, gc=False):
    images: list[_LazyImage]
    # absent is UNSET; a null is refused (the stdlib reader words it: "'format' is None")
    format: str | msgspec.UnsetType = msgspec.UNSET
    version: int | msgspec.UnsetType = msgspec.UNSET
    label_space: str | msgspec.UnsetType = msgspec.UNSET


class FastPathUnavailable(Exception):
    """The typed decoder cannot read this file; read it with :func:`read_triplets` instead."""


_DETECTIONS = msgspec.json.Decoder(list[Detection])
_FILE = msgspec.json.Decoder(_File | list[_LazyImage])
_LINE = msgspec.json.Decoder(_Image)


def _header(values: dict, path: Path) -> dict:
    header = {k: v for k, v in values.items() if v is not msgspec.UNSET}
    check_header(header, path)
    return header


def _read_bytes(path: Path) -> bytes:
    """The file's bytes (inflated), within linkhoi's input limit (``read_limited``)."""
    try:
        return read_limited(path, TripletFileError)
    except (OSError, EOFError) as err:
        raise FastPathUnavailable(str(err)) from None


def read_triplets_fast(
    path: str | os.PathLike[str], header: dict | None = None, names: tuple | None = None
) -> Iterator[tuple[str, list[Detection]]]:
    """Yield ``(file_name, detections)`` per image, in file order, detections as structs.

    Args:
        path: ``.json`` / ``.jsonl``, optionally ``.gz``.
        header: if given, filled with ``format``, ``version``, ``label_space`` (checked).
        names: :func:`label_names` of the label space: decode into :func:`named_type`
            structs where the image allows it.

    Raises:
        FastPathUnavailable: anything the typed decoder does not accept (re-read the file with
            :func:`linkhoi.eval.triplets.read_triplets` to get the precise error).
        TripletFileError: a header value this reader cannot use.
    """
    path = Path(path)
    if not path.is_file():
        raise TripletFileError(f"{path}: no such predictions file")
    seen: set[str] = set()
    named = _named_decoders(names) if names is not None else None
    try:
        if _is_jsonl(path):
            images = _jsonl_images(path, header, named[1] if named else None)
        else:
            data = _FILE.decode(_read_bytes(path))
            if isinstance(data, _File):
                h = _header({"format": data.format, "version": data.version,
                             "label_space": data.label_space}, path)  # fmt: skip
                if header is not None:
                    header.update(h)
                data = data.images
            images = ((im.file_name, im.detections) for im in data)
        for name, dets in images:
            if not name or name in seen:
                raise FastPathUnavailable(f"empty or duplicate file_name {name!r}")
            seen.add(name)
            if isinstance(dets, list):
                yield name, dets
                continue
            if named is not None:
                try:
                    yield name, named[0].decode(dets)
                    continue
                except msgspec.ValidationError:
                    named = None  # ids, other names...: the general structs from now on
            yield name, _DETECTIONS.decode(dets)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as err:
        raise FastPathUnavailable(str(err)) from None  # RecursionError: nesting too deep


def _jsonl_images(
    path: Path, header: dict | None, named: msgspec.json.Decoder | None = None
) -> Iterator[tuple[str, list[Detection]]]:
    """Stream a JSON Lines file: one image decoded per line (``named``: first try this
    decoder of named structs, until it refuses a line)."""
    first = True
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    limit = input_limit()
    try:
        with opener(path, "rb") as fh:
            while line := fh.readline(limit + 1):
                if len(line) > limit:  # the stdlib reader names the line and the limit
                    raise FastPathUnavailable("line beyond the input limit")
                if not line.strip():
                    continue
                if first:
                    first = False
                    rec = msgspec.json.decode(line)
                    if isinstance(rec, dict) and not rec.keys() & {"file_name", "detections"}:
                        h = _header(rec, path)
                        if header is not None:
                            header.update(h)
                        continue
                if named is not None:
                    try:
                        im = named.decode(line)
                    except msgspec.ValidationError:
                        named = None
                if named is None:
                    im = _LINE.decode(line)
                yield im.file_name, im.detections
    except (OSError, EOFError) as err:
        raise FastPathUnavailable(str(err)) from None


def _as_dicts(dets: Sequence[Any]) -> list[dict]:
    """Decoded structs back to the dicts of the file (absent optional fields left out), for
    the dict path that words errors and resolves class fields not met before."""
    out = []
    for d in dets:
        rec = {f: getattr(d, f) for f in d.__struct_fields__}
        out.append({k: list(v) if isinstance(v, tuple) else v for k, v in rec.items()
                    if v is not None or k == "object_box"})  # fmt: skip
    return out


# A struct's class fields (the key of the resolver's memo) and its box and score fields,
# read through attrgetter: the C-level way to read one field of every struct.
CLASS_KEY = attrgetter(*CLASS_FIELDS)
# a named struct's key: its id fields are None, so this tuple decides its CLASS_KEY
NAMED_KEY = attrgetter("verb", "object", "role")
_HUMAN, _OBJECT, _SCORE = (attrgetter(k) for k in ("human_box", "object_box", "score"))


def struct_arrays(dets: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(human boxes (D, 4), object boxes (D, 4) with NaN rows where there is none, scores
    (D,)) of D decoded structs, or None when a box or score fails a check.

    The decoder already checked the types and box lengths, so ``fromiter`` builds the arrays
    and one reduction checks them all: a NaN or an infinity anywhere makes it NaN (inf * 0); a
    huge finite sum only sends the detections to the exact checks of the dict path.
    """
    n = len(dets)
    hb = np.fromiter(chain.from_iterable(map(_HUMAN, dets)), np.float64, 4 * n).reshape(n, 4)
    sc = np.fromiter(map(_SCORE, dets), np.float64, n)
    try:  # the usual case: every detection has an object box (chain fails on a None)
        ob = np.fromiter(chain.from_iterable(map(_OBJECT, dets)), np.float64, 4 * n)
        ob, checked = ob.reshape(n, 4), ob.reshape(n, 4)
    except TypeError:
        boxes = list(map(_OBJECT, dets))
        ob = np.full((n, 4), np.nan)
        has = np.fromiter((b is not None for b in boxes), bool, n)
        if has.any():
            ob[has] = np.array([b for b in boxes if b is not None], dtype=np.float64)
        checked = ob[has]
    with np.errstate(over="ignore", invalid="ignore"):
        ok = n == 0 or min(_check(hb), _check(checked)) + 0.0 * sc.sum() >= 0
        # msgspec reads an integer beyond 64 bits (10**30) as a float, which the dict path
        # refuses: a value this large goes to the exact checks of the stdlib path
        ok = ok and max(_magnitude(hb), _magnitude(checked), _magnitude(sc)) < _BIG
    return (hb, ob, sc) if ok else None


_BIG = 2.0**63  # from here on a number may have been an integer beyond 64 bits in the file


def _magnitude(values: np.ndarray) -> float:
    """The largest absolute value of an array of finite values (0 when empty)."""
    return float(np.abs(values).max()) if values.size else 0.0


def _check(boxes: np.ndarray) -> float:
    """min(x2 - x1, y2 - y1) over (B, 4) boxes, NaN when any value is NaN or infinite (inf *
    0), +inf for no box: >= 0 iff all are finite and ordered."""
    if not len(boxes):
        return np.inf
    return float((boxes[:, 2:] - boxes[:, :2]).min() + 0.0 * boxes.sum())


def resolve_structs(dets: Sequence[Any], r: Any, path: Any, image: Any) -> TripletArrays:
    """:func:`linkhoi.eval.resolve.resolve_triplets` for :class:`Detection` structs (``r``: the
    label space's resolver).

    The arrays and their checks come from :func:`struct_arrays`. A failed check, or a class
    not met before, goes through the dict path, which words the error exactly as for a dict;
    a check failed only by a value beyond 2**63 raises :class:`FastPathUnavailable` (the
    stdlib reader tells an integer beyond 64 bits from a float).
    """
    arrays = struct_arrays(dets)
    if arrays is None:
        for j, d in enumerate(_as_dicts(dets)):
            _check_one(d, path, image, j)
        raise FastPathUnavailable(f"{_where(path, image)}: a value beyond 2**63")
    hb, ob, sc = arrays
    get = r.memo.get
    codes = [get(k, -1) for k in map(CLASS_KEY, dets)]
    where = lambda j: _where(path, image, det=j)  # noqa: E731
    if -1 in codes:  # a class not met before: the dict path resolves and remembers it
        verbs, objs, roles, hois = r.classes(codes, _as_dicts(dets), where, names_only=False)
    else:
        verbs, objs, roles, hois = r.resolved[:, codes]
    return TripletArrays(human_boxes=hb, object_boxes=ob, scores=sc, verbs=verbs,
                         objects=objs, roles=roles, hois=hois)  # fmt: skip
