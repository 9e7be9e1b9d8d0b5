"""SWiG-HOI reader: ``swig_{train,dev,test,trainval}_1000.json`` (CHOIR / THID layout).

Boxes are absolute [x1, y1, x2, y2] pixels kept as stored; ``category_id`` 0..999 is the
object id; a pair's interaction is (action_id, category of the object box), which must be
one of the 14,130 interactions (shared/docs/eval-vcoco-swig.md §B.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.data.sample import (
    DatasetError,
    HOIPair,
    Sample,
    check_unique_names,
    load_json,
    parse_box,
    parse_index,
    resolve_label_space,
    validate_sample,
)
from linkhoi.labels.labelspace import LabelError


def read_swig(
    path: str | Path, image_root: str | Path | None = None, label_space: Any = None
) -> list[Sample]:
    """Read a SWiG-HOI json; image_id is the file's ``img_id``."""
    path = Path(path)
    space = resolve_label_space(label_space, "swig_hoi")
    root = None if image_root is None else Path(image_root)
    data = load_json(path)
    if not isinstance(data, list):
        raise DatasetError("expected a JSON list of image records", path, field="<root>")
    samples = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
            raise DatasetError("record has no string 'file_name'", path, f"#{i}", "file_name")
        name = rec["file_name"]
        width = parse_index(rec.get("width"), path, name, "width")
        height = parse_index(rec.get("height"), path, name, "height")
        image_id = rec.get("img_id")
        image_id = None if image_id is None else parse_index(image_id, path, name, "img_id")
        boxes, labels = [], []
        for j, ann in enumerate(rec.get("box_annotations") or []):
            where = f"box_annotations[{j}]"
            if not isinstance(ann, dict):
                raise DatasetError("expected an object", path, name, where)
            boxes.append(parse_box(ann.get("bbox"), path, name, where + ".bbox"))
            cat = parse_index(ann.get("category_id"), path, name, where + ".category_id")
            try:
                labels.append(space.object_position_by_id(cat))
            except LabelError:
                raise DatasetError(
                    f"unknown object category id {cat}", path, name, where + ".category_id"
                ) from None
        pairs = []
        for k, hoi in enumerate(rec.get("hoi_annotations") or []):
            where = f"hoi_annotations[{k}]"
            if not isinstance(hoi, dict):
                raise DatasetError("expected an object", path, name, where)
            sub = parse_index(hoi.get("subject_id"), path, name, where + ".subject_id")
            obj = parse_index(hoi.get("object_id"), path, name, where + ".object_id")
            for value, fld in ((sub, "subject_id"), (obj, "object_id")):
                if not 0 <= value < len(boxes):
                    raise DatasetError(
                        f"index {value} out of range ({len(boxes)} boxes)",
                        path,
                        name,
                        f"{where}.{fld}",
                    )
            action = parse_index(hoi.get("action_id"), path, name, where + ".action_id")
            try:
                verb = space.verb_position_by_id(action)
            except LabelError:
                raise DatasetError(
                    f"unknown action id {action}", path, name, where + ".action_id"
                ) from None
            position = space.hoi_position(verb, labels[obj])
            if position is None:
                raise DatasetError(
                    f"(action {action} {space.verbs[verb]!r}, object "
                    f"{space.object_ids[labels[obj]]} {space.objects[labels[obj]]!r}) is not one "
                    f"of the {len(space.hois)} interactions of {space.name!r}",
                    path,
                    name,
                    where + ".action_id",
                )
            pairs.append(HOIPair(sub, obj, position))
        samples.append(
            Sample(
                file_name=name,
                image_path=None if root is None else root / name,
                width=width,
                height=height,
                boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
                pairs=pairs,
                unannotated=np.zeros(len(boxes), dtype=bool),
                image_id=image_id,
            )
        )
    for sample in samples:
        validate_sample(sample, len(space.objects), len(space.hois), path)
    check_unique_names(samples, path)
    return samples
