"""Checks that keep ``linkhoi eval`` from reporting a silent 0 %.

A wrong ground-truth file, predictions keyed by other names or the other benchmark's files
all used to give a valid-looking 0.00 % with exit code 0. Here each one becomes one
:class:`~linkhoi.eval.base.EvalError` naming what is wrong and, where it can be told, which
benchmark the file belongs to:

- :func:`check_ground_truth`: the ground truth holds no pair at all;
- :class:`ImageKeys`: predicted file names that match only after dropping a folder are
  matched by base name when that is unambiguous;
- :func:`check_matches`: no predicted image is a ground-truth image; too many unmatched
  images (either way) give warning lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from linkhoi.eval.base import EvalError

# above this fraction of unmatched images (predicted images not in the ground truth, or
# ground-truth images without predictions) a warning line is printed
WARN_UNMATCHED = 0.05

_COMMAND = {"hico_det": "eval hico_det", "vcoco": "eval vcoco", "swig_hoi": "eval swig_hoi"}
_TITLE = {"hico_det": "HICO-DET", "vcoco": "V-COCO", "swig_hoi": "SWiG-HOI"}
# file names typical of each benchmark's test images
_NAME_PATTERNS = (
    ("hico_det", re.compile(r"HICO_(test|train)2015_\d+")),
    ("vcoco", re.compile(r"COCO_(val|train)2014_\d+")),
)


def _base(name: str) -> str:
    return re.split(r"[\\/]", name)[-1]


def guess_annotation_benchmark(path: str | os.PathLike[str]) -> str | None:
    """The benchmark an annotation file looks like, from its keys; None when it cannot tell."""
    from linkhoi.io import load_json

    p = Path(path)
    if p.suffix.lower() == ".mat":
        return "hico_det"
    try:
        data = load_json(p)
    except (ValueError, OSError):
        return None
    records = data if isinstance(data, list) else []
    if isinstance(data, dict):
        if "annotation" in data and "filenames" in data:
            return "hico_det"
        if {"images", "annotations", "categories"} <= data.keys():
            return "coco_instances"
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        return None
    if "action_name" in first and "role_name" in first:
        return "vcoco"
    if "hoi_annotations" in first or "box_annotations" in first:
        return "swig_hoi"
    if "hoi_annotation" in first:
        return "hico_det"
    return None


def check_ground_truth(
    benchmark: str, num_images: int, num_pairs: int, annotations: Any = None
) -> None:
    """Raise EvalError when the ground truth holds no pair (every AP would be 0 or NaN).

    Args:
        benchmark: the benchmark evaluated.
        num_images, num_pairs: what the ground truth holds.
        annotations: the annotation file(s), named in the message and inspected to say which
            benchmark they belong to.
    """
    if num_pairs > 0:
        return
    files = annotations if isinstance(annotations, list | tuple) else [annotations]
    where = str(files[0]) if files and files[0] is not None else "the ground truth"
    if num_images == 0:
        msg = f"{where}: the ground truth holds no image"
    else:
        msg = f"{where}: the ground truth holds {num_images} image(s) but no pair"
    guess = next((g for f in files if f is not None and (g := guess_annotation_benchmark(f))), None)
    if guess == "coco_instances":
        msg += " (it looks like a COCO instances file, not an HOI annotation file)"
    elif guess is not None and guess != benchmark:
        msg += f"; it looks like a {_TITLE[guess]} annotation file: use `linkhoi {_COMMAND[guess]}`"
    else:
        msg += "; every AP would be 0 (records without HOI annotations?)"
    raise EvalError(msg)


def guess_names_benchmark(names: Iterable[str]) -> str | None:
    """The benchmark whose test-image names these look like (first match), or None."""
    for name in names:
        for bench, pattern in _NAME_PATTERNS:
            if pattern.search(name):
                return bench
    return None


class ImageKeys:
    """Map predicted ``file_name``s to ground-truth image keys.

    Exact names first; otherwise the base name (the part after the last ``/`` or ``\\``) when
    it names exactly one ground-truth image (whose key may itself carry a folder).

    Args:
        keys: every key the evaluator accepts for a ground-truth image.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        self.by_base: dict[str, str | None] = {}
        for k in self.keys:
            b = _base(k)
            self.by_base[b] = None if b in self.by_base and self.by_base[b] != k else k
        self.exact = 0
        self.renamed: list[tuple[str, str]] = []  # (predicted name, ground-truth key)
        self.ambiguous: list[str] = []
        self.unmatched: list[str] = []

    def match(self, name: str) -> str:
        """The key to process ``name`` under: itself, or the ground-truth key of its base name.

        Records the outcome (exact, renamed, ambiguous, unmatched) for :func:`check_matches`.
        """
        if name in self.keys:
            self.exact += 1
            return name
        base = _base(name)
        if base in self.by_base:
            key = self.by_base[base]
            if key is not None:
                self.renamed.append((name, key))
                return key
            self.ambiguous.append(name)
        self.unmatched.append(name)
        return name

    @property
    def matched(self) -> int:
        return self.exact + len(self.renamed)

    def mark(self) -> tuple[int, int, int, int]:
        """The state of the records, for :meth:`rewind`."""
        return self.exact, len(self.renamed), len(self.ambiguous), len(self.unmatched)

    def rewind(self, mark: tuple[int, int, int, int]) -> None:
        """Forget the matches recorded since :meth:`mark` (a batch processed again)."""
        self.exact = mark[0]
        del self.renamed[mark[1] :], self.ambiguous[mark[2] :], self.unmatched[mark[3] :]


