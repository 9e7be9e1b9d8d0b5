"""Read and validate a user's label-space file (YAML or JSON, format in docs/internals.md).

Every problem raises one `LabelError` naming the file and the field, e.g.
``my_space.yaml: hois[2].verb: unknown verb 'rid' (known: ride, hold, ...)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from linkhoi.io import read_limited, too_deep
from linkhoi.labels.labelspace import ROLES, HOIClass, LabelError, LabelSpace
from linkhoi.yaml_input import safe_load as safe_yaml

_KEYS = {"name", "human", "verbs", "objects", "hois", "subsets", "verb_ing", "format", "version"}
_KEYS |= {"description", "extra"}


class _Ctx:
    """Carries the file name so every message starts with it."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, fld: str, msg: str) -> LabelError:
        return LabelError(f"{self.source}: {fld}: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _named_list(ctx: _Ctx, d: Mapping[str, Any], key: str) -> tuple[list[str], list[int]]:
    """Parse `verbs`/`objects`: a list of names or of {id, name}; ids default to 1.. ."""
    items = d.get(key)
    if not isinstance(items, list) or not items:
        raise ctx.error(key, "must be a non-empty list of names or of {id, name} entries")
    names: list[str] = []
    ids: list[int] = []
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for i, item in enumerate(items):
        fld = f"{key}[{i}]"
        if isinstance(item, str):
            name, oid = item, i + 1
        elif isinstance(item, Mapping):
            name, oid = item.get("name"), item.get("id", i + 1)
            unknown = set(item) - {"name", "id"}
            if unknown:
                raise ctx.error(fld, f"unknown keys {sorted(unknown)} (allowed: id, name)")
        else:
            raise ctx.error(fld, f"must be a name or an {{id, name}} mapping, got {item!r}")
        if not isinstance(name, str) or not name.strip():
            raise ctx.error(f"{fld}.name", f"must be a non-empty string, got {name!r}")
        if not _is_int(oid):
            raise ctx.error(f"{fld}.id", f"must be an integer, got {oid!r}")
        if name in seen_names:
            raise ctx.error(fld, f"duplicate name {name!r} (also {key}[{seen_names[name]}])")
        if oid in seen_ids:
            raise ctx.error(f"{fld}.id", f"duplicate id {oid} (also {key}[{seen_ids[oid]}])")
        seen_names[name], seen_ids[oid] = i, i
        names.append(name)
        ids.append(oid)
    return names, ids


def _pick(ctx: _Ctx, fld: str, value: Any, names: list[str], kind: str) -> int:
    if not isinstance(value, str):
        raise ctx.error(fld, f"must be a {kind} name, got {value!r}")
    try:
        return names.index(value)
    except ValueError:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ctx.error(fld, f"unknown {kind} {value!r} (known: {shown})") from None


def label_space_from_user_dict(d: Any, source: str = "<dict>") -> LabelSpace:
    """Validate a parsed user label-space mapping and build the `LabelSpace`."""
    ctx = _Ctx(source)
    if not isinstance(d, Mapping):
        raise ctx.error("<top>", f"must be a mapping, got {type(d).__name__}")
    unknown = set(d) - _KEYS
    if unknown:
        raise ctx.error("<top>", f"unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    name = d.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ctx.error("name", f"must be a non-empty string, got {name!r}")
    verbs, verb_ids = _named_list(ctx, d, "verbs")
    objects, object_ids = _named_list(ctx, d, "objects")
    human = d.get("human", "person")
    if human not in objects:
        raise ctx.error("human", f"human category {human!r} is not in objects")

    raw_hois = d.get("hois")
    if not isinstance(raw_hois, list) or not raw_hois:
        raise ctx.error("hois", "must be a non-empty list of {verb, object} entries")
    hois: list[HOIClass] = []
    seen_ids: dict[int, int] = {}
    seen_pairs: dict[tuple, int] = {}
    for i, h in enumerate(raw_hois):
        fld = f"hois[{i}]"
        if not isinstance(h, Mapping):
            raise ctx.error(fld, f"must be a mapping with verb and object, got {h!r}")
        extra_keys = set(h) - {"id", "verb", "object", "role"}
        if extra_keys:
            raise ctx.error(
                fld, f"unknown keys {sorted(extra_keys)} (allowed: id, verb, object, role)"
            )
        if "verb" not in h:
            raise ctx.error(f"{fld}.verb", "missing")
        if "object" not in h:
            raise ctx.error(f"{fld}.object", "missing (use null for a class accepting any object)")
        v = _pick(ctx, f"{fld}.verb", h["verb"], verbs, "verb")
        o = (
            None
            if h["object"] is None
            else _pick(ctx, f"{fld}.object", h["object"], objects, "object")
        )
        role = h.get("role")
        if role is not None and role not in ROLES:
            raise ctx.error(f"{fld}.role", f"must be one of {list(ROLES)} or null, got {role!r}")
        hid = h.get("id", i + 1)
        if not _is_int(hid):
            raise ctx.error(f"{fld}.id", f"must be an integer, got {hid!r}")
        if hid in seen_ids:
            raise ctx.error(f"{fld}.id", f"duplicate HOI id {hid} (also hois[{seen_ids[hid]}])")
        key = (v, o, role)
        if key in seen_pairs:
            raise ctx.error(
                fld, f"duplicate class {h['verb']!r}/{h['object']!r} (also hois[{seen_pairs[key]}])"
            )
        seen_ids[hid], seen_pairs[key] = i, i
        hois.append(
            HOIClass(
                id=hid,
                verb=verbs[v],
                object=None if o is None else objects[o],
                verb_id=verb_ids[v],
                object_id=None if o is None else object_ids[o],
                role=role,
            )
        )

    subsets_raw = d.get("subsets") or {}
    if not isinstance(subsets_raw, Mapping):
        raise ctx.error("subsets", "must be a mapping of subset name to a list of HOI ids")
    subsets: dict[str, frozenset[int]] = {}
    for sname, members in subsets_raw.items():
        if not isinstance(members, list):
            raise ctx.error(f"subsets.{sname}", "must be a list of HOI ids")
        pos: set[int] = set()
        for j, hid in enumerate(members):
            if not _is_int(hid) or hid not in seen_ids:
                raise ctx.error(f"subsets.{sname}[{j}]", f"unknown HOI id {hid!r}")
            pos.add(seen_ids[hid])
        subsets[str(sname)] = frozenset(pos)

    verb_ing = d.get("verb_ing") or {}
    if not isinstance(verb_ing, Mapping):
        raise ctx.error("verb_ing", "must be a mapping of verb name to its -ing form")
    for verb, ing in verb_ing.items():
        if verb not in verbs:
            raise ctx.error(f"verb_ing.{verb}", f"unknown verb {verb!r}")
        if not isinstance(ing, str) or not ing.strip():
            raise ctx.error(f"verb_ing.{verb}", f"must be a non-empty string, got {ing!r}")
    extra = d.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise ctx.error("extra", "must be a mapping")
    try:
        return LabelSpace(
            name=name,
            human=human,
            verbs=tuple(verbs),
            verb_ids=tuple(verb_ids),
            objects=tuple(objects),
            object_ids=tuple(object_ids),
            hois=tuple(hois),
            subsets=subsets,
            extra=extra,
            verb_ing=dict(verb_ing),
        )
    except LabelError as err:  # e.g. a human name that is only loosely unique
        raise ctx.error("<top>", str(err)) from None


def read_label_space_file(path: str | Path) -> LabelSpace:
    """Load a user's `.yaml`/`.yml`/`.json` label-space file."""
    path = Path(path)
    try:
        text = read_limited(path, LabelError).decode("utf-8")
    except FileNotFoundError:
        raise LabelError(f"{path}: label-space file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LabelError(f"{path}: cannot read label-space file: {err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else safe_yaml(text)
    except json.JSONDecodeError as err:
        raise LabelError(
            f"{path}: <file>: invalid JSON (truncated?) at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except yaml.YAMLError as err:
        raise LabelError(f"{path}: <file>: invalid YAML: {err}") from None
    except RecursionError:
        raise LabelError(f"{path}: <file>: {too_deep()}") from None
    return label_space_from_user_dict(data, str(path))
