"""Device names from users (``--device``, ``runtime.device``): one place resolves and checks them."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is unknown or not usable on this machine."""


def resolve_device(name: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``;
    ``"cuda"`` -> ``cuda:LOCAL_RANK``; ``"cpu"``, ``"cuda:N"`` as given. A name torch does not
    know, or CUDA asked for on a machine without it, raises one `DeviceError`."""
    if isinstance(name, torch.device):
        dev = name
    else:
        text = "auto" if name is None or not str(name).strip() else str(name).strip().lower()
        if text == "auto":
            text = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        elif text == "cuda":
            text = f"cuda:{local_rank}"
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(name)!r}: CUDA is not available here (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(name)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise DeviceError(f"device {str(name)!r}: only cpu and cuda devices are supported")
    return dev
