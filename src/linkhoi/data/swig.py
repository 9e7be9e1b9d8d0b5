"""SWiG-HOI reader: ``swig_{train,dev,test,trainval}_1000.json`` (CHOIR / THID layout).

Boxes are absolute [x1, y1, x2, y2] pixels kept as stored; ``category_id`` 0..999 is the
object id; a pair's interaction is (action_id, category of the object box), which must be
one of the 14,130 interactions (docs/evaluation.md, SWiG-HOI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linkhoi.data.sample import (
    DatasetError,
    HOIPair,
    Sample,
    box_indices,
    entries,
    finish,
    image_records,
    load_json,
    parse_annotations,
    parse_id,
    parse_index,
    parse_optional_index,
    parse_size,
    resolve_label_space,
)


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
    for rec, name in image_records(data, path):
        width, height = parse_size(rec, path, name)
        for key, value in (("width", width), ("height", height)):
            if value <= 0:
                raise DatasetError(
                    f"expected a positive integer, got {rec.get(key)!r}", path, name, key
                )
        image_id = parse_optional_index(rec.get("img_id"), path, name, "img_id")
        boxes, labels = parse_annotations(rec, "box_annotations", space, path, name)
        pairs = []
        for where, hoi in entries(rec, "hoi_annotations", path, name):
            keys = ("subject_id", "object_id")
            sub, obj = box_indices(hoi, keys, len(boxes), path, name, where)
            action = parse_index(hoi.get("action_id"), path, name, where + ".action_id")
            verb = parse_id(
                action,
                space.verb_position_by_id,
                path,
                name,
                where + ".action_id",
                "unknown action id {id}",
            )
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
        image_path = None if root is None else root / name
        samples.append(
            Sample(name, image_path, width, height, boxes, labels, pairs, image_id=image_id)
        )
    return finish(samples, space, path)
