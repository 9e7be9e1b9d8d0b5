"""Speed of `linkhoi eval hico_det` against the time to parse its predictions file.

Builds a synthetic HICO-DET test set at full scale (9,658 images, the real 600-class label
space, ~3.5 ground-truth pairs per image in PPDM's test_hico.json layout) and a triplet file
with 100 detections per image (jittered copies of the ground truth plus random pairs), then
runs, each in a fresh child process:
  1. json.load: a bare stdlib ``json.load`` of the predictions file (the yardstick)
  2. eval:  ``linkhoi eval hico_det`` end to end (the CLI's ``run``, in-process in the child),
     timed from the child's first import of linkhoi and numpy, as a ``linkhoi eval`` process
and prints both times (wall and CPU), their ratio (goal <= 0.6) and the children's peak memory
(goal for the evaluation: <= 600 MB). Each child runs ``--repeat`` times, interleaved, and
the minimum of each figure is kept: on a loaded machine a single json.load varied by almost
2x between runs. ``--diagnose`` adds the diagnosis to the timed run.

    python benchmarks/eval_speed.py [--images 9658] [--per-image 100] [--format json|jsonl]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: the timed child must import it itself
    import numpy as np


def make_dataset(
    root: Path, n_images: int, per_image: int, fmt: str, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``test_hico.json`` and ``predictions.<fmt>`` under ``root``; return both paths."""
    import numpy as np

    from linkhoi.eval.triplets import write_triplets
    from linkhoi.labels import load

    ls = load("hico_det")
    rng = np.random.default_rng(seed)
    n_hoi = len(ls.hois)
    hoi_obj = np.asarray(ls.hoi_object_positions())
    verbs = [h.verb for h in ls.hois]
    objs = [h.object for h in ls.hois]
    verb_ids = [h.verb_id for h in ls.hois]
    coco = [ls.object_ids[o] for o in hoi_obj]
    # long-tailed class frequencies, every class present at least twice (like the real set)
    weights = 1.0 / (1.0 + np.arange(n_hoi)) ** 0.8
    weights = weights[rng.permutation(n_hoi)]
    weights /= weights.sum()
    n_pairs = rng.poisson(3.5, n_images)
    n_pairs[rng.choice(n_images, 112, replace=False)] = 0  # images without visible pairs
    classes = rng.choice(n_hoi, int(n_pairs.sum()), p=weights)
    classes[: 2 * n_hoi] = np.repeat(np.arange(n_hoi), 2)
    rng.shuffle(classes)

    def boxes(k: int) -> np.ndarray:
        xy = rng.integers(1, 400, (k, 2))
        wh = rng.integers(10, 240, (k, 2))
        return np.concatenate([xy, np.minimum(xy + wh, 640)], 1).astype(float)

    records, preds, at = [], [], 0
    for i in range(n_images):
        name = f"HICO_test2015_{i + 1:08d}.jpg"
        cls = classes[at : at + n_pairs[i]]
        at += n_pairs[i]
        hb, ob = boxes(len(cls)), boxes(len(cls))
        anns, hois = [], []
        for k, c in enumerate(cls):
            anns += [{"bbox": hb[k].tolist(), "category_id": 1},
                     {"bbox": ob[k].tolist(), "category_id": int(coco[c])}]  # fmt: skip
            hois.append({"subject_id": 2 * k, "object_id": 2 * k + 1, "category_id": verb_ids[c]})
        records.append({"file_name": name, "annotations": anns, "hoi_annotation": hois})
        # detections: 3 jittered copies per GT pair (same class or a sibling), rest random
        n_true = min(3 * len(cls), per_image)
        src = np.repeat(np.arange(len(cls)), 3)[:n_true]
        d_cls = rng.choice(n_hoi, per_image)
        d_h, d_o = boxes(per_image), boxes(per_image)
        if n_true:
            d_cls[:n_true] = cls[src]
            d_h[:n_true] = hb[src] + rng.normal(0, 6, (n_true, 4)).round(1)
            d_o[:n_true] = ob[src] + rng.normal(0, 6, (n_true, 4)).round(1)
        d_h = np.concatenate(
            [np.minimum(d_h[:, :2], d_h[:, 2:]), np.maximum(d_h[:, :2], d_h[:, 2:])], 1
        )
        d_o = np.concatenate(
            [np.minimum(d_o[:, :2], d_o[:, 2:]), np.maximum(d_o[:, :2], d_o[:, 2:])], 1
        )
        scores = rng.random(per_image).round(4)
        scores[:n_true] = np.minimum(scores[:n_true] + 0.3, 1.0)
        dets = [
            {"human_box": h, "object_box": o, "verb": verbs[c], "object": objs[c], "score": s}
            for h, o, c, s in zip(
                d_h.tolist(), d_o.tolist(), d_cls.tolist(), scores.tolist(), strict=True
            )
        ]
        preds.append((name, dets))
    ann = root / "test_hico.json"
    ann.write_text(json.dumps(records))
    pred = write_triplets(root / f"predictions.{fmt}", preds, "hico_det")
    return ann, pred


