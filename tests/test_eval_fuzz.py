"""Differential fuzzing of the evaluation's fast paths against their general paths.

Small random ground truths and triplet files are mutated hostilely (wrong types, NaN and
1e400 literals, duplicate keys, bad boxes, names and ids that disagree, odd file names, json
vs jsonl...). For every case the fast path (``hico_fast`` arrays; msgspec structs, named or
not, in batches of any size) and the general path (per-record reader; stdlib json, image by
image) must give the same samples / the same OUT.json, or the same one error message; no
other exception (a stack trace in the CLI) is allowed. Seeded, fixed number of cases; the
inputs and their mutations are in tests/fuzz_inputs.py.
"""

from __future__ import annotations

import copy
import json
import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fuzz_inputs as fz  # the random inputs and their hostile changes
from linkhoi.data import hico, read_hico_json
from linkhoi.data.hico_fast import ppdm_samples
from linkhoi.data.sample import Sample
from linkhoi.eval import batch, cli, fastread
from linkhoi.eval.ap import rank_by_class
from linkhoi.eval.base import EvalError
from linkhoi.eval.hico import HICOEvaluator
from linkhoi.eval.hico_match import match_details, match_ranked, pixel_iou
from linkhoi.eval.triplets import TripletFileError
from linkhoi.labels import load

HICO = load("hico_det")
# per fuzz test; LINKHOI_FUZZ_CASES=5000 LINKHOI_FUZZ_SEED=n for a longer run
N_CASES = int(os.environ.get("LINKHOI_FUZZ_CASES", 120))
SEED = int(os.environ.get("LINKHOI_FUZZ_SEED", 0))


def _outcome(fn: Callable[[], Any]) -> str:
    """``fn()``'s result, or its one-line error; any other exception fails the test."""
    try:
        return fn()
    except (TripletFileError, EvalError, ValueError, OSError) as err:  # the CLI's one line
        return f"error: {type(err).__name__}: {err}"
    except Exception as err:  # a stack trace in the CLI
        raise AssertionError(f"{type(err).__name__}: {err}: a traceback, not one error") from err


