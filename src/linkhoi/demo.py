"""``linkhoi demo``: LINK end to end on the synthetic HOI world, on a CPU, without downloads,
with a VLM that knows something and one that knows nothing, side by side.

Stages: (1) generate the world into a cache folder; (2) the two VLMs: the tiny CLIP pretrained
on the world's caption corpus (shipped in the package, see ``linkhoi pretrain-vlm``) and the
same architecture with random weights; for each VLM (3) train a teacher and (4) a student
distilled from it (progressive learning); (5) evaluate everything with the HICO-DET protocol on
ground-truth boxes and two simulated detectors, against a chance level, the zero-shot subsets
and an open-vocabulary verb; (6) write the report folder.
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

from linkhoi.data.synthetic import WorldPaths, default_holdout, generate_world
from linkhoi.io import atomic_write_text
from linkhoi.outputs import output_lock

SPARSITY = 0.3  # fraction of positive training pairs left unannotated
WORLD_VERSION = 2  # bump when the generator's output changes: cached worlds are regenerated
VLMS = ("pretrained", "random")
OPEN_VERB = "point at"  # drawn and captioned, in no HOI label space
SETTINGS = {
    # images, epochs; the rest comes from the packaged configs synthetic_{teacher,student}.yaml
    # (batch size 8 there; --quick's small world gets batch 4 for twice the steps).
    "default": {"num_train": 300, "num_test": 80, "teacher_epochs": 16, "student_epochs": 10},
    "quick": {
        "num_train": 48,
        "num_test": 32,
        "teacher_epochs": 10,
        "student_epochs": 5,
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
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    parser.add_argument(
        "--out", default="linkhoi-demo", help="report folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="world and training seed")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="VLM pipelines trained at once, each in its own process (default: 2 on a CPU with "
        "at least 2 cores, else 1; the two VLMs' models are independent)",
    )


def world_paths(root: Path) -> WorldPaths:
    return WorldPaths(
        root, root / "train.json", root / "test.json", root / "images", "synthetic",
        root / "test_open_vocabulary.json",
        {k: root / f"detections_{k}.json" for k in ("good", "noisy")},
        {k: root / f"train_detections_{k}.json" for k in ("good", "noisy")},
    )  # fmt: skip


def _world(mode: str, seed: int, progress: bool) -> WorldPaths:
    """The cached world of this mode and seed; (re)generated when its marker is missing,
    unreadable or from other settings (the marker is written last, atomically)."""
    s = SETTINGS[mode]
    root = cache_root() / "demo" / f"world-v{WORLD_VERSION}-{mode}-seed{seed}"
    params = {"num_train": s["num_train"], "num_test": s["num_test"], "seed": seed,
              "version": WORLD_VERSION}  # fmt: skip
    marker = root / "world.json"
    # Two demos sharing a cache: the second waits here while the first generates, then finds
    # the marker (without the lock, it would delete the world the first is writing).
    with output_lock(root.parent, "linkhoi demo (world generation)", wait=True):
        try:
            current = json.loads(marker.read_text()) if marker.is_file() else None
        except (OSError, ValueError):
            current = None  # a truncated marker: regenerate
        if current != params:
            if root.exists():
                shutil.rmtree(root)
            generate_world(root, num_train=s["num_train"], num_test=s["num_test"], seed=seed,
                           sparsity=SPARSITY, progress=progress)  # fmt: skip
            atomic_write_text(marker, json.dumps(params))
    return world_paths(root)


def _vlms() -> dict[str, dict[str, Any]]:
    """The two VLMs as (backbone spec, weights file, sha256): the shipped pretrained tiny CLIP
    and the same config with seeded random weights (saved once to the cache)."""
    from linkhoi.model.clip_loading import file_sha256
    from linkhoi.synthetic.pretrain import export
    from linkhoi.synthetic.vlm import build_model, shipped_paths

    weights, config, _ = shipped_paths()
    if not weights.is_file():
        raise DemoError(f"the shipped VLM is missing: {weights} (reinstall linkhoi)")
    # The random VLM has the shipped one's input size (named by it when not the first, 128 px).
    size = int(json.loads(config.read_text())["vision_cfg"]["image_size"])
    name = "synthetic-clip-random-seed0" + ("" if size == 128 else f"-{size}px")
    random_weights = cache_root() / "demo" / f"{name}.safetensors"
    if not random_weights.is_file():
        with output_lock(random_weights.parent, "linkhoi demo (random VLM)", wait=True):
            if not random_weights.is_file():  # another demo may have written it meanwhile
                model = build_model(seed=0, image_size=size)
                export(model, random_weights, random_weights.with_suffix(".json"))
    return {
        name: {"spec": f"open_clip:{config}", "weights": w, "sha256": file_sha256(w)}
        for name, w in (("pretrained", weights), ("random", random_weights))
    }


def _train_config(
    stage: str,
    world: WorldPaths,
    run_dir: Path,
    vlm: dict[str, Any],
    epochs: int,
    args: Any,
    teacher: Path | None,
) -> Any:
    """The packaged ``synthetic_{stage}`` config, pointed at this world, VLM and run folder."""
    from linkhoi.train.config import load_config

    cfg = load_config(f"synthetic_{stage}")  # packaged with linkhoi (importlib.resources)
    d = cfg.data
    d.train, d.image_root = {"path": str(world.train)}, str(world.images)
    d.val, d.val_image_root = {}, ""  # evaluated once after training, on three box sources
    mode = SETTINGS["quick" if args.quick else "default"]
    cfg.optim.epochs, cfg.optim.lr_drop = epochs, [max(1, (3 * epochs) // 4)]
    cfg.optim.batch_size = mode.get("batch_size", cfg.optim.batch_size)
    cfg.distill.teachers = [str(teacher)] if teacher is not None else []
    cfg.model["backbone"] = vlm["spec"]
    r = cfg.runtime
    r.out_dir, r.seed, r.device = str(run_dir), args.seed, args.device
    r.clip_weights = str(vlm["weights"])
    r.progress, r.max_steps = not args.no_progress, 0
    return cfg


def _train(cfg: Any, dest: Path) -> dict[str, Any]:
    """Fit, then save the model (backbone included: the checkpoint stands alone) at ``dest``."""
    from linkhoi.model.checkpoint import model_payload, save_checkpoint
    from linkhoi.train.trainer import Trainer

    trainer = Trainer(cfg, force=True)  # the demo's own run folder
    status = trainer.fit()
    if status["status"] != "finished":
        raise DemoError(f"training stopped early: {status}")
    payload = dict(model_payload(trainer.model, include_backbone=True))
    payload.update(config=cfg.to_dict(), epoch=trainer.epoch, step=trainer.step)
    save_checkpoint(dest, payload)
    return {"loss": trainer.history[-1]["loss"] if trainer.history else float("nan"), **status}


def _train_vlm(name: str, vlm: dict[str, Any], world: WorldPaths, out: Path, args: Any,
               log: Path | None = None) -> dict[str, float]:  # fmt: skip
    """Teacher then student for one VLM; ``log``: their training output goes to that file
    (parallel runs would interleave it). Returns the seconds each took."""
    import contextlib

    s = SETTINGS["quick" if args.quick else "default"]
    times = {}
    with contextlib.ExitStack() as stack:
        if log is not None:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(log, "w"))))
        for stage in ("teacher", "student"):
            t = time.perf_counter()
            teacher = out / f"{name}_teacher.pt" if stage == "student" else None
            cfg = _train_config(stage, world, out / "runs" / f"{name}_{stage}", vlm,
                                s[f"{stage}_epochs"], args, teacher)  # fmt: skip
            _train(cfg, out / f"{name}_{stage}.pt")
            times[f"{name}_{stage}"] = time.perf_counter() - t
    return times


def _jobs(args: Any) -> int:
    """How many VLM pipelines train at once: ``--jobs``, else 2 on a CPU with 2+ cores."""
    if args.jobs is not None:
        return max(1, min(2, args.jobs))
    from linkhoi.devices import resolve_device

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    on_cpu = resolve_device(None if args.device == "auto" else args.device).type == "cpu"
    return 2 if on_cpu and (cores or 1) >= 2 else 1


def _worker(job: tuple[str, dict[str, Any], WorldPaths, Path, Any, int], results: Any) -> None:
    """One VLM's pipeline in a process of its own; puts ``(name, times)`` or ``(name, error
    message)`` on ``results``."""
    import torch

    name, vlm, world, out, args, threads = job
    torch.set_num_threads(threads)  # the cores are shared between the pipelines
    torch.manual_seed(args.seed)
    args.no_progress = True
    try:
        results.put((name, _train_vlm(name, vlm, world, out, args, out / "runs" / f"{name}.log")))
    except BaseException as err:  # told to the parent, which stops the others and reports it
        results.put((name, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__))


def _train_all(
    vlms: dict[str, dict[str, Any]], world: WorldPaths, out: Path, args: Any, jobs: int
) -> dict[str, float]:
    """Both VLMs' teacher and student, one VLM after the other or in two processes at once;
    prints a line as each VLM's models are ready."""
    times: dict[str, float] = {}
    if jobs <= 1:
        for name, vlm in vlms.items():
            times.update(_train_vlm(name, vlm, world, out, args))
        return times
    import queue
    import signal
    from multiprocessing import get_context

    import torch

    (out / "runs").mkdir(parents=True, exist_ok=True)
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = get_context("spawn")
    results = ctx.Queue()
    procs = {n: ctx.Process(target=_worker, args=((n, v, world, out, args, threads), results),
                            daemon=True) for n, v in vlms.items()}  # fmt: skip
    for p in procs.values():
        p.start()
    pending = set(procs)
    try:
        while pending:
            try:
                name, done = results.get(timeout=1.0)
            except queue.Empty:
                dead = [n for n in pending if not procs[n].is_alive() and results.empty()]
                if dead:  # killed without a word (out of memory, SIGKILL)
                    code = procs[dead[0]].exitcode
                    why = f"the {dead[0]} VLM's training process died (exit code {code})"
                    raise DemoError(why) from None
                continue
            if isinstance(done, str):
                raise DemoError(f"training the {name} VLM's models failed: {done}")
            pending.discard(name)
            times.update(done)
            print("      " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in done.items()))
    finally:  # on Ctrl-C or an error: the other trainers stop at their next step
        for p in procs.values():
            if pending and p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in procs.values():
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return times


