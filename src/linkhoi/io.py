"""What every reader and writer of user files shares.

- `InputError`: malformed input, its message naming the file, the image and the field
  (`linkhoi.data.DatasetError` and `linkhoi.detections.DetectionError` are its subclasses);
- `load_json`: parse a json file (gzipped when named ``*.gz``), every failure one `InputError`
  (or subclass) naming the file; `read_limited` / `text_lines` read a file (inflated) or its
  lines up to `input_limit` bytes (``$LINKHOI_MAX_INPUT_MB``), `parse_json` turns a
  nesting too deep for Python's parser into one `InputError` (`too_deep` words it);
- `atomic_path` / `atomic_open` / `atomic_write_text`: write beside the target, then rename
  over it (`atomic_open` gzips a ``*.gz`` target); `check_output_file` / `check_output_dir`
  refuse targets that cannot be written (`OutputError`) before any work is done;
- `box_faults`: the box rules every reader checks (finite, ordered, inside the image);
  `is_number`: a json number that is not a bool.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np


class InputError(ValueError):
    """Malformed input. The message names the file, the image and the field."""

    # How `load_json` words its failures; each subclass keeps the wording its users know.
    invalid_json = "invalid or truncated JSON"  # followed by " at line L column C: reason"
    invalid_json_field: str | None = "<json>"
    wrap_read_errors = False  # True: OSError / bad bytes -> "cannot read: ..." (else re-raised)

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        image: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.image = image
        self.field = field
        self.reason = message
        where = []
        if file is not None:
            where.append(f"file {str(file)!r}")
        if image is not None:
            where.append(f"image {image!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def is_gzip_name(path: str | Path) -> bool:
    """Is ``path`` named as a gzip file (``*.gz``, any case)?"""
    return Path(path).name.lower().endswith(".gz")


LIMIT_ENV = "LINKHOI_MAX_INPUT_MB"
DEFAULT_LIMIT_MB = 512
_CHUNK = 1 << 20


def input_limit() -> int:
    """The most bytes linkhoi reads from one json/yaml file (after gunzip) or one JSON Lines
    line: ``$LINKHOI_MAX_INPUT_MB`` megabytes (MiB), default 512. Real annotation, detection
    and triplet files are far smaller; the limit stops a small gzip bomb from taking gigabytes."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_LIMIT_MB
    except ValueError:
        mb = -1.0
    if not 0 < mb < float("inf"):
        raise InputError(f"{LIMIT_ENV}={raw!r}: give a size in megabytes, e.g. 2048")
    return int(mb * _CHUNK)


def too_big_message(what: str, limit: int) -> str:
    return (
        f"{what} is larger than linkhoi's input limit of {limit / _CHUNK:g} MB; if the file "
        f"is genuine, raise the limit with the environment variable {LIMIT_ENV} (in MB)"
    )


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip_name(path) else open(path, "rb")


