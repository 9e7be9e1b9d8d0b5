"""Detection sources behind one interface (`DetectionSource.detect(file_name, image)`),
and proposal filtering. Knows boxes, labels and scores, nothing of CLIP."""

from __future__ import annotations

from typing import Any

from linkhoi.detections.base import (
    CallableDetector,
    DetectionError,
    Detections,
    DetectionSource,
    check_detections,
    first_problem,
)
from linkhoi.detections.files import FileDetections, write_detections
from linkhoi.detections.ground_truth import GroundTruthDetections
from linkhoi.detections.proposals import filter_proposals

__all__ = [
    "CallableDetector",
    "DetectionError",
    "DetectionSource",
    "Detections",
    "FileDetections",
    "GroundTruthDetections",
    "TorchvisionDetector",
    "check_detections",
    "filter_proposals",
    "first_problem",
    "write_detections",
]


def __getattr__(name: str) -> Any:
    # Imported lazily: torchvision detection models are heavy and live in their own module.
    if name == "TorchvisionDetector":
        from linkhoi.detections.torchvision_detector import TorchvisionDetector

        return TorchvisionDetector
    raise AttributeError(f"module 'linkhoi.detections' has no attribute {name!r}")
