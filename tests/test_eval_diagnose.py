"""The TIDE-style diagnosis on constructed cases whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from linkhoi.cli import main
from linkhoi.data.sample import HOIPair, Sample
from linkhoi.eval.diagnose import TYPES
from linkhoi.eval.hico import HICOEvaluator
from linkhoi.labels import load

LS = load("hico_det")
PERSON = LS.object_position("person")
OBJ = np.asarray(LS.hoi_object_positions())
H, OB = [11.0, 11.0, 110.0, 110.0], [201.0, 201.0, 300.0, 300.0]  # 100 x 100 pixels each
# the object box moved right by 54 pixels: IoU 46 / 154 = 0.299 (+1 pixel rule)
OB_MOVED = [255.0, 201.0, 354.0, 300.0]
NAMES = [f"HICO_test2015_{i + 1:08d}.jpg" for i in range(len(LS.hois))]


def ground_truth() -> list[Sample]:
    """One image per HOI class holding one pair of that class: every class has a GT pair."""
    return [Sample(n, None, 640, 480, np.array([H, OB]), [PERSON, int(OBJ[c])], [HOIPair(0, 1, c)])
            for c, n in enumerate(NAMES)]  # fmt: skip


def detection(c: int, h=H, o=OB, score: float = 0.9) -> dict:
    return {"human_box": h, "object_box": o, "hoi_id": LS.hois[c].id, "score": score}


def diagnose(per_image: dict[str, list[dict]]) -> tuple[dict, float]:
    ev = HICOEvaluator(ground_truth(), LS)
    for name, dets in per_image.items():
        ev.process(name, dets)
    return ev.diagnose(), ev.evaluate().summary["map"]["full"]


def other_verb(c: int) -> int:
    """Another HOI class of the same object category (another valid verb)."""
    return int(next(k for k in np.flatnonzero(OBJ[c] == OBJ) if k != c))


def test_predictions_equal_to_the_ground_truth() -> None:
    d, full = diagnose({n: [detection(c)] for c, n in enumerate(NAMES)})
    assert d["map"] == pytest.approx(1.0) and full == pytest.approx(1.0)
    assert d["delta_map"] == {t: 0.0 for t in TYPES}
    assert d["pair_recall"] == 1.0 and sum(d["counts"].values()) == 0


def test_object_boxes_moved_to_iou_0_3() -> None:
    from linkhoi.eval.hico import pixel_iou

    assert pixel_iou(np.array([OB]), np.array([OB_MOVED]))[0] == pytest.approx(0.3, abs=0.01)
    d, full = diagnose({n: [detection(c, o=OB_MOVED)] for c, n in enumerate(NAMES)})
    assert d["map"] == full == 0.0
    assert d["counts"]["object_loc"] == len(NAMES)
    assert d["delta_map"]["object_loc"] == pytest.approx(1.0)  # recovers everything
    assert all(v == 0.0 for t, v in d["delta_map"].items() if t != "object_loc")
    assert d["pair_recall"] == 0.0


def test_verbs_swapped_for_another_verb_of_the_object() -> None:
    d, full = diagnose({n: [detection(other_verb(c))] for c, n in enumerate(NAMES)})
    assert d["map"] == full == 0.0
    assert d["counts"]["verb"] == len(NAMES)
    assert d["delta_map"]["verb"] == pytest.approx(1.0)
    assert all(v == 0.0 for t, v in d["delta_map"].items() if t != "verb")
    assert d["pair_recall"] == 1.0  # the boxes were found, only the verbs are wrong


def test_each_error_type_on_one_class() -> None:
    c = 0
    far = [400.0, 10.0, 500.0, 100.0]
    human_moved = [65.0, 11.0, 164.0, 110.0]
    other_object = int(next(k for k in range(len(OBJ)) if OBJ[k] != OBJ[c]))
    dets = [detection(c, score=0.95),  # TP
            detection(c, score=0.9),  # duplicate
            detection(c, h=human_moved, score=0.8),  # human_loc (pair already taken)
            detection(c, h=human_moved, o=OB_MOVED, score=0.7),  # both_loc
            detection(c, h=far, o=far, score=0.99)]  # background, ranked first  # fmt: skip
    per_image = {NAMES[c]: dets, NAMES[other_object]: [detection(c, score=0.5)]}  # object_class
    d, full = diagnose(per_image)
    assert d["map"] == pytest.approx(full)
    assert d["counts"] == {"human_loc": 1, "object_loc": 0, "both_loc": 1, "verb": 0,
                           "object_class": 1, "duplicate": 1, "background": 1, "other": 0,
                           "missed": len(NAMES) - 2}  # fmt: skip
    # class c: the background FP ranks first (AP 0.5); removing it gives AP 1. Duplicates and
    # errors on a taken pair rank after the TP: removing them changes nothing. The GT of
    # other_object is recovered by the object_class fix; the missed pairs leave the GT.
    delta = d["delta_map"]
    assert delta["background"] == pytest.approx(0.5 / 600)
    assert delta["duplicate"] == delta["human_loc"] == delta["both_loc"] == 0.0
    assert delta["object_class"] == pytest.approx(1 / 600)
    assert delta["missed"] == 0.0  # a class whose pairs all leave the GT has AP 0 (official)


def test_diagnose_through_the_cli(tmp_path, capsys) -> None:
    recs = []
    for c, n in enumerate(NAMES[:20]):
        recs.append({"file_name": n, "annotations": [
            {"bbox": H, "category_id": 1},
            {"bbox": OB, "category_id": LS.object_ids[int(OBJ[c])]}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1,
                                "category_id": LS.hois[c].verb_id}]})  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(recs))
    preds = [{"file_name": n, "detections": [detection(c, o=OB_MOVED)]}
             for c, n in enumerate(NAMES[:20])]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(preds))
    out = tmp_path / "r" / "OUT.json"
    assert main(["eval", "hico_det", "--annotations", str(tmp_path / "gt.json"), "--predictions",
                 str(tmp_path / "p.json"), "--output", str(out), "--diagnose", "--plot"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    diag = res["diagnosis"]
    assert set(diag) >= {"map", "delta_map", "pair_recall"} and set(diag["delta_map"]) == set(TYPES)
    assert diag["delta_map"]["object_loc"] == pytest.approx(20 / 600)
    shown = capsys.readouterr().out
    assert "object_loc" in shown and "+3.33" in shown
    assert (tmp_path / "r" / "OUT.diagnosis.png").read_bytes()[:4] == b"\x89PNG"


def test_diagnose_is_refused_where_it_is_not_available(tmp_path, capsys) -> None:
    from test_eval_cli import _vcoco_files

    gt_args = _vcoco_files(tmp_path)
    (tmp_path / "p.json").write_text("[]")
    out = tmp_path / "o.json"
    assert main(["eval", "vcoco", *gt_args, "--predictions", str(tmp_path / "p.json"),
                 "--output", str(out), "--diagnose"]) == 1  # fmt: skip
    assert "--diagnose is available for hico_det, not vcoco" in capsys.readouterr().err
    assert not out.exists()
