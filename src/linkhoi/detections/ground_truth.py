"""Ground-truth boxes as detections (score 1): the "oracle" / Known-Object setting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from PIL import Image

from linkhoi.detections.base import DetectionError, Detections, check_image_size

if TYPE_CHECKING:
    from linkhoi.data import Sample


class GroundTruthDetections:
    """A `DetectionSource` returning each sample's annotated boxes and labels with score 1.

    Boxes keep the dataset's own convention (as in `Sample`). Asking for an image that is
    not among the samples raises `DetectionError`.
    """

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._samples: dict[str, Sample] = {}
        for i, s in enumerate(samples):
            if s.file_name in self._samples:
                raise DetectionError(
                    "duplicate file name", image=s.file_name, field=f"samples[{i}]"
                )
            self._samples[s.file_name] = s

    def __len__(self) -> int:
        return len(self._samples)

    def __contains__(self, file_name: object) -> bool:
        return file_name in self._samples

    def detect(self, file_name: str, image: Image.Image | None = None) -> Detections:
        """(N, 4) float32 boxes, (N,) labels, (N,) scores all 1 for the sample `file_name`."""
        sample = self._samples.get(file_name)
        if sample is None:
            raise DetectionError("no ground-truth sample for this image", image=file_name)
        size = (int(sample.width), int(sample.height))
        if image is not None and (size[0] <= 0 or size[1] <= 0):
            size = image.size  # the annotation did not state the size
        elif image is not None:  # boxes normalised by a wrong size would be misplaced
            check_image_size(size, image.size, "the annotation", image=file_name)
        boxes = torch.as_tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(sample.labels, dtype=torch.int64).reshape(-1)
        return Detections(boxes, labels, torch.ones(len(labels)), size)
