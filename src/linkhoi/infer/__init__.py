"""Inference on your own images: `Predictor` (Python API), `draw_triplets`, `linkhoi detect`."""

from linkhoi.infer.draw import draw_triplets
from linkhoi.infer.predictor import InferenceError, Predictor, open_vocabulary_space

__all__ = ["InferenceError", "Predictor", "draw_triplets", "open_vocabulary_space"]
