"""Writing the HOI triplet file (the format and its reader: :mod:`linkhoi.eval.triplets`).

The file is streamed: each image is written as it comes, so a caller that yields results one
at a time (``linkhoi detect``) holds none of them; the file appears, whole, by an atomic
rename at the end. A stopped producer can mark the file ``"partial": true`` in its header.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from linkhoi.eval.triplets import (
    FORMAT,
    VERSION,
    TripletFileError,
    _is_jsonl,
    _where,
    validate_detections,
)
from linkhoi.io import atomic_path, is_gzip_name


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_triplets(
    path: str | os.PathLike[str],
    images: Iterable[tuple[str, list[dict]]],
    label_space: str,
    validate: bool = True,
    partial: Callable[[], bool] | None = None,
) -> Path:
    """Write a triplet file atomically (temporary file, then rename), streaming: each image is
    written as it comes, so memory does not grow with the number of images.

    Args:
        path: ``.json`` or ``.jsonl``, optionally ``.gz`` (chosen by suffix).
        images: ``(file_name, detections)`` pairs; detections are triplet dicts (numpy values
            are converted).
        label_space: the label-space name written in the header.
        validate: check each image as :func:`read_triplets` would before writing it.
        partial: asked once ``images`` is exhausted; True marks the file as holding only part
            of the images (header ``"partial": true``, e.g. a stopped ``linkhoi detect``).

    Returns:
        The written path. Nothing is left behind when an image is invalid.
    """
    path = Path(path)
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "label_space": label_space}
    jsonl = _is_jsonl(path)
    seen: set[str] = set()
    gz = is_gzip_name(path)
    dump = json.JSONEncoder(default=_json_default, allow_nan=False).encode

    def prefix(head: dict[str, Any]) -> str:
        return dump(head) + "\n" if jsonl else dump(head)[:-1] + ', "images": ['

    with atomic_path(path) as tmp:
        with _open_write(tmp, gz) as fh:
            fh.write(prefix(header))
            for i, (name, dets) in enumerate(images):
                dets = list(dets)
                if validate:
                    if name in seen:
                        raise TripletFileError(f"{_where(path, name)}: duplicate file_name")
                    seen.add(name)
                    validate_detections(dets, path, name)
                rec = dump({"file_name": name, "detections": dets})
                if jsonl:
                    fh.write(rec + "\n")
                else:
                    fh.write(("\n" if i == 0 else ",\n") + rec)
                if not gz:  # the file shows the progress (gzip would compress worse)
                    fh.flush()
            if not jsonl:
                fh.write("\n]}\n")
        if partial is not None and partial():
            _replace_header(tmp, gz, len(prefix(header)), prefix({**header, "partial": True}))
    return path


def _open_write(path: Path, gz: bool) -> IO[str]:
    if gz:
        return io.TextIOWrapper(gzip.open(path, "wb"), encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _open_read(path: Path, gz: bool) -> IO[str]:
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _replace_header(tmp: Path, gz: bool, old_length: int, new_prefix: str) -> None:
    """Rewrite ``tmp`` with another header: the records are copied (streamed), not re-read."""
    other = tmp.with_name(tmp.name + ".h")
    try:
        with _open_read(tmp, gz) as src, _open_write(other, gz) as dst:
            src.read(old_length)  # characters: the header is text
            dst.write(new_prefix)
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(other, tmp)
    finally:
        other.unlink(missing_ok=True)
