"""A torch Dataset over samples, the collate that keeps lists, and the reader dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from linkhoi.data.images import load_image
from linkhoi.data.sample import Sample

KINDS = ("hico_det", "vcoco", "swig_hoi", "generic")


class HOIDataset(Dataset):
    """Items are ``(PIL RGB image, Sample)``.

    The image is read from ``sample.image_path``, or from ``image_root / file_name`` when
    ``image_root`` is given (it takes precedence).
    """

    def __init__(self, samples: list[Sample], image_root: str | Path | None = None) -> None:
        self.samples = list(samples)
        self.image_root = None if image_root is None else Path(image_root)

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> Path:
        sample = self.samples[index]
        if self.image_root is not None:
            return self.image_root / sample.file_name
        if sample.image_path is None:
            raise ValueError(f"image {sample.file_name!r}: no image path is known; pass image_root")
        return sample.image_path

    def __getitem__(self, index: int) -> tuple[Image.Image, Sample]:
        return load_image(self.image_path(index)), self.samples[index]


def collate(batch: list[tuple[Image.Image, Sample]]) -> tuple[list[Image.Image], list[Sample]]:
    """Keep images and samples as lists (variable sizes and box counts)."""
    return [item[0] for item in batch], [item[1] for item in batch]


def read_dataset(kind: str, **paths: Any) -> list[Sample]:
    """Dispatch to a reader by dataset kind.

    - ``hico_det``: ``path`` (json, instances json or anno_bbox.mat), optional ``split``,
      ``image_root``, ``label_space``, ``on_invalid``  -> :func:`linkhoi.data.hico.read_hico`
    - ``vcoco``: ``vcoco_json``, ``instances_json``, ``ids_file``, optional ``image_root``,
      ``label_space``, ``sort_ids`` -> :func:`linkhoi.data.vcoco.read_vcoco`
    - ``swig_hoi``: ``path``, optional ``image_root``, ``label_space``
    - ``generic``: ``path``, optional ``label_space``, ``image_root``
    """
    if kind == "hico_det":
        from linkhoi.data.hico import read_hico

        return read_hico(**paths)
    if kind == "vcoco":
        from linkhoi.data.vcoco import read_vcoco

        return read_vcoco(**paths)
    if kind == "swig_hoi":
        from linkhoi.data.swig import read_swig

        return read_swig(**paths)
    if kind == "generic":
        from linkhoi.data.generic import read_generic

        return read_generic(**paths)
    raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
