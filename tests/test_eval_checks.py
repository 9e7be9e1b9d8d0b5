"""`linkhoi eval` never reports a silent 0 %: wrong or mismatched inputs exit 1 with one line."""

from __future__ import annotations

import json

import pytest

from linkhoi.cli import main
from linkhoi.eval.triplets import write_triplets
from linkhoi.labels import load

LS = load("hico_det")
H, OB = [1, 1, 10, 10], [21, 21, 30, 30]
NAMES = [f"HICO_test2015_{i:08d}.jpg" for i in range(1, 41)]


def _det(score=0.9, h=H, o=OB):
    return {"human_box": h, "object_box": o, "verb": "ride", "object": "bicycle", "score": score}


def _gt(path, names=NAMES, pairs=True):
    bike = LS.object_ids[LS.object_position("bicycle")]
    verb = LS.hois[LS.hoi_position(LS.verb_position("ride"), LS.object_position("bicycle"))]
    recs = [{"file_name": n, "annotations": [{"bbox": H, "category_id": 1},
                                             {"bbox": OB, "category_id": bike}],
             "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": verb.verb_id}]
             if pairs else []} for n in names]  # fmt: skip
    path.write_text(json.dumps(recs))
    return path


def _eval(tmp_path, ann, pred, bench="hico_det", extra=()):
    out = tmp_path / "out" / "OUT.json"
    rc = main(["eval", bench, "--annotations", str(ann), "--predictions", str(pred),
               "--output", str(out), *extra])  # fmt: skip
    return rc, out


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("linkhoi eval: error: "), err
    return err


def test_swig_ground_truth_given_as_hico_det(tmp_path, capsys) -> None:
    swig = load("swig_hoi")
    h = swig.hois[min(swig.subsets["evaluated"])]
    recs = [{"file_name": f"x_{i}.jpg", "img_id": i, "height": 100, "width": 100,
             "box_annotations": [{"bbox": [1, 1, 9, 9], "category_id": 0, "aux_category_id": []},
                                 {"bbox": [5, 5, 20, 20], "category_id": h.object_id,
                                  "aux_category_id": []}],
             "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": h.verb_id}]}
            for i in range(3)]  # fmt: skip
    ann = tmp_path / "swig_test.json"
    ann.write_text(json.dumps(recs))
    pred = write_triplets(tmp_path / "p.json", [("x_0.jpg", [])], "hico_det")
    rc, out = _eval(tmp_path, ann, pred)
    assert rc == 1 and not out.exists()
    err = _one_error(capsys)
    assert "3 image(s) but no pair" in err and "SWiG-HOI" in err and "eval swig_hoi" in err


@pytest.mark.parametrize("content, message", [
    ("[]", "holds no image"),
    (None, "but no pair"),  # records without HOI annotations
])  # fmt: skip
def test_ground_truth_without_pairs(tmp_path, capsys, content, message) -> None:
    ann = tmp_path / "gt.json"
    if content is None:
        _gt(ann, pairs=False)
    else:
        ann.write_text(content)
    pred = write_triplets(tmp_path / "p.json", [(NAMES[0], [_det()])], "hico_det")
    rc, out = _eval(tmp_path, ann, pred)
    assert rc == 1 and not out.exists()
    assert message in _one_error(capsys)


def test_folder_prefix_matched_by_base_name_and_noted(tmp_path, capsys) -> None:
    ann = _gt(tmp_path / "gt.json")
    plain = write_triplets(tmp_path / "a.json", [(n, [_det()]) for n in NAMES], "hico_det")
    rc, out = _eval(tmp_path, ann, plain)
    assert rc == 0
    expected = json.loads(out.read_text())["map"]["full"]
    assert expected > 0
    capsys.readouterr()
    prefixed = write_triplets(
        tmp_path / "b.json", [(f"test2015/{n}", [_det()]) for n in NAMES], "hico_det"
    )
    rc, out = _eval(tmp_path, ann, prefixed)
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["map"]["full"] == expected  # not 0: every image found by its base name
    assert any("by base name" in n and "test2015/" in n for n in res["notes"])
    assert "by base name" in capsys.readouterr().out


