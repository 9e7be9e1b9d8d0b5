"""HICO-DET evaluator against hand-computed cases and a plain-loop reference of eval_one.m.

Boxes are 1-based inclusive pixel indices (the GT file's convention); a box [1, 1, 10, 10]
covers 10 x 10 = 100 pixels under the official "+1" rule.
"""

from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest

from linkhoi.data.sample import HOIPair, Sample
from linkhoi.eval.base import EvalError
from linkhoi.eval.hico import HICOEvaluator, pixel_iou, read_image_labels
from linkhoi.labels import load

LS = load("hico_det")
PERSON = LS.object_position("person")


def hoi(verb: str, obj: str) -> int:
    return LS.hoi_position(LS.verb_position(verb), LS.object_position(obj))


RIDE_BIKE, HOLD_BIKE, RIDE_HORSE = (
    hoi("ride", "bicycle"),
    hoi("hold", "bicycle"),
    hoi("ride", "horse"),
)


def sample(name: str, pairs: list[tuple[list, list, int]]) -> Sample:
    """A sample whose pairs are given as (human box, object box, HOI position)."""
    boxes, labels, hp = [], [], []
    for h, o, c in pairs:
        boxes += [h, o]
        labels += [PERSON, int(LS.hoi_object_positions()[c])]
        hp.append(HOIPair(len(boxes) - 2, len(boxes) - 1, c))
    return Sample(name, None, 640, 480, np.array(boxes, float).reshape(-1, 4), labels, hp)


def det(h: list, o: list, c: int, score: float) -> dict:
    return {
        "human_box": h,
        "object_box": o,
        "verb": LS.hois[c].verb,
        "object": LS.hois[c].object,
        "score": score,
    }


def run(samples, preds: dict[str, list[dict]], **kw) -> HICOEvaluator:
    ev = HICOEvaluator(samples, LS, **kw)
    for name, dets in preds.items():
        ev.process(name, dets)
    return ev


def ap_of(ev: HICOEvaluator, c: int) -> float:
    return float(ev.per_class_ap()[c])


H, O = [1, 1, 10, 10], [21, 21, 30, 30]  # noqa: E741
H2, O2 = [41, 1, 50, 10], [61, 1, 70, 10]
FAR = [300, 300, 340, 340]


def test_pixel_iou_plus_one() -> None:
    # [1,1,10,10] vs [1,1,10,20]: areas 100 and 200 under +1, intersection 100 -> 0.5 exactly.
    a = np.array([[1, 1, 10, 10], [1, 1, 10, 10], [1, 1, 1, 1], [1, 1, 10, 10]], float)
    b = np.array([[1, 1, 10, 20], [11, 1, 20, 10], [1, 1, 1, 1], [10, 10, 19, 19]], float)
    # row 2: disjoint (iw = 10 - 11 + 1 = 0); row 3: one pixel each -> 1; row 4: 1 / 199
    np.testing.assert_array_equal(pixel_iou(a, b)[:3], [0.5, 0.0, 1.0])
    assert pixel_iou(a, b)[3] == pytest.approx(1 / 199)


def test_huge_boxes_give_no_overflow_warning() -> None:
    # 1e300 boxes are finite, so valid; their area overflows to inf: IoU 0, silently
    gt, preds = hand_case()
    big = 1e300
    for huge in ([0, 0, big, big], [-big, -big, big, big], [big] * 4, [-1.7e308, 1, 1.7e308, 9]):
        extra = {k: v + [det(huge, O, RIDE_BIKE, 0.01), det(H, huge, RIDE_BIKE, 0.02)]
                 for k, v in preds.items()}  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ev = run(gt, extra)
            iou = pixel_iou(np.array([huge, H], float), np.array([H, huge], float))
            ap = ap_of(ev, RIDE_BIKE)
        assert iou.tolist() == [0.0, 0.0]
        # four FPs ranked last leave the hand case's AP (8.4 / 11) unchanged
        assert ap == pytest.approx(8.4 / 11, abs=1e-12)


