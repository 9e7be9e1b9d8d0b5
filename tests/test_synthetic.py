"""The synthetic HOI world: determinism, rule-based truth, sparsity, held-out compositions,
and that its files load through the project's own readers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import read_generic
from linkhoi.data.synthetic import (
    SyntheticError,
    absent_objects,
    annotated_pairs,
    contact_verbs,
    default_holdout,
    generate_world,
    label_spec,
    make_scene,
    ray_hits,
)
from linkhoi.data.synthetic_draw import Person, make_thing, pose
from linkhoi.data.synthetic_rules import NEAR, box_gap, first_hit, scene_truth
from linkhoi.detections import FileDetections

INTERACTIONS = [
    (h["verb"], h["object"]) for h in label_spec()["hois"] if h["verb"] != "no_interaction"
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("world")
    return generate_world(out, num_train=24, num_test=23, seed=3, progress=False)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _pairs(doc: dict) -> dict[tuple[str, int, int], list[str]]:
    out: dict[tuple[str, int, int], list[str]] = {}
    for im in doc["images"]:
        for h in im["hois"]:
            out.setdefault((im["file_name"], h["human"], h["object"]), []).append(h["verb"])
    return out


def _comps(doc: dict) -> set[tuple[str, str]]:
    return {
        (h["verb"], im["boxes"][h["object"]]["label"]) for im in doc["images"] for h in im["hois"]
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate_world(tmp_path / "a", num_train=4, num_test=3, seed=11, progress=False)
    b = generate_world(tmp_path / "b", num_train=4, num_test=3, seed=11, progress=False)
    c = generate_world(tmp_path / "c", num_train=4, num_test=3, seed=12, progress=False)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert len(files) == 4 + 3 + 7  # images, 2 annotation files, 4 detection files, open verb
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    for rel in files:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert (a.root / "test.json").read_bytes() != (c.root / "test.json").read_bytes()
    assert (a.images / "train_000001.png").read_bytes() != (
        c.images / "train_000001.png"
    ).read_bytes()


def test_files_load_with_project_readers(world) -> None:
    train = read_generic(world.train)
    test = read_generic(world.test)
    assert [s.file_name for s in test] == [f"test_{i:06d}.png" for i in range(1, 24)]
    assert len(train) == 24
    for s in test[:5]:
        assert s.image_path.is_file()
        assert (s.width, s.height) == (320, 256)
        assert s.boxes[:, 0].min() >= 1 and s.boxes[:, 2].max() <= 320
    for name in ("good", "noisy"):
        src = FileDetections(world.detections[name], "synthetic")
        assert set(src.file_names) == {s.file_name for s in test}
        dets = src.detect(test[0].file_name)
        assert dets.image_size == (320, 256)
        assert bool(((dets.scores >= 0) & (dets.scores <= 1)).all())
    assert set(FileDetections(world.train_detections["good"], "synthetic").file_names) == {
        s.file_name for s in train
    }


def _best_iou(gt: np.ndarray, dets: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.ops import box_iou

    if len(dets) == 0:
        return np.zeros(len(gt))
    return box_iou(torch.as_tensor(gt), torch.as_tensor(dets)).max(1).values.numpy()


def test_good_detector_beats_noisy(world) -> None:
    """Good: tight boxes, few misses, high scores; noisy: looser, more false positives."""
    test = {s.file_name: s for s in read_generic(world.test)}
    stats = {}
    for name in ("good", "noisy"):
        src = FileDetections(world.detections[name], "synthetic")
        ious, n_det, scores = [], 0, []
        for fn, s in test.items():
            d = src.detect(fn)
            ious.append(
                _best_iou(s.boxes.astype(np.float32), d.boxes.double().numpy().astype(np.float32))
            )
            back = _best_iou(
                d.boxes.double().numpy().astype(np.float32), s.boxes.astype(np.float32)
            )
            n_det += int((back < 0.3).sum())  # false positives: boxes far from every object
            scores.append(d.scores.numpy())
        iou = np.concatenate(ious)
        stats[name] = (float((iou >= 0.7).mean()), n_det, float(np.median(np.concatenate(scores))))
    n_gt = sum(len(s.boxes) for s in test.values())
    assert stats["good"][0] > 0.9  # most GT boxes found, tightly
    assert stats["noisy"][0] < stats["good"][0]
    assert stats["noisy"][1] > 0.1 * n_gt > stats["good"][1]  # false positives
    assert stats["good"][2] > 0.8 > stats["noisy"][2]


def test_truth_matches_drawn_boxes(world) -> None:
    """Box-level consequences of the rules, checked on the written annotations."""
    seen = set()
    for im in _load(world.test)["images"] + _load(world.train)["images"]:
        b = [np.array(x["box"], float) for x in im["boxes"]]
        for h in im["hois"]:
            hb, ob, verb = b[h["human"]], b[h["object"]], h["verb"]
            hh, oh = hb[3] - hb[1], ob[3] - ob[1]
            if verb == "ride":  # the rider sits on top: overlaps the mount's top, centred over it
                assert hb[1] < ob[1] < hb[3] <= ob[3] + 2
                assert ob[0] <= (hb[0] + hb[2]) / 2 <= ob[2]
            elif verb == "carry":  # the object is above the head, its bottom in the raised hands
                assert (ob[1] + ob[3]) / 2 < hb[1] + 2
                assert ob[3] < hb[1] + 0.25 * hh
            elif verb == "kick":  # the ball is at the feet: lower part of the person's box
                assert (ob[1] + ob[3]) / 2 > hb[1] + 0.6 * hh
                assert ob[0] <= hb[2] + 3 and hb[0] <= ob[2] + 3
            elif verb == "sit_on":  # feet and chair legs stand on the same ground
                assert abs(hb[3] - ob[3]) <= 0.15 * oh + 2 and hb[1] < ob[1]
            elif verb == "throw":  # the ball is in the air above the person's neck level
                assert (ob[1] + ob[3]) / 2 < hb[1] + 0.35 * hh
            seen.add(verb)
    assert {"ride", "carry", "kick", "sit_on", "throw", "hold", "look"} <= seen


def test_rules_on_hand_built_geometry() -> None:
    p = Person(x=100.0, ground=200.0, size=100.0, facing=1, arms=("hold", "down"))
    kp = pose(p)
    # hip = 200 - 47, neck = hip - 30, shoulder S = neck + 4 = 127; hand = S + (0.28P, 0.1P)
    assert kp["hand_front"].tolist() == pytest.approx([128.0, 137.0])
    assert kp["head"].tolist() == pytest.approx([100.0, 113.5])  # neck - (radius 8.5 + 1)
    cup = make_thing("cup", 100.0, 1, (255, 255, 255))  # 12 x 14 px
    cup.translate(kp["hand_front"][0] - 6, kp["hand_front"][1] - 7)  # centred on the hand
    box = [cup.x0, cup.y0, cup.x0 + cup.w, cup.y0 + cup.h]
    pbox = [80.0, 100.0, 140.0, 200.0]
    p.gaze = math.pi  # looking left, away from the cup
    assert scene_truth([p], [p, cup], [pbox, box]) == [(0, 1, "hold")]
    p.gaze = 0.0  # straight right: the ray from the head (y=113.5) passes above the cup (y>=130)
    assert scene_truth([p], [p, cup], [pbox, box]) == [(0, 1, "hold")]
    p.gaze = math.atan2(137 - 113.5, 128 - 100)  # aimed at the cup centre
    assert scene_truth([p], [p, cup], [pbox, box]) == [(0, 1, "hold"), (0, 1, "look")]
    cup.translate(40, 0)  # 40 px away from the hand: > grip radius 7 + tolerance 7
    box = [cup.x0, cup.y0, cup.x0 + cup.w, cup.y0 + cup.h]
    assert "hold" not in contact_verbs(p, cup, box)
    # a ball above a raised hand, out of reach: throw, not hold
    t = Person(x=100.0, ground=200.0, size=100.0, facing=1, arms=("down", "raise"), gaze=math.pi)
    kp = pose(t)
    ball = make_thing("ball", 100.0, 1, (255, 0, 0))  # radius 7.5
    ball.translate(kp["hand_back"][0] + 14 - 7.5, kp["hand_back"][1] - 14 - 7.5)
    bbox = [ball.x0, ball.y0, ball.x0 + 15, ball.y0 + 15]
    assert contact_verbs(t, ball, bbox) == ["throw"]
    ball.translate(-14, 14)  # now in the hand
    bbox = [ball.x0, ball.y0, ball.x0 + 15, ball.y0 + 15]
    assert contact_verbs(t, ball, bbox) == ["hold"]


def test_rays_go_to_the_first_box_only() -> None:
    """A gaze or a pointing arm names the first box its ray enters, not the ones behind it."""
    boxes = [[0, 0, 10, 10], [40, 0, 50, 10], [20, 0, 30, 10]]
    assert first_hit(np.array([5.0, 5.0]), 0.0, boxes, skip=0) == 2  # 20-30 is nearer than 40-50
    assert first_hit(np.array([5.0, 5.0]), math.pi, boxes, skip=0) is None
    p = Person(x=100.0, ground=200.0, size=100.0, facing=1, arms=("point", "down"), gaze=math.pi)
    p.point_dir = 0.0  # pointing straight right from the shoulder (y = 127)
    kp = pose(p)
    assert kp["hand_front"].tolist() == pytest.approx([136.0, 127.0])  # shoulder + 0.36 P
    near, far = [150.0, 110.0, 170.0, 140.0], [200.0, 100.0, 230.0, 150.0]
    ball = make_thing("ball", 100.0, 1, (255, 0, 0))
    truth = scene_truth([p], [p, ball, ball], [[90.0, 100.0, 137.0, 200.0], far, near])
    assert truth == [(0, 2, "point")]  # the nearer box; the head looks left at nothing


def test_no_interaction_only_for_near_pairs(world) -> None:
    """Verb-less pairs are annotated no_interaction only when near; far pairs and pointed-at
    pairs are left out; every annotated verb is in the scene's truth."""
    for i in range(30):
        scene = make_scene(np.random.default_rng([11, i]), "x.png", (320, 256))
        ann = annotated_pairs(scene)
        truth = {(h, j, v) for h, j, v in scene.truth}
        for (h, j), verbs in ann.items():
            if verbs == ["no_interaction"]:
                gap = box_gap(scene.boxes[h], scene.boxes[j])
                assert gap <= NEAR * scene.people[h].size
                assert not {v for hh, jj, v in truth if (hh, jj) == (h, j)}
            else:
                assert all((h, j, v) in truth for v in verbs)
        for h, j, v in truth:
            if v == "point" and not [
                u for hh, jj, u in truth if (hh, jj) == (h, j) and u != "point"
            ]:
                assert (h, j) not in ann


