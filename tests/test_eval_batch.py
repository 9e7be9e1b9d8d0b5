"""Batches of images resolved at once give exactly the per-image path's arrays and APs, and a
batch with anything to report goes the per-image way (same first error, nothing recorded)."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from linkhoi.data.sample import HOIPair, Sample
from linkhoi.eval.base import EvalError
from linkhoi.eval.batch import BatchRefused, batches, resolve_batch
from linkhoi.eval.cli import evaluate_file
from linkhoi.eval.fastread import read_triplets_fast
from linkhoi.eval.hico import HICOEvaluator
from linkhoi.eval.resolve import resolve_triplets
from linkhoi.eval.triplets import TripletFileError, write_triplets
from linkhoi.labels import load


def _case(ls, seed: int = 3, n_images: int = 30):
    """Random samples and predictions (names, ids and hoi_ids mixed; tied scores)."""
    rng = random.Random(seed)
    person = ls.object_position("person")
    classes = rng.sample(range(len(ls.hois)), 12)

    def box():
        x, y = rng.randint(1, 60), rng.randint(1, 60)
        return [x, y, x + rng.randint(0, 30), y + rng.randint(0, 30)]

    def jitter(b):
        x1, y1, x2, y2 = (v + rng.choice([-2, -1, 0, 0, 1, 2]) for v in b)
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]

    def det(h, o, c):
        d = {"human_box": h, "object_box": o, "score": rng.choice([0.1, 0.3, 0.5, 0.9])}
        style = rng.randrange(3)
        hc = ls.hois[c]
        if style == 0:
            d.update(verb=hc.verb, object=hc.object)
        elif style == 1:
            d.update(hoi_id=hc.id)
        else:
            d.update(verb=hc.verb, object="person")  # mostly no class: ignored, counted
        return d

    samples, images = [], []
    for i in range(n_images):
        pairs = [(box(), box(), rng.choice(classes)) for _ in range(rng.randint(0, 4))]
        boxes, labels, hp = [], [], []
        for h, o, c in pairs:
            boxes += [h, o]
            labels += [person, int(ls.hoi_object_positions()[c])]
            hp.append(HOIPair(len(boxes) - 2, len(boxes) - 1, c))
        name = f"{i:03d}.jpg"
        samples.append(Sample(name, None, 640, 480, np.array(boxes, float).reshape(-1, 4),
                              labels, hp))  # fmt: skip
        dets = [det(jitter(h), jitter(o), c) for h, o, c in pairs for _ in range(rng.randint(0, 3))]
        dets += [det(box(), box(), rng.choice(classes)) for _ in range(rng.randint(0, 5))]
        rng.shuffle(dets)
        images.append((name, dets))
    images.append(("not_in_gt.jpg", [det(box(), box(), classes[0])]))
    rng.shuffle(images)  # process order must not matter
    return samples, images


@pytest.mark.parametrize("setting", ["default", "known_object"])
def test_batches_equal_the_per_image_path(tmp_path, setting) -> None:
    ls = copy.deepcopy(load("hico_det"))  # a label space whose class memo starts empty
    samples, images = _case(ls)
    path = write_triplets(tmp_path / "p.json", images, "hico_det")
    one = HICOEvaluator(samples, load("hico_det"), setting=setting)
    for name, dets in images:
        one.process(name, dets)
    many = HICOEvaluator(samples, ls, setting=setting)
    structs = list(read_triplets_fast(path))
    for group in batches(structs, max_detections=20):
        many.process_batch(group)
    assert len(many._batches) > 2
    for a, b in zip(one._collect(), many._collect(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.per_class_ap(), many.per_class_ap())
    assert one.evaluate().full() == many.evaluate().full()
    # the class memo filled by the batches still resolves every image as the dict path does
    for (name, dets), (_, s) in zip(images, structs, strict=True):
        x, y = resolve_triplets(dets, ls, "p", name), resolve_triplets(s, ls, "p", name)
        for k in x.__slots__:
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k))
    arrays, counts = resolve_batch([s for _, s in structs], ls, "p")
    assert counts.tolist() == [len(d) for _, d in images]
    ref = [resolve_triplets(d, ls, "p", n) for n, d in images]
    for k in arrays.__slots__:
        np.testing.assert_array_equal(
            getattr(arrays, k), np.concatenate([getattr(r, k) for r in ref])
        )


def test_a_batch_with_an_error_records_nothing_and_the_first_error_is_named(tmp_path) -> None:
    ls = load("hico_det")
    samples, images = _case(ls, seed=5)
    good = [(n, d) for n, d in images if d and n != "not_in_gt.jpg"]
    bad_class = dict(good[3][1][0], verb="levitate")
    bad_box = dict(good[6][1][0], human_box=[5, 5, 1, 1])
    images = [good[0], good[1], good[2], (good[3][0], [bad_class]), good[4], good[5],
              (good[6][0], [bad_box])]  # fmt: skip
    path = tmp_path / "p.json"  # by hand: the writer refuses bad detections
    path.write_text(json.dumps([{"file_name": n, "detections": d} for n, d in images]))
    structs = list(read_triplets_fast(path))
    ev = HICOEvaluator(samples, ls)
    with pytest.raises(BatchRefused):
        ev.process_batch(structs)
    assert ev.num_processed == 0
    strict = HICOEvaluator(samples, ls, strict=True)
    with pytest.raises(BatchRefused):  # an image outside the ground truth, under --strict
        strict.process_batch([*structs[:2], ("elsewhere.jpg", structs[0][1])])
    assert strict.num_processed == 0
    with pytest.raises(TripletFileError, match=rf"image '{good[3][0]}', detection 0: unknown verb"):
        evaluate_file(HICOEvaluator(samples, ls), path, "hico_det")
    path = write_triplets(tmp_path / "q.json", [good[0], ("elsewhere.jpg", good[1][1])], "hico_det")
    with pytest.raises(EvalError, match="'elsewhere.jpg' .* is not in the ground truth"):
        evaluate_file(HICOEvaluator(samples, ls, strict=True), path, "hico_det")


def _vcoco_case(rng: np.random.Generator, n_images: int = 40, per_image: int = 8):
    ls = load("vcoco")
    person, cup = ls.object_position("person"), ls.object_position("cup")
    samples, images = [], []

    def boxes(n):
        xy = rng.uniform(0, 400, (n, 2))
        return np.round(np.concatenate([xy, xy + rng.uniform(20, 180, (n, 2))], 1), 1)

    def jitter(b):
        b = b + rng.normal(0, 8, 4)
        return [float(min(b[0], b[2])), float(min(b[1], b[3])), float(max(b[0], b[2])),
                float(max(b[1], b[3]))]  # fmt: skip

    for i in range(n_images):
        bx = boxes(5)  # 3 persons (the last one ignored), 2 objects
        pairs = []
        for p in range(2):
            for h in rng.choice(len(ls.hois), 3, replace=False):
                obj = None if ls.hois[h].role is None else int(rng.integers(3, 5))
                pairs.append(HOIPair(p, obj, int(h)))
        name = f"COCO_val2014_{i:012d}.jpg"
        samples.append(Sample(name, None, 640, 480, bx, [person] * 3 + [cup] * 2, pairs,
                              np.array([0, 0, 1, 0, 0], bool), image_id=i))  # fmt: skip
        dets = []
        for _ in range(int(rng.integers(0, per_image))):
            h = ls.hois[int(rng.integers(len(ls.hois)))]
            role = h.role if rng.random() < 0.8 else None
            ob = None if role is None else jitter(bx[int(rng.integers(3, 5))])
            dets.append({"human_box": jitter(bx[int(rng.integers(3))]), "object_box": ob,
                         "verb": h.verb, "role": role, "score": float(rng.random())})  # fmt: skip
        images.append((name, dets))
    images.append(("COCO_val2014_elsewhere.jpg", images[0][1]))
    return ls, samples, images


def _swig_case(rng: np.random.Generator, n_images: int = 40, per_image: int = 8):
    ls = load("swig_hoi")
    evaluated = np.asarray(sorted(ls.subsets["evaluated"]))
    person = ls.object_position_by_id(0)
    samples, images = [], []
    for i in range(n_images):
        k = int(rng.integers(1, 4))
        classes = rng.choice(evaluated, k)
        xy = rng.uniform(0, 300, (1 + k, 2))
        bx = np.round(np.concatenate([xy, xy + rng.uniform(20, 150, (1 + k, 2))], 1), 1)
        labs = [person] + [ls.object_position_by_id(ls.hois[c].object_id) for c in classes]
        pairs = [HOIPair(0, 1 + j, int(c)) for j, c in enumerate(classes)]
        samples.append(Sample(f"v_{i}.jpg", None, 512, 512, bx, labs, pairs, image_id=i))
        dets = []
        for _ in range(int(rng.integers(0, per_image))):
            j = int(rng.integers(k))
            c = int(classes[j]) if rng.random() < 0.5 else int(rng.choice(evaluated))
            dets.append({"hoi_id": ls.hois[c].id, "score": float(rng.random()),
                         "human_box": (bx[0] + rng.integers(-3, 4, 4)).tolist(),
                         "object_box": (bx[1 + j] + rng.integers(-3, 4, 4)).tolist()})  # fmt: skip
        images.append((f"v_{i}.jpg", [d for d in dets if d["human_box"][2] >= d["human_box"][0]
                                      and d["human_box"][3] >= d["human_box"][1]
                                      and d["object_box"][2] >= d["object_box"][0]
                                      and d["object_box"][3] >= d["object_box"][1]]))  # fmt: skip
    images.append(("v_elsewhere.jpg", images[0][1]))
    return ls, samples, images


@pytest.mark.parametrize("benchmark", ["vcoco", "swig_hoi"])
def test_vcoco_and_swig_batches_equal_the_per_image_path(tmp_path, benchmark) -> None:
    from linkhoi.eval.swig import SWIGEvaluator
    from linkhoi.eval.vcoco import VCOCOEvaluator

    make = VCOCOEvaluator if benchmark == "vcoco" else SWIGEvaluator
    case = _vcoco_case if benchmark == "vcoco" else _swig_case
    ls, samples, images = case(np.random.default_rng(1))
    path = write_triplets(tmp_path / "p.json", images, ls.name)
    one = make(samples, ls)
    for name, dets in images:
        one.process(name, dets)
    many = make(samples, ls)
    for group in batches(read_triplets_fast(path), max_detections=30):
        many.process_batch(group)
    assert len(many._batches) > 2
    for a, b in zip(one._arrays(), many._arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert one.evaluate().full() == many.evaluate().full()
    via_cli = evaluate_file(make(samples, ls), path, benchmark)
    assert via_cli.summary == one.evaluate().summary
    strict = make(samples, ls, strict=True)
    with pytest.raises(BatchRefused):
        strict.process_batch(list(read_triplets_fast(path)))
    assert strict.num_processed == 0