def hand_case() -> tuple[list, dict]:
    """GT: img a pairs P0 (H, O), P1 (H2, O2); img b pair P2 (H, O). npos = 3.

    Ranked: .9 a = P0 -> TP; .8 b far -> FP; .7 b = P2 -> TP; .6 a = P0 again -> FP
    (duplicate); .5 a = P1 -> TP. rec 1/3 1/3 2/3 2/3 1, prec 1 .5 2/3 .5 .6.
    11-pt: t=0,.1,.2,.3 -> 1 (4 terms); t=.4,.5,.6 -> 2/3 (3); t=.7..1 -> .6 (4);
    AP = (4 + 2 + 2.4) / 11 = 8.4 / 11.
    """
    gt = [
        sample("a.jpg", [(H, O, RIDE_BIKE), (H2, O2, RIDE_BIKE)]),
        sample("b.jpg", [(H, O, RIDE_BIKE)]),
    ]
    preds = {
        "a.jpg": [
            det(H, O, RIDE_BIKE, 0.9),
            det(H, O, RIDE_BIKE, 0.6),
            det(H2, O2, RIDE_BIKE, 0.5),
        ],
        "b.jpg": [det(FAR, FAR, RIDE_BIKE, 0.8), det(H, O, RIDE_BIKE, 0.7)],
    }
    return gt, preds


def test_hand_computed_ap_with_duplicate_and_fp() -> None:
    gt, preds = hand_case()  # AP 8.4 / 11, worked out in its docstring
    ev = run(gt, preds)
    assert ap_of(ev, RIDE_BIKE) == pytest.approx(8.4 / 11, abs=1e-12)
    res = ev.evaluate()
    # every other class has no GT: AP 0 but still in the 600-class mean
    assert res.summary["map"]["full"] == pytest.approx(8.4 / 11 / 600, abs=1e-12)
    assert res.summary["map"]["non_rare"] == pytest.approx(8.4 / 11 / 462, abs=1e-12)
    assert res.summary["map"]["rare"] == 0.0
    assert res.summary["per_class_ap"][str(LS.hois[RIDE_BIKE].id)] == pytest.approx(8.4 / 11)
    assert len(res.summary["per_class_ap"]) == 600


def test_iou_exactly_half_is_accepted() -> None:
    # object [1,1,10,20] vs GT [1,1,10,10]: 100 / 200 = 0.5 under +1 -> TP (AP 1).
    # Without +1 it would be 81 / 171 < 0.5. [1,1,10,21]: 100 / 210 < 0.5 -> FP (AP 0).
    gt = [sample("a.jpg", [([1, 1, 10, 10], [1, 1, 10, 10], RIDE_BIKE)])]
    assert ap_of(
        run(gt, {"a.jpg": [det([1, 1, 10, 10], [1, 1, 10, 20], RIDE_BIKE, 1.0)]}), RIDE_BIKE
    ) == pytest.approx(1.0)
    assert (
        ap_of(run(gt, {"a.jpg": [det([1, 1, 10, 10], [1, 1, 10, 21], RIDE_BIKE, 1.0)]}), RIDE_BIKE)
        == 0.0
    )


def test_taken_best_gt_is_fp_without_fallback() -> None:
    # G0 = ([1,1,100,100] x2), G1 = ([1,1,100,90] x2): IoU(G0 box, G1 box) = 9000/10000 = .9.
    # Both detections equal G0: the first takes G0; the second's argmax is G0 (1 > .9), taken
    # -> FP although G1 is free with .9. Ranked T F, npos 2: rec .5 .5, prec 1 .5
    # -> t = 0 .. .5 give 1 (6 terms) -> AP 6/11 (a fallback would give T T, AP 1).
    g0, g1 = [1, 1, 100, 100], [1, 1, 100, 90]
    gt = [sample("a.jpg", [(g0, g0, RIDE_BIKE), (g1, g1, RIDE_BIKE)])]
    preds = {"a.jpg": [det(g0, g0, RIDE_BIKE, 0.9), det(g0, g0, RIDE_BIKE, 0.8)]}
    assert ap_of(run(gt, preds), RIDE_BIKE) == pytest.approx(6 / 11, abs=1e-12)


def test_ties_between_gt_rows_go_to_the_first_row() -> None:
    # Two identical GT pairs; two identical detections: both overlaps tie -> row 0 each time,
    # so the second detection is an FP (taken), the second GT row is never matched.
    # T F, npos 2 -> AP 6/11.
    gt = [sample("a.jpg", [(H, O, RIDE_BIKE), (H, O, RIDE_BIKE)])]
    preds = {"a.jpg": [det(H, O, RIDE_BIKE, 0.9), det(H, O, RIDE_BIKE, 0.8)]}
    assert ap_of(run(gt, preds), RIDE_BIKE) == pytest.approx(6 / 11, abs=1e-12)