# ------------------------------------------------------------------------------ ground truth
def _read_gt(path: Path, on_invalid: str) -> tuple[str, list[str]]:
    """(samples or error, warnings) of ``read_hico_json``."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        got = _outcome(lambda: _samples_text(read_hico_json(path, on_invalid=on_invalid)))
    return got, [str(w.message) for w in warned]


def _samples_text(samples: list[Sample]) -> str:
    """Every field of the samples, exactly (boxes as hex floats: -0.0 and 0.0 differ)."""
    return repr([(s.file_name, s.image_path, s.width, s.height, np.asarray(s.boxes).dtype,
                  [[float(v).hex() for v in b] for b in np.asarray(s.boxes)], s.labels.tolist(),
                  [(p.human, p.object, p.hoi) for p in s.pairs], s.unannotated.tolist())
                 for s in samples])  # fmt: skip


def test_ground_truth_array_path_equals_the_per_record_reader(tmp_path, monkeypatch) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "test_hico.json"
    taken: list[bool] = []  # did the array path return samples?

    def counted(*args: Any) -> list[Sample] | None:
        out = ppdm_samples(*args)
        taken.append(out is not None)
        return out

    errors = 0
    for case in range(N_CASES):
        records = fz.gt_records(rng)
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            fz.mutate_gt(rng, records)
        path.write_text(fz.literals(json.dumps(records)), encoding="utf-8")
        for on_invalid in ("error", "warn"):
            with monkeypatch.context() as m:
                m.setattr(hico, "ppdm_samples", counted)
                fast = _read_gt(path, on_invalid)
            with monkeypatch.context() as m:
                m.setattr(hico, "ppdm_samples", lambda *a, **k: None)
                slow = _read_gt(path, on_invalid)
            assert fast == slow, f"case {case}: {path.read_text()[:2000]}"
            errors += fast[0].startswith("error")
    # every kind of outcome was exercised: array path, per-record samples, errors
    assert sum(taken) > N_CASES // 2 and len(taken) - sum(taken) > N_CASES // 2
    assert 0.1 < errors / (2 * N_CASES) < 0.9


# ------------------------------------------------------------------------------ predictions
def _samples(rng: random.Random) -> list[Sample]:
    """Ground-truth samples (through the per-record reader) of :func:`_gt_records`."""
    records = fz.gt_records(rng, n_images=8)
    return hico._from_ppdm(records, Path("gt.json"), None, HICO, "error")


def _evaluate(samples: list[Sample], path: Path, mode: str, m: pytest.MonkeyPatch, rng: random.Random) -> str:  # fmt: skip
    """Evaluate ``path`` the ``mode`` way: ``general`` (the stdlib reader, image by image),
    ``fast`` (msgspec structs, named where they fit, batches of a random size), ``unnamed``
    (general structs only); the label space's class memo starts empty, or is kept (``warm``);
    ``strict`` and ``known`` (Known-Object setting) as in the CLI."""
    ls = HICO if "warm" in mode else copy.deepcopy(HICO)
    setting = "known_object" if "known" in mode else "default"
    ev = HICOEvaluator(samples, ls, setting=setting, strict="strict" in mode)
    with m.context() as m:
        if "general" in mode:
            m.setattr(fastread, "read_triplets_fast", _unavailable)
        if "unnamed" in mode:
            m.setattr(fastread, "label_names", lambda ls: None)
        size = rng.choice([1, 2, 3, 5, 8192])
        m.setattr(batch, "batches", lambda images: _BATCHES(images, size))
        m.setattr(cli, "_evaluate_stream", _counted_stream)
        result = _outcome(lambda: json.dumps(cli.evaluate_file(ev, path, "hico_det").full()))
    # and every kept detection exactly: (img, hoi, score, human box, object box) arrays
    return (
        result if result.startswith("error") else result + repr([x.tolist() for x in ev._collect()])
    )


_BATCHES, _STREAM = batch.batches, cli._evaluate_stream
FAST_RESULTS: list[bool] = []  # per fast run: did it give the result (not the general path)?


def _counted_stream(evaluator: Any, predictions: Path, benchmark: str, fast: bool) -> Any:
    """cli._evaluate_stream, noting whether a fast run gave the result."""
    FAST_RESULTS.extend([False] if fast else [])
    result = _STREAM(evaluator, predictions, benchmark, fast)
    FAST_RESULTS[-1:] = [True] if fast else FAST_RESULTS[-1:]
    return result


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise fastread.FastPathUnavailable("the general path")


def test_prediction_fast_paths_equal_the_general_path(tmp_path, monkeypatch) -> None:
    rng, errors = random.Random(SEED), 0
    FAST_RESULTS.clear()
    for case in range(N_CASES):
        samples = _samples(rng)
        images, header = fz.predictions(rng, samples), {"format": "hoi-triplets", "version": 1}
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            fz.mutate_predictions(rng, images, header)
        path = fz.write_predictions(rng, images, header, tmp_path)
        options = rng.choice(["", "", "", "_strict", "_known"])
        general = _evaluate(samples, path, "general" + options, monkeypatch, rng)
        for mode in ("fast", "fast_unnamed", "fast_warm"):
            assert _evaluate(samples, path, mode + options, monkeypatch, rng) == general, (
                f"case {case}, {mode}: {path.read_bytes()[:3000]!r}"
            )
        errors += general.startswith("error")
        path.unlink()
    assert 0.1 < errors / N_CASES < 0.9  # both outcomes exercised
    # the fast path gave the result of most files the general path could evaluate
    assert sum(FAST_RESULTS) > 3 * (N_CASES - errors) * 3 // 4


# ------------------------------------------------------------------------------ matching
def _reference_tp(collected: tuple, gt: tuple, n_img: int) -> dict[tuple[int, int], bool]:
    """eval_one.m written plainly: per class, a stable sort by score, each detection against
    its image's pairs of that class (first maximum), taken pairs are false positives.
    Returns (class, position in ``collected``) -> true positive."""
    img, hoi, score, hb, ob = collected
    gt_key, gt_hb, gt_ob = gt
    out = {}
    for c in sorted(set(hoi.tolist())):
        rows = [j for j in range(len(hoi)) if hoi[j] == c]
        rows.sort(key=lambda j: -score[j])  # stable: image order, then input order
        used: set[int] = set()
        for j in rows:
            best, arg = -np.inf, -1
            for g in np.flatnonzero(gt_key == c * n_img + img[j]).tolist():
                ov = min(pixel_iou(hb[j : j + 1], gt_hb[g : g + 1])[0],
                         pixel_iou(ob[j : j + 1], gt_ob[g : g + 1])[0])  # fmt: skip
                if ov > best:
                    best, arg = ov, g
            out[(c, j)] = bool(best >= 0.5 and arg not in used)
            if out[(c, j)]:
                used.add(arg)
    return out


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) boxes on a coarse grid (ties, zero areas, equal boxes), x2 >= x1, y2 >= y1."""
    xy = rng.integers(0, 6, (n, 2)).astype(float) * rng.choice([1.0, 0.5, -0.0], (n, 1))
    return np.concatenate([xy, xy + rng.integers(0, 4, (n, 2))], axis=1)