def check_matches(
    image_keys: ImageKeys,
    benchmark: str,
    predictions: Any,
    num_gt_images: int,
    gt_examples: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Raise EvalError when no predicted image is a ground-truth image; else (notes, warnings).

    Args:
        image_keys: the mapping used while reading the predictions.
        benchmark: the benchmark evaluated.
        predictions: the predictions file (named in messages).
        num_gt_images: number of ground-truth images.
        gt_examples: a few ground-truth image names, shown in the error.
    """
    k = image_keys
    n_pred = k.matched + len(k.unmatched)
    if n_pred == 0:
        raise EvalError(f"{predictions}: the predictions hold no image")
    if k.matched == 0:
        shown = k.unmatched[0]
        example = f" (for example {gt_examples[0]!r})" if gt_examples else ""
        msg = (
            f"{predictions}: none of the {n_pred} predicted image(s) is in the ground truth "
            f"(field 'file_name', e.g. {shown!r}; the ground truth names images like{example})"
        )
        guess = guess_names_benchmark(k.unmatched[:50])
        if guess is not None and guess != benchmark:
            msg += f"; the predictions look like {_TITLE[guess]} predictions"
        elif k.ambiguous:
            msg += (
                f"; base names such as {_base(k.ambiguous[0])!r} fit several ground-truth "
                "images: give the ground truth's file names"
            )
        elif _base(shown) != shown:
            folder = shown[: len(shown) - len(_base(shown))]
            msg += f"; not even after dropping the folder {folder!r}"
        raise EvalError(msg)
    notes, warnings = [], []
    if k.renamed:
        name, key = k.renamed[0]
        notes.append(
            f"{len(k.renamed)} predicted image(s) matched the ground truth by base name only "
            f"(e.g. {name!r} -> {key!r})"
        )
    if k.ambiguous:
        notes.append(
            f"{len(k.ambiguous)} predicted image name(s) whose base name fits several "
            f"ground-truth images were not matched (e.g. {k.ambiguous[0]!r})"
        )
    if len(k.unmatched) > WARN_UNMATCHED * n_pred:
        warnings.append(
            f"{len(k.unmatched)} of {n_pred} predicted images "
            f"({100.0 * len(k.unmatched) / n_pred:.1f} %) are not in the ground truth "
            f"(e.g. {k.unmatched[0]!r})"
        )
    missing = num_gt_images - k.matched
    if num_gt_images and missing > WARN_UNMATCHED * num_gt_images:
        warnings.append(
            f"{missing} of {num_gt_images} ground-truth images "
            f"({100.0 * missing / num_gt_images:.1f} %) have no predictions"
        )
    return notes, warnings