def test_fp_on_image_without_gt_counts() -> None:
    # GT only in a.jpg; the top detection is on b.jpg (no GT at all) -> F T, npos 1:
    # rec 0 1, prec 0 .5 -> every threshold gets .5 -> AP .5.
    gt = [sample("a.jpg", [(H, O, RIDE_BIKE)]), sample("b.jpg", [])]
    preds = {"b.jpg": [det(H, O, RIDE_BIKE, 0.9)], "a.jpg": [det(H, O, RIDE_BIKE, 0.8)]}
    assert ap_of(run(gt, preds), RIDE_BIKE) == pytest.approx(0.5, abs=1e-12)


def test_tied_scores_follow_gt_image_order_then_input_order() -> None:
    # Tie at .5: image order of the GT file decides, not the order of process() calls.
    # GT order (b, a): b's FP ranks first -> F T -> AP .5; GT order (a, b): T F -> AP 1.
    preds = {"a.jpg": [det(H, O, RIDE_BIKE, 0.5)], "b.jpg": [det(H, O, RIDE_BIKE, 0.5)]}
    gt_ab = [sample("a.jpg", [(H, O, RIDE_BIKE)]), sample("b.jpg", [])]
    gt_ba = [sample("b.jpg", []), sample("a.jpg", [(H, O, RIDE_BIKE)])]
    assert ap_of(run(gt_ab, preds), RIDE_BIKE) == pytest.approx(1.0)
    assert ap_of(run(gt_ba, preds), RIDE_BIKE) == pytest.approx(0.5)
    # inside one image the input order decides: FP listed first -> F T -> .5
    one = [sample("a.jpg", [(H, O, RIDE_BIKE)])]
    fp_first = {"a.jpg": [det(FAR, FAR, RIDE_BIKE, 0.5), det(H, O, RIDE_BIKE, 0.5)]}
    tp_first = {"a.jpg": [det(H, O, RIDE_BIKE, 0.5), det(FAR, FAR, RIDE_BIKE, 0.5)]}
    assert ap_of(run(one, fp_first), RIDE_BIKE) == pytest.approx(0.5)
    assert ap_of(run(one, tp_first), RIDE_BIKE) == pytest.approx(1.0)


def test_recall_exactly_06_end_to_end() -> None:
    # 5 images, one GT each; 3 TPs (.9 .8 .7) then 2 FPs -> rec .6 reached exactly:
    # MATLAB grid keeps t = .6 -> 7/11 (numpy's arange grid would give 6/11).
    gt = [sample(f"{i}.jpg", [(H, O, RIDE_BIKE)]) for i in range(5)]
    preds = {f"{i}.jpg": [det(H, O, RIDE_BIKE, 0.9 - 0.1 * i)] for i in range(3)}
    preds["3.jpg"] = [det(FAR, FAR, RIDE_BIKE, 0.2)]
    preds["4.jpg"] = [det(FAR, FAR, RIDE_BIKE, 0.1)]
    assert ap_of(run(gt, preds), RIDE_BIKE) == pytest.approx(7 / 11, abs=1e-12)


def test_known_object_restriction() -> None:
    # ride-bicycle GT in a.jpg; b.jpg has a hold-bicycle pair; c.jpg only a horse.
    # Detections: c .9 FP, b .8 FP, a .7 TP.
    # Default: F F T -> prec at rec 1 = 1/3 -> AP 1/3.
    # KO from boxes: c dropped (no bicycle) -> F T -> AP .5.
    # KO with anno.mat-style labels: c.jpg carries an image-level bicycle label (e.g. an
    # invisible pair) -> c is "known" again -> F F T -> AP 1/3; labels decide, not boxes.
    gt = [
        sample("a.jpg", [(H, O, RIDE_BIKE)]),
        sample("b.jpg", [(H, O, HOLD_BIKE)]),
        sample("c.jpg", [(H, O, RIDE_HORSE)]),
    ]
    preds = {
        "a.jpg": [det(H, O, RIDE_BIKE, 0.7)],
        "b.jpg": [det(FAR, FAR, RIDE_BIKE, 0.8)],
        "c.jpg": [det(H, O, RIDE_BIKE, 0.9)],
    }
    assert ap_of(run(gt, preds), RIDE_BIKE) == pytest.approx(1 / 3)
    assert ap_of(run(gt, preds, setting="known_object"), RIDE_BIKE) == pytest.approx(0.5)
    labels = np.full((600, 3), -1.0)
    labels[RIDE_BIKE, 0] = labels[HOLD_BIKE, 1] = labels[RIDE_HORSE, 2] = 1
    labels[hoi("repair", "bicycle"), 2] = 1
    ev = run(gt, preds, setting="known_object", image_labels=labels)
    assert ap_of(ev, RIDE_BIKE) == pytest.approx(1 / 3)
    labels[hoi("repair", "bicycle"), 2] = 0  # 0 (ambiguous) is not "known"
    ev = run(gt, preds, setting="known_object", image_labels=labels)
    assert ap_of(ev, RIDE_BIKE) == pytest.approx(0.5)
    # labels that leave a GT pair outside its known images are refused, as eval_one.m asserts
    labels[HOLD_BIKE, 1] = np.nan
    with pytest.raises(EvalError, match="b.jpg"):
        HICOEvaluator(gt, LS, setting="known_object", image_labels=labels)


