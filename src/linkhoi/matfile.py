"""A size check for MATLAB v5 ``.mat`` files before ``scipy.io.loadmat`` reads them.

A v5 file is a 128-byte header and a sequence of data elements, each an 8-byte tag
(type, byte count) and its bytes; type 15 (``miCOMPRESSED``) holds a zlib stream. scipy
inflates each variable into memory, so a 1 MB stream of zeros becomes a 1 GB array. This
module inflates the streams in bounded chunks, keeping only the count, and refuses a file
whose arrays exceed `linkhoi.io.input_limit`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from linkhoi.io import InputError, input_limit, too_big_message

_MI_COMPRESSED = 15
_CHUNK = 1 << 20


def mat_content_size(path: str | Path, stop_above: int | None = None) -> int:
    """Bytes of the data elements of a v5 ``.mat`` file once inflated (0 for a file that is
    not v5: scipy reports those itself). Counting stops once it passes ``stop_above``.

    Memory stays at about 2 MB whatever the file holds; a corrupt stream ends the count (the
    real reader then names the fault).
    """
    total = 0
    with open(path, "rb") as fh:
        head = fh.read(128)
        if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
            return 0
        order = "<" if head[126:128] == b"IM" else ">"
        while (tag := fh.read(8)) and len(tag) == 8:
            mdtype, nbytes = struct.unpack(order + "II", tag)
            if mdtype >> 16:  # a small element: its (<= 4) bytes sit inside the tag
                continue
            start = fh.tell()
            if mdtype == _MI_COMPRESSED:
                total += _inflated_size(
                    fh, nbytes, None if stop_above is None else stop_above - total
                )
            else:
                total += nbytes
            if stop_above is not None and total > stop_above:
                break
            fh.seek(start + nbytes)
    return total


def _inflated_size(fh, nbytes: int, stop_above: int | None) -> int:  # noqa: ANN001 - a binary file
    inflater = zlib.decompressobj()
    size, left = 0, nbytes
    try:
        while left > 0 and not inflater.eof:
            data = fh.read(min(left, _CHUNK))
            if not data:
                break
            left -= len(data)
            while data and not inflater.eof:
                size += len(inflater.decompress(data, _CHUNK))  # at most 1 MB out at a time
                data = inflater.unconsumed_tail
                if stop_above is not None and size > stop_above:
                    return size
    except zlib.error:
        pass  # corrupt stream: loadmat reports it
    return size


def check_mat_size(path: str | Path, error: type[InputError] = InputError) -> None:
    """Raise one ``error`` naming the file and the limit when the arrays of the ``.mat`` file
    ``path`` inflate beyond `linkhoi.io.input_limit`. Unreadable files pass: the reader names
    the fault."""
    limit = input_limit()
    try:
        size = mat_content_size(path, stop_above=limit)
    except OSError:
        return
    if size > limit:
        raise error(too_big_message("its inflated MATLAB arrays", limit), path)
