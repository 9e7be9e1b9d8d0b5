"""``linkhoi pretrain-vlm``: build the caption corpus and pretrain the synthetic world's tiny CLIP.

The VLM shipped in the package (``linkhoi/synthetic/vlm/``) was made with the defaults; its
provenance record holds the exact command. ``--quick`` is a small run (under a minute on two
CPU cores) that shows the whole path works.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT = {"scenes": 24576, "val": 512, "steps": 2400, "batch_size": 128, "lr": 5e-4, "warmup": 200,
           "eval_every": 500}  # fmt: skip
QUICK = {"scenes": 256, "val": 64, "steps": 30, "batch_size": 32, "lr": 5e-4, "warmup": 5,
         "eval_every": 30}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="vlm-pretrain", help="run folder (default: %(default)s)")
    parser.add_argument("--corpus", help="caption corpus folder (default: OUT/corpus)")
    parser.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    for key in ("scenes", "steps", "batch_size", "warmup", "eval_every"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"default {DEFAULT[key]}")
    parser.add_argument("--lr", type=float, help=f"default {DEFAULT['lr']}")
    parser.add_argument("--seed", type=int, default=0, help="corpus and training seed")
    parser.add_argument(
        "--image-size",
        type=int,
        default=128,
        help="the VLM's input size in px, a multiple of 16 (default %(default)s)",
    )
    parser.add_argument("--object-crops", action="store_true",
                        help="also a crop centred on one object per scene, captioned with its name")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="processes building the corpus")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def settings(args: argparse.Namespace) -> dict:
    """The effective settings: --quick or the defaults, overridden by the flags given."""
    base = dict(QUICK if args.quick else DEFAULT)
    for key in base:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    bad = [k for k in ("scenes", "steps", "batch_size", "eval_every") if base[k] < 1]
    if bad or base["warmup"] < 0 or base["lr"] <= 0 or args.seed < 0:
        raise ValueError(f"settings must be positive: {base} (seed {args.seed})")
    size = args.image_size
    if size < 16 or size % 16:
        raise ValueError(f"--image-size must be a positive multiple of 16 (the patch), not {size}")
    return base


def run(args: argparse.Namespace) -> int:
    import torch

    from linkhoi.synthetic.corpus import build_corpus
    from linkhoi.synthetic.pretrain import PretrainConfig, pretrain

    try:
        s = settings(args)
    except ValueError as err:
        print(f"linkhoi pretrain-vlm: error: {err}", file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    corpus = Path(args.corpus) if args.corpus else out / "corpus"
    progress = not args.no_progress
    try:
        build_corpus(corpus, s["scenes"], s["val"], args.seed, max(1, args.workers), progress,
                     args.image_size, args.object_crops)  # fmt: skip
        cfg = PretrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                             warmup=s["warmup"], seed=args.seed, eval_every=s["eval_every"])  # fmt: skip
        summary = pretrain(corpus, out, cfg, progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"linkhoi pretrain-vlm: error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps({k: summary[k] for k in ("steps", "image_map", "random_image_map", "seconds")})
    )
    print(f"weights: {out / 'model.safetensors'}  config: {out / 'open_clip_config.json'}")
    return 0
