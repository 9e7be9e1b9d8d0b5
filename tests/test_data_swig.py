"""SWiG-HOI reader on a small swig_test_1000.json written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import DatasetError, HOIPair, read_dataset, read_swig
from linkhoi.labels import load

SWIG = load("swig_hoi")
# interactions.csv: 1 = (surfing 349, surfboard 55), 2 = (pedaling 225, bicycle 7)


def make_records() -> list[dict]:
    return [
        {
            "file_name": "surfing_1.jpg",
            "img_id": 5,
            "width": 512,
            "height": 400,
            "box_annotations": [
                {"bbox": [10, 20, 100, 300], "category_id": 0, "aux_category_id": []},
                {"bbox": [50.5, 250, 200, 330], "category_id": 55, "aux_category_id": [270]},
                {"bbox": [0, 0, 512, 400], "category_id": 23, "aux_category_id": []},
            ],
            "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": 349}],
        },
        {
            "file_name": "pedaling_3.jpg",
            "img_id": 9,
            "width": 300,
            "height": 200,
            "box_annotations": [
                {"bbox": [1, 2, 3, 4], "category_id": 7},
                {"bbox": [5, 6, 70, 80], "category_id": 0},
            ],
            "hoi_annotations": [{"subject_id": 1, "object_id": 0, "action_id": 225}],
        },
        {
            "file_name": "empty_1.jpg",
            "img_id": 11,
            "width": 10,
            "height": 10,
            "box_annotations": [],
            "hoi_annotations": [],
        },
    ]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "swig_test_1000.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_read_swig(tmp_path: Path) -> None:
    a, b, c = read_swig(_write(tmp_path, make_records()), image_root=tmp_path / "images_512")
    assert (a.file_name, a.image_id, a.width, a.height) == ("surfing_1.jpg", 5, 512, 400)
    assert a.image_path == tmp_path / "images_512" / "surfing_1.jpg"
    np.testing.assert_array_equal(
        a.boxes, [[10, 20, 100, 300], [50.5, 250, 200, 330], [0, 0, 512, 400]]
    )
    assert a.labels.tolist() == [0, 55, 23]  # SWiG object positions equal the category ids
    assert a.pairs == [HOIPair(0, 1, SWIG.hoi_position_by_id(1))]
    assert b.pairs == [HOIPair(1, 0, SWIG.hoi_position_by_id(2))]
    assert c.pairs == [] and c.boxes.shape == (0, 4)
    assert read_dataset("swig_hoi", path=tmp_path / "swig_test_1000.json") == read_swig(
        tmp_path / "swig_test_1000.json"
    )


@pytest.mark.parametrize(
    ("change", "field", "match"),
    [
        (
            lambda r: r[0]["hoi_annotations"][0].update(action_id=225),
            "hoi_annotations[0].action_id",
            "not one of the 14130 interactions",
        ),
        (
            lambda r: r[0]["box_annotations"][1].update(category_id=1000),
            "box_annotations[1].category_id",
            "unknown object category id 1000",
        ),
        (
            lambda r: r[0]["box_annotations"][1].update(bbox=[50, 250, 514, 330]),
            "boxes[1]",
            "outside the 512x400 image",
        ),
        (
            lambda r: r[0]["box_annotations"][1].update(bbox=[50, float("inf"), 60, 330]),
            "box_annotations[1].bbox",
            "NaN or infinite",
        ),
        (
            lambda r: r[0]["box_annotations"][1].update(bbox=[50, 250, 20, 330]),
            "box_annotations[1].bbox",
            "inverted",
        ),
        (
            lambda r: r[0]["box_annotations"][1].update(bbox=[50, 250, 20]),
            "box_annotations[1].bbox",
            "4 numbers",
        ),
        (
            lambda r: r[0]["hoi_annotations"][0].update(object_id=3),
            "hoi_annotations[0].object_id",
            "out of range",
        ),
        (
            lambda r: r[0]["hoi_annotations"][0].update(action_id=407),
            "hoi_annotations[0].action_id",
            "unknown action id",
        ),
        (lambda r: r[1].update(file_name="surfing_1.jpg"), "file_name", "duplicate"),
        (lambda r: r[0].update(height=-1), "height", r"expected a positive integer, got -1$"),
        (lambda r: r[0].update(width=0), "width", r"expected a positive integer, got 0$"),
    ],
)
def test_bad_input(tmp_path: Path, change, field: str, match: str) -> None:
    records = make_records()
    change(records)
    with pytest.raises(DatasetError, match=match) as err:
        read_swig(_write(tmp_path, records))
    msg = str(err.value)
    assert "swig_test_1000.json" in msg and "image 'surfing_1.jpg'" in msg and repr(field) in msg, (
        msg
    )


def test_truncated(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="truncated JSON") as err:
        read_swig(_write(tmp_path, json.dumps(make_records())[:-7]))
    assert "swig_test_1000.json" in str(err.value)
