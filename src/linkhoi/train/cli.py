"""``linkhoi train CONFIG [key=value ...] [--teacher CKPT ...] [--resume] [--out DIR]``.

CONFIG is a YAML file or the name of a config packaged with linkhoi (``linkhoi train --list``;
``linkhoi train --show NAME > my.yaml`` copies one to edit). Stage 1 (teacher):
``linkhoi train hico_det_teacher``. Stage 2 (student):
``linkhoi train hico_det_student --teacher runs/hico_det_teacher/last.pt``. A folder that
already holds a run is continued with ``--resume`` or replaced with ``--force``.
Several GPUs: ``torchrun --nproc_per_node 4 -m linkhoi.cli train CONFIG``.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="training config (YAML file), or the name of a packaged one (see --list)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. optim.lr=2e-4 optim.epochs=5 distill.map=false",
    )
    parser.add_argument(
        "--teacher",
        action="append",
        default=None,
        metavar="CKPT",
        help="teacher checkpoint for stage 2 (repeat for several teachers; replaces distill.teachers)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT/last.pt (same weights as no stop)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the run already in the output folder (default: refuse it)",
    )
    parser.add_argument("--out", default=None, help="output folder (sets runtime.out_dir)")
    parser.add_argument(
        "--list", action="store_true", help="list the packaged configs and what each is for"
    )
    parser.add_argument(
        "--show", metavar="NAME", help="print a packaged config (to copy and edit) and exit"
    )
    # Let options sit between overrides (`CONFIG --resume a=1`): plain parse_args stops the
    # key=value list at the first option. The dispatcher calls parser.parse_args(rest).
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    # --list/--show read YAML text only: answer before importing torch (seconds on a busy machine).
    if args.list or args.show:
        return _list_or_show(args.show)
    from linkhoi.data import DatasetError
    from linkhoi.detections import DetectionError
    from linkhoi.devices import DeviceError
    from linkhoi.labels import LabelError
    from linkhoi.model.checkpoint import CheckpointError as ModelCheckpointError
    from linkhoi.model.clip_loading import ClipLoadError
    from linkhoi.train import distributed
    from linkhoi.train.checkpointing import CheckpointError
    from linkhoi.train.config import ConfigError, load_config
    from linkhoi.train.trainer import Trainer

    if not args.config:
        print(
            "linkhoi train: error: give a CONFIG (a YAML file or a name from --list)",
            file=sys.stderr,
        )
        return 2
    shown = warnings.showwarning
    warnings.showwarning = _show_warning  # one line, without the source line of the call
    try:
        cfg = load_config(args.config, args.overrides)
        if args.teacher:
            cfg.distill.teachers = list(args.teacher)
        if args.out:
            cfg.runtime.out_dir = args.out
        trainer = Trainer(cfg, resume=args.resume, force=args.force)
        result = trainer.fit()
    except (
        ConfigError,
        DatasetError,
        DetectionError,
        LabelError,
        CheckpointError,
        ModelCheckpointError,
        ClipLoadError,
        DeviceError,
        OSError,
    ) as exc:
        print(f"linkhoi train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown
        distributed.cleanup()
    if trainer.dist.is_main:
        print(_final_line(trainer, result))
    return 130 if result["status"] == "interrupted" else 0


def _final_line(trainer, result: dict) -> str:
    """``teacher finished at epoch 3/3, step 18; checkpoint ...`` (epochs counted from 1)."""
    stage = "student" if trainer.teachers else "teacher"
    epochs, where = trainer.cfg.optim.epochs, trainer.out_dir / "last.pt"
    if trainer.images_in_epoch:  # stopped inside an epoch
        at = f"in epoch {result['epoch'] + 1}/{epochs}"
    else:
        at = f"{'at' if result['status'] == 'finished' else 'after'} epoch {result['epoch']}/{epochs}"
    line = f"{stage} {result['status']} {at}, step {result['step']}; checkpoint {where}"
    return line + ("; continue with --resume" if result["status"] != "finished" else "")


def _list_or_show(name: str | None) -> int:
    """``--list``: one line per packaged config (its name and the first line of its header
    comment); ``--show NAME``: that config's text."""
    from linkhoi.train.config import ConfigError, packaged_config_text, packaged_configs

    if name is None:
        for stem in packaged_configs():
            first = packaged_config_text(stem).splitlines()[0]
            print(f"{stem:26s} {first.partition(':')[2].strip() if first.startswith('#') else ''}")
        return 0
    try:
        sys.stdout.write(packaged_config_text(name))
    except ConfigError as exc:
        print(f"linkhoi train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"linkhoi train: warning: {message}", file=file or sys.stderr)