@pytest.mark.parametrize("seed", range(40))
def test_match_ranked_equals_match_details_and_eval_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_img, n_hoi, n_gt, n_det = int(rng.integers(1, 4)), 4, int(rng.integers(0, 12)), int(rng.integers(0, 60))  # fmt: skip
    gt_key = np.sort(rng.integers(0, n_hoi * n_img, n_gt))
    gt = (gt_key, _boxes(rng, n_gt), _boxes(rng, n_gt))
    img = np.sort(rng.integers(0, n_img, n_det))  # image order, then input order
    collected = (img, rng.integers(0, n_hoi, n_det), rng.choice([0.1, 0.5, -0.0, 0.0, 1e-300], n_det),
                 _boxes(rng, n_det), _boxes(rng, n_det))  # fmt: skip
    obj = np.arange(n_hoi) % 2
    known = rng.random((2, n_img)) < 0.6 if seed % 2 else None
    hoi, tp = match_ranked(collected, known, obj, n_img, gt, pixel_iou, n_hoi)
    d = match_details(collected, known, obj, n_img, gt, pixel_iou)
    assert hoi.tolist() == d["hoi"].tolist() and tp.tolist() == d["tp"].tolist()
    ref = _reference_tp(collected, gt, n_img)
    kept = [j for j in range(n_det) if known is None or known[obj[collected[1][j]], img[j]]]
    assert d["tp"].tolist() == [ref[(int(collected[1][j]), j)] for j in d["seq"].tolist()]
    assert sorted(d["seq"].tolist()) == kept


@pytest.mark.parametrize("seed", range(20))
def test_rank_by_class_equals_lexsort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 200))
    high = [3, 600, 2**15 + 2, 2**40][seed % 4]
    classes = rng.integers(-2 if seed % 3 == 0 else 0, high, n)
    scores = rng.choice([0.5, -0.0, 0.0, 1.0, 1e-300, -1e308, 0.25], n)
    order = rank_by_class(classes, scores)
    assert order.tolist() == np.lexsort((-scores, classes)).tolist()