def test_ray_hits() -> None:
    box = [10, 10, 20, 20]
    assert ray_hits(np.array([0.0, 15.0]), 0.0, box)
    assert not ray_hits(np.array([0.0, 15.0]), math.pi, box)  # pointing away
    assert not ray_hits(np.array([0.0, 0.0]), 0.0, box)  # passes above
    assert ray_hits(np.array([0.0, 0.0]), math.pi / 4, box)  # the diagonal
    assert not ray_hits(np.array([15.0, 15.0]), 0.0, box)  # starts inside: not "looking at"


def test_sparsity_only_in_train(tmp_path: Path) -> None:
    full = generate_world(
        tmp_path / "f", num_train=8, num_test=2, seed=5, sparsity=0.0, progress=False
    )
    sparse = generate_world(
        tmp_path / "s", num_train=8, num_test=2, seed=5, sparsity=0.5, progress=False
    )
    assert full.test.read_bytes() == sparse.test.read_bytes()
    assert (full.images / "train_000007.png").read_bytes() == (
        sparse.images / "train_000007.png"
    ).read_bytes()
    fp, sp = _pairs(_load(full.train)), _pairs(_load(sparse.train))
    positive = {k for k, v in fp.items() if v != ["no_interaction"]}
    removed = set(fp) - set(sp)
    assert removed <= positive  # only pairs with a real interaction lose their labels
    assert len(removed) == round(0.5 * len(positive)) > 0
    assert all(sp[k] == fp[k] for k in sp)  # the others keep all their labels
    assert all(v != ["no_interaction"] for k, v in fp.items() if k in removed)


