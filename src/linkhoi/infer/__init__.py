"""Inference on your own images: `Predictor` (Python API), `draw_triplets`, `linkhoi detect`.

The names are imported on first use, so ``linkhoi detect --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linkhoi.infer.draw import draw_triplets
    from linkhoi.infer.predictor import InferenceError, Predictor, open_vocabulary_space

_HOMES = {
    "draw_triplets": "linkhoi.infer.draw",
    "InferenceError": "linkhoi.infer.predictor",
    "Predictor": "linkhoi.infer.predictor",
    "open_vocabulary_space": "linkhoi.infer.predictor",
}
__all__ = ["InferenceError", "Predictor", "draw_triplets", "open_vocabulary_space"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'linkhoi.infer' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
