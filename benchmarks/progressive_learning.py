"""Does dense distillation beat ground truth alone? Progressive learning on the synthetic world.

On the demo's world (30% of the positive training pairs unannotated) and its VLM, for each seed:
the teacher (stage 1, ground truth only), the student (stage 2: from scratch, ground truth plus
the teacher's dense supervision on every candidate pair), a ground-truth-only model with the
student's architecture and epochs, and the student with each distillation level (map, query,
logit) switched off in turn. Every model is evaluated with the HICO-DET protocol on ground-truth
boxes and on the good simulated detector. Prints mean and standard deviation over the seeds;
the last line is ``student-gt_only=<difference of the gt/full means, in points>``.

    .venv/bin/python benchmarks/progressive_learning.py [--seeds 0 1 2] [--quick] [--vlm pretrained]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

VARIANTS = {  # name: (packaged config, distil?, levels switched off)
    "teacher": ("teacher", False, ()),
    "student": ("student", True, ()),
    "gt_only": ("student", False, ()),
    "no_map": ("student", True, ("map",)),
    "no_query": ("student", True, ("query",)),
    "no_logit": ("student", True, ("logit",)),
}
COLUMNS = (("gt", "full"), ("gt", "unseen"), ("good", "full"))


def run_seed(seed: int, mode: str, vlm_name: str, work: Path) -> dict[str, dict]:
    from linkhoi import demo, labels
    from linkhoi import demo_report as rep
    from linkhoi.data import read_generic
    from linkhoi.detections import FileDetections, GroundTruthDetections
    from linkhoi.model.checkpoint import load_model

    args = SimpleNamespace(quick=mode == "quick", seed=seed, device="cpu", no_progress=True)
    s = demo.SETTINGS[mode]
    world = demo._world(mode, seed, progress=False)
    vlm = demo._vlms()[vlm_name]
    space = labels.load("synthetic")
    samples = read_generic(world.test)
    sources = {
        "gt": GroundTruthDetections(samples),
        "good": FileDetections(world.detections["good"], space),
    }
    out: dict[str, dict] = {}
    for name, (stage, distil, off) in VARIANTS.items():
        t = time.perf_counter()
        epochs = s["teacher_epochs"] if stage == "teacher" else s["student_epochs"]
        teacher = work / f"seed{seed}_teacher.pt" if distil else None
        cfg = demo._train_config(
            stage, world, work / "runs" / f"{seed}_{name}", vlm, epochs, args, teacher
        )
        for level in off:
            setattr(cfg.distill, level, False)
        demo._train(cfg, work / f"seed{seed}_{name}.pt")
        model = load_model(work / f"seed{seed}_{name}.pt", device="cpu")
        out[name] = {}
        for src, source in sources.items():
            preds = rep.predict(model, samples, source, space, progress=False)
            out[name][src] = rep.strip(
                rep.evaluate(samples, space, [(n, tr) for n, _, tr in preds])
            )
        print(
            f"  seed {seed} {name:9s} gt/full {100 * out[name]['gt']['full']:5.1f}  ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="the quick demo's world and epochs")
    ap.add_argument("--vlm", default="pretrained", choices=("pretrained", "random"))
    args = ap.parse_args()
    mode = "quick" if args.quick else "default"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_seed(seed, mode, args.vlm, Path(tmp)) for seed in args.seeds]
    print(f"\nmAP (%) over seeds {args.seeds} ({mode} demo world, {args.vlm} VLM), mean ± std:")
    print(f"{'variant':10s} " + " ".join(f"{src + '/' + sub:>16s}" for src, sub in COLUMNS))
    means = {}
    for name in VARIANTS:
        cells = []
        for src, sub in COLUMNS:
            vals = [100 * r[name][src][sub] for r in results]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):9.1f} ± {sd:4.1f}")
            means[(name, src, sub)] = statistics.mean(vals)
        print(f"{name:10s} " + " ".join(f"{c:>16s}" for c in cells))
    print(f"total {time.perf_counter() - t0:.0f} s")
    diff = means[("student", "gt", "full")] - means[("gt_only", "gt", "full")]
    print(f"student-gt_only={diff:.1f}")


if __name__ == "__main__":
    main()
