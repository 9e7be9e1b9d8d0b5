"""The `linkhoi` command: a thin dispatcher.

Each sub-command lives beside the library code it drives, in a module that offers
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``linkhoi eval`` does not pay for building a model.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Set before any command imports torch, which reads it when it loads OpenMP: on a machine
# with more busy threads than cores, idle OpenMP threads that spin for work made the frozen
# backbone's forward several times slower (benchmarks/feature_cache_speed.py). A policy the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("linkhoi.data.cli", "inspect and check datasets on disk"),
    "eval": ("linkhoi.eval.cli", "evaluate a triplet file with an official protocol"),
    "train": ("linkhoi.train.cli", "train a teacher or a student (progressive learning)"),
    "detect": ("linkhoi.infer.cli", "detect HOIs on your own images"),
    "demo": ("linkhoi.demo", "train and evaluate LINK on a synthetic HOI world (CPU)"),
    "convert-preds": ("linkhoi.eval.convert_cli", "official-format predictions to a triplet file"),
    "pretrain-vlm": (
        "linkhoi.synthetic.pretrain_cli",
        "pretrain the synthetic world's tiny CLIP on its caption corpus",
    ),
    "convert-clip": ("linkhoi.model.cli", "convert an OpenAI CLIP archive to safetensors"),
    "convert-detr": (
        "linkhoi.detections.detr_convert",
        "convert a facebookresearch/detr checkpoint to a transformers folder",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkhoi",
        description="LINK human-object interaction detection: train, detect, evaluate.",
        epilog="Run `linkhoi COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in {"-h", "--help"}:
            parser.error(f"unknown command {argv[0]!r}")
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"linkhoi {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # a pipe closed early fails here, not at interpreter exit
        return code
    except KeyboardInterrupt as err:  # Ctrl-C during start-up, or a second one (stopping.py)
        print(f"\nlinkhoi {name}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except BrokenPipeError:  # `linkhoi ... | head`: the reader left; stop quietly
        # Python would report the pipe again when flushing stdout at exit; point it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


if __name__ == "__main__":
    raise SystemExit(main())
