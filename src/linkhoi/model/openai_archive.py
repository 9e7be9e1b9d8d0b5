"""Read OpenAI's CLIP archives (``ViT-B-16.pt``, TorchScript zips) without running any code.

A TorchScript archive is a zip holding ``<root>/data.pkl`` (the module tree, pickled), the
tensors' bytes as ``<root>/data/<key>`` and the module code under ``<root>/code/``. Loading it
with ``torch.jit.load`` compiles and runs that code, and a crafted archive's ``__setstate__``
runs arbitrary Python. Here the pickle is read by a restricted unpickler that knows four kinds
of object only: tensors (rebuilt from the archive's storages on the CPU, whatever device they
were saved on), typed-storage markers, ``OrderedDict`` and inert stand-ins for the archive's
``__torch__.*`` module classes (their attributes are kept as data, nothing of theirs is called).
Any other global is refused. The state dict is then every tensor of the module tree, named by
its attribute path (``visual.conv1.weight``).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

__all__ = ["ArchiveError", "is_torchscript_archive", "read_openai_archive"]

_MAX_PICKLE_BYTES = 64 << 20  # data.pkl of ViT-L/14 is about 100 kB
_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Attributes of OpenAI's modules that are not weights of open_clip's CLIP.
_NOT_WEIGHTS = ("attn_mask",)


# TorchScript's typed-list constructors, re-implemented as the plain data they build.
_LIST_BUILDERS = {
    "build_intlist": list,
    "build_doublelist": list,
    "build_boollist": list,
    "build_tensorlist": list,
    "restore_type_tag": lambda value, _type: value,
}


class ArchiveError(ValueError):
    """An archive that cannot be read safely; the message names the file and the reason."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ScriptModule:
    """Stand-in for a pickled ``__torch__.*`` class: its state is kept, never executed."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    *_: Any) -> torch.Tensor:  # fmt: skip
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, where: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.where = archive, root, where
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return type(name, (_ScriptModule,), {})
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *_: data
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            return _LIST_BUILDERS[name]  # typed lists of scripted attributes (kernel sizes...)
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise ArchiveError(
            f"{self.where}: refuses global {module}.{name} in {self.root}/data.pkl "
            "(an OpenAI archive holds tensors and module attributes only)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ArchiveError(f"{self.where}: unexpected persistent id {str(pid)[:60]!r}")
        _, kind, key, _location, numel = pid[:5]  # the location (e.g. cuda:0) is ignored
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise ArchiveError(f"{self.where}: storage {key!r} has no known tensor type")
        key = str(key)
        if key not in self.storages:
            entry = f"{self.root}/data/{key}"
            try:
                info = self.archive.getinfo(entry)
            except KeyError:
                raise ArchiveError(f"{self.where}: entry {entry} is missing") from None
            itemsize = torch.empty((), dtype=kind.dtype).element_size()
            if info.file_size != numel * itemsize:
                raise ArchiveError(
                    f"{self.where}: entry {entry} holds {info.file_size} bytes, its storage "
                    f"needs {numel * itemsize}"
                )
            raw = bytearray(self.archive.read(entry))
            flat = (
                torch.frombuffer(raw, dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
            )
            self.storages[key] = flat
        return self.storages[key]


def _root(names: list[str], where: Path) -> str:
    roots = {n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    if len(roots) != 1:
        raise ArchiveError(f"{where}: not a TorchScript archive (no single <root>/data.pkl)")
    return roots.pop()


def is_torchscript_archive(path: str | Path) -> bool:
    """A zip with ``<root>/code/`` or ``<root>/constants.pkl`` (what TorchScript adds to a
    ``torch.save`` zip)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any("/code/" in n or n.endswith("/constants.pkl") for n in names)


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, _ScriptModule):
        _collect(obj.state, prefix, out, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str):
                _collect(value, f"{prefix}{key}.", out, depth + 1)


def read_openai_archive(path: str | Path) -> dict[str, torch.Tensor]:
    """Every weight tensor of an OpenAI TorchScript CLIP archive, named as ``state_dict()``
    names them, on the CPU in the archive's dtype (fp16 for OpenAI's). Raises
    :class:`ArchiveError` for anything but tensors and module attributes."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(f"{path}: cannot be opened as a zip archive ({exc})") from None
    with archive:
        root = _root(archive.namelist(), path)
        entry = archive.getinfo(f"{root}/data.pkl")
        if entry.file_size > _MAX_PICKLE_BYTES:
            raise ArchiveError(f"{path}: {root}/data.pkl is {entry.file_size} bytes, too large")
        unpickler = _SafeUnpickler(archive.read(entry), archive, root, path)
        try:
            tree = unpickler.load()
        except ArchiveError:
            raise
        except Exception as exc:  # truncated or malformed pickle
            raise ArchiveError(f"{path}: {root}/data.pkl cannot be read ({exc})") from None
    state: dict[str, torch.Tensor] = {}
    _collect(tree, "", state)
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _NOT_WEIGHTS}
    if not state:
        raise ArchiveError(f"{path}: holds no tensors")
    return state
