"""The run folder of one training: who may write it, and the per-epoch log.

A run folder (``runtime.out_dir``) holds ``config.yaml``, ``last.pt``, ``log.jsonl`` and
``tensorboard/``. One run at a time writes it (`linkhoi.outputs.output_lock`); a folder that
already holds a checkpoint is continued with ``resume`` or replaced with ``force``, never
silently overwritten. ``log.jsonl`` gets one line per epoch, written *after* that epoch's
checkpoint, so a run killed in between writes the line when resumed (never twice).
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from linkhoi.io import OutputError
from linkhoi.outputs import output_lock, remove_stale_temporaries
from linkhoi.train.config import ConfigError

CHECKPOINT, LOG, CONFIG = "last.pt", "log.jsonl", "config.yaml"


def start_mode(out_dir: Path, resume: bool, force: bool) -> bool:
    """Whether the run resumes from ``out_dir/last.pt``: refuses to overwrite a finished or
    stopped run unless ``force``; ``resume`` without a checkpoint starts afresh with a warning
    (a run killed during its first checkpoint write leaves none)."""
    last = out_dir / CHECKPOINT
    if resume and force:
        raise ConfigError("give --resume or --force, not both")
    if resume and not last.is_file():
        warnings.warn(
            f"{last}: no checkpoint to resume from; starting a new run in {out_dir}", stacklevel=3
        )
        return False
    if last.exists() and not resume and not force:
        raise ConfigError(
            f"{out_dir} already holds a run ({last}); continue it with --resume, replace it "
            "with --force, or choose another output folder (--out / runtime.out_dir)"
        )
    return resume


@contextmanager
def claim(out_dir: Path, resume: bool, force: bool, checkpoint_stat: Any = None):
    """Lock the run folder for the block (`output_lock`), then check again what `start_mode`
    checked (another run may have written it meanwhile) and remove the temporary files a killed
    run left. A fresh run starts a fresh ``log.jsonl`` and ``tensorboard/``."""
    with output_lock(out_dir, command=_command()):
        last = out_dir / CHECKPOINT
        if resume:
            now = _stat(last)
            if now != checkpoint_stat:
                raise ConfigError(f"{last} changed since it was read; run the command again")
        elif last.exists() and not force:
            start_mode(out_dir, resume=False, force=False)  # raises: another run wrote it
        remove_stale_temporaries(out_dir, [CHECKPOINT, CONFIG])
        if not resume:
            (out_dir / LOG).unlink(missing_ok=True)
            # TensorBoard reads every event file of the folder: a replaced run's curves
            # would be drawn over the new run's.
            for old in (out_dir / "tensorboard").glob("events.out.tfevents.*"):
                old.unlink(missing_ok=True)
        yield out_dir


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def checkpoint_stat(out_dir: Path) -> tuple[int, int] | None:
    """(modification time, size) of ``out_dir/last.pt``, to notice a change before writing."""
    return _stat(out_dir / CHECKPOINT)


def _command() -> str:
    import sys

    return " ".join(["linkhoi train", *sys.argv[2:]]) if "train" in sys.argv[1:2] else "Trainer"


def append_log(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; flushed and fsynced so a killed run keeps whole lines."""
    path = out_dir / LOG
    try:
        with path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        why = "no space left on the device" if err.errno == errno.ENOSPC else err.strerror
        raise OutputError(f"cannot write {str(path)!r}: {why or err}") from None


def logged_epochs(out_dir: Path) -> int:
    """The highest epoch with a line in ``log.jsonl`` (0 when none; a torn last line is
    ignored)."""
    best = 0
    try:
        lines = (out_dir / LOG).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    for line in lines:
        try:
            best = max(best, int(json.loads(line).get("epoch", 0)))
        except (ValueError, TypeError, AttributeError):
            continue
    return best


def epoch_summary(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch: ``epoch 2/3: loss 0.9030 (loss_match 0.903, ...), mAP full 38.5%
    rare ..., 12.3 s, 45.6 images/s``."""
    skip = {"epoch", "step", "lr", "images_per_s", "seconds", "eval", "loss", "positives"}
    parts = [f"epoch {record['epoch']}/{epochs}: loss {record.get('loss', float('nan')):.4f}"]
    terms = [f"{k} {v:.3f}" for k, v in record.items() if k not in skip and isinstance(v, float)]
    if terms:
        parts[0] += f" ({', '.join(terms)})"
    maps = (record.get("eval") or {}).get("map") if isinstance(record.get("eval"), dict) else None
    if maps:
        parts.append("mAP " + " ".join(f"{k} {100 * v:.2f}%" for k, v in maps.items()))
    parts.append(
        f"{record.get('seconds', 0.0):.1f} s, {record.get('images_per_s', 0.0):.1f} images/s"
    )
    return ", ".join(parts)
