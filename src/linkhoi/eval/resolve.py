"""Resolve triplet detections against a label space: class names / ids -> positions, as arrays.

:func:`resolve_triplets` is what every evaluator's ``convert`` calls on one image's detections
(the triplet format: docs/evaluation.md, "The triplet file"). It runs the checks of
:func:`linkhoi.eval.triplets.validate_detections` on the arrays it builds and returns a
:class:`TripletArrays` of label-space positions.

Speed: each image's detection list is read by one comprehension (boxes, score and the class
fields of every detection), after a C-level scan of its keys. The class fields form a key:
(verb, object) when no detection of the image has ``verb_id``, ``object_id``, ``hoi_id`` or
``role``, else all six. Each distinct key is resolved once per label space by the general
name / id path (:func:`_resolve_classes`) and remembered, so later detections of the class
cost one dict lookup. Resolution is per detection, so when a new key fails the whole image is
resolved again by the general path, which raises the error of the first bad detection exactly
as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from linkhoi.eval.triplets import TripletFileError, _box_arrays, _raise_first_problem, _where

ROLES: tuple[str | None, ...] = (None, "obj", "instr")
CLASS_FIELDS = ("verb", "object", "verb_id", "object_id", "hoi_id", "role")
_ID_KEYS = frozenset(CLASS_FIELDS[2:])
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

        # class fields (verb, object, verb_id, object_id, hoi_id, role) of a detection ->
        # column of `resolved` (rows: verb, object, role, HOI positions); filled as met
        self.memo: dict[tuple, int] = {}
        self.resolved = np.zeros((4, 64), dtype=np.int64)
        self.named: dict[tuple, int] = {}  # (verb, object, role) of named structs -> column

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

    def fits(self, kind: str, name: Any, position: int) -> bool:
        """Is ``name`` one of the names of the verb / object at ``position`` (forgiving)?"""
        from linkhoi.labels import normalise_name

        names = self.ls.verbs if kind == "verb" else self.ls.objects
        if not isinstance(name, str) or not 0 <= position < len(names):
            return False
        return name == names[position] or normalise_name(name) == normalise_name(names[position])

    def classes(
        self, codes: Sequence[int], dets: list[dict], where: Any, names_only: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(verbs, objects, roles, hois) of the detections, each (D,) int64.

        ``codes[j]`` is ``memo.get(_class_fields(dets[j], names_only), -1)``: -1 for class
        fields not met before, which are resolved here by the general path and remembered.
        """
        if -1 in codes:  # class fields not met before
            col = np.array(codes, dtype=np.int64)
            miss = np.flatnonzero(col < 0)
            first: dict[tuple, int] = {}  # each new field tuple -> its first detection
            for j in miss.tolist():
                first.setdefault(_class_fields(dets[j], names_only), j)
            if len(self.memo) + len(first) > _MEMO_LIMIT:  # unusual files: do not remember
                return _resolve_classes(dets, self, where)
            rep = list(first.values())
            try:
                new = np.stack(
                    _resolve_classes([dets[j] for j in rep], self, lambda k: where(rep[k]))
                )
            except TripletFileError:
                # resolution is per detection, so the whole image fails too, at its first
                # bad detection in the order of the general path's checks
                _resolve_classes(dets, self, where)
                raise
            base = len(self.memo)
            if base + len(rep) > self.resolved.shape[1]:
                grown = np.zeros((4, 2 * (base + len(rep))), dtype=np.int64)
                grown[:, :base] = self.resolved[:, :base]
                self.resolved = grown
            self.resolved[:, base : base + len(rep)] = new
            self.memo.update(zip(first, range(base, base + len(rep)), strict=True))
            col[miss] = [self.memo[_class_fields(dets[j], names_only)] for j in miss.tolist()]
            codes = col
        verbs, objects, roles, hois = self.resolved[:, codes]
        return verbs, objects, roles, hois


def _class_fields(d: dict, names_only: bool) -> tuple:
    """The key of ``memo``: the six class fields of a detection (:data:`CLASS_FIELDS`), or
    (verb, object) in an image whose detections have none of the other four."""
    if names_only:
        return d.get("verb"), d.get("object")
    return (d.get("verb"), d.get("object"), d.get("verb_id"), d.get("object_id"),
            d.get("hoi_id"), d.get("role"))  # fmt: skip


def _name_map(names: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        out[n] = _AMBIGUOUS if n in out else i
    return out


_RESOLVERS: dict[int, tuple[Any, _Resolver]] = {}
_MEMO_LIMIT = 1_000_000  # distinct class-field tuples remembered per label space


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
    r: _Resolver,
) -> np.ndarray:
    """Merge name and id lookups (D,); an id wins over a name that is ambiguous.

    Both given and unambiguous: they must agree. An ambiguous name beside an id must be one
    of that id's names (the id decides); an ambiguous name without an id stays
    ``_AMBIGUOUS`` for the caller (a ``hoi_id`` may still decide it). Unknown names and ids
    raise.
    """
    for arr, vals, kind in ((by_name, names, "name"), (by_id, ids, "id")):
        if arr is None:
            continue
        bad = np.flatnonzero((arr == _UNKNOWN) if kind == "name" else (arr <= _UNKNOWN))
        if bad.size:
            j = int(bad[0])
            raise TripletFileError(f"{where(j)}: unknown {what} {kind} {vals[j]!r}")
    if by_name is None:
        return by_id  # type: ignore[return-value]
    if by_id is None:
        return by_name
    amb = (by_name == _AMBIGUOUS) & (by_id >= 0)
    for j in np.flatnonzero(amb).tolist():
        if not r.fits(what, names[j], int(by_id[j])):
            raise TripletFileError(
                f"{where(j)}: {what} {names[j]!r} is not a name of {what}_id {ids[j]!r}"
            )
    by_name = np.where(amb, by_id, by_name)
    clash = np.flatnonzero((by_name != by_id) & (by_name >= 0) & (by_id != -1))
    if clash.size:
        j = int(clash[0])
        raise TripletFileError(f"{where(j)}: {what} {names[j]!r} and {what}_id {ids[j]!r} disagree")
    return np.where(by_name == -1, by_id, by_name)


