"""The caption corpus the synthetic VLM is pretrained on: images of the synthetic world with
plain-English captions, on a seed range of its own (never the HOI train/test images).

Each scene gives two items: the whole image and a crop around one person (so the model also
sees single interactions large), each ``size`` x ``size`` (128 by default) and with ``CAPTIONS``
caption variants. With ``object_crops``, a scene also gives a crop centred on one of its objects,
captioned with the object's name ("a photo of a cup"): small held objects (a cup, a book) are a
few pixels wide in a whole image, and this is where their names meet a view of them. Held-out
validation scenes carry image-level labels (which interaction classes are true in the image).
The corpus is written in chunks of ``CHUNK`` scenes (``chunk_NNNNN.npz``), each atomically, so an
interrupted build resumes where it stopped; chunks are independent, so ``workers`` processes
build them in parallel with identical results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from linkhoi.data.synthetic_scene import Scene, make_scene, render
from linkhoi.io import atomic_path, atomic_write_text
from linkhoi.synthetic.captions import (
    image_classes,
    object_caption,
    person_facts,
    scene_caption,
    single_caption,
)

CHUNK = 256
SEED_CODE, VAL_CODE = 3, 4  # the HOI world uses 0-2 (train, test, sparsity): never the same images
SIZE = 128  # default image size: stored at the VLM's input size (the whole image squashed, as
SCENE = (320, 256)  # linkhoi's backbone preprocessing does with any image)
CAPTIONS = 4
CONTEXT = 48  # tokens of the VLM's text encoder; every caption is checked to fit


@dataclass
class Corpus:
    """Images (N, size, size, 3) uint8, CAPTIONS captions per image, and for validation
    scenes the image-level classes as sorted (verb, object) lists."""

    images: np.ndarray
    captions: list[list[str]]
    classes: list[list[tuple[str, str]]]


def _fits():
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer(context_length=CONTEXT)
    return lambda text: len(tok.encode(text)) + 2 <= CONTEXT  # start and end tokens


def squash(
    img: Image.Image, box: tuple[float, float, float, float] | None = None, size: int = SIZE
) -> np.ndarray:
    """The image (or its ``box`` crop) resized to the VLM's input: (size, size, 3) uint8."""
    if box is not None:
        img = img.crop(tuple(int(round(v)) for v in box))
    return np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def crop_box(scene: Scene, i: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A box around person ``i`` and everything they interact with or stand near, padded."""
    facts, near = person_facts(scene, i)
    idx = [i, *(j for _, j in facts), *near]
    b = scene.boxes[idx]
    x1, y1 = b[:, 0].min(), b[:, 1].min()
    x2, y2 = b[:, 2].max(), b[:, 3].max()
    pad = rng.uniform(0.05, 0.2) * max(x2 - x1, y2 - y1)
    return _inside(scene, x1 - pad, y1 - pad, x2 + pad, y2 + pad)


def object_box(scene: Scene, j: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A square-ish window around entity ``j``: 1.6-3 times its larger side (at least 28 px),
    its centre moved by up to a fifth of the window, clipped to the image."""
    b = scene.boxes[j]
    side = max(28.0, rng.uniform(1.6, 3.0) * float(max(b[2] - b[0], b[3] - b[1])))
    cx = (b[0] + b[2]) / 2 + rng.uniform(-0.2, 0.2) * side
    cy = (b[1] + b[3]) / 2 + rng.uniform(-0.2, 0.2) * side
    return _inside(scene, cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def _inside(scene: Scene, x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    """The box (x1, y1, x2, y2) clipped to the scene's image."""
    return (max(0.0, x1), max(0.0, y1), min(float(scene.width), x2), min(float(scene.height), y2))


def build_chunk(
    seed: int,
    code: int,
    start: int,
    stop: int,
    crops: bool,
    size: int = SIZE,
    object_crops: bool = False,
) -> dict:
    """Scenes ``start..stop-1`` of a seed range: images, captions, image-level classes.
    The object crops draw from a generator of their own, so the other items are the same
    with or without them."""
    fits = _fits()
    images, captions, classes = [], [], []
    for k in range(start, stop):
        rng = np.random.default_rng([seed, code, k])
        scene = make_scene(rng, f"corpus_{k:06d}.png", SCENE)
        img = render(scene, rng)
        images.append(squash(img, size=size))
        captions.append([scene_caption(scene, rng, fits) for _ in range(CAPTIONS)])
        classes.append(sorted(image_classes(scene)))
        if crops:
            i = int(rng.integers(len(scene.people)))
            images.append(squash(img, crop_box(scene, i, rng), size))
            captions.append([single_caption(scene, i, rng) for _ in range(CAPTIONS)])
            classes.append([])
        things = [j for j, label in enumerate(scene.labels) if label != "person"]
        if object_crops and things:  # scenes without an object give no object crop
            orng = np.random.default_rng([seed, code, k, 1])
            j = things[int(orng.integers(len(things)))]
            images.append(squash(img, object_box(scene, j, orng), size))
            captions.append([object_caption(scene.labels[j], orng) for _ in range(CAPTIONS)])
            classes.append([])
    return {"images": np.stack(images), "captions": captions, "classes": classes}


def _write_chunk(args: tuple) -> None:
    path, seed, code, start, stop, crops, size, object_crops = args
    data = build_chunk(seed, code, start, stop, crops, size, object_crops)
    meta = json.dumps({"captions": data["captions"], "classes": data["classes"]})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=data["images"], meta=np.frombuffer(meta.encode(), dtype=np.uint8))


def build_corpus(
    out_dir: str | os.PathLike,
    num_scenes: int,
    num_val: int = 512,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    size: int = SIZE,
    object_crops: bool = False,
) -> Path:
    """Build (or finish building) the corpus in ``out_dir``: ``train/`` with ``num_scenes``
    scenes (two items each, three with ``object_crops``) and ``val/`` with ``num_val`` whole
    images, all ``size`` x ``size``. Returns ``out_dir``."""
    root = Path(out_dir)
    params: dict = {"num_scenes": num_scenes, "num_val": num_val, "seed": seed, "chunk": CHUNK}
    # Recorded only when not the defaults, so that corpora built before these options match.
    if size != SIZE:
        params["size"] = size
    if object_crops:
        params["object_crops"] = True
    marker = root / "corpus.json"
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except ValueError:
            old = None
        if old != params:
            raise ValueError(f"{root}: holds a corpus built with {old}, not {params}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(params))
    jobs = []
    for split, n, code, crops in (
        ("train", num_scenes, SEED_CODE, True),
        ("val", num_val, VAL_CODE, False),
    ):
        (root / split).mkdir(exist_ok=True)
        for c, start in enumerate(range(0, n, CHUNK)):
            path = root / split / f"chunk_{c:05d}.npz"
            if not path.is_file():
                stop = min(n, start + CHUNK)
                jobs.append((path, seed, code, start, stop, crops, size, object_crops and crops))
    bar = tqdm(total=len(jobs), desc="caption corpus", unit="chunk", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_chunk, jobs):
                bar.update()
    else:
        for job in jobs:
            _write_chunk(job)
            bar.update()
    bar.close()
    return root


def load_corpus(root: str | os.PathLike, split: str = "train") -> Corpus:
    """All chunks of a split, in order."""
    images, captions, classes = [], [], []
    files = sorted((Path(root) / split).glob("chunk_*.npz"))
    if not files:
        raise FileNotFoundError(f"{Path(root) / split}: no corpus chunks (run build_corpus)")
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            images.append(z["images"])
            meta = json.loads(z["meta"].tobytes().decode())
        captions += meta["captions"]
        classes += [[tuple(c) for c in cl] for cl in meta["classes"]]
    return Corpus(np.concatenate(images), captions, classes)
