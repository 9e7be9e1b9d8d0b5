"""The protocol every benchmark evaluator follows, and the result it returns.

``reset()`` -> ``process(image_key, detections)`` per image -> ``gather()`` (distributed
runs) -> ``evaluate()``. ``process`` receives triplet-format dicts that were already validated
(:mod:`linkhoi.eval.triplets`); a subclass turns them into compact arrays in
:meth:`Evaluator.convert` so that a million detections do not stay alive as dicts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linkhoi.io import InputError, atomic_write_text


class EvalError(InputError):
    """Bad input to an evaluator (an image processed twice, a prediction for an unknown image
    under ``strict``...). The message names the file, the image and the field."""


@dataclass
class EvalResult:
    """What an evaluation returns.

    Attributes:
        benchmark: ``"hico_det"``, ``"vcoco"`` or ``"swig_hoi"``.
        summary: the OUT.json dict (fractions in [0, 1], keys fixed by the CLI contract).
        per_class: class key (official id, or ``<action>_<role>``) -> AP fraction; the flat
            table written to ``per_class_ap.csv``.
        protocol: human-readable description: AP formula, box convention, setting, class counts.
        notes: remarks on the input (predictions on unknown images counted or ignored, ...).
        warnings: remarks that likely mean a wrong input (many unmatched images); printed
            as warning lines and written to OUT.json as ``warnings`` when there are any.
    """

    benchmark: str
    summary: dict[str, Any]
    per_class: dict[str, float]
    protocol: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """OUT.json content: ``summary`` plus ``protocol`` and ``notes`` as extra keys."""
        out = dict(self.summary)
        out.setdefault("protocol", dict(self.protocol))
        out.setdefault("notes", list(self.notes))
        if self.warnings:
            out.setdefault("warnings", list(self.warnings))
        return out

    def to_json(self, path: str | os.PathLike[str] | None = None, indent: int = 2) -> str:
        """Return the OUT.json text; when ``path`` is given also write it atomically."""
        text = json.dumps(_jsonable(self.to_dict()), indent=indent) + "\n"
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def full(self) -> dict[str, Any]:
        """Every field as plain data (for logging or tests)."""
        return _jsonable(asdict(self))


def _jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays to Python; NaN stays NaN (json writes it as NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def check_one_key_per_image(items: Iterable[tuple[str, int]]) -> None:
    """Raise EvalError when one GT image was processed under two keys (file name and image id).

    Args:
        items: ``(image key, GT image index)`` of every processed image; an index < 0 (an
            image absent from the GT) is not checked.
    """
    seen: dict[int, str] = {}
    for key, image in items:
        if image >= 0 and seen.setdefault(image, key) != key:
            raise EvalError(
                f"image {seen[image]!r} was given twice (also as {key!r}); each image may "
                "appear only once (field 'file_name')"
            )


class Evaluator:
    """Base class: collects per-image predictions, gathers them across ranks, evaluates.

    Subclasses set ``benchmark`` and implement :meth:`evaluate`; they may override
    :meth:`convert` to store a compact form of each image's detections.
    """

    benchmark: str = ""

    def __init__(self) -> None:
        Evaluator.reset(self)

    def reset(self) -> None:
        """Forget every processed prediction (start a new evaluation)."""
        self._predictions: dict[str, Any] = {}
        # the arrays of each process_batch call (what a subclass's evaluation concatenates)
        # and how many images they hold; see _batch_arrays
        self._batches: list[tuple] = []
        self._batched = 0

    def _record_batch(self, values: dict[str, Any], arrays: tuple) -> None:
        """Record a batch: its per-image values (views of ``arrays``) and the arrays."""
        self._predictions.update(values)
        self._batches.append(arrays)
        self._batched += len(values)

    def _batch_arrays(self) -> tuple | None:
        """The batches' arrays concatenated, in processing order, when every recorded image
        came in through :meth:`process_batch` (else None: concatenate per image)."""
        if not self._batches or self._batched != len(self._predictions):
            return None
        import numpy as np

        return tuple(np.concatenate(x) for x in zip(*self._batches, strict=True))

    def convert(self, image_key: str, detections: list[dict]) -> Any:
        """Turn one image's triplet dicts into what :meth:`evaluate` needs (default: as is)."""
        return detections

    def process(self, image_key: str, detections: list[dict]) -> None:
        """Record the predictions of one image.

        Args:
            image_key: the image's ``file_name`` in the ground-truth file.
            detections: triplet-format dicts (``human_box``, ``object_box``, ``verb``,
                ``object``, ``score``, ...), already validated.
        """
        if image_key in self._predictions:
            raise EvalError(
                f"image {image_key!r} was processed twice; each image may appear only once "
                "(field 'file_name')"
            )
        self._predictions[image_key] = self.convert(image_key, detections)

    def process_batch(self, items: list[tuple[str, list]]) -> None:
        """Record the predictions of several images, all or nothing.

        Args:
            items: ``(image key, detections)`` per image, in file order (dicts, or the
                msgspec structs of :mod:`linkhoi.eval.fastread`).

        On any error no image of the batch stays recorded, so the caller may process the
        images again one by one (:meth:`process`) to raise the first error in file order.
        Evaluators override this to resolve a whole batch at once
        (:func:`linkhoi.eval.batch.resolve_batch`).
        """
        added: list[str] = []
        try:
            for key, dets in items:
                self.process(key, dets)
                added.append(key)
        except BaseException:
            for key in added:
                del self._predictions[key]
            raise

    def _batch_keys_free(self, keys: list[str]) -> bool:
        """No key given twice in ``keys`` nor already processed (else: the per-image path)."""
        return len(set(keys)) == len(keys) and self._predictions.keys().isdisjoint(keys)

    def image_keys(self) -> Iterable[str]:
        """Every key :meth:`process` accepts for a ground-truth image (file names, ids)."""
        raise NotImplementedError

    @property
    def num_gt_images(self) -> int:
        """Number of ground-truth images."""
        raise NotImplementedError

    @property
    def num_gt_pairs(self) -> int:
        """Number of ground-truth human-object pairs (0: every AP would be 0)."""
        raise NotImplementedError

    @property
    def num_processed(self) -> int:
        """Number of images recorded so far on this rank."""
        return len(self._predictions)

    def gather(self) -> None:
        """Merge the predictions of all torch.distributed ranks into rank 0.

        Does nothing unless torch.distributed is initialised. Other ranks end up empty.
        An image present on several ranks (DistributedSampler pads by repeating images) is
        kept once, from the lowest rank.
        """
        try:
            import torch.distributed as dist
        except ImportError:  # torch is optional for plain evaluation
            return
        if not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size()
        if world == 1:
            return
        rank = dist.get_rank()
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(self._predictions, gathered, dst=0)
        if rank != 0:
            Evaluator.reset(self)
            return
        merged: dict[str, Any] = {}
        for part in gathered or []:
            for key, value in (part or {}).items():
                merged.setdefault(key, value)
        self._predictions = merged
        self._batches, self._batched = [], 0

    def evaluate(self) -> EvalResult:
        """Score every processed prediction with the benchmark's official protocol."""
        raise NotImplementedError