# ------------------------------------------------------------------------------ the CLI
def test_cli_gives_one_line_never_a_traceback(tmp_path, capsys) -> None:
    from linkhoi.cli import main

    rng = random.Random(SEED + 1)
    codes = []
    for case in range(max(30, N_CASES // 4)):
        records = fz.gt_records(rng, n_images=5)
        images, header = fz.predictions(rng, hico._from_ppdm(copy.deepcopy(records), Path("gt"), None, HICO, "error")), {}  # fmt: skip
        for _ in range(rng.choice([0, 1, 2])):
            fz.mutate_gt(rng, records) if rng.random() < 0.4 else fz.mutate_predictions(rng, images, header)  # fmt: skip
        gt = tmp_path / rng.choice(["test_hico.json", "tëst hico.json", "-gt.json"])
        gt.write_text(fz.literals(json.dumps(records)), encoding="utf-8")
        preds = fz.write_predictions(rng, images, header, tmp_path)
        argv = ["eval", "hico_det", "--annotations", str(gt), "--predictions", str(preds),
                "--output", str(tmp_path / "out" / "OUT.json")]  # fmt: skip
        code = main(argv + rng.choice([[], ["--strict"], ["--diagnose"]]))
        err = capsys.readouterr().err.splitlines()
        assert code in (0, 1), f"case {case}"
        if code:
            assert len(err) == 1 and err[0].startswith("linkhoi eval: error: "), err
        assert all(line.startswith("linkhoi eval: warning: ") for line in err[code:])
        codes.append(code)
        gt.unlink()
        preds.unlink()
    assert 0.1 < np.mean(codes) < 0.95  # both outcomes exercised


# ------------------------------------------------------------------------------ found by fuzzing
@pytest.mark.parametrize(
    ("text", "error"),
    [  # msgspec read 10**30 as the float 1e30, which the fast path took; 1e30 itself is fine
        ('{"images": [{"file_name": NAME, "detections": [DET, "score": 1%s}]}]}' % ("0" * 30), "an integer beyond 64 bits"),
        ('{"images": [{"file_name": NAME, "detections": [DET, "score": 1e30}]}]}', None),
        # the structs' message said [10.0, 10.0, 1.0, 1.0]
        ('[{"file_name": NAME, "detections": [DET, "score": 1, "human_box": [10, 10, 1, 1]}]}]', "[10, 10, 1, 1] (boxes"),
        # a null header field was taken as absent
        ('{"format": null, "images": [{"file_name": NAME, "detections": [DET, "score": 1}]}]}', "'format' is None"),
        ('{"format": null}\n{"file_name": NAME, "detections": [DET, "score": 1}]}', "'format' is None"),
        # msgspec's RecursionError was a traceback
        ('{"images": [{"file_name": NAME, "detections": [DET, "score": 1, "x": "@@DEEP@@"}]}]}', "nested too deep"),
    ],
)  # fmt: skip
def test_triplet_cases_found_by_fuzzing(
    tmp_path, monkeypatch, text: str, error: str | None
) -> None:
    samples = _samples(random.Random(0))
    det = '{"human_box": [1, 1, 5, 5], "object_box": null, "hoi_id": 58'
    path = tmp_path / ("p.jsonl" if "\n" in text else "p.json")
    path.write_text(
        fz.literals(text.replace("NAME", json.dumps(samples[0].file_name)).replace("DET", det))
    )
    general = _evaluate(samples, path, "general", monkeypatch, random.Random(0))
    assert general.startswith("error") == (error is not None) and (error or "") in general
    for mode in ("fast", "fast_unnamed"):
        assert _evaluate(samples, path, mode, monkeypatch, random.Random(0)) == general


def test_ground_truth_cases_found_by_fuzzing(tmp_path, monkeypatch) -> None:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps([{"file_name": "a.jpg", "hoi_annotation": 3.0}]))  # a TypeError
    with pytest.raises(ValueError, match="'hoi_annotation': expected a list of objects, got float"):
        read_hico_json(path)
    path.write_text(json.dumps([{"file_name": "a.jpg", "width": 10**400, "height": 1}]))
    with pytest.raises(ValueError, match="'width': image width 1000000000...000 .401 digits"):
        read_hico_json(path)  # was an OverflowError
    # a ground truth without pairs (the CLI refuses it first): AP 0, was an IndexError
    ev = HICOEvaluator(hico._from_ppdm([{"file_name": "a.jpg"}], path, None, HICO, "error"))
    ev.process(
        "a.jpg", [{"human_box": [1, 1, 2, 2], "object_box": None, "score": 0.5, "hoi_id": 1}] * 5
    )
    assert ev.evaluate().summary["map"]["full"] == 0.0
