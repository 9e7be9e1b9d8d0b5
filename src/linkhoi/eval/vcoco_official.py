"""V-COCO official formats: the ``vsrl_eval.py`` detection pickle, both ways.

:func:`write_official` writes an evaluator's predictions as the official script's input
(``VCOCOEvaluator.export_official``); :func:`official_to_triplets` converts such rows (a QPIC /
UPT pickle) to triplet images; :func:`add_agent_detections` derives agent-only scores from role
detections with QPIC's mapping.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.io import atomic_path


def write_official(
    directory: str | os.PathLike[str],
    predictions: Iterable[Any],
    cls: Any,
    image_ids: Sequence[int | None],
) -> Path:
    """Write ``<directory>/vcoco_detections.pkl``, the input of the official ``vsrl_eval.py``.

    One dict per (image, person box) with ``image_id``, ``person_box`` and all 26
    ``<action>_agent`` scores and 25 ``<action>_<role>`` ``[x1, y1, x2, y2, score]``
    entries; keys a row does not predict are NaN (invisible to the official script). Two
    detections of the same key on the same person box go to separate rows. Images outside
    the split are left out (the official script ignores them).

    Args:
        directory: where ``vcoco_detections.pkl`` goes (created if needed).
        predictions: the evaluator's per-image records, ``(image index, keys, scores, human
            boxes, object boxes)`` or None for an image outside the split.
        cls: the evaluator's V-COCO keys (``VCOCOEvaluator.cls``).
        image_ids: COCO image id of each GT image.
    """
    n_a = len(cls.actions)
    nan_row = {f"{a}_agent": np.nan for a in cls.actions}
    nan_row.update({cls.key_name(n_a + r): [np.nan] * 5 for r in range(len(cls.role_keys))})
    rows: list[dict[str, Any]] = []
    for value in predictions:
        if value is None:
            continue
        image, keys, scores, hb, ob = value
        image_id = image_ids[image]
        open_rows: dict[tuple[float, ...], list[dict[str, Any]]] = {}
        for k, s, h, o in zip(
            keys.tolist(), scores.tolist(), hb.tolist(), ob.tolist(), strict=True
        ):
            name = cls.key_name(k)
            row = None
            for cand in open_rows.setdefault(tuple(h), []):
                if _is_unset(cand[name]):
                    row = cand
                    break
            if row is None:
                row = {"image_id": image_id, "person_box": list(h), **nan_row}
                open_rows[tuple(h)].append(row)
                rows.append(row)
            row[name] = float(s) if k < n_a else [*o, float(s)]
    path = Path(directory) / "vcoco_detections.pkl"
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        pickle.dump(rows, fh, protocol=2)
    return path


def _is_unset(value: Any) -> bool:
    v = value[4] if isinstance(value, list) else value
    return isinstance(v, float) and math.isnan(v)


def official_to_triplets(
    rows: list[dict[str, Any]], file_names: dict[int, str] | None = None
) -> list[tuple[str, list[dict]]]:
    """Convert ``vsrl_eval`` input rows (a QPIC/UPT pickle) to triplet images.

    Every non-NaN ``<action>_agent`` score becomes an agent-only detection and every non-NaN
    ``<action>_<role>`` entry a role detection (an all-NaN box becomes ``object_box`` null).
    Images are keyed by ``file_names[image_id]`` or ``str(image_id)`` (both accepted by
    :class:`VCOCOEvaluator`).
    """
    out: dict[str, list[dict]] = {}
    for row in rows:
        iid = int(row["image_id"])
        dets = out.setdefault((file_names or {}).get(iid, str(iid)), [])
        hb = [float(v) for v in row["person_box"]]
        for key, value in row.items():
            if key in ("image_id", "person_box"):
                continue
            verb, _, role = key.rpartition("_")
            if role == "agent":
                if not math.isnan(float(value)):
                    dets.append({"verb": verb, "role": None, "human_box": hb,
                                 "object_box": None, "score": float(value)})  # fmt: skip
            elif role in ("obj", "instr") and not math.isnan(float(value[4])):
                box = [float(v) for v in value[:4]]
                dets.append({"verb": verb, "role": role, "human_box": hb,
                             "object_box": None if all(map(math.isnan, box)) else box,
                             "score": float(value[4])})  # fmt: skip
    return list(out.items())


def add_agent_detections(detections: list[dict]) -> list[dict]:
    """Add agent-only scores derived from role detections with QPIC's mapping.

    For every (verb, human box, object box) with an explicit ``role``, the agent score is the
    largest of its role scores (hit/eat/cut: max of the two roles; other actions: the role
    score). Detections without ``role`` are left alone, so roleless actions (stand, walk, run,
    smile) are not counted twice. Returns the input list plus the new agent detections.
    """
    best: dict[tuple, dict] = {}
    for d in detections:
        if d.get("role") is None:
            continue
        ob = d.get("object_box")
        key = (d["verb"], tuple(d["human_box"]), None if ob is None else tuple(ob))
        if key not in best or d["score"] > best[key]["score"]:
            best[key] = {"verb": d["verb"], "role": None, "human_box": list(d["human_box"]),
                         "object_box": None, "score": d["score"]}  # fmt: skip
    return [*detections, *best.values()]
