"""`linkhoi eval` end to end on small files: OUT.json contract, CSV, plot, errors, export."""

from __future__ import annotations

import argparse
import csv
import json
import re

import numpy as np
import pytest

from linkhoi.cli import main
from linkhoi.eval import cli as eval_cli
from linkhoi.eval.triplets import write_triplets
from linkhoi.labels import load

LS = load("hico_det")
RIDE = LS.hoi_position(LS.verb_position("ride"), LS.object_position("bicycle"))
H, OB = [1, 1, 10, 10], [21, 21, 30, 30]
NAMES = [f"HICO_test2015_{i:08d}.jpg" for i in (1, 2, 3)]


def _det(h, o, score, verb="ride", obj="bicycle"):
    return {"human_box": h, "object_box": o, "verb": verb, "object": obj, "score": score}


@pytest.fixture()
def files(tmp_path):
    """Three GT images, one ride-bicycle pair each (PPDM json), and a prediction file."""
    bike = LS.object_ids[LS.object_position("bicycle")]
    verb_id = LS.hois[RIDE].verb_id
    recs = [
        {"file_name": n, "annotations": [{"bbox": H, "category_id": 1}, {"bbox": OB, "category_id": bike}],
         "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": verb_id}]}
        for n in NAMES
    ]  # fmt: skip
    ann = tmp_path / "test_hico.json"
    ann.write_text(json.dumps(recs))
    # ranked: .95 img3 wrong object box (FP), .9 img1 TP, .8 img2 TP ->
    # rec 0 1/3 2/3, prec 0 .5 2/3 -> t = 0 .. .6 give 2/3 (7 terms) -> AP 14/33
    preds = [
        (NAMES[0], [_det(H, OB, 0.9)]),
        (NAMES[1], [_det(H, OB, 0.8), _det([2, 2, 9.5, 9], [20.5, 21, 30, 31], 0.3, "hold")]),
        (NAMES[2], [_det(H, [40, 40, 50, 50], 0.95)]),
        ("not_in_gt.jpg", [_det(H, OB, 1.0)]),
    ]
    pred = write_triplets(tmp_path / "preds.jsonl.gz", preds, "hico_det")
    return ann, pred, tmp_path


def test_hico_det_end_to_end(files, capsys) -> None:
    ann, pred, tmp = files
    out = tmp / "res" / "OUT.json"
    rc = main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred),
               "--output", str(out), "--plot"])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "hico_det" and res["setting"] == "default" and res["split"] == "full"
    ap = res["per_class_ap"][str(LS.hois[RIDE].id)]
    assert ap == pytest.approx(14 / 33, abs=1e-12)
    assert len(res["per_class_ap"]) == 600 and all(
        0 <= v <= 1 for v in res["per_class_ap"].values()
    )
    assert res["map"]["full"] == pytest.approx(14 / 33 / 600, abs=1e-12)
    assert set(res["map"]) == {"full", "rare", "non_rare"}
    rows = list(csv.DictReader((tmp / "res" / "OUT.per_class_ap.csv").open()))
    assert len(rows) == 600 and rows[RIDE]["name"] == "ride bicycle"
    assert float(rows[RIDE]["ap"]) == pytest.approx(14 / 33, abs=1e-12)
    png = (tmp / "res" / "OUT.per_class_ap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shown = capsys.readouterr().out
    assert re.search(rf"mAP full\s+{100 * 14 / 33 / 600:.2f} %", shown)  # percent
    assert "11-point" in shown and "+1" in shown and "full 600 / rare 138 / non_rare 462" in shown
    assert "not_in_gt.jpg" in shown  # counted and reported


def test_two_evaluations_in_one_folder_keep_their_own_outputs(files, capsys) -> None:
    ann, pred, tmp = files
    worse = write_triplets(tmp / "worse.json", [(n, [_det(H, [40, 40, 50, 50], 0.9)])
                                                for n in NAMES], "hico_det")  # fmt: skip
    for out, p in (("a.json", pred), ("b.json", worse)):
        assert main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(p),
                     "--output", str(tmp / "res" / out), "--plot"]) == 0  # fmt: skip
    key = str(LS.hois[RIDE].id)
    for stem, ap in (("a", 14 / 33), ("b", 0.0)):
        rows = {
            r["class"]: r for r in csv.DictReader((tmp / "res" / f"{stem}.per_class_ap.csv").open())
        }
        assert float(rows[key]["ap"]) == pytest.approx(ap, abs=1e-12)
        assert (tmp / "res" / f"{stem}.per_class_ap.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp / "res" / "per_class_ap.csv").exists()
    # the chart's best and worst classes are named (and printed)
    shown = capsys.readouterr().out
    assert f"a.per_class_ap.png (best: ride bicycle {100 * 14 / 33:.1f} %" in shown


def test_known_object_and_zero_shot_flags(files) -> None:
    ann, pred, tmp = files
    out = tmp / "ko.json"
    assert main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred),
                 "--output", str(out), "--setting", "known_object", "--split", "uv"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert res["setting"] == "known_object" and set(res["map"]) == {"full", "seen", "unseen"}
    # every image holds a bicycle: KO changes nothing here; "ride" is an unseen verb of UV
    assert res["map"]["unseen"] == pytest.approx(14 / 33 / 84, abs=1e-12)


