"""``linkhoi train CONFIG.yaml [key=value ...] [--teacher CKPT ...] [--resume] [--out DIR]``.

Stage 1 (teacher): ``linkhoi train configs/hico_det_teacher.yaml``. Stage 2 (student):
``linkhoi train configs/hico_det_student.yaml --teacher runs/hico_det_teacher/last.pt``.
Several GPUs: ``torchrun --nproc_per_node 4 -m linkhoi.cli train CONFIG.yaml``. CONFIG may be
the bare name of a config packaged with linkhoi (``linkhoi train synthetic_teacher``).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="training config (YAML file), or the name of a packaged one "
        "(synthetic_teacher, synthetic_student)",
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
    parser.add_argument("--out", default=None, help="output folder (sets runtime.out_dir)")
    # Let options sit between overrides (`CONFIG --resume a=1`): plain parse_args stops the
    # key=value list at the first option. The dispatcher calls parser.parse_args(rest).
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from linkhoi.data import DatasetError
    from linkhoi.detections import DetectionError
    from linkhoi.labels import LabelError
    from linkhoi.model.checkpoint import CheckpointError as ModelCheckpointError
    from linkhoi.model.clip_loading import ClipLoadError
    from linkhoi.train import distributed
    from linkhoi.train.checkpointing import CheckpointError
    from linkhoi.train.config import ConfigError, load_config
    from linkhoi.train.trainer import Trainer

    try:
        cfg = load_config(args.config, args.overrides)
        if args.teacher:
            cfg.distill.teachers = list(args.teacher)
        if args.out:
            cfg.runtime.out_dir = args.out
        trainer = Trainer(cfg, resume=args.resume)
        result = trainer.fit()
    except (
        ConfigError,
        DatasetError,
        DetectionError,
        LabelError,
        CheckpointError,
        ModelCheckpointError,
        ClipLoadError,
        OSError,
    ) as exc:
        print(f"linkhoi train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if trainer.dist.is_main:
        stage = "student" if trainer.teachers else "teacher"
        print(
            f"{stage} {result['status']} at epoch {result['epoch']}, step {result['step']}; "
            f"checkpoint {trainer.out_dir / 'last.pt'}"
        )
    return 130 if result["status"] == "interrupted" else 0
