"""Stage-2 overhead: student-only step time vs teacher + student (shared backbone) step time.

Builds a small synthetic world and tiny teacher checkpoints in a temporary folder, then times
optimizer steps of the tiny student (the packaged synthetic_student.yaml head) without and with
distillation. The method's setting (docs/method.md §6) is a teacher with the *same head
architecture* as the student; here both also share the tiny backbone, which runs once per batch
for both models (feature cache off). A second, labelled figure uses a teacher whose head is
twice as wide (the synthetic demo's teacher), which is not the method's setting. Each mode runs
in its own process so its peak memory is its own (CUDA: peak allocated; CPU: peak resident set
size); the modes alternate over ``--rounds`` and the fastest round of each counts. The timed
steps stay inside one epoch (no checkpoint writes between them). The last line is
``ratio=<stage-2 (same head)/student>``.

    .venv/bin/python benchmarks/train_step.py [--steps 12] [--batch-size 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WIDE_TEACHER = (
    "model={backbone: tiny, d_model: 64, d_pair: 96, d_latent: 64, num_heads: 4, pe_dims: 32, "
    "spatial_hidden: [64, 96]}"
)
STUDENT = (
    "model={backbone: tiny, d_model: 32, d_pair: 48, d_latent: 32, num_heads: 4, pe_dims: 16, "
    "spatial_hidden: [32, 48]}"
)

# mode: (label, teacher folder or None)
MODES = {
    "student": ("student-only", None),
    "stage2": ("stage-2, teacher with the student's head (docs/method.md §6)", "teacher_same"),
    "stage2_wide": ("stage-2, teacher head 2x wider (not the method's setting)", "teacher_wide"),
}


def _overrides(world: Path, out: Path, batch_size: int, *extra: str) -> list[str]:
    return [
        f"data.train={{path: {world / 'train.json'}}}",
        f"data.image_root={world / 'images'}",
        f"optim.batch_size={batch_size}",
        "optim.lr=1e-3",
        "optim.epochs=1000",
        f"runtime.out_dir={out}",
        "runtime.progress=false",
        "runtime.feature_cache=false",
        f"runtime.cache_dir={out / 'cache'}",
        *extra,
    ]


def measure(world: Path, out: Path, batch_size: int, steps: int, teacher: str | None) -> dict:
    """Median optimizer-step time (s) and peak memory (MB) of one training mode."""
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    extra = [STUDENT, f"runtime.max_steps={steps + 3}"]
    if teacher:
        extra.append(f"distill.teachers=[{teacher}]")
    cfg = apply_overrides(TrainConfig(), _overrides(world, out, batch_size, *extra))
    trainer = Trainer(cfg, force=True)  # rounds reuse the folder
    stamps: list[float] = []
    step = trainer._optimizer_step

    def timed_step() -> None:
        step()
        stamps.append(time.perf_counter())

    trainer._optimizer_step = timed_step
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    gaps = [b - a for a, b in zip(stamps[2:], stamps[3:], strict=False)]  # 2 warm-up steps
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"step_s": statistics.median(gaps), "peak_mb": peak, "steps": len(gaps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per mode")
    parser.add_argument("--_mode", choices=tuple(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--_root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._mode:  # child process: one mode
        root = Path(args._root)
        teacher = MODES[args._mode][1]
        teacher = str(root / teacher / "last.pt") if teacher else None
        result = measure(root / "world", root / args._mode, args.batch_size, args.steps, teacher)
        print(json.dumps(result))
        return 0

    from linkhoi.data.synthetic import generate_world
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # One epoch holds every step (3 warm-up + the timed ones): no epoch-end checkpoint
        # write falls between two timed steps.
        generate_world(root / "world", num_train=(args.steps + 4) * args.batch_size, num_test=0,
                       image_size=(256, 256), progress=False)  # fmt: skip
        for name, head in (("teacher_same", STUDENT), ("teacher_wide", WIDE_TEACHER)):
            cfg = _overrides(
                root / "world", root / name, args.batch_size, head, "runtime.max_steps=1"
            )
            Trainer(apply_overrides(TrainConfig(), cfg)).fit()
        # Alternate the modes over several rounds and keep each mode's fastest round: other
        # processes on a shared machine slow single rounds down, never speed them up.
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in runs:
                cmd = [sys.executable, __file__, "--_mode", mode, "--_root", str(root),
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--threads", str(args.threads)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results = {
            mode: {
                "step_s": min(r["step_s"] for r in rs),
                "peak_mb": max(r["peak_mb"] for r in rs),
                "steps": rs[0]["steps"],
            }
            for mode, rs in runs.items()
        }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    memory = "peak CUDA allocated" if device == "cuda" else "peak RSS"
    print(
        f"device={device} batch_size={args.batch_size} timed_steps={results['student']['steps']} "
        f"rounds={args.rounds} (fastest round per mode)"
    )
    for mode, (label, _) in MODES.items():
        r = results[mode]
        print(f"{label}: step {r['step_s'] * 1000:.1f} ms, {memory} {r['peak_mb']:.0f} MB")
    base = results["student"]["step_s"]
    print(
        f"ratio_wide_teacher={results['stage2_wide']['step_s'] / base:.3f}  (not docs/method.md §6)"
    )
    print(f"ratio={results['stage2']['step_s'] / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