def test_strict_and_bad_input_give_one_clear_error(files, capsys) -> None:
    ann, pred, tmp = files
    args = ["eval", "hico_det", "--annotations", str(ann), "--output", str(tmp / "o.json")]
    assert main([*args, "--predictions", str(pred), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "not_in_gt.jpg" in err and str(pred) in err and err.count("\n") == 1
    bad = tmp / "bad.json"
    bad.write_text(json.dumps([{"file_name": NAMES[0], "detections": [_det(H, OB, float("nan"))]}]))
    assert main([*args, "--predictions", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and NAMES[0] in err and "detection 0" in err and "score" in err
    wrong = write_triplets(tmp / "v.json", [(NAMES[0], [])], "vcoco")
    assert main([*args, "--predictions", str(wrong)]) == 1
    assert "'label_space' is 'vcoco'" in capsys.readouterr().err
    assert main([*args, "--predictions", str(tmp / "missing.json")]) == 1
    assert "no such predictions file" in capsys.readouterr().err
    assert not (tmp / "o.json").exists()  # nothing half-written
    # Outputs that cannot be written are refused before anything is evaluated or written.
    (tmp / "a_file").write_text("x")
    (tmp / "a_dir").mkdir()
    run = ["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred)]
    for extra, message in [
        (["--output", str(tmp / "a_dir")], "it is a folder"),
        (["--output", str(tmp / "a_file" / "o.json")], "is a file, not a folder"),
        (["--output", str(tmp / "w" / "o.json"), "--export-official", str(tmp / "a_file")],
         "as the output folder: it is a file"),
    ]:  # fmt: skip
        assert main([*run, *extra]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp / "w").exists()  # OUT.json was not written before the export failed


def test_export_official_round_trip(files) -> None:
    import scipy.io

    ann, pred, tmp = files
    out_dir = tmp / "official"
    assert main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred),
                 "--output", str(tmp / "o.json"), "--export-official", str(out_dir)]) == 0  # fmt: skip
    mats = sorted(p.name for p in out_dir.glob("detections_*.mat"))
    assert len(mats) == 80 and mats[0] == "detections_01.mat" and mats[-1] == "detections_80.mat"
    bike = LS.object_position("bicycle")
    idx = LS.extra["object_coco80_index"][bike]
    assert idx == 2  # COCO-80 order: person, bicycle, ...
    cells = scipy.io.loadmat(out_dir / f"detections_{idx:02d}.mat")["all_boxes"]
    bike_classes = sorted(int(h.id) for h in LS.hois if h.object == "bicycle")
    assert cells.shape == (len(bike_classes), 3)
    r = bike_classes.index(LS.hois[RIDE].id)
    # rows [box - 1, score] (0-based pixel indices for eval_one.m), images in GT order
    np.testing.assert_array_equal(cells[r, 0], [[0, 0, 9, 9, 20, 20, 29, 29, 0.9]])
    np.testing.assert_array_equal(cells[r, 2], [[0, 0, 9, 9, 39, 39, 49, 49, 0.95]])
    hold = bike_classes.index(LS.hois[LS.hoi_position(LS.verb_position("hold"), bike)].id)
    np.testing.assert_array_equal(cells[hold, 1], [[1, 1, 8.5, 8, 19.5, 20, 29, 30, 0.3]])
    assert cells[hold, 0].size == 0 and cells[r, 1].shape[1] == 9
    assert (out_dir / "list_test.txt").read_text().split() == NAMES


def test_parser_accepts_the_contract() -> None:
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    a = parser.parse_args(["vcoco", "--annotations", "v.json", "--instances", "i.json", "--ids",
                           "t.ids", "--predictions", "p.json", "--output", "o.json", "--strict",
                           "--plot", "--export-official", "d"])  # fmt: skip
    assert a.benchmark == "vcoco" and a.strict and a.plot and str(a.export_official) == "d"
    a = parser.parse_args(["swig_hoi", "--annotations", "s.json", "--predictions", "p.json",
                           "--output", "o.json"])  # fmt: skip
    assert a.benchmark == "swig_hoi" and not a.strict
    a = parser.parse_args(["hico_det", "--annotations", "a.mat", "--predictions", "p.json",
                           "--output", "o.json", "--setting", "known_object",
                           "--image-labels", "anno.mat", "--split", "rf_uc"])  # fmt: skip
    assert a.setting == "known_object" and str(a.image_labels) == "anno.mat"
    with pytest.raises(SystemExit):
        parser.parse_args(["hico_det", "--annotations", "a", "--predictions", "p", "--output",
                           "o", "--split", "zero"])  # fmt: skip


def test_swig_hoi_through_the_cli(tmp_path) -> None:
    swig = load("swig_hoi")
    h = swig.hois[min(swig.subsets["evaluated"])]
    hb, ob = [10, 10, 50, 90], [40, 30, 90, 80]
    recs = [{"file_name": "x_1.jpg", "img_id": 11, "height": 100, "width": 100,
             "box_annotations": [{"bbox": hb, "category_id": 0, "aux_category_id": []},
                                 {"bbox": ob, "category_id": h.object_id, "aux_category_id": []}],
             "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": h.verb_id}]}]  # fmt: skip
    (tmp_path / "swig_test.json").write_text(json.dumps(recs))
    d = {"human_box": hb, "object_box": ob, "hoi_id": h.id, "score": 0.7}
    pred = write_triplets(tmp_path / "p.json", [("x_1.jpg", [d])], "swig_hoi")
    out = tmp_path / "o.json"
    assert main(["eval", "swig_hoi", "--annotations", str(tmp_path / "swig_test.json"),
                 "--predictions", str(pred), "--output", str(out)]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert res["benchmark"] == "swig_hoi"
    assert set(res["map"]) == {"non_rare", "rare", "unseen", "full", "full_seen_only"}
    assert res["per_class_ap"][str(h.id)] == pytest.approx(1.0)  # one TP, npos 1
    assert (tmp_path / "o.per_class_ap.csv").is_file()


def _vcoco_files(tmp_path) -> list[str]:
    """Tiny official V-COCO files (one image, 42); the CLI arguments naming them."""
    vc = load("vcoco")
    roles_by_verb = vc.extra["roles_by_verb"]
    entries = []
    for a, act in enumerate(vc.verbs):
        roles = ["agent", *roles_by_verb[a]]
        objs = [1] + [3 if act == "ride" else 0 for _ in roles[1:]]
        entries.append({"action_name": act, "role_name": roles, "include": [[] for _ in roles],
                        "image_id": [42], "ann_id": [1], "label": [int(act == "ride")],
                        "role_object_id": objs})  # fmt: skip
    inst = {
        "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 200, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 1, "bbox": [0, 0, 50, 100], "area": 10, "iscrowd": 0},
            {"id": 3, "image_id": 42, "category_id": 19, "bbox": [0, 50, 100, 50], "area": 10, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 19, "name": "horse"}],
    }  # fmt: skip
    (tmp_path / "v.json").write_text(json.dumps(entries))
    (tmp_path / "i.json").write_text(json.dumps(inst))
    (tmp_path / "t.ids").write_text("42\n")
    return ["--annotations", str(tmp_path / "v.json"), "--instances", str(tmp_path / "i.json"),
            "--ids", str(tmp_path / "t.ids")]  # fmt: skip


