"""Reading ``torch.save`` files without running code from them.

Every ``.pt``/``.pth``/``.bin`` file linkhoi reads (its checkpoints, training checkpoints, CLIP
and detector state dicts) goes through `load_torch_file`: ``torch.load(weights_only=True)``,
which builds tensors and plain data only and refuses any other pickled global. A refusal is
one line saying so and how to re-save the file safely; PyTorch's own advice to retry with
``weights_only=False`` (which would run the file's code) is never repeated, and torch's
warnings while reading do not reach the user's terminal.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from linkhoi.io import InputError

RESAVE_HINT = (
    "re-save it as tensors in a Python session you trust (torch.save(model.state_dict(), "
    "'clean.pt'), or as .safetensors)"
)


def refused_reason(err: BaseException) -> str | None:
    """The one-line reason for a file ``torch.load(weights_only=True)`` refused because it
    names a Python object or holds code, or None for another failure (corrupt, not torch)."""
    text = str(err)
    found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if isinstance(err, pickle.UnpicklingError) and found:
        return (
            f"holds code or Python objects ({found.group(1)}) that linkhoi does not load; "
            f"{RESAVE_HINT}"
        )
    if "TorchScript" in text:  # torch refuses TorchScript archives under weights_only
        return (
            f"is a TorchScript archive (it holds code), which linkhoi does not load; {RESAVE_HINT}"
        )
    return None


def _first_line(err: BaseException) -> str:
    """torch's own reason, without its advice to retry with ``weights_only=False``."""
    text = str(err).strip()
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if found:
        return found.group(1).strip()
    if text.startswith("Weights only load failed"):
        return "not a torch.save file of tensors"
    return text.splitlines()[0] if text else type(err).__name__


def load_torch_file(
    path: str | Path, error: type[Exception], what: str = "torch file", missing: str = ""
) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, every failure one
    ``error`` line naming the file: missing (``missing``, else ``no such <what>``), refused (code or objects in
    the pickle) or unreadable (``not a loadable <what>`` and torch's first line). torch's
    warnings while reading are not shown. An `InputError` subclass gets the path as its file.
    """
    path = Path(path)

    def fail(reason: str) -> Exception:
        if isinstance(error, type) and issubclass(error, InputError):
            return error(reason, path)
        return error(f"{path}: {reason}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on TorchScript archives
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise fail(missing or f"no such {what}") from None
    except Exception as err:  # torch raises many unrelated types for foreign files
        reason = refused_reason(err)
        if reason is None:
            reason = f"not a loadable {what} ({_first_line(err)})"
        raise fail(reason) from None
