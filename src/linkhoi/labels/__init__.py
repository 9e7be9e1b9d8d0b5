"""Label spaces: verbs, objects and HOI classes of a dataset, with official ids.

`load(name_or_path)` returns a packaged space (`hico_det`, `vcoco`, `swig_hoi`,
`synthetic`) or reads a user's YAML/JSON file. See docs/internals.md.
"""

from __future__ import annotations

import functools
from pathlib import Path

from linkhoi.labels.ing import ing_form, ing_table, rule_ing
from linkhoi.labels.labelspace import (
    AmbiguousNameError,
    HOIClass,
    LabelError,
    LabelSpace,
    normalise_name,
)
from linkhoi.labels.packaged import BUILDERS, data_dir
from linkhoi.labels.userfile import label_space_from_user_dict, read_label_space_file

PACKAGED = ("hico_det", "vcoco", "swig_hoi", "synthetic")

__all__ = [
    "PACKAGED",
    "AmbiguousNameError",
    "HOIClass",
    "LabelError",
    "LabelSpace",
    "ing_form",
    "ing_table",
    "label_space_from_user_dict",
    "load",
    "normalise_name",
    "read_label_space_file",
    "rule_ing",
]


@functools.cache
def _load_packaged(name: str) -> LabelSpace:
    if name in BUILDERS:
        return BUILDERS[name]()
    path = data_dir().joinpath(f"{name}.yaml")
    if not path.is_file():
        raise LabelError(f"packaged label space {name!r} is missing its file {path}")
    return read_label_space_file(Path(str(path)))


def load(name_or_path: str | Path | LabelSpace) -> LabelSpace:
    """A packaged label space by name (cached) or a user's `.yaml`/`.yml`/`.json` file.

    A `LabelSpace` passed in is returned as is, so callers can accept either.
    """
    if isinstance(name_or_path, LabelSpace):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in PACKAGED:
        return _load_packaged(name_or_path)
    path = Path(name_or_path)
    if path.suffix.lower() in {".yaml", ".yml", ".json"}:
        return read_label_space_file(path)
    raise LabelError(
        f"unknown label space {str(name_or_path)!r}: use one of {list(PACKAGED)}"
        " or a path to a .yaml/.json label-space file"
    )
