"""Builders of the packaged label spaces (hico_det, vcoco, swig_hoi) from labels/data/.

The files are copies of the official dataset files (see labels/data/PROVENANCE.md). Each builder turns
official 1-based / 0-based ids into positions exactly once.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from typing import Any

from linkhoi.labels.labelspace import HOIClass, LabelError, LabelSpace


def data_dir() -> Any:
    """The packaged data folder (a Traversable; a real path in normal installs)."""
    return resources.files("linkhoi.labels") / "data"


def _rows(relpath: str) -> list[dict[str, str]]:
    path = data_dir().joinpath(relpath)
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise LabelError(f"packaged label-space file missing: {path}") from None


def _json(relpath: str) -> Any:
    with data_dir().joinpath(relpath).open("r", encoding="utf-8") as fh:
        return json.load(fh)


def _names_and_ids(rows: list[dict[str, str]], id_column: str) -> tuple[tuple, tuple]:
    """(names, int ids) of csv rows with a ``name`` column and an id column."""
    return tuple(r["name"] for r in rows), tuple(int(r[id_column]) for r in rows)


def _hoi_class(row: dict[str, str], columns: tuple[str, str, str, str, str]) -> HOIClass:
    """An HOIClass from a csv row; ``columns`` name its id, verb, object, verb id, object id."""
    hoi_id, verb, obj, verb_id, object_id = columns
    return HOIClass(
        id=int(row[hoi_id]),
        verb=row[verb],
        object=row[obj],
        verb_id=int(row[verb_id]),
        object_id=int(row[object_id]),
    )


def build_hico_det() -> LabelSpace:
    """HICO-DET: 117 verbs (ids 1..117), 80 objects (id = COCO category id, in HICO's
    alphabetical `hico_index` order), 600 HOIs (ids 1..600) with rare / zero-shot subsets."""
    verbs_rows = _rows("hico_det/verbs.csv")
    obj_rows = _rows("hico_det/objects.csv")
    verbs, verb_ids = _names_and_ids(verbs_rows, "index")
    objects, object_ids = _names_and_ids(obj_rows, "coco_category_id")
    obj_by_hico = {int(r["hico_index"]): r for r in obj_rows}
    hois = []
    for r in _rows("hico_det/hois.csv"):
        o = obj_by_hico[int(r["object_hico_index"])]
        assert o["name"] == r["object"] and int(o["coco_category_id"]) == int(
            r["object_coco_category_id"]
        ), f"hois.csv row {r['hoi_index']} disagrees with objects.csv"
        columns = ("hoi_index", "verb", "object", "verb_index", "object_coco_category_id")
        hois.append(_hoi_class(r, columns))
    pos_of_id = {h.id: p for p, h in enumerate(hois)}
    rare = _json("hico_det/rare.json")
    zs = _json("hico_det/zero_shot_splits.json")

    def positions(ids: list[int]) -> frozenset[int]:
        return frozenset(pos_of_id[i] for i in ids)

    subsets = {
        "rare": positions(rare["rare_hoi_indices_1based"]),
        "non_rare": positions(rare["non_rare_hoi_indices_1based"]),
        "rf_uc": positions(zs["RF-UC"]["unseen_hoi_1based"]),
        "nf_uc": positions(zs["NF-UC"]["unseen_hoi_1based"]),
        "uo": positions(zs["UO"]["unseen_hoi_1based"]),
        "uv": positions(zs["UV"]["unseen_hoi_1based"]),
    }
    verb_pos = {v: p for p, v in enumerate(verb_ids)}
    obj_pos_by_hico = {int(r["hico_index"]): p for p, r in enumerate(obj_rows)}
    extra = {
        # Other official object numberings, indexed by object position.
        "object_hico_index": [int(r["hico_index"]) for r in obj_rows],
        "object_coco80_index": [int(r["coco80_index"]) for r in obj_rows],
        "no_interaction_verb": "no_interaction",
        "uo_object_positions": sorted(
            obj_pos_by_hico[i] for i in zs["UO"]["unseen_object_hico_index_1based"]
        ),
        "uv_verb_positions": sorted(verb_pos[i] for i in zs["UV"]["unseen_verb_index_1based"]),
    }
    return LabelSpace(
        name="hico_det",
        human="person",
        verbs=verbs,
        verb_ids=verb_ids,
        objects=objects,
        object_ids=object_ids,
        hois=tuple(hois),
        subsets=subsets,
        extra=extra,
    )


def build_vcoco() -> LabelSpace:
    """V-COCO: 26 actions (ids 0..25), the 80 COCO objects (COCO ids), and the 29
    action-role classes (id = class_index, object None = any object)."""
    actions = _rows("vcoco/actions.csv")
    cats = _json("vcoco/coco_categories.json")
    cats = sorted(cats, key=lambda c: c["contiguous_index_1based"])
    verbs = tuple(r["action"] for r in actions)
    verb_ids = tuple(int(r["action_index"]) for r in actions)
    by_action = {int(r["action_index"]): r for r in actions}
    hois, official, reporting = [], set(), set()
    for p, r in enumerate(_rows("vcoco/action_roles.csv")):
        hois.append(
            HOIClass(
                id=int(r["class_index"]),
                verb=r["action"],
                object=None,
                verb_id=int(r["action_index"]),
                object_id=None,
                role=r["role"] or None,
            )
        )
        if r["role_ap_evaluated_official"] == "1":
            official.add(p)
        if r["in_24_reporting_set"] == "1":
            reporting.add(p)

    def include(spec: str) -> dict[str, Any]:
        # "instr:tennis racket,baseball bat | obj:sports ball" -> {role: [names] or "*"}
        out: dict[str, Any] = {}
        for part in filter(None, (s.strip() for s in spec.split("|"))):
            role, names = part.split(":", 1)
            out[role] = "*" if names == "*" else names.split(",")
        return out

    extra = {
        "roles_by_verb": [[x for x in r["roles"].split(";") if x] for r in actions],
        "role_include_categories": [include(r["role_include_categories"]) for r in actions],
        "agent_ap_evaluated": [r["agent_ap_evaluated"] == "1" for r in actions],
        "hoi_names": [h.name for h in hois],
        "object_contiguous_index": [int(c["contiguous_index_1based"]) for c in cats],
    }
    assert all(by_action[h.verb_id]["action"] == h.verb for h in hois)
    return LabelSpace(
        name="vcoco",
        human="person",
        verbs=verbs,
        verb_ids=verb_ids,
        objects=tuple(c["name"] for c in cats),
        object_ids=tuple(int(c["id"]) for c in cats),
        hois=tuple(hois),
        subsets={"role_ap_official": official, "reporting_24": reporting},
        extra=extra,
    )


def build_swig_hoi() -> LabelSpace:
    """SWiG-HOI: 407 actions (already -ing forms), 1000 objects (names not unique),
    14,130 interactions; subsets over the 5,539 evaluated ones by frequency."""
    actions = _rows("swig_hoi/actions.csv")
    objs = _rows("swig_hoi/objects.csv")
    verbs, verb_ids = _names_and_ids(actions, "id")
    objects, object_ids = _names_and_ids(objs, "id")
    hois, frequency = [], []
    subsets: dict[str, set[int]] = {"non_rare": set(), "rare": set(), "unseen": set()}
    evaluated: set[int] = set()
    bucket_of = {"2": "non_rare", "1": "rare", "0": "unseen"}
    for p, r in enumerate(_rows("swig_hoi/interactions.csv")):
        hois.append(_hoi_class(r, ("id", "action_name", "object_name", "action_id", "object_id")))
        frequency.append(int(r["frequency"]))
        if r["evaluation"] == "1":
            evaluated.add(p)
            subsets[bucket_of[r["frequency"]]].add(p)
    extra = {
        # 0 unseen, 1 rare, 2 non-rare for every interaction (evaluated or not).
        "frequency": frequency,
        "verbs_are_ing_forms": True,
    }
    return LabelSpace(
        name="swig_hoi",
        human="person",
        verbs=verbs,
        verb_ids=verb_ids,
        objects=objects,
        object_ids=object_ids,
        hois=tuple(hois),
        subsets={**{k: frozenset(v) for k, v in subsets.items()}, "evaluated": evaluated},
        extra=extra,
    )


BUILDERS = {"hico_det": build_hico_det, "vcoco": build_vcoco, "swig_hoi": build_swig_hoi}
