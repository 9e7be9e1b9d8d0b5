"""Evaluation with the official protocols: HICO-DET, V-COCO, SWiG-HOI.

Shared pieces: :mod:`linkhoi.eval.ap` (VOC 11-point / all-point AP),
:mod:`linkhoi.eval.base` (the Evaluator protocol), :mod:`linkhoi.eval.triplets` (the
prediction interchange file), :mod:`linkhoi.eval.resolve` (its classes as label-space positions). Benchmark evaluators live in ``hico``, ``vcoco`` and ``swig``.
This package never imports ``linkhoi.model``.
"""

from linkhoi.eval.ap import (
    DECIMAL_11_POINTS,
    MATLAB_11_POINTS,
    ap_11_point,
    ap_all_point,
    precision_recall,
    stable_descending,
)
from linkhoi.eval.base import EvalError, EvalResult, Evaluator
from linkhoi.eval.hico import HICOEvaluator
from linkhoi.eval.resolve import TripletArrays, resolve_triplets
from linkhoi.eval.triplets import TripletFileError, read_triplets, write_triplets

__all__ = [
    "DECIMAL_11_POINTS",
    "MATLAB_11_POINTS",
    "EvalError",
    "EvalResult",
    "Evaluator",
    "HICOEvaluator",
    "TripletArrays",
    "TripletFileError",
    "ap_11_point",
    "ap_all_point",
    "precision_recall",
    "read_triplets",
    "resolve_triplets",
    "stable_descending",
    "write_triplets",
]
