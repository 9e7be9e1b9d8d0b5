"""Output folders that two runs cannot share, and multi-file outputs written as one set.

- `output_lock(folder, command)`: an exclusive lock on an output folder (the file
  ``FOLDER/.linkhoi.lock``, ``flock``-ed). A second linkhoi run into the same folder stops at
  once with one `OutputError` naming the run that holds it (pid, host, command, start time).
  The kernel drops the lock when the holder dies, so a killed run never blocks the next one.
- `output_set()`: temporary paths beside each target, all renamed into place only once every
  file of the set was written; any error leaves every target as it was.
- `remove_stale_temporaries(folder, names)`: the ``.NAME.XXXX.tmp`` files a killed writer left.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from linkhoi.io import OutputError, atomic_path, check_output_dir

try:  # POSIX; elsewhere the lock is advisory only through the lock file's content
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".linkhoi.lock"


def _holder(lock_file: Path) -> str:
    """``pid 123 on host, `linkhoi train ...`, started 10:45:00 UTC`` from a lock file."""
    try:
        info = json.loads(lock_file.read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info["started"])))
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


def _try_lock(lock_file: Path, wait: bool = False) -> int | None:
    """An open descriptor holding the lock on ``lock_file``, or None when another holds it."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The holder unlinks the file when it releases: a lock on an unlinked file (or on one
        # replaced since we opened it) guards nothing, so try again on the current file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def output_lock(
    folder: str | os.PathLike[str], command: str | None = None, wait: bool = False
) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the block.

    ``wait=True`` waits for the other run's lock instead of refusing (for a short commit of
    files, as ``linkhoi eval`` does).

    Raises:
        OutputError: another run holds it; the message names that run and the folder.
    """
    folder = check_output_dir(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the output folder {str(folder)!r}: {err}") from None
    lock_file = folder / LOCK_NAME
    fd = _try_lock(lock_file, wait)
    if fd is None:
        raise OutputError(
            f"{str(folder)!r} is in use by another linkhoi run ({_holder(lock_file)}); wait for "
            "it to end or choose another output folder"
        )
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(["linkhoi", *sys.argv[1:]]),
        "started": time.time(),
    }
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        yield folder
    finally:
        lock_file.unlink(missing_ok=True)  # before unlocking: see _try_lock
        os.close(fd)
        if created:  # a run that wrote nothing leaves no empty folder behind
            with suppress(OSError):
                folder.rmdir()


@contextmanager
def output_set() -> Iterator[Callable[..., Path]]:
    """Write several files as one set: ``put(target, suffix=".tmp")`` gives a temporary path
    beside ``target``; when the block ends without error every temporary file is renamed over
    its target, one after the other (under `output_lock`, no other run interleaves). On any
    error nothing is renamed and the temporary files are removed.

    Example::

        with output_set() as put:
            write_json(put(out / "result.json"))
            write_csv(put(out / "per_class.csv"))
    """
    with ExitStack() as stack:
        yield lambda target, suffix=".tmp": stack.enter_context(atomic_path(target, suffix))


def remove_stale_temporaries(folder: str | os.PathLike[str], names: Sequence[str]) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXXXXXX.tmp``, `linkhoi.io.atomic_path`) a killed
    writer left beside each of ``names`` in ``folder``; only call it while holding
    `output_lock` on the folder. Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.is_file() and any(
            entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp") for name in names
        ):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
