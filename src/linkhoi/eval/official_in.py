"""Predictions in the official evaluators' formats, read as triplet images.

- V-COCO: the ``vsrl_eval.py`` detection pickle (a list of dicts with ``image_id``,
  ``person_box``, ``<action>_agent`` scores and ``<action>_<role>`` ``[x1, y1, x2, y2, score]``),
  unpickled by :class:`RestrictedUnpickler`: plain lists, dicts, numbers and numpy arrays only,
  so a pickle cannot run code;
- SWiG-HOI: the THID/CMD-SE evaluator's json ``{img_id: [[hoi_id, score, hx1, hy1, hx2, hy2,
  ox1, oy1, ox2, oy2], ...]}``;
- HICO-DET: a folder of ho-rcnn ``detections_XX.mat`` files (XX = 01..80, COCO-80 object
  order), each ``all_boxes`` (HOIs of that object in id order x test images) of N x 9 cells
  ``[hx1 hy1 hx2 hy2 ox1 oy1 ox2 oy2 score]`` in 0-based pixels (1 is added back).

:func:`detect_format` tells them from a triplet file; :func:`read_official` returns the label
space they imply and the images. Image keys are the ids (V-COCO, SWiG-HOI; the evaluators
accept them) or the file names of the image list (HICO-DET).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.eval.triplets import TripletFileError

FORMATS = {
    "vcoco_pickle": ("vcoco", "a V-COCO vsrl_eval detection pickle"),
    "swig_json": ("swig_hoi", "a SWiG-HOI official-evaluator json"),
    "hico_mat_dir": ("hico_det", "a folder of ho-rcnn detections_XX.mat files"),
}
# globals a pickle of lists, dicts, numbers and numpy arrays needs (numpy 1 and 2 names)
_ALLOWED = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}
_SWIG_START = re.compile(rb'^\s*\{\s*("-?\d+"\s*:|\}\s*$)')


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain lists, dicts, numbers, strings and numpy arrays only;
    any other class or function named in the pickle is refused (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"the pickle names {module}.{name}; only lists, dicts, numbers and numpy arrays "
            "are read"
        )


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"hico_mat_dir"`` (a folder), ``"vcoco_pickle"`` (``.pkl`` / ``.pickle``),
    ``"swig_json"`` (a json object keyed by image ids) or ``"triplets"``."""
    path = Path(path)
    if path.is_dir():
        return "hico_mat_dir"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".pkl", ".pickle")):
        return "vcoco_pickle"
    if name.endswith(".json") and path.is_file():
        try:
            with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as fh:
                head = fh.read(256)
        except (OSError, EOFError):
            return "triplets"  # the triplet reader words the error
        if _SWIG_START.match(head):
            return "swig_json"
    return "triplets"


def read_official(
    path: str | os.PathLike[str], fmt: str, file_names: list[str] | None = None
) -> tuple[str, list[tuple[str, list[dict]]]]:
    """(label-space name, images) of an official-format predictions file.

    Args:
        fmt: from :func:`detect_format` (not ``"triplets"``).
        file_names: HICO-DET only: the image order of the ``.mat`` columns when the folder has
            no ``list_test.txt`` (the ground truth's order, as ho-rcnn's ``list_test``).
    """
    path = Path(path)
    if fmt == "vcoco_pickle":
        return "vcoco", read_vcoco_pickle(path)
    if fmt == "swig_json":
        return "swig_hoi", read_swig_json(path)
    if fmt == "hico_mat_dir":
        return "hico_det", read_hico_mat_dir(path, file_names)
    raise ValueError(f"not an official format: {fmt!r}")


def read_vcoco_pickle(path: Path) -> list[tuple[str, list[dict]]]:
    """The rows of a ``vsrl_eval`` detection pickle as triplet images keyed by image id."""
    from linkhoi.eval.vcoco_official import official_to_triplets
    from linkhoi.io import read_limited

    try:
        data = read_limited(path, TripletFileError)  # within linkhoi's input limit
        rows = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()  # latin1: Py2
    except TripletFileError:
        raise
    except FileNotFoundError:
        raise TripletFileError(f"{path}: no such predictions file") from None
    except Exception as err:  # noqa: BLE001 - unpickling raises many types on bad bytes
        raise TripletFileError(f"{path}: not a readable V-COCO detection pickle ({err})") from None
    if not isinstance(rows, list):
        raise TripletFileError(f"{path}: a V-COCO detection pickle holds a list of dicts")
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        if not isinstance(row, dict):
            raise TripletFileError(f"{where}: must be a dict, got {type(row).__name__}")
        for key in ("image_id", "person_box"):
            if key not in row:
                raise TripletFileError(f"{where}: missing key {key!r}")
        try:
            if int(row["image_id"]) != row["image_id"]:
                raise ValueError
            box = np.asarray(row["person_box"], dtype=np.float64)
            if box.shape != (4,):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise TripletFileError(
                f"{where}: field 'image_id' must be an integer and 'person_box' 4 numbers"
            ) from None
        for key, value in row.items():
            if key in ("image_id", "person_box"):
                continue
            size = 1 if key.endswith("_agent") else 5
            try:
                ok = np.asarray(value, dtype=np.float64).reshape(-1).shape == (size,)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                what = "a score" if size == 1 else "[x1, y1, x2, y2, score]"
                raise TripletFileError(f"{where}: field {key!r} must be {what}, got {value!r}")
    try:
        return official_to_triplets(rows)
    except (TypeError, ValueError, IndexError) as err:
        raise TripletFileError(f"{path}: malformed detection rows ({err})") from None


