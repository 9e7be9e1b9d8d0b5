"""Dataset readers (one per annotation format), the sample type, images and the Dataset.

Every reader returns ``list[Sample]`` in the file's image order, with boxes kept in the
file's own convention (see docs/internals.md and docs/datasets.md). ``HOIDataset`` and
``collate`` are imported on first use (they need torch, which evaluation does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from linkhoi.data.generic import read_generic, write_generic
from linkhoi.data.hico import (
    InvalidHOIWarning,
    read_hico,
    read_hico_instances,
    read_hico_json,
    read_hico_mat,
)
from linkhoi.data.images import ImageError, image_size, load_image
from linkhoi.data.readers import KINDS, read_dataset
from linkhoi.data.sample import DatasetError, HOIPair, Sample, validate_sample
from linkhoi.data.swig import read_swig
from linkhoi.data.vcoco import read_ids, read_vcoco

if TYPE_CHECKING:
    from linkhoi.data.dataset import HOIDataset, collate

__all__ = [
    "KINDS",
    "DatasetError",
    "HOIDataset",
    "HOIPair",
    "ImageError",
    "InvalidHOIWarning",
    "Sample",
    "collate",
    "image_size",
    "load_image",
    "read_dataset",
    "read_generic",
    "read_hico",
    "read_hico_instances",
    "read_hico_json",
    "read_hico_mat",
    "read_ids",
    "read_swig",
    "read_vcoco",
    "validate_sample",
    "write_generic",
]


def __getattr__(name: str) -> Any:
    # Imported lazily: the torch Dataset pulls in torch (~1 s, ~400 MB), which readers and
    # evaluators never need.
    if name in ("HOIDataset", "collate"):
        from linkhoi.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'linkhoi.data' has no attribute {name!r}")
