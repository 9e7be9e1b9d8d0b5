"""Names that become parts of file paths.

Free-form names (a label space's ``name``, an image's ``file_name``) are never joined to a
folder raw: a name such as ``/abs/path`` or ``../../x`` would move the file outside it.

- `safe_component`: one file-name component for a free-form name (cache file names): unsafe
  characters replaced, a hash of the name appended whenever anything was changed;
- `relative_name` / `join_under`: a relative name with sub-folders (``a/b.png``), refused when
  absolute, empty or climbing out (``..``), joined under a root without following a symlinked
  folder below it;
- `refuse_symlink`: an output folder that is a symbolic link is refused (drawings and exports
  must land inside the output folder, not in the link's target).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from linkhoi.io import OutputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(name: str, max_len: int = 64) -> str:
    """``name`` as one file-name component: runs of characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_``, leading dots are dropped and the result is at most
    ``max_len`` characters. When anything changed, 8 hex digits of the name's sha256 are
    appended so that two different names never share a component (``"a/b"`` and ``"a_b"``).
    """
    clean = _UNSAFE.sub("_", name).lstrip(".")[:max_len]
    if clean == name and clean:
        return clean
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean}-{digest}" if clean else digest


def relative_name(name: str, what: str) -> PurePosixPath:
    """``name`` as a relative path of plain components (``a/b.png``); `OutputError` naming
    ``what`` for a name that is empty, absolute, has a ``..`` or empty component or a NUL."""
    parts = name.split("/")
    if (
        not name
        or "\0" in name
        or name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name)  # a Windows drive
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise OutputError(
            f"{what} {name!r} cannot be used as a file name: it must be a relative path "
            "without '..', '.' or empty parts"
        )
    return PurePosixPath(*parts)


def refuse_symlink(path: str | Path, what: str) -> Path:
    """Raise `OutputError` when ``path`` is a symbolic link (linkhoi writes only into real
    folders it owns); returns ``path``."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"cannot write {what} into {str(path)!r}: it is a symbolic link (to "
            f"{str(path.readlink())!r}); remove the link or choose another output folder"
        )
    return path


def join_under(root: str | Path, name: str, what: str) -> Path:
    """``root / name`` for a relative ``name`` (see `relative_name`), refusing symbolic links
    at ``root`` and at every existing folder between ``root`` and the file."""
    rel = relative_name(name, what)
    folder = refuse_symlink(root, what)
    for part in rel.parts[:-1]:
        folder = refuse_symlink(folder / part, what)
    return folder / rel.parts[-1]