def test_vcoco_through_the_cli(tmp_path) -> None:
    gt_args = _vcoco_files(tmp_path)
    # GT after V-COCO's conversion: person [0, 0, 49, 99], horse [0, 50, 99, 99]
    dets = [
        {"human_box": [0, 0, 49, 99], "object_box": [0, 50, 99, 99], "verb": "ride",
         "role": "instr", "object": None, "score": 0.9},
        {"human_box": [0, 0, 49, 99], "object_box": None, "verb": "ride", "role": None,
         "object": None, "score": 0.8},
    ]  # fmt: skip
    pred = write_triplets(tmp_path / "p.jsonl", [("COCO_val2014_000000000042.jpg", dets)], "vcoco")
    out = tmp_path / "o.json"
    assert main(["eval", "vcoco", *gt_args, "--predictions", str(pred), "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "vcoco"
    assert set(res["role_ap"]) == {"scenario_1", "scenario_2"}
    assert {"mean", "mean_25", "per_class"} <= set(res["role_ap"]["scenario_1"])
    assert res["role_ap"]["scenario_1"]["per_class"]["ride_instr"] == pytest.approx(1.0)
    assert res["agent_ap"]["per_class"]["ride"] == pytest.approx(1.0)


def test_image_labels_through_the_cli(files, capsys) -> None:
    import scipy.io

    ann, pred, tmp = files
    labels = np.zeros((600, 3))
    labels[RIDE, :2] = 1  # image 3 holds a ride-bicycle pair but no positive label
    scipy.io.savemat(tmp / "anno.mat", {"anno_test": labels,
                                        "list_test": np.array(NAMES, dtype=object)})  # fmt: skip
    args = ["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred),
            "--output", str(tmp / "ko.json"), "--image-labels", str(tmp / "anno.mat")]  # fmt: skip
    assert main(args) == 1  # --image-labels needs the Known-Object setting
    assert "known_object" in capsys.readouterr().err
    assert main([*args, "--setting", "known_object"]) == 1
    assert NAMES[2] in capsys.readouterr().err  # eval_one.m's assertion, as one message
    labels[RIDE, 2] = 1
    scipy.io.savemat(tmp / "anno.mat", {"anno_test": labels,
                                        "list_test": np.array(NAMES, dtype=object)})  # fmt: skip
    assert main([*args, "--setting", "known_object"]) == 0
    res = json.loads((tmp / "ko.json").read_text())
    assert res["per_class_ap"][str(LS.hois[RIDE].id)] == pytest.approx(14 / 33, abs=1e-12)


@pytest.mark.parametrize("box", [[1], "0.5", True, -5, 1e30])
def test_vcoco_cli_rejects_a_malformed_object_box(tmp_path, capsys, box) -> None:
    gt_args = _vcoco_files(tmp_path)
    name = "COCO_val2014_000000000042.jpg"
    dets = [
        {"human_box": [0, 0, 49, 99], "object_box": None, "verb": "ride", "score": 0.8},
        {"human_box": [0, 0, 49, 99], "object_box": box, "verb": "ride", "role": "instr",
         "score": 0.9},
    ]  # fmt: skip
    pred = tmp_path / "p.json"
    pred.write_text(
        json.dumps({"label_space": "vcoco", "images": [{"file_name": name, "detections": dets}]})
    )
    for strict in ([], ["--strict"]):
        out = tmp_path / "o.json"
        args = ["eval", "vcoco", *gt_args, "--predictions", str(pred), "--output", str(out)]
        assert main([*args, *strict]) == 1
        err = capsys.readouterr().err
        assert re.search(
            rf"{re.escape(str(pred))}: image '{name}', detection 1: field 'object_box' must be", err
        ), err
        assert err.count("\n") == 1 and not out.exists()


def test_bad_header_through_the_cli(files, capsys) -> None:
    ann, _, tmp = files
    bad = tmp / "bad.jsonl"
    bad.write_text(
        '{"format": "hoi-triplets", "version": 99}\n'
        + json.dumps({"file_name": NAMES[0], "detections": []})
        + "\n"
    )
    args = ["eval", "hico_det", "--annotations", str(ann), "--output", str(tmp / "o.json")]
    assert main([*args, "--predictions", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: field 'version' is 99; only version 1 is supported" in err


_MALFORMED = [
    ({"human_box": [5, 5, 1, 1]}, "field 'human_box' has x2 < x1"),
    ({"verb": "levitate"}, "levitate"),
    ({"score": "high"}, "field 'score' must be a number"),
]


@pytest.mark.parametrize(("bad", "named"), _MALFORMED)
@pytest.mark.parametrize("benchmark", ["hico_det", "vcoco"])
def test_records_of_images_outside_the_ground_truth_are_validated(
    files, tmp_path, capsys, bad, named, benchmark
) -> None:
    # The official code ignores images it does not know; their records are still checked.
    if benchmark == "hico_det":
        gt_args, space, known = ["--annotations", str(files[0])], "hico_det", NAMES[0]
        good = _det(H, OB, 0.5)
    else:
        gt_args, space = _vcoco_files(tmp_path), "vcoco"
        known = "COCO_val2014_000000000042.jpg"
        good = {"human_box": H, "object_box": None, "verb": "ride", "score": 0.5}
    pred = tmp_path / "p.json"
    images = [
        {"file_name": "not_in_gt.jpg", "detections": [good, {**good, **bad}]},
        {"file_name": known, "detections": [good]},
    ]
    pred.write_text(json.dumps({"label_space": space, "images": images}))
    out = tmp_path / "o.json"
    args = ["eval", benchmark, *gt_args, "--predictions", str(pred), "--output", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{pred}: image 'not_in_gt.jpg', detection 1" in err and named in err, err
    assert err.count("\n") == 1 and not out.exists()
    # The same image with good records is ignored, as before.
    images[0]["detections"] = [good]
    pred.write_text(json.dumps({"label_space": space, "images": images}))
    assert main(args) == 0


def test_vcoco_sort_ids_flag(tmp_path, capsys) -> None:
    gt_args = _vcoco_files(tmp_path)
    ids = tmp_path / "t.ids"
    ids.write_text("42\n7\n")  # unsorted; 7 is not in the split's json either
    pred = write_triplets(tmp_path / "p.json", [], "vcoco")
    args = ["eval", "vcoco", *gt_args, "--predictions", str(pred), "--output", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "not sorted" in err and "linkhoi eval vcoco --sort-ids" in err
    assert main([*args, "--sort-ids"]) == 1  # sorted now: the next check names the extra id
    assert "in the ids file only: [7]" in capsys.readouterr().err
