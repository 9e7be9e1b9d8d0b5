"""The `LabelSpace` type: verbs, objects and HOI classes with official ids and O(1) lookups.

Positions (0-based indices into the tuples) are what tensors use; official ids appear
only at the edges (files). See docs/internals.md.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from linkhoi.io import InputError

ROLES = ("obj", "instr")
DICT_FORMAT = "linkhoi-label-space"


class LabelError(InputError):
    """A name, id or label-space file that does not fit the label space."""


class AmbiguousNameError(LabelError):
    """A name shared by several categories (SWiG-HOI); the caller must use the official id."""


@dataclass(frozen=True)
class HOIClass:
    """One HOI class. `object` is None for a class accepting any object (V-COCO)."""

    id: int
    verb: str
    object: str | None
    verb_id: int
    object_id: int | None
    role: str | None = None

    @property
    def name(self) -> str:
        """Readable class name: "ride bicycle" (HICO-DET, SWiG) or "hit_instr" (V-COCO)."""
        if self.object is None:
            return f"{self.verb}_{self.role}" if self.role else self.verb
        return f"{self.verb} {self.object}"


def normalise_name(name: str) -> str:
    """Key for forgiving name lookups: "Dining_Table" and "dining table" are the same."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _freeze(value: Any) -> Any:
    """Deep-convert plain data to immutable containers (lists -> tuples, dicts -> proxies)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of `_freeze`: plain dicts and lists (json / torch weights_only friendly)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _name_index(names: Iterable[str]) -> tuple[dict[str, int], dict[str, list[int]]]:
    exact: dict[str, int] = {}
    loose: dict[str, list[int]] = {}
    dup: set[str] = set()
    for pos, name in enumerate(names):
        if name in exact:
            dup.add(name)
        exact.setdefault(name, pos)
        loose.setdefault(normalise_name(name), []).append(pos)
    for name in dup:  # ambiguous exact names must never silently resolve to the first one
        del exact[name]
    return exact, loose


@dataclass(frozen=True, eq=False)
class LabelSpace:
    """Ordered verbs, objects and HOI classes of one dataset, with official ids.

    `subsets` maps a subset name to a frozenset of HOI *positions*. `extra` holds plain
    data specific to a dataset (HICO-DET `hico_index`, V-COCO roles, SWiG frequencies).
    `verb_ing` optionally maps a verb name to its -ing form for prompts.
    """

    name: str
    human: str
    verbs: tuple[str, ...]
    verb_ids: tuple[int, ...]
    objects: tuple[str, ...]
    object_ids: tuple[int, ...]
    hois: tuple[HOIClass, ...]
    subsets: Mapping[str, frozenset[int]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    verb_ing: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "verbs", tuple(self.verbs))
        s(self, "verb_ids", tuple(int(i) for i in self.verb_ids))
        s(self, "objects", tuple(self.objects))
        s(self, "object_ids", tuple(int(i) for i in self.object_ids))
        s(self, "hois", tuple(self.hois))
        s(self, "subsets", MappingProxyType({k: frozenset(v) for k, v in self.subsets.items()}))
        s(self, "extra", _freeze(dict(self.extra)))
        s(self, "verb_ing", MappingProxyType(dict(self.verb_ing)))
        self._check_and_index()

    # ----------------------------------------------------------------- construction
    def _check_and_index(self) -> None:
        s = object.__setattr__
        if len(self.verbs) != len(self.verb_ids) or len(self.objects) != len(self.object_ids):
            raise LabelError(f"label space {self.name!r}: names and ids differ in length")
        for what, ids in (("verb", self.verb_ids), ("object", self.object_ids)):
            if len(set(ids)) != len(ids):
                raise LabelError(f"label space {self.name!r}: duplicate {what} ids")
        s(self, "_verb_exact", _name_index(self.verbs)[0])
        s(self, "_verb_loose", _name_index(self.verbs)[1])
        exact, loose = _name_index(self.objects)
        s(self, "_object_exact", exact)
        s(self, "_object_loose", loose)
        s(self, "_verb_by_id", {i: p for p, i in enumerate(self.verb_ids)})
        s(self, "_object_by_id", {i: p for p, i in enumerate(self.object_ids)})
        hoi_by_id: dict[int, int] = {}
        by_vor: dict[tuple[int, int | None, str | None], int] = {}
        any_by_verb: dict[int, list[int]] = {}
        verb_pos = np.empty(len(self.hois), dtype=np.int64)
        obj_pos = np.empty(len(self.hois), dtype=np.int64)
        for p, h in enumerate(self.hois):
            if h.id in hoi_by_id:
                raise LabelError(f"label space {self.name!r}: duplicate HOI id {h.id}")
            hoi_by_id[h.id] = p
            v = self._verb_by_id.get(h.verb_id)
            if v is None or self.verbs[v] != h.verb:
                raise LabelError(f"label space {self.name!r}: HOI {h.id} has unknown verb")
            o = None
            if h.object is not None:
                o = self._object_by_id.get(h.object_id)  # type: ignore[arg-type]
                if o is None or self.objects[o] != h.object:
                    raise LabelError(f"label space {self.name!r}: HOI {h.id} has unknown object")
            key = (v, o, h.role)
            if key in by_vor:
                raise LabelError(f"label space {self.name!r}: HOI {h.id} duplicates another")
            by_vor[key] = p
            if o is None:
                any_by_verb.setdefault(v, []).append(p)
            verb_pos[p], obj_pos[p] = v, -1 if o is None else o
        verb_pos.flags.writeable = obj_pos.flags.writeable = False
        s(self, "_hoi_by_id", hoi_by_id)
        s(self, "_by_vor", by_vor)
        s(self, "_any_by_verb", any_by_verb)
        s(self, "_hoi_verb_pos", verb_pos)
        s(self, "_hoi_obj_pos", obj_pos)
        s(self, "_cache", {})
        for sub, members in self.subsets.items():
            bad = [m for m in members if not 0 <= m < len(self.hois)]
            if bad:
                raise LabelError(f"label space {self.name!r}: subset {sub!r} has bad positions")
        if self.human not in self._object_exact:  # type: ignore[attr-defined]
            raise LabelError(
                f"label space {self.name!r}: human category {self.human!r} is not an object"
                " (or its name is ambiguous)"
            )
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        s(self, "_digest", hashlib.sha256(blob).hexdigest())

    # ----------------------------------------------------------------- identity
    @property
    def digest(self) -> str:
        """sha256 of the canonical content; equal label spaces have equal digests."""
        return self._digest  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, self.digest))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSpace):
            return NotImplemented
        return self.name == other.name and self.digest == other.digest

    def __reduce__(self) -> tuple:
        # Mapping proxies do not pickle; rebuild from plain data (DataLoader workers, DDP).
        return (LabelSpace.from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        return (
            f"LabelSpace({self.name!r}, verbs={len(self.verbs)}, objects={len(self.objects)},"
            f" hois={len(self.hois)}, subsets={sorted(self.subsets)})"
        )

    @property
    def num_verbs(self) -> int:
        return len(self.verbs)

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def num_hois(self) -> int:
        return len(self.hois)

    @property
    def human_position(self) -> int:
        """Object position of the human category."""
        return self.object_position(self.human)

    # ----------------------------------------------------------------- lookups
    def _lookup(self, kind: str, name: str, exact: dict, loose: dict) -> int:
        pos = exact.get(name) if isinstance(name, str) else None  # a list is unhashable
        if pos is not None:
            return pos
        if not isinstance(name, str):
            raise LabelError(f"{kind} name must be a string, got {name!r}")
        hits = loose.get(normalise_name(name), [])
        if len(hits) == 1:
            return hits[0]
        ids = self.verb_ids if kind == "verb" else self.object_ids
        if len(hits) > 1:
            raise AmbiguousNameError(
                f"{kind} name {name!r} is ambiguous in label space {self.name!r}: it names the"
                f" {kind}s with official ids {[ids[p] for p in hits]}; use the id instead"
            )
        names = self.verbs if kind == "verb" else self.objects
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise LabelError(f"unknown {kind} {name!r} in label space {self.name!r}{hint}")

    def verb_position(self, name: str) -> int:
        """Position of a verb by name (exact, then ignoring case, spaces vs underscores)."""
        return self._lookup("verb", name, self._verb_exact, self._verb_loose)  # type: ignore[attr-defined]

    def object_position(self, name: str) -> int:
        """Position of an object by name; `AmbiguousNameError` for SWiG's duplicated names."""
        return self._lookup("object", name, self._object_exact, self._object_loose)  # type: ignore[attr-defined]

    def verb_position_by_id(self, verb_id: int) -> int:
        try:
            return self._verb_by_id[verb_id]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise LabelError(f"unknown verb id {verb_id!r} in label space {self.name!r}") from None

    def object_position_by_id(self, object_id: int) -> int:
        try:
            return self._object_by_id[object_id]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise LabelError(
                f"unknown object id {object_id!r} in label space {self.name!r}"
            ) from None

    def hoi_position_by_id(self, hoi_id: int) -> int:
        try:
            return self._hoi_by_id[hoi_id]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise LabelError(f"unknown HOI id {hoi_id!r} in label space {self.name!r}") from None

    def hoi_position(
        self, verb_pos: int, object_pos: int | None, role: str | None = None
    ) -> int | None:
        """HOI position of (verb, object[, role]) positions, or None if not a class.

        A class with object None (V-COCO) matches any object. With `role=None` and a verb
        that has several any-object classes (V-COCO hit: instr and obj), raises LabelError.
        """
        by_vor = self._by_vor  # type: ignore[attr-defined]
        pos = by_vor.get((verb_pos, object_pos, role))
        if pos is not None:
            return pos
        pos = by_vor.get((verb_pos, None, role))
        if pos is not None or role is not None:
            return pos
        cands = self._any_by_verb.get(verb_pos, [])  # type: ignore[attr-defined]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            raise LabelError(
                f"verb {self.verbs[verb_pos]!r} has roles"
                f" {[self.hois[c].role for c in cands]} in label space {self.name!r}: give a role"
            )
        return None

    def hoi_positions_for_object(self, object_pos: int) -> np.ndarray:
        """(K,) int64 positions of the HOI classes valid for this object (any-object ones too)."""
        key = ("for_object", object_pos)
        if key not in self._cache:  # type: ignore[attr-defined]
            obj = self._hoi_obj_pos  # type: ignore[attr-defined]
            out = np.flatnonzero((obj == object_pos) | (obj == -1)).astype(np.int64)
            out.flags.writeable = False
            self._cache[key] = out  # type: ignore[attr-defined]
        return self._cache[key]  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- vectorised helpers
    def hoi_verb_positions(self) -> np.ndarray:
        """(H,) int64 verb position of each HOI class (read-only)."""
        return self._hoi_verb_pos  # type: ignore[attr-defined]

    def hoi_object_positions(self) -> np.ndarray:
        """(H,) int64 object position of each HOI class, -1 for any-object classes."""
        return self._hoi_obj_pos  # type: ignore[attr-defined]

    def hoi_ids(self) -> np.ndarray:
        """(H,) int64 official HOI id of each position."""
        return np.array([h.id for h in self.hois], dtype=np.int64)

    def hoi_table(self, role: str | None = None) -> np.ndarray:
        """(num_verbs, num_objects) int64 HOI positions, -1 where (verb, object) is no class.

        Any-object classes (V-COCO) fill their verb's whole row for their `role`; with
        `role=None` only verbs having a single any-object class fill their row.
        """
        key = ("table", role)
        if key not in self._cache:  # type: ignore[attr-defined]
            table = np.full((len(self.verbs), len(self.objects)), -1, dtype=np.int64)
            vp, op = self._hoi_verb_pos, self._hoi_obj_pos  # type: ignore[attr-defined]
            for p, h in enumerate(self.hois):
                if h.object is None:
                    n_any = len(self._any_by_verb[vp[p]])  # type: ignore[attr-defined]
                    if h.role == role or (role is None and n_any == 1):
                        table[vp[p], :] = p
                elif h.role == role:
                    table[vp[p], op[p]] = p
            table.flags.writeable = False
            self._cache[key] = table  # type: ignore[attr-defined]
        return self._cache[key]  # type: ignore[attr-defined]

    def subset_mask(self, subset: str) -> np.ndarray:
        """(H,) bool mask of a named subset."""
        if subset not in self.subsets:
            raise LabelError(
                f"label space {self.name!r} has no subset {subset!r}; it has {sorted(self.subsets)}"
            )
        mask = np.zeros(len(self.hois), dtype=bool)
        mask[list(self.subsets[subset])] = True
        return mask

    # ----------------------------------------------------------------- plain data
    def to_dict(self) -> dict[str, Any]:
        """Plain data (json and torch `weights_only` safe); `from_dict` inverts it exactly.

        HOIs are stored compactly as [id, verb_position, object_position | None, role].
        """
        vp, op = self._hoi_verb_pos, self._hoi_obj_pos  # type: ignore[attr-defined]
        return {
            "format": DICT_FORMAT,
            "version": 1,
            "name": self.name,
            "human": self.human,
            "verbs": list(self.verbs),
            "verb_ids": list(self.verb_ids),
            "objects": list(self.objects),
            "object_ids": list(self.object_ids),
            "hois": [
                [h.id, int(vp[p]), None if op[p] < 0 else int(op[p]), h.role]
                for p, h in enumerate(self.hois)
            ],
            "subsets": {k: sorted(v) for k, v in sorted(self.subsets.items())},
            "extra": _thaw(self.extra),
            "verb_ing": dict(sorted(self.verb_ing.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelSpace:
        """Rebuild a label space written by `to_dict` (e.g. from a checkpoint)."""
        if not isinstance(d, Mapping) or d.get("format") != DICT_FORMAT:
            raise LabelError(f"not a label-space dict (expected format {DICT_FORMAT!r})")
        if d.get("version") != 1:
            raise LabelError(f"unsupported label-space dict version {d.get('version')!r}")
        try:
            verbs, objects = list(d["verbs"]), list(d["objects"])
            verb_ids, object_ids = list(d["verb_ids"]), list(d["object_ids"])
            hois = tuple(
                HOIClass(
                    id=int(hid),
                    verb=verbs[v],
                    object=None if o is None else objects[o],
                    verb_id=int(verb_ids[v]),
                    object_id=None if o is None else int(object_ids[o]),
                    role=role,
                )
                for hid, v, o, role in d["hois"]
            )
            return cls(
                name=str(d["name"]),
                human=str(d["human"]),
                verbs=tuple(verbs),
                verb_ids=tuple(verb_ids),
                objects=tuple(objects),
                object_ids=tuple(object_ids),
                hois=hois,
                subsets={k: frozenset(v) for k, v in d.get("subsets", {}).items()},
                extra=d.get("extra", {}),
                verb_ing=d.get("verb_ing", {}),
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            if isinstance(err, LabelError):
                raise
            raise LabelError(f"malformed label-space dict: {err!r}") from None
