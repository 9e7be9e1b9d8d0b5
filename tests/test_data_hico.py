"""HICO-DET readers on small files in the official formats, written by the tests."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from linkhoi.data import (
    DatasetError,
    HOIPair,
    InvalidHOIWarning,
    read_dataset,
    read_hico,
    read_hico_instances,
    read_hico_json,
    read_hico_mat,
)
from linkhoi.labels import load

HICO = load("hico_det")
# Official ids (src/linkhoi/labels/data/hico_det): HOI 19 = ride bicycle (verb 77), 12 = hold bicycle
# (verb 37), 24 = no_interaction bicycle (verb 58), 132 = hold horse; COCO bicycle 2, horse 19.
RIDE_BIKE, HOLD_BIKE, NOINT_BIKE, HOLD_HORSE = 19, 12, 24, 132

# Per image: (file name, (width, height), [hoi entries]); an entry is
# (hoi id, invis, human boxes, object boxes, 1-based connection rows).
MAT_IMAGES = [
    (
        "HICO_test2015_00000001.jpg",
        (64, 48),
        [
            (RIDE_BIKE, 0, [[1, 1, 10, 20], [30, 2, 40, 30]], [[5, 20, 25, 40]], [[1, 1], [2, 1]]),
            (HOLD_BIKE, 1, [], [], []),  # invisible: skipped
            (
                HOLD_HORSE,
                0,
                [[2, 2, 11, 21]],
                [[40, 10, 60, 40], [3, 30, 20, 48]],
                [[1, 2], [1, 1]],
            ),
        ],
    ),
    # one entry, one box each, one connection: every array squeezes to a scalar in loadmat
    (
        "HICO_test2015_00000002.jpg",
        (32, 32),
        [(RIDE_BIKE, 0, [[1, 1, 9, 9]], [[5, 5, 32, 32]], [[1, 1]])],
    ),
    (
        "HICO_test2015_00000003.jpg",
        (50, 50),
        [
            (
                NOINT_BIKE,
                0,
                [[1, 1, 5, 5], [10, 10, 15, 15]],
                [[20, 20, 25, 25], [30, 30, 35, 35]],
                [[1, 1], [1, 2], [2, 1], [2, 2]],
            )
        ],
    ),
    ("HICO_test2015_00000004.jpg", (20, 20), [(HOLD_BIKE, 1, [], [], [])]),  # no visible pair
]

# The same images in the PPDM/GEN-VLKT json layout, written by hand from docs/datasets.md (HICO-DET):
# boxes of one hoi entry in connection order, each once per entry, never merged across entries.
JSON_IMAGES = [
    {
        "file_name": "HICO_test2015_00000001.jpg",
        "annotations": [
            {"bbox": [1, 1, 10, 20], "category_id": 1},
            {"bbox": [5, 20, 25, 40], "category_id": 2},
            {"bbox": [30, 2, 40, 30], "category_id": 1},
            {"bbox": [2, 2, 11, 21], "category_id": 1},
            {"bbox": [3, 30, 20, 48], "category_id": 19},
            {"bbox": [40, 10, 60, 40], "category_id": 19},
        ],
        "hoi_annotation": [
            {"subject_id": 0, "object_id": 1, "category_id": 77},
            {"subject_id": 2, "object_id": 1, "category_id": 77},
            {"subject_id": 3, "object_id": 4, "category_id": 37},
            {"subject_id": 3, "object_id": 5, "category_id": 37},
        ],
    },
    {
        "file_name": "HICO_test2015_00000002.jpg",
        "annotations": [
            {"bbox": [1, 1, 9, 9], "category_id": "1\n"},  # PPDM tolerates "id\n" strings
            {"bbox": [5, 5, 32, 32], "category_id": 2},
        ],
        "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": "77\n"}],
    },
    {
        "file_name": "HICO_test2015_00000003.jpg",
        "annotations": [
            {"bbox": [1, 1, 5, 5], "category_id": 1},
            {"bbox": [20, 20, 25, 25], "category_id": 2},
            {"bbox": [30, 30, 35, 35], "category_id": 2},
            {"bbox": [10, 10, 15, 15], "category_id": 1},
        ],
        "hoi_annotation": [
            {"subject_id": s, "object_id": o, "category_id": 58}
            for s, o in [(0, 1), (0, 2), (3, 1), (3, 2)]
        ],
    },
    {"file_name": "HICO_test2015_00000004.jpg", "annotations": [], "hoi_annotation": []},
]


def _struct_array(rows: list[dict], fields: list[str]) -> np.ndarray:
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        for f in fields:
            arr[0, k][f] = row[f]
    return arr


def write_hico_mat(path: Path, images: list = MAT_IMAGES, split: str = "test") -> None:
    """An anno_bbox.mat with the official struct layout (1xN struct arrays)."""

    def boxes(bs: list) -> np.ndarray:
        rows = [dict(zip(("x1", "y1", "x2", "y2"), map(float, b), strict=True)) for b in bs]
        return _struct_array(rows, ["x1", "y1", "x2", "y2"])

    records = []
    for name, (w, h), entries in images:
        hois = [
            {
                "id": float(hid),
                "invis": float(invis),
                "bboxhuman": boxes(hb),
                "bboxobject": boxes(ob),
                "connection": np.asarray(conn, dtype=np.float64).reshape(-1, 2),
            }
            for hid, invis, hb, ob, conn in entries
        ]
        records.append(
            {
                "filename": name,
                "size": {"width": float(w), "height": float(h), "depth": 3.0},
                "hoi": _struct_array(
                    hois, ["id", "bboxhuman", "bboxobject", "connection", "invis"]
                ),
            }
        )
    scipy.io.savemat(path, {f"bbox_{split}": _struct_array(records, ["filename", "size", "hoi"])})


def write_images(root: Path, images: list = MAT_IMAGES) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, (w, h), _ in images:
        Image.new("RGB", (w, h), (90, 20, 200)).save(root / name)


def _dump(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_mat_and_json_yield_identical_samples(tmp_path: Path) -> None:
    write_hico_mat(tmp_path / "anno_bbox.mat")
    _dump(tmp_path / "test_hico.json", JSON_IMAGES)
    write_images(tmp_path / "images")
    from_mat = read_hico_mat(tmp_path / "anno_bbox.mat", "test", tmp_path / "images")
    from_json = read_hico_json(tmp_path / "test_hico.json", tmp_path / "images")
    assert len(from_mat) == 4
    assert from_mat == from_json  # sizes come from the mat and from the image headers
    # without images the json knows no size, everything else is still identical
    no_size = read_hico_json(tmp_path / "test_hico.json")
    assert (no_size[0].width, no_size[0].height) == (0, 0)
    assert no_size[0].image_path is None
    for a, b in zip(read_hico_mat(tmp_path / "anno_bbox.mat"), no_size, strict=True):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
        assert a.pairs == b.pairs


def test_mat_box_layout_by_hand(tmp_path: Path) -> None:
    write_hico_mat(tmp_path / "anno_bbox.mat")
    s1, s2, s3, s4 = read_hico_mat(tmp_path / "anno_bbox.mat")
    person, bicycle, horse = (HICO.object_position(n) for n in ("person", "bicycle", "horse"))
    assert s1.file_name == "HICO_test2015_00000001.jpg" and (s1.width, s1.height) == (64, 48)
    np.testing.assert_array_equal(
        s1.boxes,
        [
            [1, 1, 10, 20],
            [5, 20, 25, 40],
            [30, 2, 40, 30],
            [2, 2, 11, 21],
            [3, 30, 20, 48],
            [40, 10, 60, 40],
        ],
    )
    assert s1.boxes.dtype == np.float64 and s1.labels.dtype == np.int64
    assert s1.labels.tolist() == [person, bicycle, person, person, horse, horse]
    ride, hold = HICO.hoi_position_by_id(RIDE_BIKE), HICO.hoi_position_by_id(HOLD_HORSE)
    assert s1.pairs == [
        HOIPair(0, 1, ride),
        HOIPair(2, 1, ride),
        HOIPair(3, 4, hold),
        HOIPair(3, 5, hold),
    ]
    assert s2.pairs == [HOIPair(0, 1, ride)] and s2.boxes.shape == (2, 4)
    # 2 humans x 2 objects, full connection: h0, o1, o2, h3 (docs/datasets.md, HICO-DET)
    assert s3.labels.tolist() == [person, bicycle, bicycle, person]
    assert [(p.human, p.object) for p in s3.pairs] == [(0, 1), (0, 2), (3, 1), (3, 2)]
    assert s4.pairs == [] and s4.boxes.shape == (0, 4) and not s4.unannotated.any()


def test_mat_train_split_and_missing_variable(tmp_path: Path) -> None:
    write_hico_mat(tmp_path / "anno_bbox.mat", MAT_IMAGES[:1], split="train")
    assert len(read_hico_mat(tmp_path / "anno_bbox.mat", split="train")) == 1
    with pytest.raises(DatasetError, match="bbox_test"):
        read_hico_mat(tmp_path / "anno_bbox.mat", split="test")
    (tmp_path / "bad.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match="bad.mat"):
        read_hico_mat(tmp_path / "bad.mat")


def test_mat_connection_out_of_range(tmp_path: Path) -> None:
    bad = [("a.jpg", (64, 48), [(RIDE_BIKE, 0, [[1, 1, 5, 5]], [[2, 2, 6, 6]], [[1, 2]])])]
    write_hico_mat(tmp_path / "anno_bbox.mat", bad)
    with pytest.raises(DatasetError) as err:
        read_hico_mat(tmp_path / "anno_bbox.mat")
    assert "anno_bbox.mat" in str(err.value) and "'a.jpg'" in str(err.value)
    assert "hoi(1).connection(1)" in str(err.value)


def _instances(images: list[dict]) -> dict:
    return {
        "annotation": [im["anno"] for im in images],
        "filenames": [im["name"] for im in images],
        "size": [im["size"] for im in images],
        "empty": [i for i, im in enumerate(images) if not im["anno"]["hoi"]],
        "objects": [o.replace("_", " ") for o in HICO.objects],  # names with spaces work too
        "verbs": list(HICO.verbs),
    }


def test_instances_reader_dedupes_boxes_and_keeps_empty(tmp_path: Path) -> None:
    bike, ride, hold = (
        HICO.object_position("bicycle"),
        HICO.verb_position("ride"),
        HICO.verb_position("hold"),
    )
    anno = {
        "boxes_h": [[1.0, 1, 10, 20], [1.0, 1, 10, 20], [30.0, 2, 40, 30]],
        "boxes_o": [[5.0, 20, 25, 40], [5.0, 20, 25, 40], [5.0, 20, 25, 40]],
        "hoi": [RIDE_BIKE - 1, HOLD_BIKE - 1, RIDE_BIKE - 1],
        "object": [bike, bike, bike],
        "verb": [ride, hold, ride],
    }
    empty = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
    data = _instances(
        [
            {"name": "a.jpg", "size": [64, 48], "anno": anno},
            {"name": "b.jpg", "size": [10, 10], "anno": empty},
        ]
    )
    a, b = read_hico_instances(_dump(tmp_path / "instances_test2015.json", data))
    np.testing.assert_array_equal(a.boxes, [[1, 1, 10, 20], [5, 20, 25, 40], [30, 2, 40, 30]])
    p_ride, p_hold = HICO.hoi_position_by_id(RIDE_BIKE), HICO.hoi_position_by_id(HOLD_BIKE)
    assert a.pairs == [HOIPair(0, 1, p_ride), HOIPair(0, 1, p_hold), HOIPair(2, 1, p_ride)]
    assert (a.width, a.height) == (64, 48)
    assert b.file_name == "b.jpg" and b.pairs == [] and (b.width, b.height) == (10, 10)
    # read_hico detects the format
    assert read_hico(tmp_path / "instances_test2015.json") == [a, b]


def test_read_hico_detects_formats(tmp_path: Path) -> None:
    write_hico_mat(tmp_path / "anno_bbox.mat")
    _dump(tmp_path / "test_hico.json", JSON_IMAGES)
    write_images(tmp_path / "im")
    from_mat = read_hico(tmp_path / "anno_bbox.mat", image_root=tmp_path / "im")
    assert from_mat == read_hico(tmp_path / "test_hico.json", image_root=tmp_path / "im")
    got = read_dataset("hico_det", path=tmp_path / "test_hico.json")
    assert [s.file_name for s in got] == [r["file_name"] for r in JSON_IMAGES]
    with pytest.raises(DatasetError, match="unrecognised"):
        read_hico(_dump(tmp_path / "other.json", {"foo": 1}))


# ----------------------------------------------------------------------- bad input
def _one(**changes: object) -> list[dict]:
    rec = json.loads(json.dumps(JSON_IMAGES[0]))
    rec.update(changes)
    return [rec]


def _expect(tmp_path: Path, data: object, field: str, match: str, **kw: object) -> None:
    path = tmp_path / "test_hico.json"
    if isinstance(data, str):
        path.write_text(data)
    else:
        _dump(path, data)
    with pytest.raises(DatasetError, match=match) as err:
        read_hico_json(path, **kw)
    msg = str(err.value)
    assert "test_hico.json" in msg and f"field {field!r}" in msg, msg
    if field != "<json>":
        assert "HICO_test2015_00000001.jpg" in msg or "image '#" in msg, msg


def test_bad_input_each_names_file_image_field(tmp_path: Path) -> None:
    ann = JSON_IMAGES[0]["annotations"]
    _expect(tmp_path, json.dumps(JSON_IMAGES)[:-40], "<json>", "truncated")
    _expect(
        tmp_path,
        _one(annotations=[*ann[:5], {"bbox": [1, 1, 2, 2], "category_id": 12}]),
        "annotations[5].category_id",
        "unknown object category id 12",
    )
    _expect(
        tmp_path,
        _one(annotations=[{"bbox": [1, float("nan"), 2, 2], "category_id": 1}]),
        "annotations[0].bbox",
        "NaN or infinite",
    )
    _expect(
        tmp_path,
        _one(annotations=[{"bbox": [1, 1, float("inf"), 2], "category_id": 1}]),
        "annotations[0].bbox",
        "NaN or infinite",
    )
    _expect(
        tmp_path,
        _one(annotations=[{"bbox": [10, 1, 2, 5], "category_id": 1}]),
        "annotations[0].bbox",
        "inverted",
    )
    _expect(tmp_path, JSON_IMAGES[:1] * 2, "file_name", "duplicate file name")
    bad_pair = {"subject_id": 0, "object_id": 6, "category_id": 77}
    _expect(
        tmp_path, _one(hoi_annotation=[bad_pair]), "hoi_annotation[0].object_id", "out of range"
    )
    _expect(
        tmp_path,
        _one(hoi_annotation=[{"subject_id": 1, "object_id": 0, "category_id": 77}]),
        "hoi_annotation[0].subject_id",
        "not a person",
    )
    _expect(
        tmp_path,
        _one(hoi_annotation=[{"subject_id": 0, "object_id": 1, "category_id": 118}]),
        "hoi_annotation[0].category_id",
        "unknown verb id 118",
    )
    _expect(tmp_path, [{"annotations": []}], "file_name", "file_name")


def test_box_outside_image_by_more_than_a_pixel(tmp_path: Path) -> None:
    write_images(tmp_path / "images")  # image 1 is 64 x 48
    edge = _one(annotations=[{"bbox": [0, 0, 65, 49], "category_id": 1}], hoi_annotation=[])
    assert len(read_hico_json(_dump(tmp_path / "test_hico.json", edge), tmp_path / "images")) == 1
    out = _one(annotations=[{"bbox": [0, 0, 66, 20], "category_id": 1}], hoi_annotation=[])
    _expect(tmp_path, out, "boxes[0]", "outside the 64x48 image", image_root=tmp_path / "images")


def test_verb_invalid_for_object_errors_or_warns(tmp_path: Path) -> None:
    # verb 1 = adjust is not an HOI with bicycle
    bad = _one(
        hoi_annotation=[
            {"subject_id": 0, "object_id": 1, "category_id": 1},
            {"subject_id": 0, "object_id": 1, "category_id": 77},
        ]
    )
    _expect(tmp_path, bad, "hoi_annotation[0].category_id", "not valid for object 'bicycle'")
    with pytest.warns(InvalidHOIWarning, match="pair skipped"):
        (sample,) = read_hico_json(tmp_path / "test_hico.json", on_invalid="warn")
    assert sample.pairs == [HOIPair(0, 1, HICO.hoi_position_by_id(RIDE_BIKE))]
    # a stated hoi_category_id (trainval_hico.json) must agree with (verb, object)
    wrong = _one(
        hoi_annotation=[{"subject_id": 0, "object_id": 1, "category_id": 77, "hoi_category_id": 20}]
    )
    _expect(tmp_path, wrong, "hoi_annotation[0].hoi_category_id", "disagrees")
    right = _one(
        hoi_annotation=[
            {"subject_id": 0, "object_id": 1, "category_id": 77, "hoi_category_id": RIDE_BIKE}
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_hico_json(_dump(tmp_path / "ok.json", right))[0].pairs) == 1


def test_instances_bad_input(tmp_path: Path) -> None:
    bike = HICO.object_position("bicycle")
    anno = {
        "boxes_h": [[1.0, 1, 10, 20], [1.0, 1, 10, 20]],
        "boxes_o": [[5.0, 20, 25, 40]] * 2,
        "hoi": [RIDE_BIKE - 1, 0],
        "object": [bike, bike],
        "verb": [HICO.verb_position("ride"), 0],
    }
    path = _dump(
        tmp_path / "instances_test2015.json",
        _instances([{"name": "a.jpg", "size": [64, 48], "anno": anno}]),
    )
    with pytest.raises(DatasetError, match="not valid for object 'bicycle'") as err:
        read_hico_instances(path)  # verb 0 = adjust
    assert "instances_test2015.json" in str(err.value) and "'verb[1]'" in str(err.value)
    with pytest.warns(InvalidHOIWarning):
        (sample,) = read_hico_instances(path, on_invalid="warn")
    assert len(sample.pairs) == 1
    anno["boxes_o"] = [[5.0, 20, 25, 40], [5.0, 20, 25]]
    with pytest.raises(DatasetError, match="4 numbers") as err:
        read_hico_instances(
            _dump(path, _instances([{"name": "a.jpg", "size": [64, 48], "anno": anno}]))
        )
    assert "'a.jpg'" in str(err.value) and "'boxes_o[1]'" in str(err.value)
    anno["boxes_o"] = [[5.0, 20, 25, 40]] * 2
    data = _instances([{"name": "a.jpg", "size": [64, 48], "anno": anno}] * 2)
    with pytest.warns(InvalidHOIWarning), pytest.raises(DatasetError, match="duplicate file name"):
        read_hico_instances(_dump(path, data), on_invalid="warn")
