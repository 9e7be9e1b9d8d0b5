"""Images per second of `linkhoi detect`'s Python path (load image -> detections -> model ->
triplets) for the tiny and the ViT-B/16 (random weights) configurations, on CPU, same run.

Images are written to a temporary folder (640x480 JPEGs); detections come from a fixed
function (5 humans + 10 objects per image), so only linkhoi's own work is timed, not an
object detector. Both predictors run alternately, after a warm-up, so that load from other
processes hits both alike. The last line is exactly
``ratio=<vitb16 time per image / tiny time per image>``.

    python benchmarks/detect_speed.py [--images 8] [--batch-size 4] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from linkhoi.infer import Predictor
from linkhoi.labels import load
from linkhoi.model import LinkConfig, create_model

TINY = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)


def _fixed_detector(space, n_humans: int = 5, n_objects: int = 10, size=(640, 480)):
    g = np.random.default_rng(0)
    n = n_humans + n_objects
    xy = g.random((n, 2)) * np.array([size[0] * 0.7, size[1] * 0.7])
    wh = g.random((n, 2)) * np.array([size[0] * 0.3, size[1] * 0.3]) + 8
    boxes = np.concatenate([xy, xy + wh], 1)
    objects = [p for p in range(len(space.objects)) if p != space.human_position]
    labels = [space.human_position] * n_humans + [
        objects[i % len(objects)] for i in range(n_objects)
    ]
    scores = g.random(n) * 0.5 + 0.5
    return lambda image: (boxes, labels, scores)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = load("synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        rng = np.random.default_rng(0)
        for i in range(args.images):
            path = Path(tmp) / f"img_{i:03d}.jpg"
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        configs = {
            "tiny": LinkConfig(**TINY),
            "vitb16": LinkConfig(backbone="vit-b16"),
        }
        predictors = {
            name: Predictor(create_model(cfg, space, device="cpu").eval(), device="cpu")
            for name, cfg in configs.items()
        }
        detector = _fixed_detector(space)

        def run(pred: Predictor) -> int:
            n = 0
            for _, triplets in pred.predict_many(paths, detector, batch_size=args.batch_size):
                n += len(triplets) > 0
            return n

        for pred in predictors.values():  # warm-up
            assert run(pred) == len(paths)
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(args.rounds):
            for name, pred in predictors.items():
                start = time.perf_counter()
                run(pred)
                times[name].append((time.perf_counter() - start) / len(paths))
    per_image = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{args.images} images 640x480, 15 detections each, batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.rounds} rounds"
    )
    for name, sec in per_image.items():
        print(f"{name:7s} {1.0 / sec:8.2f} images/s  ({1000 * sec:8.1f} ms/image)")
    print(f"ratio={per_image['vitb16'] / per_image['tiny']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
