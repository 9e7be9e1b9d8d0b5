"""``linkhoi demo``: LINK end to end on the synthetic HOI world, on a CPU, without downloads.

Stages: (1) generate the world into a cache folder, (2) build the tiny CLIP with random
weights and save it as a real weights file, (3) train a teacher, (4) train a student distilled
from it (progressive learning), (5) evaluate both with the HICO-DET protocol on ground-truth
boxes and two simulated detectors, against a chance level, and write the report folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from linkhoi.data.synthetic import WorldPaths, default_holdout, generate_world
from linkhoi.io import atomic_write_text

SPARSITY = 0.3  # fraction of positive training pairs left unannotated
WORLD_VERSION = 1  # bump when the generator's output changes: cached worlds are regenerated
SETTINGS = {
    # images, epochs; the default run takes a few minutes on 2 CPU cores, --quick under a minute.
    # The rest comes from the packaged configs linkhoi/configs/synthetic_{teacher,student}.yaml
    # (batch size 8 there; --quick's 40-image world gets batch 4 for twice the steps).
    "default": {"num_train": 300, "num_test": 80, "teacher_epochs": 20, "student_epochs": 12},
    "quick": {
        "num_train": 40,
        "num_test": 24,
        "teacher_epochs": 16,
        "student_epochs": 6,
        "batch_size": 4,
    },
}


class DemoError(RuntimeError):
    """The demo cannot run (bad folder, missing part)."""


def cache_root() -> Path:
    """``$LINKHOI_CACHE`` or ``~/.cache/linkhoi``."""
    env = os.environ.get("LINKHOI_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "linkhoi"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    parser.add_argument(
        "--out", default="linkhoi-demo", help="report folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="world and training seed")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _world(mode: str, seed: int, progress: bool) -> WorldPaths:
    s = SETTINGS[mode]
    root = cache_root() / "demo" / f"world-v{WORLD_VERSION}-{mode}-seed{seed}"
    params = {
        "num_train": s["num_train"],
        "num_test": s["num_test"],
        "seed": seed,
        "version": WORLD_VERSION,
    }
    marker = root / "world.json"
    if _read_marker(marker) != params:  # missing, another world, or unreadable: regenerate
        if root.exists():
            shutil.rmtree(root)
        generate_world(
            root,
            num_train=s["num_train"],
            num_test=s["num_test"],
            seed=seed,
            sparsity=SPARSITY,
            progress=progress,
        )
        atomic_write_text(marker, json.dumps(params))  # a kill never leaves half a marker
    return WorldPaths(
        root, root / "train.json", root / "test.json", root / "images", "synthetic",
        {k: root / f"detections_{k}.json" for k in ("good", "noisy")},
        {k: root / f"train_detections_{k}.json" for k in ("good", "noisy")},
    )  # fmt: skip


def _read_marker(marker: Path) -> Any:
    """The parameters a cached world was made with; None when missing or unreadable."""
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: truncated json or bad bytes
        return None


def _tiny_clip() -> tuple[Path, str]:
    """The tiny CLIP with its seeded random weights, saved once as a safetensors file."""
    from linkhoi.model.backbone import load_clip
    from linkhoi.model.clip_loading import atomic_save_safetensors, file_sha256

    path = cache_root() / "demo" / "clip-tiny-random.safetensors"
    if not path.is_file():
        model, info = load_clip("tiny", None, device="cpu")
        atomic_save_safetensors(model.state_dict(), path, {"name": "tiny", "init": "random seed 0"})
    return path, file_sha256(path)


def _train_config(
    stage: str, world: Any, out: Path, clip: Path, epochs: int, args: Any, teacher: Path | None
):
    """The packaged ``synthetic_{stage}`` config, pointed at this world, clip and run folder."""
    from linkhoi.train.config import load_config

    cfg = load_config(f"synthetic_{stage}")  # packaged with linkhoi (importlib.resources)
    d = cfg.data
    d.train, d.image_root = {"path": str(world.train)}, str(world.images)
    d.val, d.val_image_root = {}, ""  # evaluated once after training, on three box sources
    mode = SETTINGS["quick" if args.quick else "default"]
    cfg.optim.epochs, cfg.optim.lr_drop = epochs, [max(1, (3 * epochs) // 4)]
    cfg.optim.batch_size = mode.get("batch_size", cfg.optim.batch_size)
    cfg.distill.teachers = [str(teacher)] if teacher is not None else []
    r = cfg.runtime
    r.out_dir, r.seed, r.device, r.clip_weights = (
        str(out / "runs" / stage),
        args.seed,
        args.device,
        str(clip),
    )
    r.progress, r.max_steps = not args.no_progress, 0
    return cfg


def _train(cfg: Any, dest: Path) -> dict[str, Any]:
    """Fit, then save the model (plus its config) as a linkhoi checkpoint at ``dest``."""
    from linkhoi.model.checkpoint import model_payload, save_checkpoint
    from linkhoi.train.trainer import Trainer

    trainer = Trainer(cfg, force=True)  # the demo's own run folder
    status = trainer.fit()
    if status["status"] != "finished":
        raise DemoError(f"training stopped early: {status}")
    payload = dict(model_payload(trainer.model))
    payload.update(config=cfg.to_dict(), epoch=trainer.epoch, step=trainer.step)
    save_checkpoint(dest, payload)
    return {"loss": trainer.history[-1]["loss"] if trainer.history else float("nan"), **status}


def _copy_data(world: Any, out: Path) -> None:
    data = out / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    for img in sorted(world.images.glob("test_*.png")):
        shutil.copy2(img, data / "images" / img.name)
    for f in (world.test, *world.detections.values()):
        shutil.copy2(f, data / f.name)


def run(args: argparse.Namespace) -> int:
    """Run the demo; a known failure prints one error line and returns 2."""
    from linkhoi.data.synthetic import SyntheticError

    try:
        return _run(args)
    except (DemoError, SyntheticError) as err:
        print(f"linkhoi demo: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from linkhoi import demo_report as rep
    from linkhoi import labels
    from linkhoi.data import read_generic
    from linkhoi.detections import FileDetections, GroundTruthDetections
    from linkhoi.devices import resolve_device
    from linkhoi.io import check_output_dir
    from linkhoi.model.checkpoint import load_model

    mode = "quick" if args.quick else "default"
    s = SETTINGS[mode]
    progress = not args.no_progress
    out = Path(args.out)
    try:  # the options are checked before the long work starts
        check_output_dir(out)
        resolve_device(None if args.device == "auto" else args.device)
    except ValueError as err:
        raise DemoError(str(err)) from None
    if args.seed < 0:
        raise DemoError(f"--seed {args.seed}: must be >= 0")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    print(f"[1/5] synthetic world ({mode}: {s['num_train']} train / {s['num_test']} test images)")
    world = _world(mode, args.seed, progress)
    times["world"] = time.perf_counter() - t
    t = time.perf_counter()
    print("[2/5] tiny CLIP with random weights")
    clip, clip_sha = _tiny_clip()
    times["clip"] = time.perf_counter() - t
    t = time.perf_counter()
    print(f"[3/5] teacher: {s['teacher_epochs']} epochs")
    cfg = _train_config("teacher", world, out, clip, s["teacher_epochs"], args, None)
    _train(cfg, out / "teacher.pt")
    times["teacher"] = time.perf_counter() - t
    t = time.perf_counter()
    print(f"[4/5] student distilled from the teacher: {s['student_epochs']} epochs")
    cfg = _train_config("student", world, out, clip, s["student_epochs"], args, out / "teacher.pt")
    _train(cfg, out / "student.pt")
    times["student"] = time.perf_counter() - t
    t = time.perf_counter()
    print("[5/5] evaluation (HICO-DET protocol) and report")
    space = labels.load("synthetic")
    samples = read_generic(world.test)
    sources = {"gt": GroundTruthDetections(samples)}
    sources.update({k: FileDetections(p, space) for k, p in world.detections.items()})
    device = None if args.device == "auto" else args.device
    metrics: dict[str, Any] = {"teacher": {}, "student": {}, "chance": {}}
    per_class: dict[str, dict[str, float]] = {}
    teacher_gt_preds = None
    for name in ("teacher", "student"):
        model = load_model(out / f"{name}.pt", device=device)  # also proves the files load
        for src, source in sources.items():
            preds = rep.predict(model, samples, source, space, f"{name}/{src}", progress)
            m = rep.evaluate(samples, space, [(n, tr) for n, _, tr in preds])
            metrics[name][src] = rep.strip(m)
            if src == "gt":
                per_class[name] = m["per_class_ap"]
            if name == "teacher":
                chance = rep.chance_triplets(preds, space, args.seed, model.config.top_k)
                metrics["chance"][src] = rep.strip(rep.evaluate(samples, space, chance))
                teacher_gt_preds = preds if src == "gt" else teacher_gt_preds
    rep.bar_chart(per_class, space, out / "per_class_ap.png")
    (out / "predictions").mkdir(exist_ok=True)
    for name, _, triplets in teacher_gt_preds[:4]:
        rep.draw_predictions(world.images / name, triplets, out / "predictions" / name)
    _copy_data(world, out)
    times["evaluate"] = time.perf_counter() - t
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    info = {**s, "seed": args.seed, "sparsity": SPARSITY, "holdout": ", ".join(f"{v} {o}" for v, o in default_holdout()),
            "clip_weights": str(clip), "clip_sha": clip_sha, "times": {k: round(v, 1) for k, v in times.items()},
            "total_time": time.perf_counter() - t_all, "num_classes": len(space.hois),
            "device": str(next(model.parameters()).device)}  # fmt: skip
    rep.write_report(out, metrics, info)
    print(
        "\nmAP (%), HICO-DET protocol on the synthetic test set (a sanity check, not a HICO-DET result):"
    )
    print(rep.table(metrics))
    print(f"\nreport: {out / 'report.md'}  ({info['total_time']:.0f} s)")
    return 0


__all__ = ["SETTINGS", "DemoError", "add_arguments", "run"]
