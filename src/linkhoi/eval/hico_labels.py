"""HICO-DET image-level labels (``anno_test`` of the official ``anno.mat``), the source of the
official Known-Object setting."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.eval.base import EvalError
from linkhoi.matfile import check_mat_size


def read_image_labels(
    path: str | os.PathLike[str], file_names: Sequence[str], label_space: Any
) -> np.ndarray:
    """Read ``anno_test`` of the official ``anno.mat`` as an (H, len(file_names)) array.

    Columns follow ``list_test`` in the file and are re-ordered to ``file_names`` by name;
    rows are HOI ids 1..600, re-ordered to label-space positions.
    """
    import scipy.io

    path = Path(path)
    check_mat_size(path, EvalError)
    try:
        mat = scipy.io.loadmat(path, variable_names=["anno_test", "list_test"], squeeze_me=True)
    except FileNotFoundError:
        raise EvalError(f"{path}: no such image-label file") from None
    except Exception as err:  # scipy raises many types on a corrupt file
        raise EvalError(f"{path}: not a readable MATLAB file ({err})") from None
    for key in ("anno_test", "list_test"):
        if key not in mat:
            raise EvalError(f"{path}: variable {key!r} not found (expected HICO's anno.mat)")
    labels = np.asarray(mat["anno_test"], dtype=np.float64)
    names = [str(n) for n in np.atleast_1d(mat["list_test"])]
    n_hoi = len(label_space.hois)
    if labels.ndim != 2 or labels.shape[0] != n_hoi or labels.shape[1] != len(names):
        raise EvalError(
            f"{path}: field 'anno_test' has shape {labels.shape}, expected ({n_hoi}, {len(names)})"
        )
    col = {n: j for j, n in enumerate(names)}
    missing = [n for n in file_names if n not in col]
    if missing:
        raise EvalError(f"{path}: image {missing[0]!r} of the annotations is not in 'list_test'")
    rows = [int(h.id) - 1 for h in label_space.hois]
    return labels[np.ix_(rows, [col[n] for n in file_names])]