def test_zero_shot_means() -> None:
    unseen = sorted(LS.subsets["rf_uc"])[0]
    seen = RIDE_BIKE
    assert seen not in LS.subsets["rf_uc"]
    gt = [sample("a.jpg", [(H, O, seen)]), sample("b.jpg", [(H, O, unseen)])]
    preds = {"a.jpg": [det(H, O, seen, 0.9)], "b.jpg": [det(H, O, unseen, 0.9)]}
    res = run(gt, preds, split="rf_uc").evaluate()
    m = res.summary["map"]
    assert set(m) == {"full", "seen", "unseen"}
    assert m["full"] == pytest.approx(2 / 600)
    assert m["seen"] == pytest.approx(1 / 480)
    assert m["unseen"] == pytest.approx(1 / 120)
    assert res.summary["split"] == "rf_uc"


def test_unknown_images_and_non_hoi_combinations() -> None:
    gt = [sample("a.jpg", [(H, O, RIDE_BIKE)])]
    bad_combo = dict(det(H, O, RIDE_BIKE, 0.95), object="apple")  # ride apple: no class
    preds = {
        "a.jpg": [bad_combo, det(H, O, RIDE_BIKE, 0.9)],
        "zzz.jpg": [det(H, O, RIDE_BIKE, 1.0)],
    }
    ev = run(gt, preds)
    res = ev.evaluate()
    assert ap_of(ev, RIDE_BIKE) == pytest.approx(1.0)  # both ignored, not FPs
    assert ev.unknown_detections == 1 and ev.unknown_images == ["zzz.jpg"]
    assert ev.non_hoi_detections == 1
    assert any("zzz.jpg" in n for n in res.notes) and any(
        "not one of the 600" in n for n in res.notes
    )
    with pytest.raises(EvalError, match="zzz.jpg"):
        run(gt, {"zzz.jpg": []}, strict=True)
    with pytest.raises(EvalError, match="apple"):
        run(gt, {"a.jpg": [bad_combo]}, strict=True)


def test_read_image_labels_reorders_by_name(tmp_path) -> None:
    import scipy.io

    labels = np.zeros((600, 3))
    labels[0, 2] = 1  # HOI id 1 positive in the third listed image
    names = np.array(["x.jpg", "y.jpg", "z.jpg"], dtype=object)
    scipy.io.savemat(tmp_path / "anno.mat", {"anno_test": labels, "list_test": names})
    out = read_image_labels(tmp_path / "anno.mat", ["z.jpg", "x.jpg"], LS)
    assert out.shape == (600, 2)
    assert out[LS.hoi_position_by_id(1), 0] == 1 and out.sum() == 1
    with pytest.raises(EvalError, match="q.jpg"):
        read_image_labels(tmp_path / "anno.mat", ["q.jpg"], LS)


# ------------------------------------------------------------------ reference implementation
MATLAB_T = [0.0 + k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)]


def _ref_iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw > 0 and ih > 0:
        ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
        return iw * ih / ua
    return 0.0