def read_swig_json(path: Path) -> list[tuple[str, list[dict]]]:
    """``{img_id: [[hoi_id, score, 8 box values], ...]}`` as triplet images keyed by img_id."""
    from linkhoi.io import InputError, load_json

    try:
        data = load_json(path, TripletFileError)
    except InputError as err:
        raise TripletFileError(str(err)) from None
    if not isinstance(data, dict):
        raise TripletFileError(f"{path}: expected {{img_id: [[hoi_id, score, 8 box values]]}}")
    images = []
    for key, rows in data.items():
        where = f"{path}: image {key!r}"
        if not isinstance(rows, list):
            raise TripletFileError(f"{where}: must be a list of [hoi_id, score, 8 box values]")
        dets = []
        for j, row in enumerate(rows):
            if not (
                isinstance(row, list)
                and len(row) == 10
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
                and float(row[0]).is_integer()
            ):
                raise TripletFileError(
                    f"{where}, detection {j}: must be [hoi_id, score, hx1, hy1, hx2, hy2, ox1, "
                    f"oy1, ox2, oy2] (numbers, an integer hoi_id), got {row!r}"
                )
            dets.append({"hoi_id": int(row[0]), "score": row[1],
                         "human_box": row[2:6], "object_box": row[6:10]})  # fmt: skip
        images.append((str(key), dets))
    return images


def read_hico_mat_dir(
    directory: Path, file_names: list[str] | None = None, label_space: Any = None
) -> list[tuple[str, list[dict]]]:
    """The 80 ``detections_XX.mat`` of ho-rcnn as triplet images (boxes + 1, ``hoi_id``).

    The columns follow ``directory/list_test.txt`` (written by ``--export-official``) or,
    without it, ``file_names``. Missing files are objects without detections.
    """
    import scipy.io

    from linkhoi.labels import load
    from linkhoi.matfile import check_mat_size

    ls = label_space if label_space is not None else load("hico_det")
    listing = directory / "list_test.txt"
    if listing.is_file():
        file_names = [n for n in listing.read_text(encoding="utf-8").split() if n]
    if file_names is None:
        raise TripletFileError(
            f"{directory}: no list_test.txt giving the image order of the columns; give the "
            "ground truth (--annotations) or write the image names, one a line, into it"
        )
    mats = sorted(directory.glob("detections_*.mat"))
    if not mats:
        raise TripletFileError(f"{directory}: no detections_XX.mat file in the folder")
    coco80 = list(ls.extra["object_coco80_index"])
    hoi_obj = np.asarray(ls.hoi_object_positions())
    ids = np.asarray([int(h.id) for h in ls.hois])
    per_image: list[list[np.ndarray]] = [[] for _ in file_names]
    for mat in mats:
        m = re.fullmatch(r"detections_(\d+)\.mat", mat.name)
        if m is None or int(m.group(1)) not in coco80:
            raise TripletFileError(f"{mat}: not named detections_XX.mat with XX in 01..80")
        obj = coco80.index(int(m.group(1)))
        hoi_ids = np.sort(ids[hoi_obj == obj])
        check_mat_size(mat, TripletFileError)
        try:
            cells = scipy.io.loadmat(mat, variable_names=["all_boxes"])["all_boxes"]
        except KeyError:
            raise TripletFileError(f"{mat}: variable 'all_boxes' not found") from None
        except Exception as err:  # noqa: BLE001 - scipy raises many types on a corrupt file
            raise TripletFileError(f"{mat}: not a readable MATLAB file ({err})") from None
        if cells.shape != (len(hoi_ids), len(file_names)):
            raise TripletFileError(
                f"{mat}: field 'all_boxes' has shape {cells.shape}, expected "
                f"({len(hoi_ids)} HOI classes, {len(file_names)} images)"
            )
        for r, c in zip(*np.nonzero(np.vectorize(np.size, otypes=[int])(cells)), strict=True):
            rows = np.asarray(cells[r, c], dtype=np.float64)
            if rows.ndim != 2 or rows.shape[1] != 9:
                raise TripletFileError(
                    f"{mat}: image {file_names[c]!r}, field 'all_boxes' cell ({r + 1}, {c + 1}) "
                    f"must be N x 9, got {rows.shape}"
                )
            per_image[c].append(np.column_stack([np.full(len(rows), hoi_ids[r]), rows]))
    images = []
    for name, parts in zip(file_names, per_image, strict=True):
        dets = []
        for row in (np.concatenate(parts) if parts else np.zeros((0, 10))).tolist():
            if not math.isfinite(row[9]):
                raise TripletFileError(f"{directory}: image {name!r}: a score is {row[9]}")
            dets.append({"hoi_id": int(row[0]), "human_box": [v + 1 for v in row[1:5]],
                         "object_box": [v + 1 for v in row[5:9]], "score": row[9]})  # fmt: skip
        images.append((name, dets))
    return images
