"""Peak memory of `linkhoi detect` against the number of images (goal: flat).

Each count runs `linkhoi detect --no-draw` in its own process on N images (links to a few
small noise images), with a tiny random-CLIP checkpoint and the same two boxes on every image
(a stand-in detector, so no detection file grows with N), keeping the model's 100 triplets per
image. It prints the child's peak resident memory (ru_maxrss) per count. The triplet file is
streamed, so the peak should not grow with N; holding every result until the end grew by
roughly the triplets' size per image.

    python benchmarks/detect_memory.py --counts 100 400 1600
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, torch
import linkhoi.infer.cli as cli
import linkhoi.infer.sources as sources
from linkhoi.detections import CallableDetector

def boxes(image):
    return [[2., 2., 30., 60.], [34., 10., 78., 58.]], ["person", "ball"], [0.9, 0.8]

sources.make_detector = lambda label_space, *a, **k: CallableDetector(boxes, label_space)
cli._check_records = lambda *a, **k: None
import resource
from linkhoi.cli import main
code = main(sys.argv[1:])
print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def make_inputs(root: Path, count: int) -> tuple[Path, Path, Path]:
    import numpy as np
    import torch
    from PIL import Image

    from linkhoi.model import LinkConfig, create_model
    from linkhoi.model.checkpoint import model_payload, save_checkpoint

    torch.manual_seed(0)
    model = create_model(LinkConfig(backbone="tiny"), "synthetic", device="cpu")
    ckpt = save_checkpoint(root / "tiny.pt", model_payload(model))
    rng = np.random.default_rng(0)
    sources = []
    for i in range(4):
        path = root / f"src{i}.png"
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(path)
        sources.append(path)
    images = root / "images"
    images.mkdir()
    for i in range(count):
        os.symlink(sources[i % 4], images / f"img{i:06d}.png")
    dets = root / "dets.json"
    dets.write_text("[]")
    return ckpt, images, dets


def run_once(count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt, images, dets = make_inputs(root, count)
        cmd = [sys.executable, "-c", CHILD, "detect", str(images), "--checkpoint", str(ckpt),
               "--detections", str(dets), "--out", str(root / "out"), "--no-draw",
               "--device", "cpu", "--batch-size", "8"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        peak_kb = int(done.stderr.rsplit("peak_kb", 1)[1].split()[0])  # the child's own peak
        size = (root / "out" / "triplets.json").stat().st_size
        return {
            "images": count,
            "peak_rss_mb": round(peak_kb / 1024, 1),  # ru_maxrss is in KB on Linux
            "triplets_mb": round(size / 2**20, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 400, 1600])
    args = parser.parse_args()
    for count in sorted(args.counts):
        print(json.dumps(run_once(count)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
