"""SWiG-HOI evaluator: hand-computed cases of docs/evaluation.md (SWiG-HOI) and a slow reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from linkhoi import labels
from linkhoi.data import HOIPair, Sample
from linkhoi.eval.ap import DECIMAL_11_POINTS, ap_11_point, precision_recall
from linkhoi.eval.base import EvalError
from linkhoi.eval.swig import SWIGEvaluator, ap_11_point_segments, iou_continuous

LS = labels.load("swig_hoi")
PERSON = LS.object_position_by_id(0)
EVALUATED = sorted(LS.subsets["evaluated"])
NON_RARE, RARE, UNSEEN = (sorted(LS.subsets[k]) for k in ("non_rare", "rare", "unseen"))
NOT_EVALUATED = next(p for p in range(len(LS.hois)) if p not in LS.subsets["evaluated"])
HB, OB = [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]


def hid(pos: int) -> int:
    return LS.hois[pos].id


def image(name, image_id, pairs_boxes) -> Sample:
    """A sample with one (human, object) box pair per entry of pairs_boxes: (hoi pos, h, o)."""
    boxes, labs, pairs = [], [], []
    for pos, h, o in pairs_boxes:
        boxes += [h, o]
        labs += [PERSON, LS.object_position_by_id(LS.hois[pos].object_id)]
        pairs.append(HOIPair(len(boxes) - 2, len(boxes) - 1, pos))
    return Sample(name, None, 100, 100, np.asarray(boxes, float).reshape(-1, 4),
                  np.asarray(labs, np.int64), pairs, image_id=image_id)  # fmt: skip


def pred(pos, score, h=HB, o=OB) -> dict:
    return {"hoi_id": hid(pos), "score": score, "human_box": list(h), "object_box": list(o)}


def evaluate(samples, per_image, **kw):
    ev = SWIGEvaluator(samples, LS, **kw)
    for k, d in per_image.items():
        ev.process(k, d)
    return ev, ev.evaluate()


def ap_of(result, pos) -> float:
    return result.summary["per_class_ap"][str(hid(pos))]


C = EVALUATED[0]
# rec .5 .5 1, prec 1 .5 2/3 -> thresholds 0..0.5 reach prec 1 (6 of them), 0.6..1.0 only
# the last point, prec 2/3 (5 of them): AP = (6 + 5 * 2/3) / 11.
TP_FP_TP = (6 + 5 * 2 / 3) / 11


def test_hand_computed_ap_with_fp_on_unknown_image_and_on_image_without_class_gt():
    gt = [image("a", 1, [(C, HB, OB)]), image("b", 2, [(C, HB, OB)]), image("c", 3, [])]
    _, res = evaluate(gt, {
        "a": [pred(C, 0.9)],
        "zzz": [pred(C, 0.8)],  # image absent from the GT: an FP, not ignored
        "b": [pred(C, 0.7)],
    })  # fmt: skip
    assert ap_of(res, C) == pytest.approx(TP_FP_TP, abs=1e-12)
    assert any("not in the ground truth" in n for n in res.notes)
    # Same ranking with the FP on image "c" (in the GT, but without this class).
    _, res = evaluate(gt, {"a": [pred(C, 0.9)], "c": [pred(C, 0.8)], "b": [pred(C, 0.7)]})
    assert ap_of(res, C) == pytest.approx(TP_FP_TP, abs=1e-12)
    with pytest.raises(EvalError, match="zzz"):
        evaluate(gt, {"zzz": []}, strict=True)


def test_continuous_iou_exactly_half_matches():
    assert iou_continuous(np.array([HB]), np.array([[0, 0, 10, 5]]))[0] == 0.5  # 50 / 100
    gt = [image("a", 1, [(C, HB, OB)])]
    _, res = evaluate(gt, {"a": [pred(C, 0.9, h=[0, 0, 10, 5])]})
    assert ap_of(res, C) == pytest.approx(1.0, abs=1e-12)
    _, res = evaluate(gt, {"a": [pred(C, 0.9, o=[20, 0, 30, 4.9])]})  # object IoU 0.49
    assert ap_of(res, C) == 0.0


def test_first_pair_wins_ties_and_no_fallback():
    h1, h2 = [0, 0, 10, 10], [0, 5, 10, 15]
    gt = [image("a", 1, [(C, h1, OB), (C, h2, OB)])]
    tie = [0, 2.5, 10, 12.5]  # IoU 0.6 with both h1 and h2: m ties, the first pair wins
    _, res = evaluate(gt, {"a": [pred(C, 0.9, h=tie), pred(C, 0.8, h=tie), pred(C, 0.7, h=h2)]})
    # TP(pair 1), FP (best pair 1 is used; no fallback to the free pair 2), TP(pair 2).
    # (A fallback would give AP 1; "last wins" ties would give 6/11.)
    assert ap_of(res, C) == pytest.approx(TP_FP_TP, abs=1e-12)


def test_eleven_point_grid_counts_recall_exactly_03_06_07():
    a, b, c = EVALUATED[1:4]
    gt = [image(f"i{k}", k, [(a, HB, OB), (b, HB, OB), (c, HB, OB)]) for k in range(10)]
    preds = {f"i{k}": [pred(a, 0.5)] * (k < 3) + [pred(b, 0.5)] * (k < 6) + [pred(c, 0.5)] * (k < 7)
             for k in range(10)}  # fmt: skip
    _, res = evaluate(gt, preds)
    # npos 10; all TPs, precision 1 up to recall 3/10 = 0.3, 0.6, 0.7 exactly. The thresholds
    # i/10.0 reached: 0..0.3 (4), 0..0.6 (7), 0..0.7 (8). np.arange's 0.30000000000000004,
    # 0.6000000000000001 and 0.7000000000000001 would give 3/11, 6/11 and 7/11.
    assert ap_of(res, a) == pytest.approx(4 / 11, abs=1e-12)
    assert ap_of(res, b) == pytest.approx(7 / 11, abs=1e-12)
    assert ap_of(res, c) == pytest.approx(8 / 11, abs=1e-12)


@pytest.mark.parametrize(("n_fp", "expected"), [(19999, 0.0), (19998, 1 / 19999)])
def test_only_the_first_19999_predictions_are_read(n_fp, expected):
    gt = [image("a", 1, [(C, HB, OB)])]
    far = [50, 50, 60, 60]
    fps = [pred(C, 1.0 - i * 1e-6, h=far) for i in range(n_fp)]
    ev, res = evaluate(gt, {"a": [*fps, pred(C, 0.001)]})
    # 20,000 predictions: the TP is the 20,000th and never read -> AP 0. With 19,999 it is
    # read: recall 1 at precision 1/19999 for all 11 thresholds -> AP 1/19999.
    assert ap_of(res, C) == pytest.approx(expected, abs=1e-15)
    assert int(ev.match()["capped"]) == n_fp + 1 - 19999


def test_bucket_means_over_the_metadata_evaluated_set():
    nr, r, u = NON_RARE[0], RARE[0], UNSEEN[0]
    gt = [image("a", 1, [(nr, HB, OB), (r, HB, OB), (u, HB, OB)])]
    _, res = evaluate(gt, {"a": [pred(nr, 0.9), pred(u, 0.9), pred(NOT_EVALUATED, 0.9)]})
    m = res.summary["map"]
    assert (len(NON_RARE), len(RARE), len(UNSEEN), len(EVALUATED)) == (1307, 2841, 1391, 5539)
    assert m["non_rare"] == pytest.approx(1 / 1307, abs=1e-15)
    assert m["rare"] == 0.0
    assert m["unseen"] == pytest.approx(1 / 1391, abs=1e-15)
    assert m["full"] == pytest.approx(2 / 5539, abs=1e-15)  # unseen included (THID)
    assert m["full_seen_only"] == pytest.approx(1 / 4148, abs=1e-15)  # CHOIR
    assert len(res.summary["per_class_ap"]) == 5539
    assert str(hid(NOT_EVALUATED)) not in res.summary["per_class_ap"]
    assert any("non-evaluated" in n for n in res.notes)


def test_names_ids_and_ambiguous_names():
    h = LS.hois[C]
    gt = [image("a", 1, [(C, HB, OB)])]
    by_ids = {"verb_id": h.verb_id, "object_id": h.object_id, "score": 0.9, "human_box": HB,
              "object_box": OB}  # fmt: skip
    _, res = evaluate(gt, {"a": [by_ids]})
    assert ap_of(res, C) == pytest.approx(1.0, abs=1e-12)  # 11 x (1/11) summed
    names = [o for o in LS.objects]
    dup = next(n for n in names if names.count(n) == 2)
    bad = {"verb": h.verb, "object": dup, "score": 0.9, "human_box": HB, "object_box": OB}
    with pytest.raises(EvalError, match="ambiguous"):
        evaluate(gt, {"a": [bad]})
    with pytest.raises(EvalError, match="object_box"):
        evaluate(gt, {"a": [{**by_ids, "object_box": None}]})
    # a malformed box beside a null one is named, not broadcast into the array
    for box in ([1], "0.5", True, -5, 1e30):
        with pytest.raises(EvalError, match=r"image 'a', detection 0: field 'object_box' must be"):
            evaluate(gt, {"a": [{**by_ids, "object_box": box}, {**by_ids, "object_box": None}]})
    # A (verb, object) pair that is no interaction: ignored and counted, an error when strict.
    pairs = {(x.verb_id, x.object_id) for x in LS.hois}
    other = next(o for o in range(1000) if (h.verb_id, o) not in pairs)
    nonclass = {**by_ids, "object_id": other}
    _, res = evaluate(gt, {"a": [nonclass]})
    assert ap_of(res, C) == 0.0 and any("no interaction" in n for n in res.notes)
    with pytest.raises(EvalError, match="not a SWiG-HOI interaction"):
        evaluate(gt, {"a": [nonclass]}, strict=True)


def test_vectorised_ap_equals_the_shared_per_class_ap_bit_for_bit():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 40, 300)
    ends = np.cumsum(counts)
    starts = ends - counts
    tp = rng.random(ends[-1]) < 0.4
    npos = np.array([max(int(tp[a:b].sum()) + int(rng.integers(0, 5)) - 1, 0)
                     for a, b in zip(starts, ends, strict=True)])  # fmt: skip
    npos[:5] = 0  # no GT: AP 0
    npos[5:10] = 10  # small npos: recall lands on the i/10 grid
    got = ap_11_point_segments(tp, starts, ends, npos)
    for c, (a, b) in enumerate(zip(starts, ends, strict=True)):
        rec, prec = precision_recall(tp[a:b], int(npos[c]))
        assert got[c] == ap_11_point(rec, prec, DECIMAL_11_POINTS), c  # exact, not approx
    assert (got[:5] == 0).all() and got[5:].max() > 0


# --------------------------------------------------------------------------------------------
# Independent slow reference (Part B loops) over the exported THID input.
# --------------------------------------------------------------------------------------------


def _ref_iou(a, b) -> float:
    w1, h1 = max(a[2] - a[0], 0), max(a[3] - a[1], 0)
    w2, h2 = max(b[2] - b[0], 0), max(b[3] - b[1], 0)
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    if iw * ih <= 0:
        return 0.0
    return iw * ih / (w1 * h1 + w2 * h2 - iw * ih)


def reference_swig(samples, update: dict) -> dict[int, float]:
    gts: dict[int, dict[int, list]] = {}
    for s in samples:
        for p in s.pairs:
            gts.setdefault(hid(p.hoi), {}).setdefault(s.image_id, []).append(
                [*s.boxes[p.human], *s.boxes[p.object]]
            )
    preds: dict[int, list] = {}
    for img_id, rows in update.items():
        for r in rows:
            preds.setdefault(int(r[0]), []).append((r[1], int(img_id), r[2:]))
    out = {}
    for pos in EVALUATED:
        k = hid(pos)
        rows = sorted(preds.get(k, []), key=lambda t: -t[0])[:19999]
        gt = gts.get(k, {})
        npos = sum(len(v) for v in gt.values())
        used: dict[int, set] = {i: set() for i in gt}
        hits = []
        for _, img, box in rows:
            if img not in gt:
                hits.append(0)
                continue
            best, arg = 0.0, -1
            for i, g in enumerate(gt[img]):
                m = min(_ref_iou(box[:4], g[:4]), _ref_iou(box[4:], g[4:]))
                if best < m:
                    best, arg = m, i
            ok = best >= 0.5 and arg not in used[img]
            hits.append(int(ok))
            if ok:
                used[img].add(arg)
        ap, ctp = 0.0, np.cumsum(hits)
        rec = ctp / npos if npos else np.full(len(hits), np.nan)
        prec = ctp / (np.arange(len(hits)) + 1)
        for i in range(11):
            mask = rec >= i / 10.0
            if mask.any():
                ap += prec[mask].max() / 11.0
        out[k] = ap
    return out


def test_matches_slow_reference_through_the_official_export(tmp_path):
    rng = np.random.default_rng(0)
    classes = [EVALUATED[i] for i in (5, 6, 7)] + [NOT_EVALUATED]
    samples, preds = [], {}
    for i in range(12):
        entries = []
        for _ in range(int(rng.integers(0, 4))):
            xy = rng.uniform(0, 60, (2, 2))
            wh = rng.uniform(10, 40, (2, 2))
            h, o = np.concatenate([xy[0], xy[0] + wh[0]]), np.concatenate([xy[1], xy[1] + wh[1]])
            entries.append((classes[int(rng.integers(len(classes)))], h.tolist(), o.tolist()))
        samples.append(image(f"im{i}", 500 + i, entries))
        dets = []
        for _ in range(30):
            if entries and rng.random() < 0.8:
                c, h, o = entries[int(rng.integers(len(entries)))]
                c = c if rng.random() < 0.8 else classes[int(rng.integers(len(classes)))]
                h = np.asarray(h) + rng.normal(0, 4, 4)
                o = np.asarray(o) + rng.normal(0, 4, 4)
            else:
                c = classes[int(rng.integers(len(classes)))]
                h, o = rng.uniform(0, 50, 4), rng.uniform(0, 50, 4)
            h = [min(h[0], h[2]), min(h[1], h[3]), max(h[0], h[2]), max(h[1], h[3])]
            o = [min(o[0], o[2]), min(o[1], o[3]), max(o[0], o[2]), max(o[1], o[3])]
            dets.append(pred(c, float(rng.random()), h, o))
        preds[f"im{i}"] = dets
    preds["unknown.jpg"] = [pred(classes[0], 0.99), pred(classes[1], 0.5)]
    ev, res = evaluate(samples, preds)
    update = json.loads(ev.export_official(tmp_path).read_text())
    assert sum(len(v) for v in update.values()) == 12 * 30 + 2
    ref = reference_swig(samples, update)
    tps = int(ev.match()["tp"].sum())
    assert tps >= 8  # the case has real matches, not only zeros
    for pos in classes[:3]:
        assert ap_of(res, pos) == pytest.approx(ref[hid(pos)], abs=1e-12)
        assert 0.0 < ap_of(res, pos) < 1.0


def test_from_files_on_a_tiny_swig_json(tmp_path):
    h = LS.hois[C]
    data = [
        {"file_name": "x_1.jpg", "img_id": 11, "height": 100, "width": 100,
         "box_annotations": [{"bbox": HB, "category_id": 0, "aux_category_id": []},
                             {"bbox": OB, "category_id": h.object_id, "aux_category_id": []}],
         "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": h.verb_id}]},
        {"file_name": "x_2.jpg", "img_id": 12, "height": 100, "width": 100,
         "box_annotations": [], "hoi_annotations": []},
    ]  # fmt: skip
    (tmp_path / "swig_test.json").write_text(json.dumps(data))
    ev = SWIGEvaluator.from_files(tmp_path / "swig_test.json")
    ev.process("x_2.jpg", [pred(C, 0.95)])  # FP: no GT of the class there
    ev.process("x_1.jpg", [pred(C, 0.9)])
    res = ev.evaluate()
    # FP then TP, npos 1: rec 0 1, prec 0 .5 -> every threshold reaches prec .5: AP 0.5.
    assert ap_of(res, C) == pytest.approx(0.5, abs=1e-12)
