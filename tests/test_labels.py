"""Label spaces: published counts, lookups, subsets, round trips, user files, -ing forms."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import linkhoi
from linkhoi import labels
from linkhoi.labels import AmbiguousNameError, LabelError, LabelSpace, ing_form, rule_ing


@pytest.fixture(scope="module")
def hico() -> LabelSpace:
    return labels.load("hico_det")


@pytest.fixture(scope="module")
def vcoco() -> LabelSpace:
    return labels.load("vcoco")


@pytest.fixture(scope="module")
def swig() -> LabelSpace:
    return labels.load("swig_hoi")


# ------------------------------------------------------------------------- HICO-DET
def test_hico_counts(hico: LabelSpace) -> None:
    assert (len(hico.verbs), len(hico.objects), len(hico.hois)) == (117, 80, 600)
    assert hico.verb_ids == tuple(range(1, 118))
    assert [h.id for h in hico.hois] == list(range(1, 601))
    s = hico.subsets
    assert (len(s["rare"]), len(s["non_rare"])) == (138, 462)
    assert s["rare"] | s["non_rare"] == frozenset(range(600))
    assert not s["rare"] & s["non_rare"]
    assert len(s["rf_uc"]) == 120 and s["rf_uc"] <= s["rare"]
    assert len(s["nf_uc"]) == 120 and s["nf_uc"] <= s["non_rare"]
    uo_objects = {hico.hois[p].object for p in s["uo"]}
    uv_verbs = {hico.hois[p].verb for p in s["uv"]}
    assert len(s["uo"]) == 100 and len(uo_objects) == 12
    assert len(s["uv"]) == 84 and len(uv_verbs) == 20
    # UO / UV are the complete HOI sets of their objects / verbs.
    assert {p for p, h in enumerate(hico.hois) if h.object in uo_objects} == s["uo"]
    assert {p for p, h in enumerate(hico.hois) if h.verb in uv_verbs} == s["uv"]
    assert sorted(hico.objects[p] for p in hico.extra["uo_object_positions"]) == sorted(uo_objects)
    assert len(hico.extra["uv_verb_positions"]) == 20


def test_hico_known_rows(hico: LabelSpace) -> None:
    # hois.csv row 1: "1,5,1,board,airplane,5,0"; verb 58 is no_interaction (PPDM hoi_label).
    h = hico.hois[hico.hoi_position_by_id(1)]
    assert (h.verb, h.object, h.verb_id, h.object_id, h.role) == ("board", "airplane", 5, 5, None)
    assert hico.verbs[hico.verb_position_by_id(58)] == "no_interaction"
    assert hico.human == "person" and hico.object_ids[hico.human_position] == 1
    # Other numberings stay reachable: person is hico_index 50, coco80_index 1.
    p = hico.object_position("person")
    assert hico.extra["object_hico_index"][p] == 50 and hico.extra["object_coco80_index"][p] == 1
    assert hico.hoi_position_by_id(9) in hico.subsets["rare"]  # first id in rare.json


def test_hico_lookups_both_ways(hico: LabelSpace) -> None:
    for p, name in enumerate(hico.verbs):
        assert hico.verb_position(name) == p
        assert hico.verb_position_by_id(hico.verb_ids[p]) == p
    for p, name in enumerate(hico.objects):
        assert hico.object_position(name) == p
        assert hico.object_position_by_id(hico.object_ids[p]) == p
    for p, h in enumerate(hico.hois):
        v, o = hico.verb_position(h.verb), hico.object_position(h.object)
        assert hico.hoi_position(v, o) == p
        assert hico.hoi_position_by_id(h.id) == p
    # Forgiving names: COCO spelling with a space finds HICO's underscored name.
    assert hico.object_position("dining table") == hico.object_position("dining_table")
    assert hico.verb_position("Hop On") == hico.verb_position("hop_on")
    ride, airplane = hico.verb_position("ride"), hico.object_position("airplane")
    assert hico.hoi_position(hico.verb_position("eat"), airplane) is None
    assert hico.hoi_position(ride, airplane) is not None
    with pytest.raises(LabelError, match="unknown verb 'flyy'"):
        hico.verb_position("flyy")
    with pytest.raises(LabelError, match="unknown object id 2000"):
        hico.object_position_by_id(2000)
    with pytest.raises(LabelError, match="unknown HOI id 601"):
        hico.hoi_position_by_id(601)
    # names that are no strings: one LabelError, not "unhashable type" from the dict lookup
    for bad in ([1], {"a": 1}, 3, None):
        with pytest.raises(LabelError, match=r"^object name must be a string, got "):
            hico.object_position(bad)
        with pytest.raises(LabelError, match=r"^verb name must be a string, got "):
            hico.verb_position(bad)


def test_label_error_is_an_input_error() -> None:
    from linkhoi.io import InputError

    assert issubclass(LabelError, InputError) and issubclass(AmbiguousNameError, InputError)


def test_hico_vectorised_helpers(hico: LabelSpace) -> None:
    table = hico.hoi_table()
    assert table.shape == (117, 80) and (table >= 0).sum() == 600
    assert sorted(table[table >= 0].tolist()) == list(range(600))
    vp, op = hico.hoi_verb_positions(), hico.hoi_object_positions()
    assert np.array_equal(table[vp, op], np.arange(600))
    person = hico.object_position("person")
    for_person = hico.hoi_positions_for_object(person)
    assert all(hico.hois[p].object == "person" for p in for_person)
    assert len(for_person) == sum(h.object == "person" for h in hico.hois)
    assert hico.subset_mask("rare").sum() == 138
    assert hico.hoi_ids()[0] == 1 and hico.hoi_ids()[-1] == 600


# ------------------------------------------------------------------------- V-COCO
def test_vcoco(vcoco: LabelSpace) -> None:
    assert (len(vcoco.verbs), len(vcoco.objects), len(vcoco.hois)) == (26, 80, 29)
    assert vcoco.verb_ids == tuple(range(26))
    assert [h.id for h in vcoco.hois] == list(range(29))
    assert len(vcoco.subsets["role_ap_official"]) == 25
    assert len(vcoco.subsets["reporting_24"]) == 24
    point = vcoco.hoi_position_by_id(26)
    assert vcoco.hois[point].name == "point_instr"
    assert point in vcoco.subsets["role_ap_official"] - vcoco.subsets["reporting_24"]
    assert all(h.object is None for h in vcoco.hois)
    assert vcoco.object_ids[vcoco.object_position("person")] == 1
    hit, cup = vcoco.verb_position("hit"), vcoco.object_position("cup")
    assert vcoco.hois[vcoco.hoi_position(hit, cup, "instr")].name == "hit_instr"
    assert vcoco.hois[vcoco.hoi_position(hit, cup, "obj")].name == "hit_obj"
    with pytest.raises(LabelError, match="give a role"):
        vcoco.hoi_position(hit, cup)
    stand, hold = vcoco.verb_position("stand"), vcoco.verb_position("hold")
    assert vcoco.hois[vcoco.hoi_position(stand, None)].name == "stand"
    assert vcoco.hois[vcoco.hoi_position(hold, cup)].name == "hold_obj"
    assert vcoco.hoi_position(stand, cup, "obj") is None
    assert vcoco.extra["roles_by_verb"][hit] == ("instr", "obj")
    assert vcoco.extra["roles_by_verb"][stand] == ()
    assert vcoco.hoi_table("instr")[hit].tolist() == [vcoco.hoi_position(hit, 0, "instr")] * 80
    assert (vcoco.hoi_table()[hit] == -1).all()  # ambiguous without a role
    assert len(vcoco.hoi_positions_for_object(cup)) == 29


# ------------------------------------------------------------------------- SWiG-HOI
def test_swig(swig: LabelSpace) -> None:
    assert (len(swig.verbs), len(swig.objects), len(swig.hois)) == (407, 1000, 14130)
    assert swig.object_ids == tuple(range(1000)) and swig.verb_ids == tuple(range(407))
    s = swig.subsets
    assert len(s["evaluated"]) == 5539
    assert (len(s["non_rare"]), len(s["rare"]), len(s["unseen"])) == (1307, 2841, 1391)
    assert s["non_rare"] | s["rare"] | s["unseen"] == s["evaluated"]
    freq = swig.extra["frequency"]
    assert len(freq) == 14130 and all(freq[p] == 0 for p in s["unseen"])
    # interactions.csv row 0: "0,injecting syringe,169,injecting,31,syringe,2,non-rare,1"
    h = swig.hois[0]
    assert (h.id, h.name, h.verb_id, h.object_id) == (0, "injecting syringe", 169, 31)
    assert 0 in s["non_rare"]
    table = swig.hoi_table()
    assert table.shape == (407, 1000) and (table >= 0).sum() == 14130
    assert table[169, swig.object_position_by_id(31)] == 0


def test_swig_ambiguous_names(swig: LabelSpace) -> None:
    with pytest.raises(AmbiguousNameError, match="use the id") as err:
        swig.object_position("ball")
    ids = [i for i, n in zip(swig.object_ids, swig.objects, strict=True) if n == "ball"]
    assert len(ids) == 2 and all(str(i) in str(err.value) for i in ids)
    for i in ids:
        assert swig.objects[swig.object_position_by_id(i)] == "ball"
    assert swig.object_position("person") == 0


# ------------------------------------------------------------------------- identity, dicts
@pytest.mark.parametrize("name", ["hico_det", "vcoco", "swig_hoi"])
def test_dict_round_trip(name: str, tmp_path: Path) -> None:
    ls = labels.load(name)
    d = ls.to_dict()
    path = tmp_path / "ls.pt"
    torch.save({"label_space": d}, path)
    back = LabelSpace.from_dict(torch.load(path, weights_only=True)["label_space"])
    assert back == ls and hash(back) == hash(ls) and back is not ls
    assert back.hois == ls.hois and back.subsets == ls.subsets
    assert dict(back.extra) == dict(ls.extra) and back.to_dict() == d
    assert json.loads(json.dumps(d)) == d
    assert pickle.loads(pickle.dumps(ls)) == ls


def test_load_is_cached_and_distinct() -> None:
    assert labels.load("hico_det") is labels.load("hico_det")
    assert labels.load("hico_det") != labels.load("vcoco")
    assert labels.load(labels.load("vcoco")) is labels.load("vcoco")
    with pytest.raises(LabelError, match="unknown label space 'hico'"):
        labels.load("hico")
    with pytest.raises(LabelError, match="not a label-space dict"):
        LabelSpace.from_dict({"name": "x"})


def test_import_one_liner() -> None:
    code = "import linkhoi; print(len(linkhoi.labels.load('hico_det').hois))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "600"
    assert linkhoi.labels is labels


# ------------------------------------------------------------------------- user files
USER = {
    "name": "my_space",
    "human": "person",
    "verbs": ["ride", "hold", "no_interaction"],
    "objects": ["person", "horse", "cup"],
    "hois": [{"verb": "ride", "object": "horse"}, {"id": 7, "verb": "hold", "object": "cup"}],
    "subsets": {"rare": [7], "unseen": []},
    "verb_ing": {"ride": "riding on"},
}


def _write(tmp_path: Path, data: object, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"space{suffix}"
    text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data)
    path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_user_file(tmp_path: Path, suffix: str) -> None:
    ls = labels.load(_write(tmp_path, USER, suffix))
    assert ls.name == "my_space" and ls.verb_ids == (1, 2, 3) and ls.object_ids == (1, 2, 3)
    assert [h.id for h in ls.hois] == [1, 7]
    assert ls.hois[1] == labels.HOIClass(7, "hold", "cup", 2, 3, None)
    assert ls.subsets["rare"] == frozenset({1}) and ls.subsets["unseen"] == frozenset()
    assert ing_form("ride", ls) == "riding on" and ing_form("hold", ls) == "holding"
    assert LabelSpace.from_dict(ls.to_dict()) == ls
    ids_form = dict(USER, verbs=[{"id": 10, "name": "ride"}, {"id": 20, "name": "hold"}])
    ids_form["verb_ing"] = {}
    ls2 = labels.load(_write(tmp_path, ids_form, ".json"))
    assert ls2.verb_ids == (10, 20) and ls2.hois[0].verb_id == 10


BAD = [
    ({"hois": [{"verb": "rid", "object": "horse"}]}, r"hois\[0\]\.verb: unknown verb 'rid'"),
    ({"hois": [{"verb": "ride", "object": "cow"}]}, r"hois\[0\]\.object: unknown object 'cow'"),
    ({"verbs": ["ride", "ride"]}, r"verbs\[1\]: duplicate name 'ride'"),
    (
        {"objects": [{"id": 1, "name": "person"}, {"id": 1, "name": "horse"}]},
        r"objects\[1\]\.id: duplicate id 1",
    ),
    ({"human": "human"}, r"human: human category 'human' is not in objects"),
    ({"objects": ["horse", "cup"]}, r"human: human category 'person'"),
    (
        {
            "hois": [
                {"id": 3, "verb": "ride", "object": "horse"},
                {"id": 3, "verb": "hold", "object": "cup"},
            ]
        },
        r"hois\[1\]\.id: duplicate HOI id 3",
    ),
    (
        {"hois": [{"verb": "ride", "object": "horse"}, {"verb": "ride", "object": "horse"}]},
        r"hois\[1\]: duplicate class",
    ),
    ({"subsets": {"rare": [99]}}, r"subsets\.rare\[0\]: unknown HOI id 99"),
    ({"verb_ing": {"jump": "jumping"}}, r"verb_ing\.jump: unknown verb"),
    ({"hois": [{"verb": "ride"}]}, r"hois\[0\]\.object: missing"),
    ({"hois": [{"verb": "ride", "object": "horse", "role": "tool"}]}, r"hois\[0\]\.role"),
    ({"verbs": []}, r"verbs: must be a non-empty list"),
    ({"colour": "red"}, r"<top>: unknown keys \['colour'\]"),
]


@pytest.mark.parametrize(("patch", "message"), BAD)
def test_user_file_errors(tmp_path: Path, patch: dict, message: str) -> None:
    path = _write(tmp_path, {**USER, **patch})
    with pytest.raises(LabelError, match=message) as err:
        labels.load(path)
    assert str(err.value).startswith(str(path))  # the message names the file


def test_user_file_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "cut.json"
    bad.write_text(json.dumps(USER)[:-20])
    with pytest.raises(LabelError, match=r"cut\.json: <file>: invalid JSON"):
        labels.load(bad)
    with pytest.raises(LabelError, match="not found"):
        labels.load(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(LabelError, match="must be a mapping"):
        labels.load(tmp_path / "list.yaml")


def test_synthetic_if_present() -> None:
    path = Path(labels.__file__).parent / "data" / "synthetic.yaml"
    if not path.is_file():
        pytest.skip("synthetic.yaml not written yet (another engineer's file)")
    ls = labels.load("synthetic")
    assert ls.human in ls.objects and len(ls.hois) > 0


# ------------------------------------------------------------------------- -ing forms
@pytest.mark.parametrize(
    ("verb", "ing"),
    [
        ("hop_on", "hopping on"),
        ("lie_on", "lying on"),
        ("ride", "riding"),
        ("run", "running"),
        ("sit_on", "sitting on"),
        ("cut_with", "cutting with"),
        ("hit", "hitting"),
        ("dribble", "dribbling"),
        ("tie", "tying"),
        ("talk_on_phone", "talking on phone"),
        ("no_interaction", "not interacting with"),
        ("control", "controlling"),
        ("open", "opening"),
        ("lasso", "lassoing"),
        ("text_on", "texting on"),
        ("lay", "lying on"),
        ("work_on_computer", "working on computer"),
    ],
)
def test_ing_table(verb: str, ing: str) -> None:
    assert ing_form(verb) == ing


def test_ing_table_covers_hico_and_vcoco(hico: LabelSpace, vcoco: LabelSpace) -> None:
    table = labels.ing_table()
    assert set(hico.verbs) <= set(table) and set(vcoco.verbs) <= set(table)
    # The two deliberate exceptions: a negation, and V-COCO "lay" (on a bed) = "lying on".
    others = {v: ing for v, ing in table.items() if v not in {"no_interaction", "lay"}}
    assert all(ing.split()[0].endswith("ing") for ing in others.values())
    # Multi-word verbs keep their particle: "stand_under" -> "standing under".
    assert all(ing.split()[1:] == v.split("_")[1:] for v, ing in others.items())


@pytest.mark.parametrize(
    ("verb", "ing"),
    [
        ("swim", "swimming"),
        ("jog", "jogging"),
        ("bake", "baking"),
        ("die", "dying"),
        ("see", "seeing"),
        ("visit", "visiting"),
        ("play", "playing"),
        ("fix", "fixing"),
        ("row", "rowing"),
        ("climb_up", "climbing up"),
        ("quit", "quitting"),
    ],
)
def test_ing_rules(verb: str, ing: str) -> None:
    assert rule_ing(verb) == ing
    assert ing_form(verb) == ing  # not in the table: falls back to the rules


def test_ing_swig(swig: LabelSpace) -> None:
    assert ing_form("riding", swig) == "riding"
    assert ing_form("swinging", swig) == "swinging"