def _raise_ambiguous(values: np.ndarray, names: list | None, what: str, where: Any) -> None:
    """Raise for the first name no id decided (``values == _AMBIGUOUS``)."""
    amb = np.flatnonzero(values == _AMBIGUOUS)
    if amb.size:
        j = int(amb[0])
        raise TripletFileError(
            f"{where(j)}: {what} name {(names or [None] * (j + 1))[j]!r} is ambiguous in this "
            f"label space; give '{what}_id' (or 'hoi_id') as well"
        )


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
        verbs = _combine(vname, vid, vn or [], vi or [], "verb", where, r)
    objects = np.full(n, -1, np.int64)
    if on or oi:
        oname = _lookup_names(on, r.object_name, r, "object") if on else None
        oid = _lookup(oi, r.object_id) if oi else None
        objects = _combine(oname, oid, on or [], oi or [], "object", where, r)
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
    if not hi:  # no hoi_id can decide an ambiguous name
        _raise_ambiguous(verbs, vn, "verb", where)
        _raise_ambiguous(objects, on, "object", where)
    named = (verbs >= 0) & (objects != _AMBIGUOUS)
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
            ((verbs >= 0) & (verbs != hv))
            | ((objects >= 0) & (ho >= 0) & (objects != ho))
            | (role_given & (roles != hr))
        )
        # an ambiguous name beside a hoi_id: the id decides; the name must be one of its names
        for kind, vals, names, pos in (("verb", verbs, vn, hv), ("object", objects, on, ho)):
            for j in np.flatnonzero(given & (vals == _AMBIGUOUS)).tolist():
                if not r.fits(kind, names[j], int(pos[j])):  # type: ignore[index]
                    raise TripletFileError(
                        f"{where(j)}: {kind} {names[j]!r} is not a name of hoi_id {hi[j]!r}"  # type: ignore[index]
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
        _raise_ambiguous(verbs, vn, "verb", where)
        _raise_ambiguous(objects, on, "object", where)
    missing = np.flatnonzero(verbs < 0)
    if missing.size:
        j = int(missing[0])
        raise TripletFileError(f"{where(j)}: missing key 'verb' (or 'verb_id' / 'hoi_id')")
    return verbs, objects, roles, hois


def resolve_triplets(
    dets: list[dict], label_space: Any, path: Any = "<predictions>", image: Any = None
) -> TripletArrays:
    """Validate one image's detections and resolve them into arrays of label-space positions.

    Classes are read from names (``verb``, ``object``), official ids (``verb_id``,
    ``object_id``) or ``hoi_id``; given together they must agree. ``role`` is read for V-COCO.
    A (verb, object, role) combination that is no class of the label space gets ``hois = -1``
    (evaluators ignore and count it). The list is read by one comprehension; a class already
    met costs one dict lookup. The checks of :func:`linkhoi.eval.triplets.validate_detections` run on the
    arrays built here, so a caller may skip them in ``read_triplets``.

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
    if not isinstance(dets[0], dict) and hasattr(dets[0], "__struct_fields__"):
        from linkhoi.eval.fastread import resolve_structs

        return resolve_structs(dets, r, path, image)  # msgspec structs
    try:  # C-level scan of the keys; fails on a detection that is no object
        names_only = set().union(*dets).isdisjoint(_ID_KEYS)
    except (KeyError, TypeError, ValueError):
        _raise_first_problem(dets, path, image)
    get = r.memo.get
    try:  # the one pass over the detections; class fields met before cost one dict lookup
        if names_only:  # a shorter key: (verb, object) determine the class
            rows = [
                (d["human_box"], d["object_box"], d["score"],
                 get((d.get("verb"), d.get("object")), -1))
                for d in dets
            ]  # fmt: skip
        else:
            rows = [
                (d["human_box"], d["object_box"], d["score"],
                 get((d.get("verb"), d.get("object"), d.get("verb_id"), d.get("object_id"),
                      d.get("hoi_id"), d.get("role")), -1))
                for d in dets
            ]  # fmt: skip
    except (KeyError, TypeError, AttributeError):
        try:  # a missing or bad field is reported first, as before; else a class field is
            # unhashable (a list...) and -1 sends it to the general path, which reports it
            rows = [(d["human_box"], d["object_box"], d["score"], -1) for d in dets]
        except (KeyError, TypeError, AttributeError):
            _raise_first_problem(dets, path, image)
    human, objects, scores, codes = zip(*rows, strict=True)
    arrays = _box_arrays(human, objects, scores)
    if arrays is None:
        _raise_first_problem(dets, path, image)
    hb, ob, sc = arrays
    where = lambda j: _where(path, image, det=j)  # noqa: E731
    try:
        verbs, objs, roles, hois = r.classes(codes, dets, where, names_only)
    except TypeError:  # unhashable class field: no memo; the general path resolves or reports
        verbs, objs, roles, hois = _resolve_classes(dets, r, where)
    return TripletArrays(human_boxes=hb, object_boxes=ob, scores=sc, verbs=verbs,
                         objects=objs, roles=roles, hois=hois)  # fmt: skip