def test_holdout_absent_from_train_present_in_test(world) -> None:
    held = set(default_holdout())
    assert held == {("ride", "bicycle"), ("hold", "umbrella"), ("look", "chair"), ("hold", "kite"),
                    ("look", "kite"), ("carry", "ball"), ("carry", "book"), ("carry", "chair"),
                    ("carry", "bicycle")}  # fmt: skip
    assert absent_objects(sorted(held)) == {"kite"}
    train = _load(world.train)
    assert not _comps(train) & held
    assert all(b["label"] != "kite" for im in train["images"] for b in im["boxes"])
    test_comps = _comps(_load(world.test))
    assert held <= test_comps
    assert set(INTERACTIONS) <= test_comps  # the first 23 test images show one class each
    # absent from the drawings too, not only from the labels: the scenes' full truth
    for i in range(40):
        s = make_scene(
            np.random.default_rng([7, i]), "x.png", (320, 256), held, absent=frozenset({"kite"})
        )
        assert not {(v, s.labels[j]) for _, j, v in s.truth} & held
        assert "kite" not in s.labels


def test_custom_holdout_writes_its_label_space(tmp_path: Path) -> None:
    w = generate_world(
        tmp_path, num_train=6, num_test=2, seed=1, holdout=[("kick", "ball")], progress=False
    )
    assert w.label_space == "label_space.yaml" and (tmp_path / "label_space.yaml").is_file()
    assert ("kick", "ball") not in _comps(_load(w.train))
    samples = read_generic(w.test)
    assert len(samples) == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sparsity": 1.5}, "sparsity"),
        ({"holdout": [("ride", "cup")]}, "holdout"),
        ({"image_size": (64, 64)}, "image_size"),
        ({"num_train": -1}, "num_train"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(SyntheticError, match=field):
        generate_world(
            tmp_path, num_train=kwargs.pop("num_train", 1), num_test=1, progress=False, **kwargs
        )


def test_varied_image_sizes(tmp_path: Path) -> None:
    w = generate_world(tmp_path, num_train=3, num_test=3, seed=2, image_size=None, progress=False)
    sizes = {(s.width, s.height) for s in read_generic(w.train) + read_generic(w.test)}
    assert len(sizes) > 1
    assert all(256 <= v <= 384 for size in sizes for v in size)
    for s in read_generic(w.test):  # boxes inside their own image
        assert s.boxes[:, 2].max() <= s.width and s.boxes[:, 3].max() <= s.height
