"""V-COCO reader: ground truth built as the official evaluator builds it (docs/evaluation.md, V-COCO)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import DatasetError, HOIPair, read_dataset, read_vcoco
from linkhoi.labels import load

VCOCO = load("vcoco")
COCO_IDS = {"person": 1, "bicycle": 2, "horse": 19, "sports ball": 37, "cup": 47}


def _ann(aid: int, image: int, cat: str, bbox: list, **kw: object) -> dict:
    area = kw.pop("area", bbox[2] * bbox[3])
    return {
        "id": aid,
        "image_id": image,
        "category_id": COCO_IDS[cat],
        "bbox": bbox,
        "area": area,
        "iscrowd": 0,
        **kw,
    }


def make_instances() -> dict:
    return {
        "images": [
            {"id": 10, "file_name": "COCO_val2014_000000000010.jpg", "width": 100, "height": 80},
            {"id": 20, "file_name": "COCO_val2014_000000000020.jpg", "width": 50, "height": 50},
            {"id": 30, "file_name": "COCO_val2014_000000000030.jpg", "width": 50, "height": 50},
        ],
        "annotations": [
            _ann(101, 10, "person", [10, 10, 20, 30]),
            _ann(201, 20, "person", [0, 0, 50, 50]),
            _ann(102, 10, "person", [50, 5, 10, 10], iscrowd=1),  # not a V-COCO person
            _ann(103, 10, "bicycle", [30, 40, 30, 20]),
            _ann(104, 10, "person", [1, 1, 5, 5], ignore=1),  # dropped
            _ann(105, 10, "cup", [3, 3, 4, 4], area=0),  # dropped: area 0
            _ann(106, 10, "sports ball", [90, 70, 20, 20]),  # clipped to 99, 79
            _ann(107, 10, "cup", [5, 5, 1, 8]),  # dropped: x2 == x1
            _ann(202, 20, "horse", [10, 10, 30, 30]),
            _ann(301, 30, "person", [0, 0, 5, 5]),  # image outside the split
        ],
        "categories": [{"id": i, "name": n} for n, i in COCO_IDS.items()],
    }


def _roles(verb: str) -> list[str]:
    return [h.role for h in VCOCO.hois if h.verb == verb and h.role is not None]


# person ann id -> {action: (label, [role object ann ids])}
LABELS = {
    101: {"hold": [103], "stand": [], "ride": [103], "hit": [106, 0]},
    201: {"ride": [202], "look": [0]},
}


def make_vcoco(labels: dict = LABELS, persons: tuple = ((10, 101), (20, 201))) -> list[dict]:
    out = []
    for verb in VCOCO.verbs:
        roles = ["agent", *_roles(verb)]
        n = len(persons)
        role_ids = [ann for _, ann in persons]
        for k in range(1, len(roles)):
            role_ids += [labels[ann].get(verb, [0] * len(roles))[k - 1] for _, ann in persons]
        out.append(
            {
                "action_name": verb,
                "role_name": roles,
                "include": [[]] * (len(roles) - 1),
                "image_id": [img for img, _ in persons],
                "ann_id": [ann for _, ann in persons],
                "label": [int(verb in labels[ann]) for _, ann in persons],
                "role_object_id": role_ids,
            }
        )
        assert len(role_ids) == n * len(roles)
    return out


def write_split(
    tmp_path: Path, vcoco: object = None, instances: object = None, ids: str = "10\n20\n"
) -> dict[str, Path]:
    paths = {
        "vcoco_json": tmp_path / "vcoco_test.json",
        "instances_json": tmp_path / "instances_vcoco_all_2014.json",
        "ids_file": tmp_path / "vcoco_test.ids",
    }
    paths["vcoco_json"].write_text(json.dumps(make_vcoco() if vcoco is None else vcoco))
    paths["instances_json"].write_text(
        json.dumps(make_instances() if instances is None else instances)
    )
    paths["ids_file"].write_text(ids)
    return paths


def pos(name: str) -> int:
    return next(p for p, h in enumerate(VCOCO.hois) if h.name == name)


def test_ground_truth_as_the_official_evaluator(tmp_path: Path) -> None:
    a, b = read_vcoco(**write_split(tmp_path), image_root=tmp_path)
    assert (a.file_name, a.image_id, a.width, a.height) == (
        "COCO_val2014_000000000010.jpg",
        10,
        100,
        80,
    )
    assert a.image_path == tmp_path / a.file_name
    # kept: 101, 102 (crowd), 103, 106; x2 = x + w - 1, clipped to W-1 / H-1
    np.testing.assert_array_equal(
        a.boxes, [[10, 10, 29, 39], [50, 5, 59, 14], [30, 40, 59, 59], [90, 70, 99, 79]]
    )
    person, bicycle, ball = (VCOCO.object_position_by_id(i) for i in (1, 2, 37))
    assert a.labels.tolist() == [person, person, bicycle, ball]
    assert a.unannotated.tolist() == [False, True, False, False]
    assert a.pairs == [
        HOIPair(0, 2, pos("hold_obj")),
        HOIPair(0, None, pos("stand")),
        HOIPair(0, 2, pos("ride_instr")),
        HOIPair(0, 3, pos("hit_instr")),
        HOIPair(0, None, pos("hit_obj")),  # role object id 0 -> None
    ]
    np.testing.assert_array_equal(b.boxes, [[0, 0, 49, 49], [10, 10, 39, 39]])
    assert b.pairs == [HOIPair(0, 1, pos("ride_instr")), HOIPair(0, None, pos("look_obj"))]
    assert read_dataset("vcoco", **write_split(tmp_path)) == read_vcoco(**write_split(tmp_path))


def test_ids_file_checks(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not sorted") as err:
        read_vcoco(**write_split(tmp_path, ids="20\n10\n"))
    assert "vcoco_test.ids" in str(err.value)
    assert len(read_vcoco(**write_split(tmp_path, ids="20\n10\n"), sort_ids=True)) == 2
    with pytest.raises(DatasetError, match=r"in the ids file only: \[30\]"):
        read_vcoco(**write_split(tmp_path, ids="10\n20\n30\n"))
    with pytest.raises(DatasetError, match=r"in the json only: \[20\]"):
        read_vcoco(**write_split(tmp_path, ids="10\n"))
    with pytest.raises(DatasetError, match="line 2"):
        read_vcoco(**write_split(tmp_path, ids="10\nabc\n"))


def _raises(tmp_path: Path, match: str, file: str, image: str | None, field: str, **kw) -> None:
    with pytest.raises(DatasetError, match=match) as err:
        read_vcoco(**write_split(tmp_path, **kw))
    msg = str(err.value)
    assert file in msg and f"field {field!r}" in msg, msg
    if image is not None:
        assert f"image {image!r}" in msg, msg


def test_bad_input(tmp_path: Path) -> None:
    name = "COCO_val2014_000000000010.jpg"
    # role object that the evaluator dropped (ignore == 1)
    labels = {101: {"hold": [104]}, 201: {}}
    _raises(
        tmp_path,
        "role object annotation 104",
        "vcoco_test.json",
        name,
        "[0].role_object_id",
        vcoco=make_vcoco(labels),
    )
    inst = make_instances()
    inst["annotations"][3]["category_id"] = 12  # not a COCO id
    _raises(
        tmp_path,
        "unknown COCO category id 12",
        "instances_vcoco_all_2014.json",
        name,
        "annotations[3].category_id",
        instances=inst,
    )
    inst = make_instances()
    inst["annotations"][3]["bbox"] = [30, 40, float("nan"), 20]
    _raises(
        tmp_path,
        "NaN",
        "instances_vcoco_all_2014.json",
        name,
        "annotations[3].bbox",
        instances=inst,
    )
    inst = make_instances()
    inst["annotations"][3]["bbox"] = [30, 40, -5, 20]
    _raises(
        tmp_path,
        "inverted",
        "instances_vcoco_all_2014.json",
        name,
        "annotations[3].bbox",
        instances=inst,
    )
    inst = make_instances()
    inst["images"][1]["file_name"] = inst["images"][0]["file_name"]
    _raises(
        tmp_path, "duplicate", "instances_vcoco_all_2014.json", name, "file_name", instances=inst
    )
    vcoco = make_vcoco()
    vcoco[0]["role_object_id"] = vcoco[0]["role_object_id"][:-1]
    _raises(tmp_path, "role-major", "vcoco_test.json", None, "[0].role_object_id", vcoco=vcoco)
    (tmp_path / "trunc.json").write_text(json.dumps(make_vcoco())[:100])
    with pytest.raises(DatasetError, match="truncated") as err:
        read_vcoco(
            tmp_path / "trunc.json",
            **{k: v for k, v in write_split(tmp_path).items() if k != "vcoco_json"},
        )
    assert "trunc.json" in str(err.value)


def _edit_vcoco(edit) -> list[dict]:
    vcoco = make_vcoco()
    edit(vcoco)
    return vcoco


def _edit_instances(edit) -> dict:
    inst = make_instances()
    edit(inst)
    return inst


INSTANCES = "instances_vcoco_all_2014.json"
NAME_10 = "COCO_val2014_000000000010.jpg"


@pytest.mark.parametrize(
    ("kw", "file", "image", "field", "match"),
    [
        (
            {"vcoco": _edit_vcoco(lambda v: v[0].update(role_object_id=None))},
            "vcoco_test.json", None, "[0].role_object_id", "expected a list, got None",
        ),
        (
            {"vcoco": _edit_vcoco(lambda v: v[2].update(label={}))},
            "vcoco_test.json", None, "[2].label", r"expected a list, got \{\}",
        ),
        (
            {"vcoco": _edit_vcoco(lambda v: v[0].update(role_name="agent"))},
            "vcoco_test.json", None, "[0].role_name", "expected a list, got 'agent'",
        ),
        (
            {"vcoco": _edit_vcoco(lambda v: v[0].update(role_name=["agent", 3]))},
            "vcoco_test.json", None, "[0].role_name", "expected a list of role names",
        ),
        (
            {"vcoco": _edit_vcoco(lambda v: v[0].update(action_name=["hold"]))},
            "vcoco_test.json", None, "[0].action_name", "verb name must be a string",
        ),
        (
            {"instances": _edit_instances(lambda i: i.update(annotations=None))},
            INSTANCES, None, "annotations", "expected a list, got None",
        ),
        (
            {"instances": _edit_instances(lambda i: i.update(images={}))},
            INSTANCES, None, "images", r"expected a list, got \{\}",
        ),
        (
            {"instances": _edit_instances(lambda i: i["annotations"].__setitem__(2, [1, 2]))},
            INSTANCES, None, "annotations[2]", "expected an object",
        ),
        (
            {"instances": _edit_instances(lambda i: i["images"].__setitem__(1, "x"))},
            INSTANCES, None, "images[1]", "expected an object",
        ),
        (
            {"instances": _edit_instances(lambda i: i["annotations"][3].update(area="x"))},
            INSTANCES, NAME_10, "annotations[3].area", "expected a number, got 'x'",
        ),
        (  # same image: the person's role object used to be blamed on vcoco_test.json
            {"instances": _edit_instances(lambda i: i["annotations"][3].update(id=101))},
            INSTANCES, None, "annotations[3].id", r"duplicate annotation id 101 \(also annotations\[0\]\)",
        ),
        (  # outside the split: used to be accepted
            {"instances": _edit_instances(lambda i: i["annotations"][9].update(id=202))},
            INSTANCES, None, "annotations[9].id", r"duplicate annotation id 202 \(also annotations\[8\]\)",
        ),
        (
            {"instances": _edit_instances(lambda i: i["images"][2].update(id=10))},
            INSTANCES, None, "images[2].id", r"duplicate image id 10 \(also images\[0\]\)",
        ),
        (
            {"ids": "10\n20\n20\n"},
            "vcoco_test.ids", None, "line 3", r"duplicate image id 20 \(also on line 2\)",
        ),
    ],
)  # fmt: skip
def test_malformed_files_give_one_dataset_error(tmp_path, kw, file, image, field, match) -> None:
    _raises(tmp_path, match, file, image, field, **kw)


def test_ids_file_that_is_not_utf8(tmp_path: Path) -> None:
    paths = write_split(tmp_path)
    paths["ids_file"].write_bytes(b"10\n\xff\xfe20\n")
    with pytest.raises(DatasetError, match=r"vcoco_test\.ids', field 'line 2': not UTF-8 text"):
        read_vcoco(**paths)
