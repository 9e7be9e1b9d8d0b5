"""Named structs (fastread.named_type: exact label-space names, no ids) give the dict path's
classes and numbers; an image they do not fit is decoded into the general structs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import HOIPair, Sample
from linkhoi.eval.batch import batches, resolve_batch
from linkhoi.eval.cli import _evaluate_stream, evaluate_file
from linkhoi.eval.fastread import Detection, NamedBase, label_names, read_triplets_fast
from linkhoi.eval.hico import HICOEvaluator
from linkhoi.eval.resolve import _resolver, resolve_triplets
from linkhoi.eval.triplets import TripletFileError, write_triplets
from linkhoi.labels import load


def _dets(ls, rng: np.random.Generator, n: int, vcoco: bool = False) -> list[dict]:
    """Names-only detections in the forms the format allows (object or role absent, null
    object box, null ids, an unknown extra key)."""
    out = []
    for j in range(n):
        h = ls.hois[int(rng.integers(len(ls.hois)))]
        x, y = (float(v) for v in rng.integers(1, 300, 2))
        d = {"human_box": [x, y, x + 20.5, y + 30], "object_box": [y, x, y + 5, x + 9.25],
             "verb": h.verb, "score": float(rng.random())}  # fmt: skip
        if vcoco:
            if h.role is not None and j % 5:
                d["role"] = h.role
            else:
                d["object_box"] = None
        else:
            d["object"] = h.object
        if j % 7 == 3:
            d["verb_id"] = None
        if j % 11 == 5:
            d["extra"] = [1, "x"]
        out.append(d)
    return out


def _images(ls, seed: int = 0, n: int = 25, vcoco: bool = False) -> list[tuple[str, list]]:
    rng = np.random.default_rng(seed)
    return [(f"img_{i}.jpg", _dets(ls, rng, int(rng.integers(0, 9)), vcoco)) for i in range(n)]


def _equal(a, b) -> None:
    for k in a.__slots__:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


@pytest.mark.parametrize("space", ["hico_det", "vcoco"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl.gz"])
def test_named_structs_resolve_as_the_dicts(tmp_path, space, suffix) -> None:
    ls = copy.deepcopy(load(space))  # a class memo that starts empty
    images = _images(ls, vcoco=space == "vcoco")
    path = write_triplets(tmp_path / f"p{suffix}", images, space)
    fast = list(read_triplets_fast(path, names=label_names(ls)))
    assert [n for n, _ in fast] == [n for n, _ in images]
    assert all(isinstance(d, NamedBase) for _, dets in fast for d in dets)
    for group in batches(fast, max_detections=12):  # the batches fill the memo
        arrays, counts = resolve_batch([d for _, d in group], ls, "p")
        ref = [resolve_triplets(d, load(space), "p", n) for n, d in images if n in dict(group)]
        assert counts.tolist() == [len(r) for r in ref]
        for k in arrays.__slots__:
            np.testing.assert_array_equal(
                getattr(arrays, k), np.concatenate([getattr(r, k) for r in ref])
            )
    # again, every class now known: the named memo alone gives the columns
    arrays, _ = resolve_batch([d for _, d in fast], ls, "p")
    assert len(ls_memo := _resolver(ls).named) > 10 and -1 not in ls_memo.values()
    ref = [resolve_triplets(d, load(space), "p", n) for n, d in images]
    for k in arrays.__slots__:
        np.testing.assert_array_equal(
            getattr(arrays, k), np.concatenate([getattr(r, k) for r in ref])
        )
    for (name, dets), (_, s) in zip(images, fast, strict=True):  # the per-image path too
        _equal(resolve_triplets(s, ls, "p", name), resolve_triplets(dets, ls, "p", name))


def test_an_image_the_names_do_not_fit_turns_to_general_structs(tmp_path) -> None:
    ls = copy.deepcopy(load("hico_det"))
    images = _images(ls, seed=3, n=6)
    images = [(n, d) for n, d in images if d]
    first = images[1][1][0]
    images[1][1][0] = dict(first, verb=first["verb"].upper())  # found only by the forgiving way
    path = write_triplets(tmp_path / "p.json", images, "hico_det")
    fast = list(read_triplets_fast(path, names=label_names(ls)))
    kinds = [type(d[0]) for _, d in fast]
    assert issubclass(kinds[0], NamedBase) and kinds[1:] == [Detection] * (len(kinds) - 1)
    arrays, _ = resolve_batch([d for _, d in fast], ls, "p")  # named and general mixed
    ref = [resolve_triplets(d, load("hico_det"), "p", n) for n, d in images]
    for k in arrays.__slots__:
        np.testing.assert_array_equal(
            getattr(arrays, k), np.concatenate([getattr(r, k) for r in ref])
        )
    ids = [(n, [dict(d, verb_id=7) for d in dets]) for n, dets in images]  # an id: general
    path.write_text(json.dumps([{"file_name": n, "detections": d} for n, d in ids]))
    assert {type(d[0]) for _, d in read_triplets_fast(path, names=label_names(ls))} == {Detection}


def _hico_case(ls, seed: int = 1) -> tuple[list[Sample], list[tuple[str, list]]]:
    """Ground truth from the first detections of each image (so that some match)."""
    images = _images(ls, seed=seed, n=30)
    person = ls.object_position(ls.human)
    samples = []
    for name, dets in images:
        boxes, labels, pairs = [], [], []
        for d in dets[:3]:
            pos = ls.hoi_position(ls.verb_position(d["verb"]), ls.object_position(d["object"]))
            boxes += [d["human_box"], d["object_box"]]
            labels += [person, ls.object_position(d["object"])]
            pairs.append(HOIPair(len(boxes) - 2, len(boxes) - 1, int(pos)))
        samples.append(Sample(name, None, 0, 0, boxes, labels, pairs))
    return samples, images


def test_evaluation_with_named_structs_equals_the_stdlib_path(tmp_path: Path) -> None:
    ls = copy.deepcopy(load("hico_det"))
    samples, images = _hico_case(ls)
    path = write_triplets(tmp_path / "p.json", images, "hico_det")
    fast = evaluate_file(HICOEvaluator(samples, ls), path, "hico_det")
    slow = _evaluate_stream(HICOEvaluator(samples, load("hico_det")), path, "hico_det", False)
    assert fast.summary["map"]["full"] > 0.1
    assert fast.summary == slow.summary
    # an unknown name: the same error as ever, whatever the decoder did with it
    bad = [(n, [dict(d, verb="levitate") for d in dets]) for n, dets in images[:3]]
    path.write_text(json.dumps([{"file_name": n, "detections": d} for n, d in bad]))
    name = next(n for n, d in bad if d)
    with pytest.raises(TripletFileError, match=rf"image '{name}', detection 0: unknown verb"):
        evaluate_file(HICOEvaluator(samples, ls), path, "hico_det")
