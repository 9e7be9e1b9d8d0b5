"""Training checkpoints: plain data, written atomically, loadable with ``weights_only=True``.

A training checkpoint is a model checkpoint (``linkhoi.model.checkpoint.model_payload``, so
``load_model`` reads it for inference) plus what resuming needs: optimizer, scheduler, AMP
scaler, distillation adapters, RNG states, the position in the data (epoch, optimizer step,
images consumed in the epoch), the epoch's running loss sums and last log line, and the
resolved config. No pickled objects: RNG states
are turned into tensors and lists.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names the file and the field."""


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as plain data."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npd = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": npd["key"].numpy().astype(np.uint32), "pos": npd["pos"]},
            "has_gauss": npd["has_gauss"],
            "gauss": npd["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_atomic(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    from linkhoi.model.checkpoint import save_checkpoint

    return save_checkpoint(path, payload)


REQUIRED = ("model", "optimizer", "scheduler", "rng", "epoch", "step", "batch_in_epoch", "config")


def load_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint (weights only) and check it holds what resuming needs."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    from linkhoi.weights import load_torch_file

    ckpt = load_torch_file(path, CheckpointError, "training checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint, missing field(s) {missing}")
    return ckpt


def training_state(trainer: Any) -> dict[str, Any]:
    """A ``Trainer``'s checkpoint: ``model_payload`` + optimizer, scheduler, scaler, adapters,
    RNG, data position (epoch, step, micro-batches done in the epoch) and resolved config."""
    from linkhoi.model.checkpoint import model_payload

    payload = dict(model_payload(trainer.model))
    payload.update(
        optimizer=trainer.optimizer.state_dict(),
        scheduler=trainer.scheduler.state_dict(),
        scaler=trainer.scaler.state_dict(),
        distiller=trainer.distiller.state_dict() if trainer.distiller is not None else {},
        rng=[rng_state()],  # one state per process; Trainer.save gathers them all
        epoch=trainer.epoch,
        step=trainer.step,
        batch_in_epoch=trainer.batch_in_epoch,  # in optim.batch_size units (older readers)
        images_in_epoch=trainer.images_in_epoch,  # the position resuming uses
        epoch_stats=trainer.epoch_stats,  # running sums of the epoch's log line
        epoch_record=trainer.epoch_record or {},  # the last finished epoch's log line
        world_size=trainer.dist.world_size,
        config=trainer.cfg.to_dict(),
    )
    return payload


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config dicts -> ``{"optim.lr": 1e-4, ...}``."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every config value that differs (resuming may change
    some on purpose, such as ``optim.epochs``; the others are worth a warning)."""
    old, new = _flat(saved), _flat(current)
    return [
        f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def restore_training_state(trainer: Any, ckpt: dict[str, Any], where: str) -> None:
    """Load what ``training_state`` saved back into a freshly built ``Trainer``."""
    changes = config_changes(ckpt["config"], trainer.cfg.to_dict())
    if changes and trainer.dist.is_main:
        shown = "; ".join(changes[:8]) + ("; ..." if len(changes) > 8 else "")
        warnings.warn(
            f"{where}: resuming with a config that differs from the checkpoint's: {shown}",
            stacklevel=2,
        )
    # Large backbones are not stored (model_payload): only backbone keys may be missing.
    try:
        result = trainer.model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as err:  # shapes differ: torch lists every tensor; the first says enough
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
        raise CheckpointError(
            f"{where}: field 'model' does not fit the configured model ("
            f"{lines[0] if lines else str(err).splitlines()[0]}; {len(lines)} tensor(s) differ)"
        ) from None
    missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{where}: field 'model' does not match the configured model (missing "
            f"{missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    if int(ckpt.get("world_size", 1)) != trainer.dist.world_size and ckpt["batch_in_epoch"]:
        raise CheckpointError(
            f"{where}: field 'batch_in_epoch': stopped mid-epoch with {ckpt.get('world_size')} "
            f"processes; resume with the same number (now {trainer.dist.world_size})"
        )
    if trainer.distiller is not None:
        trainer.distiller.load_state_dict(ckpt["distiller"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.epoch, trainer.step = int(ckpt["epoch"]), int(ckpt["step"])
    if "images_in_epoch" in ckpt:
        trainer.images_in_epoch = int(ckpt["images_in_epoch"])
    else:  # written before positions were kept in images
        saved_bs = int(ckpt["config"].get("optim", {}).get("batch_size", 1))
        trainer.images_in_epoch = int(ckpt["batch_in_epoch"]) * saved_bs
    if ckpt.get("epoch_stats"):
        stats = ckpt["epoch_stats"]
        trainer.epoch_stats = {
            "sums": {k: float(v) for k, v in stats["sums"].items()},
            "steps": int(stats["steps"]),
            "images": int(stats["images"]),
            "seconds": float(stats["seconds"]),
        }
    trainer.epoch_record = dict(ckpt.get("epoch_record") or {}) or None
    states = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]
    rank = trainer.dist.rank
    set_rng_state(states[rank] if rank < len(states) else states[0])
