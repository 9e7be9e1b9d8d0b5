"""`linkhoi data check` on tiny dataset layouts made by the test (docs/datasets.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from linkhoi.cli import main
from linkhoi.data.check import check_dataset
from test_data_hico import JSON_IMAGES, MAT_IMAGES, write_hico_mat, write_images
from test_data_swig import make_records
from test_data_vcoco import make_instances, make_vcoco


def hico_layout(root: Path) -> Path:
    write_images(root / "images" / "test2015")
    (root / "images" / "train2015").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "annotations" / "test_hico.json").write_text(json.dumps(JSON_IMAGES))
    write_hico_mat(root / "anno_bbox.mat")  # bbox_test only: the train variable is missing
    return root


def test_hico_check_reports_counts_and_problems(tmp_path: Path) -> None:
    report = check_dataset("hico_det", hico_layout(tmp_path / "hico_20160224_det"))
    text = report.text()
    assert "images/test2015: 4 (published 9,658: DIFFERS)" in text
    assert "annotations/test_hico.json (test): 9 pairs, 1 images without pairs" in text
    assert "anno_bbox.mat (test): 9 pairs" in text
    # the json may omit images: a note; the official mat must be complete: a problem
    assert any("test_hico.json annotated images: 4, published 9,658" in n for n in report.notes)
    assert "anno_bbox.mat annotated images: 4, published 9,658" in report.problems
    assert "images/train2015: 0, published 38,118" in report.problems
    assert any("anno_bbox.mat (train)" in p and "bbox_train" in p for p in report.problems)
    assert not any("not on disk" in p for p in report.problems)
    assert not report.ok and text.endswith(f"FAILED: {len(report.problems)} problem(s)")


def test_hico_check_finds_missing_images_and_bad_files(tmp_path: Path) -> None:
    root = hico_layout(tmp_path / "h")
    (root / "images" / "test2015" / MAT_IMAGES[1][0]).unlink()
    bad = json.loads(json.dumps(JSON_IMAGES))
    bad[0]["annotations"][0]["bbox"] = [5, 5, 1, 1]
    (root / "annotations" / "trainval_hico.json").write_text(json.dumps(bad))
    report = check_dataset("hico_det", root)
    missing = [p for p in report.problems if "not on disk" in p]
    assert len(missing) == 2 and all(MAT_IMAGES[1][0] in p for p in missing)  # json and mat
    assert any("trainval_hico.json" in p and "inverted box" in p for p in report.problems)


def test_hico_check_empty_root(tmp_path: Path) -> None:
    report = check_dataset("hico_det", tmp_path)
    assert any("no annotation file found" in p for p in report.problems)
    assert any("train2015 not found" in p for p in report.problems)
    assert check_dataset("hico_det", tmp_path / "nope").problems == [
        f"root folder {tmp_path / 'nope'} does not exist"
    ]
    (tmp_path / "a_file").write_text("x")
    assert check_dataset("hico_det", tmp_path / "a_file").problems == [
        f"root folder {tmp_path / 'a_file'} is a file, not a folder"
    ]


def vcoco_layout(root: Path, instances: dict | None = None, ids: bytes = b"10\n20\n") -> Path:
    (root / "data" / "vcoco").mkdir(parents=True)
    (root / "data" / "splits").mkdir()
    (root / "data" / "vcoco" / "vcoco_test.json").write_text(json.dumps(make_vcoco()))
    inst = make_instances() if instances is None else instances
    (root / "data" / "instances_vcoco_all_2014.json").write_text(json.dumps(inst))
    (root / "data" / "splits" / "vcoco_test.ids").write_bytes(ids)
    return root


def test_vcoco_check_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = vcoco_layout(tmp_path / "v-coco")
    (root / "coco" / "images" / "val2014").mkdir(parents=True)
    (root / "coco" / "images" / "train2014").mkdir(parents=True)
    for i in (10, 20):
        Image.new("RGB", (4, 4)).save(root / "coco/images/val2014" / f"COCO_val2014_{i:012d}.jpg")
    assert main(["data", "check", "--dataset", "vcoco", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "coco/images/val2014: 2" in out
    assert "data/vcoco/vcoco_test.json (test): 7 pairs, 0 images without pairs" in out
    assert "data/vcoco/vcoco_test.json annotated images: 2, published 4,946" in out
    assert "not on disk" not in out and "FAILED: 1 problem(s)" in out


def test_swig_check_ok_exit_code_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "swig_hoi"
    (root / "annotations").mkdir(parents=True)
    (root / "images_512").mkdir()
    records = make_records()
    (root / "annotations" / "swig_test_1000.json").write_text(json.dumps(records))
    for r in records:
        Image.new("RGB", (r["width"], r["height"])).save(root / "images_512" / r["file_name"])
    assert main(["data", "check", "--dataset", "swig_hoi", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "images_512: 3\n" in out and "annotated images: 3\n" in out and out.endswith("OK\n")


@pytest.mark.parametrize(
    ("instances", "ids", "message"),
    [
        ({"images": [], "annotations": None}, b"10\n20\n",
         "instances_vcoco_all_2014.json', field 'annotations': expected a list, got None"),
        (None, b"10\n\xff\xfe20\n", "vcoco_test.ids', field 'line 2': not UTF-8 text"),
        (None, b"10\n10\n20\n",
         "vcoco_test.ids', field 'line 2': duplicate image id 10 (also on line 1)"),
    ],
)  # fmt: skip
def test_vcoco_check_reports_malformed_files(tmp_path: Path, instances, ids, message) -> None:
    report = check_dataset("vcoco", vcoco_layout(tmp_path / "v", instances, ids))
    bad = [p for p in report.problems if p.startswith("data/vcoco/vcoco_test.json (test): ")]
    assert len(bad) == 1 and message in bad[0], report.problems
