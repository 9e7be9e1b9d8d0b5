"""Dataset readers (one per annotation format), the sample type, images and the Dataset.

Every reader returns ``list[Sample]`` in the file's image order, with boxes kept in the
file's own convention (see docs/internals.md and docs/datasets.md).
"""

from linkhoi.data.dataset import KINDS, HOIDataset, collate, read_dataset
from linkhoi.data.generic import read_generic, write_generic
from linkhoi.data.hico import (
    InvalidHOIWarning,
    read_hico,
    read_hico_instances,
    read_hico_json,
    read_hico_mat,
)
from linkhoi.data.images import ImageError, image_size, load_image
from linkhoi.data.sample import DatasetError, HOIPair, Sample, validate_sample
from linkhoi.data.swig import read_swig
from linkhoi.data.vcoco import read_ids, read_vcoco

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
