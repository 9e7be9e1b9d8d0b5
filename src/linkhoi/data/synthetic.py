"""A procedural HOI world: images, HICO-style annotations and simulated detector files.

``generate_world(out_dir)`` draws scenes of stick-figure people and objects (see
``synthetic_draw``) and writes, deterministically from ``seed``:

- ``images/{train,test}_NNNNNN.png``;
- ``train.json`` / ``test.json`` in the project annotation format (docs/internals.md), boxes as
  1-based inclusive pixel indices (HICO-DET's convention, so the HICO evaluator applies as is);
  train leaves a ``sparsity`` fraction of the positive human-object pairs unannotated and never
  contains a held-out composition; test is complete;
- ``detections_{good,noisy}.json`` (test) and ``train_detections_{good,noisy}.json``: simulated
  detectors in the project detection-file format;
- ``test_open_vocabulary.json``: the test pairs of the verb ``point``, which is drawn but in no
  HOI label space (open-vocabulary evaluation).

Every interaction label is computed by ``synthetic_rules`` from the drawn geometry (keypoints of
the figure and the tight boxes of the drawn pixels); docs/demo.md lists the rules. As in real HOI
datasets, not every pair is annotated: a pair with no verb is labelled ``no_interaction`` only
when the two are near each other; far pairs, and pairs whose only relation is ``point``, are
left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from linkhoi.data.synthetic_rules import OPEN_VERB, contact_verbs, is_near, ray_hits
from linkhoi.data.synthetic_scene import Scene, SyntheticError, make_scene, render
from linkhoi.io import atomic_path, atomic_write_text

__all__ = [
    "Scene",
    "SyntheticError",
    "WorldPaths",
    "default_holdout",
    "generate_world",
    "image_record",
    "label_spec",
    "contact_verbs",
    "make_scene",
    "ray_hits",
    "render",
    "simulate_detections",
]

DETECTORS = {  # jitter (fraction of box size), miss rate, true score range, FP rate, FP scores
    "good": dict(
        jitter=0.03, miss=0.03, score=(0.8, 0.99), fp=0.15, fp_score=(0.05, 0.35), swap=0.0
    ),
    "noisy": dict(jitter=0.1, miss=0.15, score=(0.3, 0.95), fp=1.2, fp_score=(0.1, 0.7), swap=0.08),
}


@dataclass(frozen=True)
class WorldPaths:
    """Where ``generate_world`` wrote its files."""

    root: Path
    train: Path
    test: Path
    images: Path
    label_space: str  # "synthetic" or the path of a label-space file written beside the jsons
    open_vocabulary: Path  # test pairs of the open-vocabulary verb
    detections: dict[str, Path] = field(default_factory=dict)  # test set: good / noisy
    train_detections: dict[str, Path] = field(default_factory=dict)


@lru_cache(maxsize=1)
def label_spec() -> dict[str, Any]:
    """The packaged ``labels/data/synthetic.yaml`` as plain data."""
    text = (resources.files("linkhoi.labels") / "data" / "synthetic.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def default_holdout() -> list[tuple[str, str]]:
    """The label space's ``unseen`` interactions as (verb, object); an unseen
    ``no_interaction`` class follows from its object being absent (``absent_objects``)."""
    spec = label_spec()
    by_id = {h["id"]: (h["verb"], h["object"]) for h in spec["hois"]}
    return [by_id[i] for i in spec["subsets"]["unseen"] if by_id[i][0] != "no_interaction"]


def absent_objects(holdout: Sequence[tuple[str, str]]) -> frozenset[str]:
    """Object categories all of whose interactions are held out: never drawn in train (the
    unseen-object setting), so not even their ``no_interaction`` pairs reach training."""
    held = {tuple(c) for c in holdout}
    by_obj: dict[str, set[tuple[str, str]]] = {}
    for h in label_spec()["hois"]:
        if h["verb"] != "no_interaction":
            by_obj.setdefault(h["object"], set()).add((h["verb"], h["object"]))
    return frozenset(o for o, comps in by_obj.items() if comps <= held)


# --------------------------------------------------------------------------------- file output


def annotation_box(box: Sequence[float]) -> list[int]:
    """A tight pixel box [x1, y1, x2, y2) (0-based, exclusive) as 1-based inclusive indices."""
    return [int(box[0]) + 1, int(box[1]) + 1, int(box[2]), int(box[3])]


def positive_pairs(scene: Scene) -> dict[tuple[int, int], list[str]]:
    """(human, entity) -> label-space verbs, for the pairs with at least one of them."""
    out: dict[tuple[int, int], list[str]] = {}
    for h, j, v in scene.truth:
        if v != OPEN_VERB:
            out.setdefault((h, j), []).append(v)
    return out


def open_pairs(scene: Scene) -> list[tuple[int, int]]:
    """The (human, entity) pairs of the open-vocabulary verb."""
    return [(h, j) for h, j, v in scene.truth if v == OPEN_VERB]


def annotated_pairs(scene: Scene) -> dict[tuple[int, int], list[str]]:
    """What the annotation says of each annotated pair: its verbs, or ``no_interaction`` for a
    verb-less pair that is near and not pointed at. Other pairs are not annotated."""
    out = positive_pairs(scene)
    pointed = set(open_pairs(scene))
    for h, p in enumerate(scene.people):
        for j in range(len(scene.labels)):
            if j == h or (h, j) in out or (h, j) in pointed:
                continue
            if is_near(p, scene.boxes[h], scene.boxes[j]):
                out[(h, j)] = ["no_interaction"]
    return out


def image_record(scene: Scene, hidden: set[tuple[int, int]] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """The annotation-json record of a scene (``annotated_pairs``); pairs in ``hidden`` are
    left unannotated."""
    hois = [
        {"human": h, "object": j, "verb": v}
        for (h, j), verbs in sorted(annotated_pairs(scene).items())
        if (h, j) not in hidden
        for v in verbs
    ]
    boxes = [
        {"box": annotation_box(b), "label": lab}
        for b, lab in zip(scene.boxes, scene.labels, strict=True)
    ]
    return {"file_name": scene.file_name, "width": scene.width, "height": scene.height,
            "boxes": boxes, "hois": hois}  # fmt: skip


def simulate_detections(scene: Scene, kind: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """A simulated detector's output on a scene (``kind`` in DETECTORS), boxes in the
    annotation convention, sorted by score."""
    cfg = DETECTORS[kind]
    W, H = scene.width, scene.height
    objects = [o for o in label_spec()["objects"] if o != "person"]
    dets = []

    def add(box: np.ndarray, label: str, score: float) -> None:
        x1, x2 = np.clip([box[0], box[2]], 1, W)
        y1, y2 = np.clip([box[1], box[3]], 1, H)
        x1, y1 = min(x1, W - 2), min(y1, H - 2)
        x2, y2 = max(x2, x1 + 2), max(y2, y1 + 2)
        coords = [round(float(c), 1) for c in (x1, y1, x2, y2)]
        dets.append({"box": coords, "label": label, "score": round(float(score), 3)})

    for b, lab in zip(scene.boxes, scene.labels, strict=True):
        miss, noise, swap, score = (
            rng.uniform(),
            rng.normal(0, cfg["jitter"], 4),
            rng.uniform(),
            rng.uniform(*cfg["score"]),
        )
        if miss < cfg["miss"]:
            continue
        box = np.array(annotation_box(b), dtype=float)
        w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
        if lab != "person" and swap < cfg["swap"]:
            lab = objects[int(rng.integers(len(objects)))]
        add(box + noise * np.array([w, h, w, h]), lab, score)
    for _ in range(int(rng.poisson(cfg["fp"]))):
        w, h = rng.uniform(0.08, 0.4) * W, rng.uniform(0.08, 0.4) * H
        x1, y1 = rng.uniform(1, W - w), rng.uniform(1, H - h)
        lab = "person" if rng.uniform() < 0.3 else objects[int(rng.integers(len(objects)))]
        add(np.array([x1, y1, x1 + w, y1 + h]), lab, rng.uniform(*cfg["fp_score"]))
    dets.sort(key=lambda d: -d["score"])
    return dets


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))


def _atomic_png(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:  # format given: no image suffix on a leftover
        img.save(tmp, format="PNG", compress_level=1)


def _check_args(num_train: int, num_test: int, image_size: tuple[int, int] | None, sparsity: float,
                holdout: list[tuple[str, str]]) -> None:  # fmt: skip
    if num_train < 0 or num_test < 0:
        raise SyntheticError(f"num_train / num_test must be >= 0, got {num_train} / {num_test}")
    if not 0.0 <= sparsity <= 1.0:
        raise SyntheticError(f"sparsity must be in [0, 1], got {sparsity}")
    if image_size is not None and (min(image_size) < 192 or max(image_size) > 2048):
        raise SyntheticError(f"image_size must be between 192 and 2048 pixels, got {image_size}")
    valid = {
        (h["verb"], h["object"]) for h in label_spec()["hois"] if h["verb"] != "no_interaction"
    }
    for comp in holdout:
        if tuple(comp) not in valid:
            raise SyntheticError(
                f"holdout {comp!r} is not an interaction of the synthetic label space"
            )


def generate_world(
    out_dir: str | os.PathLike,
    *,
    num_train: int = 200,
    num_test: int = 60,
    seed: int = 0,
    image_size: tuple[int, int] | None = (320, 256),
    sparsity: float = 0.3,
    holdout: Sequence[tuple[str, str]] | None = None,
    progress: bool = True,
) -> WorldPaths:
    """Generate the synthetic world into ``out_dir`` (see the module docstring).

    ``image_size`` (width, height), or None for sizes varied in 256..384 per image.
    ``holdout``: (verb, object) compositions never drawn in train (default: the label space's
    ``unseen`` subset). The first test images each show one interaction class (in label-space
    order) so every class has test pairs once ``num_test`` >= 23.
    """
    holdout = [tuple(c) for c in (default_holdout() if holdout is None else holdout)]
    _check_args(num_train, num_test, image_size, sparsity, holdout)  # type: ignore[arg-type]
    root = Path(out_dir)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    spec = label_spec()
    label_space = "synthetic"
    if set(holdout) != set(default_holdout()):
        ids = [h["id"] for h in spec["hois"] if (h["verb"], h["object"]) in set(holdout)]
        custom = {**spec, "subsets": {**spec["subsets"], "unseen": ids,
                                      "seen": [h["id"] for h in spec["hois"] if h["id"] not in ids]}}  # fmt: skip
        label_space = "label_space.yaml"
        atomic_write_text(root / label_space, yaml.safe_dump(custom, sort_keys=False))
    forced = [(h["verb"], h["object"]) for h in spec["hois"] if h["verb"] != "no_interaction"]
    absent = absent_objects(holdout)
    paths: dict[str, Any] = {}
    for split, n, code in (("train", num_train, 0), ("test", num_test, 1)):
        scenes = []
        for i in tqdm(range(n), desc=f"synthetic {split}", unit="img", disable=not progress):
            rng = np.random.default_rng([seed, code, i])
            size = image_size or (int(rng.integers(256, 385)), int(rng.integers(256, 385)))
            force = forced[i] if split == "test" and i < len(forced) else None
            banned, gone = (set(holdout), absent) if split == "train" else (set(), frozenset())
            scene = make_scene(rng, f"{split}_{i + 1:06d}.png", size, banned, force, gone)  # type: ignore[arg-type]
            _atomic_png(render(scene, rng), images / scene.file_name)
            scenes.append(scene)
        hidden: list[set[tuple[int, int]]] = [set() for _ in scenes]
        if split == "train":
            pos = [(k, hj) for k, s in enumerate(scenes) for hj in positive_pairs(s)]
            drop = np.random.default_rng([seed, 2]).permutation(len(pos))[
                : round(sparsity * len(pos))
            ]
            for q in sorted(drop.tolist()):
                hidden[pos[q][0]].add(pos[q][1])
        doc = {"format": "linkhoi-annotations", "version": 1, "label_space": label_space, "image_root": "images",
               "images": [image_record(s, hid) for s, hid in zip(scenes, hidden, strict=True)]}  # fmt: skip
        _atomic_json(root / f"{split}.json", doc)
        paths[split] = root / f"{split}.json"
        if split == "test":
            pairs = {s.file_name: [list(hj) for hj in open_pairs(s)] for s in scenes}
            _atomic_json(root / "test_open_vocabulary.json", {"verb": OPEN_VERB, "pairs": pairs})
        prefix = "" if split == "test" else "train_"
        paths[f"{split}_dets"] = {}
        for kcode, kind in enumerate(DETECTORS):
            recs = [
                {"file_name": s.file_name, "width": s.width, "height": s.height,
                 "detections": simulate_detections(s, kind, np.random.default_rng([seed, code, 10 + kcode, k]))}
                for k, s in enumerate(scenes)
            ]  # fmt: skip
            path = root / f"{prefix}detections_{kind}.json"
            _atomic_json(path, {"format": "linkhoi-detections", "version": 1, "images": recs})
            paths[f"{split}_dets"][kind] = path
    return WorldPaths(root, paths["train"], paths["test"], images, label_space,
                      root / "test_open_vocabulary.json", paths["test_dets"], paths["train_dets"])  # fmt: skip
