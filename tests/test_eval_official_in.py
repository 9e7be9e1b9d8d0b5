"""Official prediction formats read by `linkhoi eval` and `linkhoi convert-preds`: each read
back after --export-official gives the same numbers; the V-COCO pickle runs no code."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from linkhoi.cli import main
from linkhoi.eval.official_in import RestrictedUnpickler, detect_format
from linkhoi.eval.triplets import read_triplets, write_triplets
from linkhoi.labels import load


def _eval(bench: str, gt_args: list[str], pred, out) -> dict:
    assert main(["eval", bench, *gt_args, "--predictions", str(pred), "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    return {k: v for k, v in res.items() if k not in ("notes", "warnings", "protocol")}


def _round_trip(tmp_path, bench: str, gt_args: list[str], pred, exported: str) -> None:
    """Evaluate, export, evaluate the export directly and after convert-preds: same numbers."""
    official = tmp_path / "official"
    assert main(["eval", bench, *gt_args, "--predictions", str(pred), "--output",
                 str(tmp_path / "a.json"), "--export-official", str(official)]) == 0  # fmt: skip
    first = _eval(bench, gt_args, pred, tmp_path / "a.json")
    back = official / exported if exported else official
    assert detect_format(back) != "triplets"
    assert _eval(bench, gt_args, back, tmp_path / "b.json") == first
    converted = tmp_path / "converted.jsonl"
    assert main(["convert-preds", str(back), "--output", str(converted)]) == 0
    assert _eval(bench, gt_args, converted, tmp_path / "c.json") == first
    return first


def test_hico_det_mat_folder_round_trip(tmp_path) -> None:
    from test_eval_cli import NAMES, OB, H, _det

    ls = load("hico_det")
    bike = ls.object_ids[ls.object_position("bicycle")]
    ride = ls.hois[ls.hoi_position(ls.verb_position("ride"), ls.object_position("bicycle"))]
    recs = [{"file_name": n, "annotations": [{"bbox": H, "category_id": 1},
                                             {"bbox": OB, "category_id": bike}],
             "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": ride.verb_id}]}
            for n in NAMES]  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(recs))
    preds = [(NAMES[0], [_det(H, OB, 0.9), _det([2, 2, 9.5, 9], [20.5, 21, 30, 31], 0.3, "hold")]),
             (NAMES[1], [_det(H, [40, 40, 50, 50], 0.95), _det(H, OB, 0.2)]),
             (NAMES[2], [_det(H, OB, 0.8)])]  # fmt: skip
    pred = write_triplets(tmp_path / "p.json", preds, "hico_det")
    res = _round_trip(tmp_path, "hico_det", ["--annotations", str(tmp_path / "gt.json")], pred, "")
    assert res["per_class_ap"][str(ride.id)] > 0
    # without list_test.txt the columns follow the ground truth's order
    (tmp_path / "official" / "list_test.txt").unlink()
    args = ["--annotations", str(tmp_path / "gt.json")]
    assert _eval("hico_det", args, tmp_path / "official", tmp_path / "d.json") == res
    assert main(["convert-preds", str(tmp_path / "official"), "--output",
                 str(tmp_path / "e.json"), *args]) == 0  # fmt: skip
    assert [n for n, _ in read_triplets(tmp_path / "e.json")] == NAMES


def test_vcoco_pickle_round_trip(tmp_path) -> None:
    from test_eval_cli import _vcoco_files

    gt_args = _vcoco_files(tmp_path)
    name = "COCO_val2014_000000000042.jpg"
    dets = [
        {"human_box": [0, 0, 49, 99], "object_box": [0, 50, 99, 99], "verb": "ride",
         "role": "instr", "score": 0.9},
        {"human_box": [0, 0, 49, 99], "object_box": [0, 0, 30, 30], "verb": "ride",
         "role": "instr", "score": 0.95},
        {"human_box": [0, 0, 49, 99], "object_box": None, "verb": "ride", "score": 0.8},
        {"human_box": [0, 0, 49, 99], "object_box": None, "verb": "hit", "role": "obj",
         "score": 0.4},
    ]  # fmt: skip
    pred = write_triplets(tmp_path / "p.jsonl", [(name, dets)], "vcoco")
    res = _round_trip(tmp_path, "vcoco", gt_args, pred, "vcoco_detections.pkl")
    assert res["role_ap"]["scenario_1"]["per_class"]["ride_instr"] == pytest.approx(0.5)


def test_swig_json_round_trip(tmp_path) -> None:
    swig = load("swig_hoi")
    h = swig.hois[min(swig.subsets["evaluated"])]
    hb, ob = [10, 10, 50, 90], [40, 30, 90, 80]
    recs = [{"file_name": f"x_{i}.jpg", "img_id": 11 + i, "height": 100, "width": 100,
             "box_annotations": [{"bbox": hb, "category_id": 0, "aux_category_id": []},
                                 {"bbox": ob, "category_id": h.object_id, "aux_category_id": []}],
             "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": h.verb_id}]}
            for i in range(2)]  # fmt: skip
    (tmp_path / "swig_test.json").write_text(json.dumps(recs))
    d = {"human_box": hb, "object_box": ob, "hoi_id": h.id}
    preds = [("x_0.jpg", [{**d, "score": 0.7}, {**d, "object_box": [0, 0, 5, 5], "score": 0.9}]),
             ("x_1.jpg", [{**d, "score": 0.6}]), ("elsewhere.jpg", [{**d, "score": 0.99}])]  # fmt: skip
    pred = write_triplets(tmp_path / "p.json", preds, "swig_hoi")
    gt_args = ["--annotations", str(tmp_path / "swig_test.json")]
    res = _round_trip(tmp_path, "swig_hoi", gt_args, pred, "swig_predictions.json")
    assert 0 < res["per_class_ap"][str(h.id)] < 1


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_vcoco_pickle_cannot_run_code(tmp_path, capsys, monkeypatch) -> None:
    from test_eval_cli import _vcoco_files

    monkeypatch.chdir(tmp_path)
    gt_args = _vcoco_files(tmp_path)
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps([{"image_id": 42, "person_box": [0, 0, 1, 1], "x": _Evil()}]))
    out = tmp_path / "o.json"
    assert main(["eval", "vcoco", *gt_args, "--predictions", str(bad), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "system; only lists, dicts, numbers and numpy arrays are read" in err
    assert not (tmp_path / "pwned_by_pickle").exists() and not out.exists()
    import numpy as np

    ok = pickle.dumps([{"a": np.arange(3.0), "b": np.float32(2.5), "c": [1, 2.0, "s"]}])
    import io

    assert RestrictedUnpickler(io.BytesIO(ok)).load()[0]["b"] == 2.5


def test_official_format_of_another_benchmark(tmp_path, capsys) -> None:
    from test_eval_checks import _gt

    ann = _gt(tmp_path / "gt.json")
    swig_json = tmp_path / "swig_predictions.json"
    swig_json.write_text(json.dumps({"11": [[1, 0.5, 1, 1, 2, 2, 3, 3, 4, 4]]}))
    out = tmp_path / "o.json"
    assert main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(swig_json),
                 "--output", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "SWiG-HOI official-evaluator json" in err and "eval swig_hoi" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"11": [[1, 0.5, 1, 1, 2]]}))
    assert main(["convert-preds", str(bad), "--output", str(tmp_path / "c.json")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: image '11', detection 0: must be [hoi_id, score" in err
    assert not (tmp_path / "c.json").exists()


def test_official_formats_keep_the_input_limit(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LINKHOI_MAX_INPUT_MB", "0.001")  # about 1 KB
    big = tmp_path / "big.pkl"
    big.write_bytes(pickle.dumps([{"image_id": i, "person_box": [0, 0, 1, i]} for i in range(200)]))
    assert main(["convert-preds", str(big), "--output", str(tmp_path / "c.json")]) == 1
    err = capsys.readouterr().err
    assert str(big) in err and "input limit" in err and not (tmp_path / "c.json").exists()