def child_parse(pred: str) -> None:
    import gc
    import gzip

    t, c = time.perf_counter(), time.process_time()
    gc.disable()  # as the evaluator's own readers: no full collections over a million dicts
    with gzip.open(pred, "rt") if pred.endswith(".gz") else open(pred) as fh:
        if ".jsonl" in pred:
            n = sum(1 for line in fh if json.loads(line) is not None)
        else:
            data = json.load(fh)
            n = len(data["images"] if isinstance(data, dict) else data)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"seconds": dt, "cpu": dc, "images": n, "maxrss_mb": _maxrss_mb()}))


def child_eval(ann: str, pred: str, out: str, *extra: str) -> None:
    import argparse as ap
    import contextlib
    import io

    # timed from the first import of linkhoi (numpy, label spaces...), as `linkhoi eval` runs
    t, c = time.perf_counter(), time.process_time()
    import linkhoi.data  # noqa: F401  (it used to import torch eagerly)
    from linkhoi.eval import cli

    t_import = time.process_time() - c
    parser = ap.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["hico_det", "--annotations", ann, "--predictions", pred, "--output", out,
         *(f"--{x}" for x in extra)]
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli.run(args)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    full = json.loads(Path(out).read_text())["map"]["full"]
    result = {"seconds": dt, "cpu": dc, "import_cpu": t_import, "rc": rc,
              "map_full": full}  # fmt: skip
    print(json.dumps({**result, "maxrss_mb": _maxrss_mb()}))


def _maxrss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM of /proc/self/status, the peak of
    this program alone; ``ru_maxrss`` would also count the parent's resident memory at the
    fork that started it (this script's parent holds the generated data set)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _child(*argv: str) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=9658)
    p.add_argument("--per-image", type=int, default=100)
    p.add_argument("--format", choices=("json", "jsonl"), default="json")
    p.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    p.add_argument("--reuse", action="store_true", help="reuse files already in --workdir")
    p.add_argument("--diagnose", action="store_true", help="time linkhoi eval --diagnose")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed runs of each child, interleaved; the minimum of each is kept")  # fmt: skip
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        (child_parse if kind == "parse" else child_eval)(*rest)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        ann, pred = root / "test_hico.json", root / f"predictions.{args.format}"
        if args.reuse and ann.is_file() and pred.is_file():
            print(f"reusing {ann} and {pred} ({pred.stat().st_size / 1e6:.0f} MB)")
        else:
            ann, pred = make_dataset(root, args.images, args.per_image, args.format)
            print(f"generated {args.images} images x {args.per_image} detections "
                  f"({pred.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")  # fmt: skip
        # bare words: "--diagnose" after --child would be read as this script's own option
        extra = ["diagnose"] if args.diagnose else []
        parses, evals = [], []
        for _ in range(args.repeat):  # interleaved; the minimum is least disturbed by load
            parses.append(_child("--child", "parse", str(pred)))
            evals.append(_child("--child", "eval", str(ann), str(pred),
                                str(root / "out" / "OUT.json"), *extra))  # fmt: skip
        parse = {k: min(p[k] for p in parses) for k in parses[0]}
        ev = {k: min(e[k] for e in evals) for k in evals[0]}
    print(f"stdlib json.load of the predictions ({parse['images']} images): "
          f"{parse['seconds']:.2f} s wall, {parse['cpu']:.2f} s CPU "
          f"(peak RSS {parse['maxrss_mb']:.0f} MB)")  # fmt: skip
    what = "linkhoi eval hico_det --diagnose" if args.diagnose else "linkhoi eval hico_det"
    print(f"{what} end to end: {ev['seconds']:.2f} s wall, {ev['cpu']:.2f} s CPU "
          f"(peak RSS {ev['maxrss_mb']:.0f} MB, rc {ev['rc']}, mAP full {100 * ev['map_full']:.2f})")  # fmt: skip
    print(f"  of which importing linkhoi (numpy, label spaces...): {ev['import_cpu']:.2f} s CPU")
    print(f"ratio eval / json.load: {ev['seconds'] / parse['seconds']:.2f} wall, "
          f"{ev['cpu'] / parse['cpu']:.2f} CPU (goal <= 0.6); "
          f"eval peak RSS {ev['maxrss_mb']:.0f} MB (goal <= 600)")  # fmt: skip


if __name__ == "__main__":
    main()
