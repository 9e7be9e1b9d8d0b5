"""The project's own annotation json (custom datasets, the synthetic world).

Format (docs/internals.md, docs/datasets.md)::

    {"format": "linkhoi-annotations", "version": 1, "label_space": "synthetic",
     "image_root": "images",                      # optional, relative to this file
     "images": [{"file_name": "img_000001.png", "width": 320, "height": 256,
                 "image_id": 1,                   # optional
                 "boxes": [{"box": [x1, y1, x2, y2], "label": "person"}, ...],
                 "hois": [{"human": 0, "object": 1, "verb": "ride"}]}]}

Optional fields: per box ``label_id`` (official object id, used instead of the name when
given, e.g. SWiG's duplicated names) and ``unannotated`` (bool); per HOI ``role``
(V-COCO) and ``object: null`` (agent-only). ``label_space`` is a packaged name or a path to
a label-space file, relative to the json. ``width`` and ``height`` are positive integers;
both are left out when the size is unknown (read as 0). ``boxes`` and ``hois`` are lists
(``[]`` for none); a HOI's ``human`` is a box of the label space's human category.
"""

from __future__ import annotations

import json
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
    parse_box,
    parse_index,
    parse_optional_index,
    resolve_label_space,
)
from linkhoi.io import atomic_write_text, brief, is_size
from linkhoi.labels.labelspace import LabelError

FORMAT = "linkhoi-annotations"


def _label_space(value: Any, path: Path) -> Any:
    if isinstance(value, str) and value and (path.parent / value).is_file():
        value = str(path.parent / value)
    try:
        return resolve_label_space(value, "")
    except LabelError as err:
        raise DatasetError(
            f"cannot load label space {value!r}: {err}", path, field="label_space"
        ) from None


def _size(rec: dict, path: Path, name: str) -> tuple[int, int]:
    """(width, height): positive integers, or (0, 0) (unknown) when both are left out."""
    if "width" not in rec and "height" not in rec:
        return 0, 0
    size = []
    for key in ("width", "height"):
        value = rec.get(key)
        if not (is_size(value) and float(value).is_integer()):
            raise DatasetError(f"expected a positive integer, got {brief(value)}", path, name, key)
        size.append(int(value))
    return size[0], size[1]


def _entries(rec: dict, key: str, path: Path, name: str) -> Any:
    """`entries` of ``rec[key]``, which must be a list (``[]`` for none)."""
    if not isinstance(rec.get(key), list):
        got = "missing" if key not in rec else f"got {brief(rec[key])}"
        raise DatasetError(f"expected a list ([] for none), {got}", path, name, key)
    return entries(rec, key, path, name)


