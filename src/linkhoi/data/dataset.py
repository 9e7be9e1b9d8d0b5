"""A torch Dataset over samples and the collate that keeps lists.

Imported lazily by :mod:`linkhoi.data` (it needs torch); the reader dispatch is
:mod:`linkhoi.data.readers`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from linkhoi.data.images import load_image
from linkhoi.data.readers import KINDS, read_dataset
from linkhoi.data.sample import Sample

__all__ = ["KINDS", "HOIDataset", "collate", "read_dataset"]


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
