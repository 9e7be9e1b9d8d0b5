"""The HOI triplet file: read, validate, write, and resolve class names/ids to positions.

Format: ``shared/docs/triplets-format.md``. ``.json`` holds one object with an ``images`` list
(a bare list of image records is accepted too); ``.jsonl`` holds one image object per line,
optionally preceded by a header line without ``file_name``. Either may end in ``.gz``.

Validation is vectorised per image (numpy on the image's lists); only when a check fails does
a slow per-detection pass run to name the exact detection and field.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT = "hoi-triplets"
VERSION = 1


class TripletFileError(ValueError):
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


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


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
        with _open_text(path) as fh, gc_paused():
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise TripletFileError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}); "
            "the file may be truncated"
        ) from None
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as err:
        raise TripletFileError(
            f"{path}: cannot be read ({err}); the file may be truncated"
        ) from None


def _iter_records(path: Path, header: dict | None = None) -> Iterator[tuple[int, Any]]:
    """(record index, image record) in file order; top-level keys go to ``header``."""
    if _is_jsonl(path):
        try:
            with _open_text(path) as fh:
                index = 0
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise TripletFileError(
                            f"{path}: line {lineno} is not valid JSON ({err.msg}, column "
                            f"{err.colno}); the file may be truncated"
                        ) from None
                    if isinstance(rec, dict) and "file_name" not in rec and "detections" not in rec:
                        if header is not None and index == 0:
                            header.update(rec)
                        continue  # header line: format, version, label_space
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
        with _open_text(path) as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
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
            evaluator that calls :func:`resolve_triplets` repeats these checks on its arrays,
            so it may pass False to save the second pass.
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
) -> tuple[set, np.ndarray, np.ndarray, np.ndarray]:
    """(keys used, human boxes (D, 4), object boxes (D, 4) NaN where null, scores (D,)).

    Checks run vectorised on the arrays; only when one fails does a per-detection pass
    (:func:`_check_one`) find and name the first bad detection and field. ``check_class``
    also requires a class key; :func:`resolve_triplets` skips it since its lookups fail on
    such a detection with their own clear message.
    """
    n = len(dets)
    try:
        keys = set().union(*dets)
        hb = np.array([d["human_box"] for d in dets])
        sc = np.array([d["score"] for d in dets])
        obl = [d["object_box"] for d in dets]
        try:
            some_none = None in obl  # C-level scan; the usual case
        except ValueError:  # numpy boxes compare element-wise
            some_none = any(b is None for b in obl)
        if not some_none:
            has_ob = np.ones(n, bool)
            ob = np.array(obl)
        else:
            has_ob = np.fromiter((b is not None for b in obl), bool, n)
            ob = np.full((n, 4), np.nan)
            if has_ob.any():
                ob[has_ob] = np.array([b for b in obl if b is not None])
        ok = (
            hb.shape == (n, 4) and ob.shape == (n, 4) and sc.shape == (n,)
            and hb.dtype.kind in "iuf" and sc.dtype.kind in "iuf" and ob.dtype.kind in "iuf"
        )  # fmt: skip
        if ok:
            hb, ob, sc = hb.astype(np.float64), ob.astype(np.float64), sc.astype(np.float64)
            obv = ob[has_ob]
            ok = bool(
                np.isfinite(sc).all() and np.isfinite(hb).all() and np.isfinite(obv).all()
                and (hb[:, 2] >= hb[:, 0]).all() and (hb[:, 3] >= hb[:, 1]).all()
                and (obv[:, 2] >= obv[:, 0]).all() and (obv[:, 3] >= obv[:, 1]).all()
            )  # fmt: skip
        if ok and check_class:  # every detection names a class somehow
            ok = all(("verb" in d or "verb_id" in d or "hoi_id" in d) for d in dets)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        for j, d in enumerate(dets):
            _check_one(d, path, image, j)
        raise TripletFileError(f"{_where(path, image)}: malformed detections")
    return keys, hb, ob, sc


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _check_box(box: Any, key: str, where: str) -> None:
    if hasattr(box, "tolist"):  # numpy / torch boxes from memory
        box = box.tolist()
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(_number(v) for v in box):
        raise TripletFileError(f"{where}: field {key!r} must be [x1, y1, x2, y2], got {box!r}")
    if not all(math.isfinite(v) for v in box):
        raise TripletFileError(f"{where}: field {key!r} holds a non-finite value: {box!r}")
    if box[2] < box[0] or box[3] < box[1]:
        raise TripletFileError(
            f"{where}: field {key!r} has x2 < x1 or y2 < y1: {box!r} (boxes are [x1, y1, x2, y2])"
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
        raise TripletFileError(f"{where}: field 'score' must be a number, got {s!r}")
    if not math.isfinite(s):
        raise TripletFileError(f"{where}: field 'score' is {s!r}; scores must be finite")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_triplets(
    path: str | os.PathLike[str],
    images: Iterable[tuple[str, list[dict]]],
    label_space: str,
    validate: bool = True,
) -> Path:
    """Write a triplet file atomically (temporary file, then rename).

    Args:
        path: ``.json`` or ``.jsonl``, optionally ``.gz`` (chosen by suffix).
        images: ``(file_name, detections)`` pairs; detections are triplet dicts (numpy values
            are converted).
        label_space: the label-space name written in the header.
        validate: check each image as :func:`read_triplets` would before writing it.

    Returns:
        The written path. Nothing is left behind when an image is invalid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "label_space": label_space}
    jsonl = _is_jsonl(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    seen: set[str] = set()
    try:
        gz = path.name.lower().endswith(".gz")
        with (
            gzip.open(tmp, "wt", encoding="utf-8") if gz else open(tmp, "w", encoding="utf-8")
        ) as fh:
            dump = json.JSONEncoder(default=_json_default, allow_nan=False).encode
            if jsonl:
                fh.write(dump(header) + "\n")
            else:
                fh.write(dump(header)[:-1] + ', "images": [')
            for i, (name, dets) in enumerate(images):
                dets = list(dets)
                if validate:
                    if name in seen:
                        raise TripletFileError(f"{_where(path, name)}: duplicate file_name")
                    seen.add(name)
                    validate_detections(dets, path, name)
                rec = dump({"file_name": name, "detections": dets})
                if jsonl:
                    fh.write(rec + "\n")
                else:
                    fh.write(("\n" if i == 0 else ",\n") + rec)
            if not jsonl:
                fh.write("\n]}\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------------------------
# Resolving classes against a label space
# --------------------------------------------------------------------------------------------

ROLES: tuple[str | None, ...] = (None, "obj", "instr")
_UNKNOWN, _AMBIGUOUS = -2, -3


class _Resolver:
    """Lookup tables of one label space: names/ids -> positions, (verb, object, role) -> HOI."""

    def __init__(self, ls: Any) -> None:
        self.ls = ls
        self.name = ls.name
        self.verb_name = _name_map(ls.verbs)
        self.object_name = _name_map(ls.objects)
        self.verb_id = {int(v): i for i, v in enumerate(ls.verb_ids)}
        self.object_id = {int(v): i for i, v in enumerate(ls.object_ids)}
        self.hoi_id = {int(h.id): p for p, h in enumerate(ls.hois)}
        n_v, n_o = len(ls.verbs), len(ls.objects)
        # table[verb, object + 1, role] -> HOI position, -1 = no class; column 0 = no object.
        # Any-object classes (V-COCO) fill their verb's row, as LabelSpace.hoi_table does.
        self.table = np.full((n_v, n_o + 1, len(ROLES)), -1, dtype=np.int64)
        self.hoi_verb = np.asarray(ls.hoi_verb_positions(), dtype=np.int64)
        self.hoi_object = np.asarray(ls.hoi_object_positions(), dtype=np.int64)
        self.hoi_role = np.array([ROLES.index(h.role) for h in ls.hois], dtype=np.int64)
        for r, role in enumerate(ROLES):
            self.table[:, 1:, r] = ls.hoi_table(role)
        for v in np.unique(
            self.hoi_verb[self.hoi_object < 0]
        ):  # no object given: only an any-object class of the verb fits
            any_cls = [p for p in np.flatnonzero(self.hoi_verb == v) if self.hoi_object[p] < 0]
            for r, role in enumerate(ROLES):
                fits = [p for p in any_cls if ls.hois[p].role == role]
                if role is None and not fits and len(any_cls) == 1:
                    fits = any_cls
                self.table[v, 0, r] = fits[0] if len(fits) == 1 else -1

        # exact (verb name, object name or None) -> HOI position, role-less classes only;
        # names that are ambiguous or classes that collide are left to the general path
        self.pair_map: dict[tuple[str, str | None], int] = {}
        for v, oc in zip(*np.nonzero(self.table[:, :, 0] >= 0), strict=True):
            vname = ls.verbs[v]
            oname = None if oc == 0 else ls.objects[oc - 1]
            if self.verb_name.get(vname) != v or (
                oname is not None and self.object_name.get(oname) != oc - 1
            ):
                continue
            self.pair_map[(vname, oname)] = int(self.table[v, oc, 0])

    def retry(self, kind: str, value: Any) -> int:
        """Forgiving lookup of a name the exact table missed (case, spaces vs underscores)."""
        from linkhoi.labels import AmbiguousNameError, LabelError

        lookup = self.ls.verb_position if kind == "verb" else self.ls.object_position
        try:
            return int(lookup(value))
        except AmbiguousNameError:
            return _AMBIGUOUS
        except LabelError:
            return _UNKNOWN


def _name_map(names: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        out[n] = _AMBIGUOUS if n in out else i
    return out


_RESOLVERS: dict[int, tuple[Any, _Resolver]] = {}


def _resolver(ls: Any) -> _Resolver:
    entry = _RESOLVERS.get(id(ls))
    if entry is None or entry[0] is not ls:  # keep ls alive so its id is not reused
        entry = _RESOLVERS[id(ls)] = (ls, _Resolver(ls))
    return entry[1]


class TripletArrays:
    """One image's detections as arrays (D = number of detections).

    Attributes:
        human_boxes: (D, 4) float64; object_boxes: (D, 4) float64, NaN rows where null.
        scores: (D,) float64.
        verbs: (D,) int64 verb positions; objects: (D,) int64 object positions, -1 = none.
        roles: (D,) int64 index into :data:`ROLES` (0 = none).
        hois: (D,) int64 HOI positions, -1 where (verb, object, role) is not a class.
    """

    __slots__ = ("human_boxes", "object_boxes", "scores", "verbs", "objects", "roles", "hois")

    def __init__(self, **arrays: np.ndarray) -> None:
        for k in self.__slots__:
            setattr(self, k, arrays[k])

    def __len__(self) -> int:
        return len(self.scores)


def _lookup(values: list[Any], mapping: dict[Any, int]) -> np.ndarray:
    """Map values to positions: None -> -1, unknown -> _UNKNOWN, ambiguous -> _AMBIGUOUS."""
    get = mapping.get
    try:
        return np.fromiter(
            (-1 if v is None else get(v, _UNKNOWN) for v in values), np.int64, len(values)
        )
    except TypeError:  # unhashable value (a list...): report it as unknown below
        return np.array(
            [
                -1 if v is None else (get(v, _UNKNOWN) if isinstance(v, (str, int)) else _UNKNOWN)
                for v in values
            ],
            dtype=np.int64,
        )


def _lookup_names(
    values: list[Any], mapping: dict[str, int], r: _Resolver, kind: str
) -> np.ndarray:
    """Exact dict lookup; misses get the label space's forgiving lookup (case, '_' vs ' ')."""
    out = _lookup(values, mapping)
    for j in np.flatnonzero(out == _UNKNOWN):
        if isinstance(values[j], str):
            out[j] = r.retry(kind, values[j])
    return out


def _combine(
    by_name: np.ndarray | None,
    by_id: np.ndarray | None,
    names: list,
    ids: list,
    what: str,
    where: Any,
) -> np.ndarray:
    """Merge name and id lookups; both given must agree. Raise on unknown/ambiguous."""
    for arr, vals, kind in ((by_name, names, "name"), (by_id, ids, "id")):
        if arr is None:
            continue
        bad = np.flatnonzero(arr <= _UNKNOWN)
        if bad.size:
            j = int(bad[0])
            if arr[j] == _AMBIGUOUS:
                raise TripletFileError(
                    f"{where(j)}: {what} name {vals[j]!r} is ambiguous in this label space; "
                    f"give '{what}_id' instead"
                )
            raise TripletFileError(f"{where(j)}: unknown {what} {kind} {vals[j]!r}")
    if by_name is None:
        return by_id  # type: ignore[return-value]
    if by_id is None:
        return by_name
    clash = np.flatnonzero((by_name != by_id) & (by_name != -1) & (by_id != -1))
    if clash.size:
        j = int(clash[0])
        raise TripletFileError(f"{where(j)}: {what} {names[j]!r} and {what}_id {ids[j]!r} disagree")
    return np.where(by_name == -1, by_id, by_name)


def _resolve_classes(
    dets: list[dict], r: _Resolver, where: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """General path: (verbs, objects, roles, hois) from any mix of names and ids."""
    n = len(dets)

    def column(key: str) -> list | None:
        vals = [d.get(key) for d in dets]
        return vals if any(v is not None for v in vals) else None

    vn, vi = column("verb"), column("verb_id")
    on, oi = column("object"), column("object_id")
    hi, rl = column("hoi_id"), column("role")
    verbs = np.full(n, -1, np.int64)
    if vn or vi:
        vname = _lookup_names(vn, r.verb_name, r, "verb") if vn else None
        vid = _lookup(vi, r.verb_id) if vi else None
        verbs = _combine(vname, vid, vn or [], vi or [], "verb", where)
    objects = np.full(n, -1, np.int64)
    if on or oi:
        oname = _lookup_names(on, r.object_name, r, "object") if on else None
        oid = _lookup(oi, r.object_id) if oi else None
        objects = _combine(oname, oid, on or [], oi or [], "object", where)
    roles = np.zeros(n, np.int64)
    role_given = np.zeros(n, bool)
    if rl:
        roles = _lookup(rl, {name: i for i, name in enumerate(ROLES) if name})
        bad = np.flatnonzero(roles == _UNKNOWN)
        if bad.size:
            j = int(bad[0])
            raise TripletFileError(
                f"{where(j)}: unknown role {rl[j]!r} (use 'obj', 'instr' or null)"
            )
        role_given = roles > 0
        roles = np.maximum(roles, 0)
    hois = np.full(n, -1, np.int64)
    named = verbs >= 0
    if named.any():
        hois[named] = r.table[verbs[named], objects[named] + 1, roles[named]]
        amb = np.flatnonzero(hois == _AMBIGUOUS)
        if amb.size:
            raise TripletFileError(
                f"{where(int(amb[0]))}: (verb, object) names match several classes of "
                f"{r.name!r}; give 'hoi_id' (or 'verb_id' and 'object_id') instead"
            )
    if hi:
        by_id = _lookup(hi, r.hoi_id)
        bad = np.flatnonzero(by_id == _UNKNOWN)
        if bad.size:
            j = int(bad[0])
            raise TripletFileError(f"{where(j)}: unknown hoi_id {hi[j]!r}")
        given = by_id >= 0
        safe = np.maximum(by_id, 0)
        hv, ho, hr = r.hoi_verb[safe], r.hoi_object[safe], r.hoi_role[safe]
        # what the detection states by name/id must be the hoi_id's class (any-object
        # classes accept every object; an absent object or role states nothing)
        clash = given & (
            (named & (verbs != hv))
            | ((objects >= 0) & (ho >= 0) & (objects != ho))
            | (role_given & (roles != hr))
        )
        if clash.any():
            j = int(np.flatnonzero(clash)[0])
            raise TripletFileError(
                f"{where(j)}: hoi_id {hi[j]!r} disagrees with verb {dets[j].get('verb')!r} / "
                f"object {dets[j].get('object')!r}"
            )
        hois = np.where(given, by_id, hois)
        verbs = np.where(given, hv, verbs)
        objects = np.where(given & (ho >= 0), ho, objects)
        roles = np.where(given, hr, roles)
    missing = np.flatnonzero(verbs < 0)
    if missing.size:
        j = int(missing[0])
        raise TripletFileError(f"{where(j)}: missing key 'verb' (or 'verb_id' / 'hoi_id')")
    return verbs, objects, roles, hois


_ID_KEYS = frozenset(("verb_id", "object_id", "hoi_id", "role"))


def resolve_triplets(
    dets: list[dict], label_space: Any, path: Any = "<predictions>", image: Any = None
) -> TripletArrays:
    """Validate one image's detections and resolve them into arrays of label-space positions.

    Classes are read from names (``verb``, ``object``), official ids (``verb_id``,
    ``object_id``) or ``hoi_id``; given together they must agree. ``role`` is read for V-COCO.
    A (verb, object, role) combination that is no class of the label space gets ``hois = -1``
    (evaluators ignore and count it). Names-only detections take one dict lookup each; the
    rest go through vectorised name/id tables. The checks of :func:`validate_detections` run
    on the arrays built here, so a caller may skip them in :func:`read_triplets`.

    Raises:
        TripletFileError: malformed detection; unknown or ambiguous name; unknown id;
            disagreeing name and id. The message names ``path``, ``image`` and the index.
    """
    r = _resolver(label_space)
    n = len(dets)
    if n == 0:
        z = np.zeros(0, np.int64)
        e = np.zeros((0, 4))
        return TripletArrays(human_boxes=e, object_boxes=e.copy(), scores=np.zeros(0),
                             verbs=z, objects=z.copy(), roles=z.copy(), hois=z.copy())  # fmt: skip
    keys, hb, ob, sc = _detection_arrays(dets, path, image)
    hois = None
    if keys.isdisjoint(_ID_KEYS):  # fast path: names only, one dict lookup per detection
        pm = r.pair_map
        try:
            hl = [pm.get((d["verb"], d.get("object")), -9) for d in dets]
        except (KeyError, TypeError):  # no verb / unhashable name: the general path reports it
            hl = None
        if hl is not None:
            hois = np.array(hl, dtype=np.int64)
            miss = np.flatnonzero(hois == -9)
            safe = np.maximum(hois, 0)
            verbs, objects = r.hoi_verb[safe], r.hoi_object[safe]
            roles = np.zeros(n, np.int64)
            if miss.size:  # not a class, or a name the exact map does not know
                sub = [dets[j] for j in miss]
                v, o, ro, h = _resolve_classes(
                    sub, r, lambda k: _where(path, image, det=int(miss[k]))
                )
                verbs[miss], objects[miss], roles[miss], hois[miss] = v, o, ro, h
    if hois is None:
        verbs, objects, roles, hois = _resolve_classes(
            dets, r, lambda j: _where(path, image, det=j)
        )
    return TripletArrays(human_boxes=hb, object_boxes=ob, scores=sc, verbs=verbs,
                         objects=objects, roles=roles, hois=hois)  # fmt: skip