def read_limited(path: str | Path, error: type[InputError] = InputError) -> bytes:
    """The bytes of ``path`` (inflated when named ``*.gz``), read in 1 MB chunks and refused
    with one `error` naming the file and the limit once they exceed `input_limit`.

    Memory stays within the limit whatever the compression ratio. I/O errors propagate.
    """
    path = Path(path)
    limit = input_limit()
    what = "inflated content" if is_gzip_name(path) else "content"
    if not is_gzip_name(path):  # one read of the stated size: no growing buffer, no copy
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            if size > limit:
                raise error(too_big_message(what, limit), path)
            data = raw.read(size + 1)  # the +1 notices a file that grew meanwhile
            if len(data) > size:
                data += raw.read(limit + 1 - len(data))
            if len(data) > limit:
                raise error(too_big_message(what, limit), path)
            return data
    buf = bytearray()
    with _open_binary(path) as fh:
        while chunk := fh.read(_CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise error(too_big_message(what, limit), path)
    return bytes(buf)


def text_lines(path: str | Path, error: type[InputError] = InputError) -> Iterator[str]:
    """The UTF-8 lines of ``path`` (inflated when named ``*.gz``), streamed; a line longer
    than `input_limit` raises one `error` naming the file and line instead of filling memory."""
    path = Path(path)
    limit = input_limit()
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
        lineno = 0
        while line := fh.readline(limit + 1):
            lineno += 1
            if len(line) > limit:
                raise error(too_big_message(f"line {lineno}", limit), path)
            yield line


def too_deep(limit: int | None = None) -> str:
    """The message for input nested deeper than Python's parsers recurse."""
    depth = limit or sys.getrecursionlimit()
    return f"nested too deeply (more than about {depth} levels of lists or objects)"


def parse_json(data: bytes | str, path: str | Path, error: type[InputError] = InputError) -> Any:
    """``json.loads`` with every failure (syntax, encoding, nesting depth) one `error`."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise error(
            f"{error.invalid_json} at line {err.lineno} column {err.colno}: {err.msg}",
            path,
            field=error.invalid_json_field,
        ) from None
    except RecursionError:
        raise error(too_deep(), path) from None
    except UnicodeDecodeError as err:
        raise error(f"not UTF-8 text ({err.reason})", path) from None
    except ValueError as err:  # an integer of more than 4300 digits: json's int() refuses it
        raise error(
            f"{error.invalid_json}: {err.args[0].split(';')[0]}",
            path,
            field=error.invalid_json_field,
        ) from None


def load_json(path: str | Path, error: type[InputError] = InputError) -> Any:
    """Parse a json file (UTF-8, or UTF-16/32 as json detects it from the bytes), gzipped when
    its name ends in ``.gz``.

    A missing, truncated, malformed, too deeply nested or too large (`input_limit`) file
    raises one `error` naming the file.
    """
    path = Path(path)
    try:
        data = read_limited(path, error)
    except FileNotFoundError:
        raise error("file not found", path) from None
    except (EOFError, gzip.BadGzipFile) as err:  # before OSError: BadGzipFile is one
        raise error(f"not a complete gzip file ({err})", path) from None
    except OSError as err:
        if error.wrap_read_errors:
            raise error(f"cannot read: {err}", path) from None
        raise
    try:
        return parse_json(data, path, error)
    except InputError as err:
        if error.wrap_read_errors and err.reason.startswith("not UTF-8"):
            raise error(f"cannot read: {err.reason}", path) from None
        raise


def _plain_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask.

    Reading the umask means setting it, so this runs once at import rather than on every
    write, where it would briefly change a process-wide setting under other threads.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_PLAIN_FILE_MODE = _plain_file_mode()


class OutputError(OSError, ValueError):
    """An output path that cannot be written: its message names the path and why.

    Both an ``OSError`` and a ``ValueError``, so every command's error handling reports it."""


def _check_parents(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder"
                )
            return


def check_output_file(path: str | Path) -> Path:
    """Raise `OutputError` unless ``path`` can be (re)placed by a regular file: not a folder,
    not a device or pipe (such as /dev/null: renaming over it would replace the device), and no
    file where one of its folders should be. Returns the path."""
    path = Path(path)
    if not path.name or path.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(f"cannot write {str(path)!r}: it exists and is not a regular file")
    _check_parents(path)
    return path


def check_output_dir(path: str | Path) -> Path:
    """Raise `OutputError` unless ``path`` is, or can be created as, a folder. Returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {str(path)!r} as the output folder: it is a file")
    _check_parents(path)
    return path


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it once the block ends without error.

    Durable: the file is fsynced before the rename and its folder after it, so after a crash
    ``path`` holds either the old or the new content, whole (``durable=False`` skips the
    fsyncs, for caches that can be rebuilt). A full disk raises one
    `OutputError` naming ``path`` ("no space left on the device").

    The file ``.{name}.XXXX{suffix}`` is created (empty, closed) in the same folder, created
    if needed; keep ``suffix`` where a writer infers the format from it (``.png``, ``.mat``).
    On any error it is removed and ``path`` left untouched. A ``path`` that cannot take a file
    (see `check_output_file`) raises `OutputError` before anything is written.
    """
    path = check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    os.close(fd)
    tmp = Path(name)
    shown = _TARGET_OF.get(path, path)  # a temporary file of an outer atomic_path: its target
    _TARGET_OF[tmp] = shown
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _PLAIN_FILE_MODE)
        if durable:
            _fsync(tmp)  # the data reaches the disk before the name points at it
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)  # and the rename itself survives a power loss
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            raise OutputError(f"cannot write {str(shown)!r}: no space left on the device") from None
        raise
    finally:
        _TARGET_OF.pop(tmp, None)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_TARGET_OF: dict[Path, Path] = {}  # open temporary files -> the path errors should name


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # folders of some file systems cannot be fsynced: nothing to do
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.EISDIR):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path) -> Iterator[TextIO]:
    """A UTF-8 text file that replaces ``path`` only once the block ends without error; gzipped
    when ``path`` ends in ``.gz``.

    See `atomic_path`; the file is closed before the rename.
    """
    opener = gzip.open if is_gzip_name(path) else open
    with atomic_path(path) as tmp, opener(tmp, "wt", encoding="utf-8") as fh:
        yield fh


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to a temporary file in the same folder, then rename it over ``path``."""
    with atomic_open(path) as fh:
        fh.write(text)


# An int beyond float64's range (json allows 10**400) cannot become a coordinate or a score.
_FLOAT_MAX_INT = 2**1024


def is_number(value: Any) -> bool:
    """A json number that a float64 can hold: an int or a float, not a bool, not an int of
    hundreds of digits (``float(10**400)`` raises OverflowError)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, float) or (
        isinstance(value, int) and -_FLOAT_MAX_INT < value < _FLOAT_MAX_INT
    )


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` short enough for a one-line error message.

    An integer of more than 20 digits shows its first and last digits and its length
    (``10**400`` -> ``1000000000...000 (401 digits)``); lists and tuples abbreviate their
    items; any other repr longer than ``limit`` characters is cut with ``...``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value))) if value.bit_length() < 14000 else None
        if digits is None:  # str() refuses beyond 4300 digits; the bit length tells the size
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        if digits > 20:
            text = str(value)
            return f"{text[:10]}...{text[-3:]} ({digits} digits)"
        return repr(value)
    if isinstance(value, list | tuple) and len(value) <= 8:
        inner = ", ".join(brief(v, limit) for v in value)
        text = (
            f"[{inner}]"
            if isinstance(value, list)
            else f"({inner}{',' if len(value) == 1 else ''})"
        )
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_size(value: Any) -> bool:
    """An image width or height: a finite number > 0 (json also reads ``Infinity``)."""
    return is_number(value) and 0 < value < float("inf")


def image_sizes(sizes: Any, n: int) -> np.ndarray:
    """(n, 2) float64 (width, height) from one size (2,) or one per box (n, 2)."""
    return np.broadcast_to(np.asarray(sizes, dtype=np.float64).reshape(-1, 2), (n, 2))


def box_faults(boxes: Any, sizes: Any = None, tolerance: float = 1.0) -> dict[str, np.ndarray]:
    """The (N,) bool mask of the boxes breaking each rule, in the order the rules are checked.

    boxes: (N, 4) [x1, y1, x2, y2]. Rules: ``not_finite`` (a NaN or infinite coordinate),
    ``inverted`` (x2 < x1 or y2 < y1) and, when ``sizes`` is given ((2,) or (N, 2) width,
    height; 0 = unknown, never outside), ``outside`` (beyond the image by more than
    ``tolerance`` pixels, whatever the box convention).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    faults = {
        "not_finite": ~np.isfinite(boxes).all(axis=1),
        "inverted": (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]),
    }
    if sizes is not None:
        wh = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)  # (1, 2) broadcasts to all
        known = (wh > 0).all(axis=1)
        out = (boxes[:, :2] < -tolerance).any(axis=1) | (boxes[:, 2] > wh[:, 0] + tolerance)
        out |= boxes[:, 3] > wh[:, 1] + tolerance
        faults["outside"] = known & out
    return faults
