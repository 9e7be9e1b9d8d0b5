"""Export HICO-DET predictions in the official MATLAB evaluator's input format.

ho-rcnn ``eval_one.m`` (format ``'obj'``) loads ``detections_XX.mat`` for XX = 01..80, the
object's index in COCO-80 order, and reads ``all_boxes(act_id, :)``: one row per HOI class of
that object (in HOI-id order), one column per test image (in ``list_test`` order), each cell an
N x 9 matrix ``[hx1 hy1 hx2 hy2 ox1 oy1 ox2 oy2 score]`` of **0-based** pixel indices (the code
adds 1). Our boxes use the 1-based GT convention, so we write ``box - 1`` (docs/evaluation.md, HICO-DET protocol).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from linkhoi.io import atomic_path, atomic_write_text


def hico_official_cells(
    collected: tuple[np.ndarray, ...], num_images: int, label_space: Any
) -> dict[int, np.ndarray]:
    """Build ``{coco80 index: all_boxes}``; ``all_boxes`` is an object array
    (num HOIs of the object, num_images) of (n, 9) float64 arrays (empty cells (0, 9)).

    Args:
        collected: (img (D,), hoi (D,), score (D,), human (D, 4), object (D, 4)) in image order,
            then input order (``HICOEvaluator._collect``).
    """
    img, hoi, score, hb, ob = collected
    coco80 = list(label_space.extra["object_coco80_index"])
    hoi_obj = np.asarray(label_space.hoi_object_positions())
    ids = np.asarray([int(h.id) for h in label_space.hois])
    rows = np.concatenate([hb - 1.0, ob - 1.0, score[:, None]], axis=1) if len(img) else None
    order = np.lexsort((np.arange(len(img)), img, hoi))  # by class, image, input order
    out: dict[int, np.ndarray] = {}
    empty = np.zeros((0, 9))
    for o in range(len(label_space.objects)):
        classes = np.flatnonzero(hoi_obj == o)
        classes = classes[np.argsort(ids[classes])]  # act_id = HOI id - first id of object + 1
        cells = np.empty((len(classes), num_images), dtype=object)
        cells.fill(empty)  # shared read-only empty matrix: MATLAB's [] cell
        out[int(coco80[o])] = cells
        for r, c in enumerate(classes):
            sel = order[hoi[order] == c]
            if not len(sel):
                continue
            bounds = np.flatnonzero(np.diff(img[sel])) + 1
            for chunk in np.split(sel, bounds):
                cells[r, img[chunk[0]]] = rows[chunk]
    return out


def write_hico_official(
    directory: str | os.PathLike[str],
    collected: tuple[np.ndarray, ...],
    file_names: Sequence[str],
    label_space: Any,
) -> list[Path]:
    """Write the 80 ``detections_XX.mat`` files (each atomically) and a ``list_test.txt``
    giving the image order the columns follow. Returns the written .mat paths."""
    import scipy.io

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cells = hico_official_cells(collected, len(file_names), label_space)
    written = []
    for idx in tqdm(sorted(cells), desc="export detections_XX.mat", unit="file", disable=None):
        path = directory / f"detections_{idx:02d}.mat"
        with atomic_path(path, suffix=".mat") as tmp:  # savemat appends .mat to other names
            scipy.io.savemat(tmp, {"all_boxes": cells[idx]}, do_compression=True)
        written.append(path)
    atomic_write_text(directory / "list_test.txt", "".join(f"{n}\n" for n in file_names))
    return written
