"""Shared AP code (linkhoi.eval.ap) and the Evaluator base (linkhoi.eval.base).

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from linkhoi.eval import base
from linkhoi.eval.ap import (
    DECIMAL_11_POINTS,
    MATLAB_11_POINTS,
    ap_11_point,
    ap_all_point,
    precision_recall,
    stable_descending,
)

NUMPY_GRID = np.arange(0.0, 1.1, 0.1)  # the grid of GEN-VLKT/PPDM, for contrast


def _tp(s: str) -> np.ndarray:
    return np.array([c == "T" for c in s])


def test_matlab_grid_is_the_colon_operator() -> None:
    # MATLAB 0:0.1:1 = a + k*d for k <= n/2, b - (n-k)*d above (MathWorks 1-4FLI96).
    grid = [0.0 + k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)]
    assert MATLAB_11_POINTS.tolist() == grid
    assert MATLAB_11_POINTS[3] == 0.30000000000000004
    assert MATLAB_11_POINTS[6] == 0.6 and MATLAB_11_POINTS[7] == 0.7
    assert NUMPY_GRID[6] != 0.6  # why the grid matters
    assert DECIMAL_11_POINTS.tolist() == [i / 10.0 for i in range(11)]
    assert DECIMAL_11_POINTS[3] == 0.3


def test_precision_recall_by_hand() -> None:
    # ranks T F T F F T, npos 4: cumTP 1 1 2 2 2 3, rank 1..6
    rec, prec = precision_recall(_tp("TFTFFT"), 4)
    np.testing.assert_allclose(rec, [0.25, 0.25, 0.5, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(prec, [1, 0.5, 2 / 3, 0.5, 0.4, 0.5])
    # explicit fp: the 2nd detection is neither TP nor FP (V-COCO style)
    rec, prec = precision_recall(_tp("TFT"), 2, fp=np.array([False, False, False]))
    np.testing.assert_allclose(prec, [1, 1, 1])
    np.testing.assert_allclose(rec, [0.5, 0.5, 1.0])


def test_npos_zero_gives_nan_recall_and_ap_zero() -> None:
    rec, prec = precision_recall(_tp("TF"), 0)
    assert np.isnan(rec).all()
    assert ap_11_point(rec, prec, MATLAB_11_POINTS) == 0.0
    assert np.isnan(ap_all_point(rec, prec))  # V-COCO's nan-means skip it


def test_ap_11_point_by_hand() -> None:
    # TFTFFT, npos 4 (see above). t=0,.1,.2 -> max prec over all = 1;
    # t=.3,.4,.5 -> ranks 3..6 (rec>=.5) -> 2/3; t=.6,.7 -> rank 6 (rec .75) -> .5;
    # t=.8,.9,1 -> none -> 0. AP = (3*1 + 3*2/3 + 2*.5) / 11 = 6/11.
    rec, prec = precision_recall(_tp("TFTFFT"), 4)
    assert ap_11_point(rec, prec, MATLAB_11_POINTS) == pytest.approx(6 / 11, abs=1e-15)


def test_recall_exactly_06_keeps_matlab_term() -> None:
    # TTTFF, npos 5: rec .2 .4 .6 .6 .6, prec 1 1 1 .75 .6. MATLAB grid: t=0...0.6 reached
    # (rec 3/5 == 0.6 exactly) -> 7 terms of 1 -> 7/11. numpy grid's 0.6000000000000001 is
    # missed -> 6/11.
    rec, prec = precision_recall(_tp("TTTFF"), 5)
    assert rec[2] == 0.6
    assert ap_11_point(rec, prec, MATLAB_11_POINTS) == pytest.approx(7 / 11, abs=1e-15)
    assert ap_11_point(rec, prec, NUMPY_GRID) == pytest.approx(6 / 11, abs=1e-15)


def test_recall_exactly_07_kept_and_03_excluded() -> None:
    # 7 TPs of npos 10: rec .1 .. .7; all prec 1. MATLAB: t = 0 .. 0.7 -> 8/11.
    rec, prec = precision_recall(_tp("TTTTTTT"), 10)
    assert ap_11_point(rec, prec, MATLAB_11_POINTS) == pytest.approx(8 / 11, abs=1e-15)
    assert ap_11_point(rec, prec, NUMPY_GRID) == pytest.approx(7 / 11, abs=1e-15)
    # 3 TPs of npos 10: rec peaks at 3/10 = 0.29999999999999998 < 0.30000000000000004:
    # MATLAB keeps t = 0, .1, .2 -> 3/11; the exact decimals admit 0.3 -> 4/11.
    rec, prec = precision_recall(_tp("TTTF"), 10)
    assert ap_11_point(rec, prec, MATLAB_11_POINTS) == pytest.approx(3 / 11, abs=1e-15)
    assert ap_11_point(rec, prec, DECIMAL_11_POINTS) == pytest.approx(4 / 11, abs=1e-15)


def test_ap_all_point_by_hand() -> None:
    # TFTFFT, npos 4: mrec 0 .25 .25 .5 .5 .5 .75 1, mpre (monotone) 1 1 2/3 2/3 .5 .5 .5 0.
    # Recall steps: .25*1 + .25*2/3 + .25*.5 + .25*0 = 13/24.
    rec, prec = precision_recall(_tp("TFTFFT"), 4)
    assert ap_all_point(rec, prec) == pytest.approx(13 / 24, abs=1e-15)
    # no detections at all: only the sentinels -> 0
    assert ap_all_point(np.zeros(0), np.zeros(0)) == 0.0
    assert ap_11_point(np.zeros(0), np.zeros(0), MATLAB_11_POINTS) == 0.0


def test_stable_descending_keeps_tie_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    assert stable_descending(scores).tolist() == [1, 3, 0, 2, 5, 4]
    # many ties (numpy's default introsort is unstable above 16 items)
    ties = np.zeros(100)
    assert stable_descending(ties).tolist() == list(range(100))


def test_eval_result_json_round_trip(tmp_path) -> None:
    res = base.EvalResult(
        benchmark="hico_det",
        summary={"benchmark": "hico_det", "map": {"full": np.float64(0.25)}},
        per_class={"1": 0.5},
        protocol={"ap": "11-point"},
        notes=["2 predictions ignored"],
    )
    out = tmp_path / "sub" / "out.json"
    text = res.to_json(out)
    loaded = json.loads(out.read_text())
    assert loaded == json.loads(text)
    assert loaded["map"]["full"] == 0.25 and loaded["benchmark"] == "hico_det"
    assert loaded["protocol"] == {"ap": "11-point"} and loaded["notes"] == ["2 predictions ignored"]
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]  # no temporary left behind


class _Count(base.Evaluator):
    benchmark = "count"

    def convert(self, image_key, detections):
        return len(detections)

    def evaluate(self):
        total = sum(self._predictions.values())
        return base.EvalResult(self.benchmark, {"total": total}, {})


def test_evaluator_protocol_and_duplicate_image() -> None:
    ev = _Count()
    ev.process("a.jpg", [{}, {}])
    ev.process("b.jpg", [{}])
    ev.gather()  # not distributed: a no-op
    assert ev.evaluate().summary == {"total": 3}
    with pytest.raises(base.EvalError, match="a.jpg"):
        ev.process("a.jpg", [])
    ev.reset()
    assert ev.num_processed == 0


def test_gather_merges_ranks_on_rank_0(monkeypatch) -> None:
    import torch.distributed as dist

    other_rank = {"b.jpg": 5, "a.jpg": 99}  # a.jpg repeated by DistributedSampler padding

    def fake_gather(obj, object_gather_list, dst):
        assert dst == 0
        if object_gather_list is None:  # non-destination ranks pass None
            return
        object_gather_list[0] = obj
        object_gather_list[1] = other_rank

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "gather_object", fake_gather)
    ev = _Count()
    ev.process("a.jpg", [{}, {}])
    ev.gather()
    assert ev._predictions == {"a.jpg": 2, "b.jpg": 5}  # lowest rank wins the duplicate
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    ev.gather()
    assert ev.num_processed == 0  # non-zero ranks hand everything over
