"""Speed of the V-COCO and SWiG-HOI evaluators against the time to parse the predictions.

Makes a synthetic test set at full scale (V-COCO 4,946 images, SWiG-HOI 14,000 images, real
label spaces), writes the predictions as a triplet file (``--format json`` or ``jsonl``), then
prints, measured in this run: the time of a bare stdlib parse of the file (``json.load``, or
``json.loads`` per line), the time of the whole evaluation as ``linkhoi eval`` runs it
(``linkhoi.eval.cli.evaluate_file``: read, ``process``, ``evaluate``), their ratio (goal <= 0.6)
and the peak resident memory.

    python benchmarks/eval_speed_vcoco_swig.py --benchmark vcoco
    python benchmarks/eval_speed_vcoco_swig.py --benchmark swig_hoi --per-image 30
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from linkhoi import labels
from linkhoi.data import HOIPair, Sample
from linkhoi.eval.cli import evaluate_file
from linkhoi.eval.swig import SWIGEvaluator
from linkhoi.eval.triplets import write_triplets
from linkhoi.eval.vcoco import VCOCOEvaluator


def _boxes(rng: np.random.Generator, n: int, size: float = 600.0) -> np.ndarray:
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(20, size * 0.3, (n, 2))
    return np.round(np.concatenate([xy, xy + wh], axis=1), 1)


def _jitter(rng: np.random.Generator, box: np.ndarray, scale: float = 8.0) -> list[float]:
    b = box + rng.normal(0, scale, 4)
    return [float(min(b[0], b[2])), float(min(b[1], b[3])), float(max(b[0], b[2])),
            float(max(b[1], b[3]))]  # fmt: skip


def vcoco_case(rng: np.random.Generator, n_images: int, per_image: int):
    ls = labels.load("vcoco")
    person, cup = ls.object_position("person"), ls.object_position("cup")
    samples, images = [], []
    for i in range(n_images):
        boxes = _boxes(rng, 5)  # 3 persons (the last one ignored), 2 objects
        pairs = []
        for p in range(2):
            for h in rng.choice(len(ls.hois), 4, replace=False):
                obj = (
                    None
                    if ls.hois[h].role is None or rng.random() < 0.2
                    else int(rng.integers(3, 5))
                )
                pairs.append(HOIPair(p, obj, int(h)))
        name = f"COCO_val2014_{i:012d}.jpg"
        samples.append(Sample(name, None, 640, 480, boxes, [person] * 3 + [cup] * 2, pairs,
                              np.array([0, 0, 1, 0, 0], bool), image_id=i))  # fmt: skip
        dets = []
        for _ in range(per_image):
            h = ls.hois[int(rng.integers(len(ls.hois)))]
            hb = _jitter(rng, boxes[int(rng.integers(3))])
            role = h.role if rng.random() < 0.8 else None
            ob = None if role is None else _jitter(rng, boxes[int(rng.integers(3, 5))])
            dets.append({"human_box": hb, "object_box": ob, "verb": h.verb, "role": role,
                         "score": float(rng.random())})  # fmt: skip
        images.append((name, dets))
    return ls, samples, images


def swig_case(rng: np.random.Generator, n_images: int, per_image: int):
    ls = labels.load("swig_hoi")
    evaluated = np.asarray(sorted(ls.subsets["evaluated"]))
    person = ls.object_position_by_id(0)
    samples, images = [], []
    for i in range(n_images):
        k = int(rng.integers(1, 4))
        classes = rng.choice(evaluated, k)
        boxes = _boxes(rng, 1 + k, 512)
        labs = [person] + [ls.object_position_by_id(ls.hois[c].object_id) for c in classes]
        pairs = [HOIPair(0, 1 + j, int(c)) for j, c in enumerate(classes)]
        name = f"verb_{i}.jpg"
        samples.append(Sample(name, None, 512, 512, boxes, labs, pairs, image_id=i))
        dets = []
        for _ in range(per_image):
            j = int(rng.integers(k))
            c = int(classes[j]) if rng.random() < 0.5 else int(rng.choice(evaluated))
            dets.append({"hoi_id": ls.hois[c].id, "score": float(rng.random()),
                         "human_box": _jitter(rng, boxes[0]),
                         "object_box": _jitter(rng, boxes[1 + j])})  # fmt: skip
        images.append((name, dets))
    return ls, samples, images


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _sub(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] - b[0], a[1] - b[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stdlib_parse(path: Path) -> None:
    """The yardstick: the stdlib parse of the whole file, garbage collector paused."""
    gc.disable()
    try:
        with path.open() as fh:
            if path.suffix == ".jsonl":
                for line in fh:
                    json.loads(line)
            else:
                json.load(fh)
    finally:
        gc.enable()


def bench(
    name: str, n_images: int, per_image: int, seed: int, repeat: int, fmt: str = "json"
) -> None:
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    if name == "vcoco":
        ls, samples, images = vcoco_case(rng, n_images, per_image)
        make = VCOCOEvaluator
    else:
        ls, samples, images = swig_case(rng, n_images, per_image)
        make = SWIGEvaluator
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"predictions.{fmt}"
        write_triplets(path, images, ls.name)
        n_det = sum(len(d) for _, d in images)
        del images
        print(f"[{name}] {n_images} images, {n_det} detections; synthetic set + file "
              f"{time.perf_counter() - t:.1f}s ({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
        parse, total = [], []
        for _ in range(repeat):  # interleaved repeats; the minimum is least disturbed by load
            t = _clock()
            stdlib_parse(path)
            parse.append(_sub(_clock(), t))
            t = _clock()
            ev = make(samples, ls)
            result = evaluate_file(ev, path, name)
            end = _clock()
            total.append(_sub(end, t))
    for i, what in enumerate(("CPU", "wall")):
        p, e = (min(x[i] for x in v) for v in (parse, total))
        print(f"[{name}] {what} time: stdlib parse {p:.2f}s | evaluation end to end {e:.2f}s "
              f"| ratio {e / p:.2f}x the stdlib parse (goal <= 0.6)")  # fmt: skip
    main = result.summary["map"]["full"] if name == "swig_hoi" else (
        result.summary["role_ap"]["scenario_1"]["mean"])  # fmt: skip
    print(f"[{name}] peak RSS {peak_mb():.0f} MB (includes the synthetic set) | "
          f"headline mAP {main:.4f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=["vcoco", "swig_hoi", "both"], default="both")
    parser.add_argument("--images", type=int, default=None, help="default: full test-set size")
    parser.add_argument("--per-image", type=int, default=None, help="default: 100 V-COCO, 30 SWiG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="timed repeats (minimum kept)")
    parser.add_argument("--format", choices=("json", "jsonl"), default="json")
    args = parser.parse_args(argv)
    if args.benchmark in ("vcoco", "both"):
        bench("vcoco", args.images or 4946, args.per_image or 100, args.seed, args.repeat,
              args.format)  # fmt: skip
    if args.benchmark in ("swig_hoi", "both"):
        bench("swig_hoi", args.images or 14000, args.per_image or 30, args.seed, args.repeat,
              args.format)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