def read_generic(
    path: str | Path, label_space: Any = None, image_root: str | Path | None = None
) -> list[Sample]:
    """Read a ``linkhoi-annotations`` json.

    ``label_space`` (a LabelSpace, name or path) overrides the file's; ``image_root`` overrides
    the file's ``image_root`` (default: the json's folder).
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"not a {FORMAT!r} file", path, field="format")
    if data.get("version") != 1:
        raise DatasetError(
            f"unsupported version {brief(data.get('version'))}", path, field="version"
        )
    space = _label_space(label_space if label_space is not None else data.get("label_space"), path)
    if image_root is not None:
        root = Path(image_root)
    else:
        root = path.parent / str(data.get("image_root", "."))
    images = data.get("images")
    if not isinstance(images, list):
        raise DatasetError("expected a list", path, field="images")
    samples = []
    human_position = space.human_position
    for i, (rec, name) in enumerate(image_records(images, path)):
        if not name:
            raise DatasetError("empty 'file_name'", path, f"#{i}", "file_name")
        width, height = _size(rec, path, name)
        image_id = parse_optional_index(rec.get("image_id"), path, name, "image_id")
        boxes, labels, unannotated = [], [], []
        for where, box in _entries(rec, "boxes", path, name):
            boxes.append(parse_box(box.get("box"), path, name, where + ".box"))
            label = box.get("label")
            if box.get("label_id") is None and not isinstance(label, str):
                raise DatasetError(
                    f"expected an object name (a string), got {brief(label)}",
                    path,
                    name,
                    where + ".label",
                )
            try:
                if box.get("label_id") is not None:
                    lid = parse_index(box["label_id"], path, name, where + ".label_id")
                    labels.append(space.object_position_by_id(lid))
                else:
                    labels.append(space.object_position(label))
            except LabelError as err:
                raise DatasetError(
                    f"unknown category: {err}", path, name, where + ".label"
                ) from None
            flag = box.get("unannotated", False)
            if not isinstance(flag, bool):
                raise DatasetError(
                    f"expected true or false, got {brief(flag)}", path, name, where + ".unannotated"
                )
            unannotated.append(flag)
        pairs = []
        for where, hoi in _entries(rec, "hois", path, name):
            human, obj = box_indices(
                hoi, ("human", "object"), len(boxes), path, name, where, optional=("object",)
            )
            if labels[human] != human_position:
                raise DatasetError(
                    f"box {human} is a {space.objects[labels[human]]!r}, not a "
                    f"{space.human!r}: the human of an HOI must be a {space.human!r} box",
                    path,
                    name,
                    where + ".human",
                )
            try:
                verb = space.verb_position(hoi.get("verb"))
                position = space.hoi_position(
                    verb, None if obj is None else labels[obj], hoi.get("role")
                )
            except LabelError as err:
                raise DatasetError(str(err), path, name, where + ".verb") from None
            if position is None:
                target = "no object" if obj is None else f"object {space.objects[labels[obj]]!r}"
                raise DatasetError(
                    f"verb {space.verbs[verb]!r} with {target} is not an HOI class of "
                    f"label space {space.name!r}",
                    path,
                    name,
                    where + ".verb",
                )
            pairs.append(HOIPair(human, obj, position))
        samples.append(
            Sample(name, root / name, width, height, boxes, labels, pairs, unannotated, image_id)
        )
    return finish(samples, space, path)


def _common_root(samples: list[Sample]) -> Path | None:
    roots = set()
    for s in samples:
        if s.image_path is None:
            return None
        parts = Path(s.file_name).parts
        if s.image_path.parts[-len(parts) :] != parts:
            return None
        roots.add(Path(*s.image_path.parts[: -len(parts)]))
    return roots.pop() if len(roots) == 1 else None


def write_generic(path: str | Path, samples: list[Sample], label_space: Any) -> None:
    """Write samples as a ``linkhoi-annotations`` json (atomic: temp file, then rename).

    ``label_space`` is written by name when given as a string, else its ``name``. Pairs whose
    HOI class does not match the label of their object box cannot be expressed by verb name
    and raise DatasetError.
    """
    path = Path(path)
    space = resolve_label_space(label_space, "")
    names = _count(space.objects)
    images = []
    for s in samples:
        boxes = []
        for box, lab, un in zip(
            s.boxes.tolist(), s.labels.tolist(), s.unannotated.tolist(), strict=True
        ):
            entry: dict[str, Any] = {"box": box, "label": space.objects[lab]}
            if names[space.objects[lab]] > 1:
                entry["label_id"] = space.object_ids[lab]
            if un:
                entry["unannotated"] = True
            boxes.append(entry)
        hois = []
        for k, p in enumerate(s.pairs):
            cls = space.hois[p.hoi]
            if cls.object is not None and (
                p.object is None or space.objects[s.labels[p.object]] != cls.object
            ):
                raise DatasetError(
                    f"HOI {cls.name!r} does not match the label of its object box",
                    path,
                    s.file_name,
                    f"pairs[{k}]",
                )
            hoi: dict[str, Any] = {"human": p.human, "object": p.object, "verb": cls.verb}
            if cls.role is not None:
                hoi["role"] = cls.role
            hois.append(hoi)
        record: dict[str, Any] = {"file_name": s.file_name}
        if s.width > 0 and s.height > 0:  # 0: unknown size, left out
            record["width"], record["height"] = s.width, s.height
        if s.image_id is not None:
            record["image_id"] = s.image_id
        record["boxes"], record["hois"] = boxes, hois
        images.append(record)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "label_space": label_space if isinstance(label_space, str) else space.name,
    }
    root = _common_root(samples)
    if root is not None and root.absolute() != path.parent.absolute():
        doc["image_root"] = str(root.absolute())
    doc["images"] = images
    atomic_write_text(path, json.dumps(doc, indent=1))


def _count(names: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out