def _copy_data(world: WorldPaths, out: Path) -> None:
    data = out / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    for img in sorted(world.images.glob("test_*.png")):
        shutil.copy2(img, data / "images" / img.name)
    for f in (world.test, world.open_vocabulary, *world.detections.values()):
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
    from linkhoi.devices import resolve_device
    from linkhoi.io import check_output_dir

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
    import torch  # here, not at the top: `linkhoi demo --help` stays light

    torch.manual_seed(args.seed)
    times: dict[str, float] = {}
    t_all = t = time.perf_counter()
    print(f"[1/6] synthetic world ({mode}: {s['num_train']} train / {s['num_test']} test images)")
    world = _world(mode, args.seed, progress)
    times["world"] = time.perf_counter() - t
    t = time.perf_counter()
    print("[2/6] VLMs: the shipped pretrained tiny CLIP, and the same with random weights")
    vlms = _vlms()
    times["vlms"] = time.perf_counter() - t
    t = time.perf_counter()
    jobs = _jobs(args)
    print(
        f"[3/6] teacher (ground truth only): {s['teacher_epochs']} epochs, once per VLM"
        f"\n[4/6] student (ground truth + the teacher's dense supervision): "
        f"{s['student_epochs']} epochs, once per VLM"
        + (f"\n      ({jobs} processes; training logs in {out / 'runs'})" if jobs > 1 else "")
    )
    times.update(_train_all(vlms, world, out, args, jobs))
    times["training"] = time.perf_counter() - t
    t = time.perf_counter()
    print("[5/6] evaluation: HICO-DET protocol, zero-shot subsets, open vocabulary")
    space = labels.load("synthetic")
    samples = read_generic(world.test)
    device = None if args.device == "auto" else args.device
    metrics, per_class, examples = rep.evaluate_all(
        out, world, samples, space, vlms, device, args.seed, progress
    )
    metrics["open_vocabulary"] = rep.open_vocabulary(
        out, world, samples, OPEN_VERB, device, progress
    )
    no_pairs = rep.classes_without_test_pairs(samples, space)
    times["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    print("[6/6] report")
    rep.bar_chart(per_class, space, out / "per_class_ap.png")
    rep.draw_examples(world, examples, out / "predictions")
    _copy_data(world, out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    times["report"] = time.perf_counter() - t
    info = {**s, "seed": args.seed, "sparsity": SPARSITY, "holdout": ", ".join(f"{v} {o}" for v, o in default_holdout()),
            "vlms": {k: {"weights": str(v["weights"]), "sha256": v["sha256"]} for k, v in vlms.items()},
            "times": {k: round(v, 1) for k, v in times.items()}, "total_time": time.perf_counter() - t_all,
            "num_classes": len(space.hois), "open_verb": OPEN_VERB, "no_test_pairs": no_pairs,
            "device": str(resolve_device(device))}  # fmt: skip
    from linkhoi.demo_text import table, write_report

    write_report(out, metrics, info)
    print(
        "\nmAP (%), HICO-DET protocol on the synthetic test set (a sanity check, not a HICO-DET result):"
    )
    print(table(metrics))
    if no_pairs:
        print(f"classes without a test pair (AP 0 by the HICO-DET rule, in every mean): "
              f"{', '.join(no_pairs)}")  # fmt: skip
    print(f"\nreport: {out / 'report.md'}  ({info['total_time']:.0f} s)")
    return 0


__all__ = ["SETTINGS", "DemoError", "add_arguments", "run", "world_paths"]