def reference_ap(samples, preds, known_object=False) -> list[float]:
    """eval_one.m + VOCevaldet_bboxpair.m transcribed with plain loops (docs/evaluation.md, HICO-DET protocol)."""
    aps = []
    for c in range(len(LS.hois)):
        gt = [
            [(s.boxes[p.human], s.boxes[p.object]) for p in s.pairs if p.hoi == c] for s in samples
        ]
        npos = sum(len(g) for g in gt)
        obj = LS.hois[c].object
        dets = []
        for i, s in enumerate(samples):
            if known_object and not any(LS.hois[p.hoi].object == obj for p in s.pairs):
                continue
            for d in preds.get(s.file_name, []):
                if d["verb"] == LS.hois[c].verb and d["object"] == obj:
                    dets.append((i, d))
        if not dets or npos == 0:
            aps.append(0.0)
            continue
        dets = sorted(dets, key=lambda t: -t[1]["score"])  # Python's sort is stable
        taken = [[False] * len(g) for g in gt]
        tp, fp = [], []
        for i, d in dets:
            ov_max, j_max = -math.inf, -1
            for j, (gh, go) in enumerate(gt[i]):
                m = min(_ref_iou(d["human_box"], gh), _ref_iou(d["object_box"], go))
                if m > ov_max:
                    ov_max, j_max = m, j
            if ov_max >= 0.5 and not taken[i][j_max]:
                taken[i][j_max] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        ctp, cfp, rec, prec = 0, 0, [], []
        for a, b in zip(tp, fp, strict=True):
            ctp, cfp = ctp + a, cfp + b
            rec.append(ctp / npos)
            prec.append(ctp / (ctp + cfp))
        ap = 0.0
        for t in MATLAB_T:
            ps = [p for r, p in zip(rec, prec, strict=True) if r >= t]
            ap = ap + (max(ps) if ps else 0.0) / 11
        aps.append(ap)
    return aps


@pytest.mark.parametrize("known_object", [False, True])
def test_matches_reference_on_random_case(known_object: bool) -> None:
    rng = random.Random(7)
    classes = [RIDE_BIKE, HOLD_BIKE, RIDE_HORSE, hoi("feed", "horse"), hoi("hold", "cup")]

    def box():
        x, y = rng.randint(1, 60), rng.randint(1, 60)
        return [x, y, x + rng.randint(0, 30), y + rng.randint(0, 30)]

    def jitter(b):
        x1, y1, x2, y2 = (v + rng.choice([-2, -1, 0, 0, 1, 2]) for v in b)
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]

    samples, preds = [], {}
    for i in range(40):
        pairs = [(box(), box(), rng.choice(classes)) for _ in range(rng.randint(0, 4))]
        samples.append(sample(f"{i:03d}.jpg", pairs))
        dets = []
        for h, o, c in pairs:
            for _ in range(rng.randint(0, 3)):  # duplicates and near misses
                dets.append(det(jitter(h), jitter(o), c, rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])))
        for _ in range(rng.randint(0, 4)):  # background
            dets.append(det(box(), box(), rng.choice(classes), round(rng.random(), 1)))
        rng.shuffle(dets)
        preds[f"{i:03d}.jpg"] = dets
    names = list(preds)
    rng.shuffle(names)  # process order must not matter
    ev = HICOEvaluator(samples, LS, setting="known_object" if known_object else "default")
    for n in names:
        ev.process(n, preds[n])
    ours = ev.per_class_ap()
    ref = reference_ap(samples, preds, known_object)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    assert sum(a > 0 for a in ref) >= 4  # the case exercises several classes


def test_from_files_ppdm_json(tmp_path) -> None:
    # PPDM layout: COCO category ids, verb ids 1..117, 0-based box indices
    bike = LS.object_ids[LS.object_position("bicycle")]
    rec = {
        "file_name": "HICO_test2015_00000001.jpg",
        "annotations": [{"bbox": H, "category_id": 1}, {"bbox": O, "category_id": bike}],
        "hoi_annotation": [
            {"subject_id": 0, "object_id": 1, "category_id": LS.hois[RIDE_BIKE].verb_id}
        ],
    }
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps([rec]))
    ev = HICOEvaluator.from_files(path)
    ev.process("HICO_test2015_00000001.jpg", [det(H, O, RIDE_BIKE, 0.5)])
    assert ev.evaluate().summary["per_class_ap"][str(LS.hois[RIDE_BIKE].id)] == pytest.approx(1.0)


def test_gather_across_ranks_equals_single_process(monkeypatch) -> None:
    import torch.distributed as dist

    # the hand-computed case split over two "ranks", plus an image outside the GT on rank 1
    gt, preds = hand_case()
    preds["zzz.jpg"] = [det(H, O, RIDE_BIKE, 0.1)]
    rank1 = run(gt, {"b.jpg": preds["b.jpg"], "zzz.jpg": preds["zzz.jpg"]})
    rank0 = run(gt, {"a.jpg": preds["a.jpg"]})

    def fake_gather(obj, object_gather_list, dst):
        object_gather_list[0], object_gather_list[1] = obj, rank1._predictions

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "gather_object", fake_gather)
    rank0.gather()
    assert ap_of(rank0, RIDE_BIKE) == pytest.approx(8.4 / 11, abs=1e-12)
    assert rank0.unknown_images == ["zzz.jpg"] and rank0.unknown_detections == 1