def test_base_name_fitting_several_images_is_an_error(tmp_path, capsys) -> None:
    ann = _gt(tmp_path / "gt.json", names=["a/x.jpg", "b/x.jpg"])
    pred = write_triplets(tmp_path / "p.json", [("c/x.jpg", [_det()])], "hico_det")
    rc, _ = _eval(tmp_path, ann, pred)
    assert rc == 1
    err = _one_error(capsys)
    assert "none of the 1 predicted image(s)" in err and "'x.jpg' fit several" in err


def test_no_predicted_image_in_the_ground_truth(tmp_path, capsys) -> None:
    ann = _gt(tmp_path / "gt.json")
    pred = write_triplets(tmp_path / "p.json", [("other/img_1.jpg", [_det()])], "hico_det")
    rc, out = _eval(tmp_path, ann, pred)
    assert rc == 1 and not out.exists()
    err = _one_error(capsys)
    assert str(pred) in err and "'other/img_1.jpg'" in err and NAMES[0] in err
    assert "dropping the folder 'other/'" in err
    empty = write_triplets(tmp_path / "e.json", [], "hico_det")
    assert _eval(tmp_path, ann, empty)[0] == 1
    assert "hold no image" in _one_error(capsys)


def test_hico_det_predictions_given_to_vcoco(tmp_path, capsys) -> None:
    from test_eval_cli import _vcoco_files

    gt_args = _vcoco_files(tmp_path)
    pred = tmp_path / "p.json"  # no header: only the file names tell
    pred.write_text(json.dumps([{"file_name": n, "detections": [_det()]} for n in NAMES[:3]]))
    out = tmp_path / "o.json"
    assert main(["eval", "vcoco", *gt_args, "--predictions", str(pred), "--output", str(out)]) == 1
    err = _one_error(capsys)
    assert "look like HICO-DET predictions" in err and not out.exists()


def test_many_unmatched_images_give_a_warning_line(tmp_path, capsys) -> None:
    ann = _gt(tmp_path / "gt.json")
    # all 40 GT images predicted, plus 4 strangers: 4 / 44 = 9 % > 5 %
    images = [(n, [_det()]) for n in NAMES] + [(f"z_{i}.jpg", [_det()]) for i in range(4)]
    rc, out = _eval(tmp_path, ann, write_triplets(tmp_path / "p.json", images, "hico_det"))
    assert rc == 0
    err = capsys.readouterr().err
    assert "linkhoi eval: warning: 4 of 44 predicted images (9.1 %) are not in the ground" in err
    assert json.loads(out.read_text())["warnings"]
    # half the GT images without predictions: warned too; 1 stranger in 41 (2.4 %) is not
    images = [(n, [_det()]) for n in NAMES[:20]]
    rc, out = _eval(tmp_path, ann, write_triplets(tmp_path / "q.json", images, "hico_det"))
    assert rc == 0 and "20 of 40 ground-truth images (50.0 %) have no predictions" in (
        capsys.readouterr().err
    )
    images = [(n, [_det()]) for n in NAMES] + [("z.jpg", [])]
    rc, out = _eval(tmp_path, ann, write_triplets(tmp_path / "r.json", images, "hico_det"))
    err = capsys.readouterr().err
    assert rc == 0 and "predicted images" not in err and "have no predictions" not in err
    # (the only warning left: this tiny ground truth holds 1 of the 600 classes)
    assert [w.split(" classes")[0] for w in json.loads(out.read_text())["warnings"]] == [
        "599 of 600"
    ]


def test_classes_without_ground_truth_give_a_warning(tmp_path, capsys) -> None:
    """The official rule counts a class without ground truth as AP 0 in every mean: a small
    test set caps the mAP, which the warning says with the cap."""
    ann = _gt(tmp_path / "gt.json")
    images = [(n, [_det()]) for n in NAMES]
    rc, out = _eval(tmp_path, ann, write_triplets(tmp_path / "p.json", images, "hico_det"))
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: 599 of 600 classes have no ground-truth pair in" in err
    assert "cannot exceed 0.2 %" in err  # 1 / 600 classes measurable
    summary = json.loads(out.read_text())
    assert summary["map"]["full"] <= 1 / 600 + 1e-12
