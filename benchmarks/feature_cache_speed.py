"""Frozen-CLIP feature path: first pass (cold: read, preprocess, backbone, store) vs the
feature cache (warm: read the stored features back), each with and without
OMP_WAIT_POLICY=PASSIVE, in one run.

Why: on a busy machine (more runnable threads than cores), OpenMP threads that spin while
waiting for work take the cores the other threads need, and each parallel operation of the
backbone waits for its slowest thread. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads
sleep instead. The variable is read when torch loads its OpenMP runtime, so every
configuration runs in a fresh process; the ``linkhoi`` command sets it before importing torch
(``linkhoi.cli``) unless the environment already names a policy.

The backbone is the ``tiny`` one (64 px, random weights: the synthetic demo's); images are
random 320x240 PNGs. ``--load N`` adds N busy-looping processes for the duration, to stand in
for other jobs on an idle machine. Only ratios within one run are comparable.

    python benchmarks/feature_cache_speed.py [--images 32] [--rounds 2] [--load 0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = {"default": None, "PASSIVE": "PASSIVE"}  # None: OMP_WAIT_POLICY unset


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` random 320x240 PNG images (noise with a few rectangles)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = int(rng.integers(0, 260)), int(rng.integers(0, 180))
            draw.rectangle(
                [x, y, x + 60, y + 60], fill=tuple(int(v) for v in rng.integers(0, 255, 3))
            )
        path = folder / f"img_{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


def child(images: list[str], cache_dir: str, batch_size: int) -> dict[str, float]:
    """One configuration, in its own process (torch imported here, after the environment is
    set): seconds for the cold pass, the backbone forward alone, and the cached pass."""
    import torch

    from linkhoi.data import load_image
    from linkhoi.model.backbones import load_backbone
    from linkhoi.train.feature_cache import FeatureCache, cached_features

    backbone = load_backbone("tiny", None, None, "cpu")  # seeded random weights
    cache = FeatureCache(cache_dir, backbone.sha256, backbone.image_size)
    paths = [Path(p) for p in images]
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    forward_s = 0.0

    def one_pass() -> float:
        nonlocal forward_s
        start = time.perf_counter()
        for batch in batches:

            def compute(idx: list[int], batch=batch) -> tuple[torch.Tensor, torch.Tensor]:
                nonlocal forward_s
                pixels = torch.stack([backbone.preprocess(load_image(batch[i])) for i in idx])
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = backbone(pixels)
                forward_s += time.perf_counter() - t0
                return out

            cached_features(cache, list(batch), compute, torch.device("cpu"))
        return time.perf_counter() - start

    with torch.no_grad():  # warm-up: first-call allocations, not part of either pass
        backbone(torch.zeros(1, 3, backbone.image_size, backbone.image_size))
    cold = one_pass()
    cold_forward = forward_s
    cached = one_pass()
    return {
        "cold_s": cold,
        "forward_s": cold_forward,
        "cached_s": cached,
        "threads": torch.get_num_threads(),
        "policy_seen": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


def run_config(policy: str | None, images: list[Path], batch_size: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as cache_dir:
        args = json.dumps({"images": [str(p) for p in images], "cache_dir": cache_dir,
                           "batch_size": batch_size})  # fmt: skip
        proc = subprocess.run(
            [sys.executable, __file__, "--child", args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration's best counts")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to add")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["images"], spec["cache_dir"], spec["batch_size"])))
        return

    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            images = make_images(Path(folder), args.images)
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.rounds):  # alternate the configurations; keep each one's best
                for name, policy in POLICIES.items():
                    result = run_config(policy, images, args.batch_size)
                    if name not in best or result["cold_s"] < best[name]["cold_s"]:
                        best[name] = result
    finally:
        for hog in hogs:
            hog.terminate()
    load1 = os.getloadavg()[0]
    n = args.images
    print(
        f"cores={os.cpu_count()} load_average_1min={load1:.1f} extra_busy_processes={args.load} "
        f"images={n} batch_size={args.batch_size} rounds={args.rounds} backbone=tiny (64 px)"
    )
    print(f"{'OMP_WAIT_POLICY':16s} {'cold img/s':>10s} {'forward ms/img':>15s} "
          f"{'cached img/s':>13s} {'cached/cold':>12s}")  # fmt: skip
    for name, r in best.items():
        print(
            f"{name:16s} {n / r['cold_s']:10.1f} {1000 * r['forward_s'] / n:15.1f} "
            f"{n / r['cached_s']:13.1f} {r['cold_s'] / r['cached_s']:12.1f}"
            f"   (torch threads {r['threads']})"
        )
    d, p = best["default"], best["PASSIVE"]
    print(f"ratio cold default/PASSIVE time: {d['cold_s'] / p['cold_s']:.2f}")
    print(f"ratio backbone forward default/PASSIVE time: {d['forward_s'] / p['forward_s']:.2f}")
    print(f"ratio cached default/PASSIVE time: {d['cached_s'] / p['cached_s']:.2f}")


if __name__ == "__main__":
    main()
