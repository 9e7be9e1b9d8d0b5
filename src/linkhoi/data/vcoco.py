"""V-COCO reader: ``vcoco_{split}.json`` + COCO instances + ``vcoco_{split}.ids``.

Builds the ground truth exactly as the official evaluator does
(docs/evaluation.md, V-COCO): images in ids-file order; every COCO annotation
of the image in instances-file order, ``ignore == 1`` dropped; boxes ``x2 = x + max(0, w-1)``
clipped to the image; only ``area > 0``, ``x2 > x1``, ``y2 > y1`` kept. Persons that are not
V-COCO persons (crowd ones included) are marked ``unannotated``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.data.sample import (
    DatasetError,
    HOIPair,
    Sample,
    finish,
    load_json,
    parse_box,
    parse_id,
    parse_index,
    parse_size,
    resolve_label_space,
)
from linkhoi.io import is_number, read_limited
from linkhoi.labels.labelspace import LabelError


def read_ids(path: str | Path) -> list[int]:
    """COCO image ids, one per line (blank lines ignored), each id once."""
    path = Path(path)
    try:
        raw = read_limited(path, DatasetError)
    except OSError as err:
        raise DatasetError(f"cannot read ids file ({err.strerror})", path) from None
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetError(f"not UTF-8 text ({err.reason})", path, field=f"line {line}") from None
    ids: list[int] = []
    first_line: dict[int, int] = {}
    for n, line in enumerate(lines, 1):
        if line.strip():
            iid = parse_index(line, path, None, f"line {n}")
            if iid in first_line:
                raise DatasetError(
                    f"duplicate image id {iid} (also on line {first_line[iid]})",
                    path,
                    field=f"line {n}",
                )
            first_line[iid] = n
            ids.append(iid)
    return ids


def _parse_actions(data: object, path: Path, space: Any) -> tuple[list[dict], list[int]]:
    """Per action: its dict, the class position of each non-agent role; persons (ann ids)."""
    if not isinstance(data, list) or not data:
        raise DatasetError("expected a JSON list of per-action dicts", path, field="<root>")
    actions, persons = [], None
    for a, entry in enumerate(data):
        where = f"[{a}]"
        if not isinstance(entry, dict):
            raise DatasetError("expected an object", path, field=where)
        for key in ("action_name", "role_name", "image_id", "ann_id", "label", "role_object_id"):
            if key not in entry:
                raise DatasetError("missing key", path, field=f"{where}.{key}")
            if key != "action_name" and not isinstance(entry[key], list):
                raise DatasetError(
                    f"expected a list, got {entry[key]!r}", path, field=f"{where}.{key}"
                )
        name, roles = entry["action_name"], entry["role_name"]
        if not roles or not all(isinstance(r, str) for r in roles):
            raise DatasetError(
                f"expected a list of role names ('agent' first), got {roles!r}",
                path,
                field=f"{where}.role_name",
            )
        try:
            verb = space.verb_position(name)
            positions = (
                [space.hoi_position(verb, None, r) for r in roles[1:]]
                if len(roles) > 1
                else [space.hoi_position(verb, None, None)]
            )
        except LabelError as err:
            raise DatasetError(str(err), path, field=f"{where}.action_name") from None
        if any(p is None for p in positions):
            raise DatasetError(
                f"roles {roles} of {name!r} are not all in label space {space.name!r}",
                path,
                field=f"{where}.role_name",
            )
        ann_ids = [parse_index(v, path, None, f"{where}.ann_id") for v in entry["ann_id"]]
        n = len(ann_ids)
        if len(entry["image_id"]) != n or len(entry["label"]) != n:
            raise DatasetError("image_id, ann_id and label differ in length", path, field=where)
        if len(entry["role_object_id"]) != n * len(roles):
            raise DatasetError(
                f"expected {n} x {len(roles)} role object ids (role-major), "
                f"got {len(entry['role_object_id'])}",
                path,
                field=f"{where}.role_object_id",
            )
        if persons is None:
            persons = ann_ids
        actions.append({"entry": entry, "roles": roles, "positions": positions, "ann_ids": ann_ids})
    return actions, persons or []


def read_vcoco(
    vcoco_json: str | Path,
    instances_json: str | Path,
    ids_file: str | Path,
    image_root: str | Path | None = None,
    label_space: Any = None,
    sort_ids: bool = False,
) -> list[Sample]:
    """Read one V-COCO split as the official evaluator sees it.

    The ids file must be sorted and equal the image ids of action 0, as the official code
    asserts; ``sort_ids=True`` sorts it first (iCAN's fix for the unsorted trainval/all files).
    Pairs: for every V-COCO person and every action-role class with label 1,
    ``HOIPair(person, role object or None, class position)``.
    """
    vcoco_json, instances_json = Path(vcoco_json), Path(instances_json)
    space = resolve_label_space(label_space, "vcoco")
    root = None if image_root is None else Path(image_root)
    actions, _ = _parse_actions(load_json(vcoco_json), vcoco_json, space)
    ids = read_ids(ids_file)
    if sort_ids:
        ids = sorted(ids)
    first = actions[0]["entry"]
    vcoco_images = sorted(
        {parse_index(v, vcoco_json, None, "[0].image_id") for v in first["image_id"]}
    )
    if ids != sorted(ids):
        raise DatasetError(
            "image ids are not sorted ascending, as the official evaluator requires (the "
            "trainval and all files are not); sort them on reading: `linkhoi eval vcoco "
            "--sort-ids`, `sort_ids: true` under data.train / data.val of a training config, "
            "or read_vcoco(..., sort_ids=True)",
            ids_file,
            field="ids",
        )
    if ids != vcoco_images:
        missing = sorted(set(vcoco_images) - set(ids))[:5]
        extra = sorted(set(ids) - set(vcoco_images))[:5]
        raise DatasetError(
            f"ids differ from the image ids of {first['action_name']!r} in {vcoco_json.name} "
            f"(in the json only: {missing}..., in the ids file only: {extra}...)",
            ids_file,
            field="ids",
        )

    # label / role objects per (ann id, action index)
    person_info: dict[int, list[tuple[int, list[int]]]] = {}
    for a, act in enumerate(actions):
        entry, n = act["entry"], len(act["ann_ids"])
        for p, ann in enumerate(act["ann_ids"]):
            label = parse_index(entry["label"][p], vcoco_json, None, f"[{a}].label")
            roles = [
                parse_index(
                    entry["role_object_id"][k * n + p], vcoco_json, None, f"[{a}].role_object_id"
                )
                for k in range(1, len(act["roles"]))
            ]
            person_info.setdefault(ann, [None] * len(actions))[a] = (label, roles)

    images, anns_by_image = _read_instances(instances_json)

    person_pos = space.object_position(space.human)
    samples = []
    for iid in ids:
        if iid not in images:
            raise DatasetError("image id not in the instances file", instances_json, iid, "images")
        img = images[iid]
        name = str(img.get("file_name", f"{iid:012d}.jpg"))
        width, height = parse_size(img, instances_json, name, "images.")
        boxes, labels, ann_ids = [], [], []
        for k, aid, ann in anns_by_image.get(iid, []):
            where = f"annotations[{k}]"
            if ann.get("ignore", 0) == 1:
                continue
            x, y, w, h = parse_box_xywh(ann.get("bbox"), instances_json, name, where + ".bbox")
            x1, y1 = x, y
            x2, y2 = x1 + max(0.0, w - 1.0), y1 + max(0.0, h - 1.0)
            x1, x2 = min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)
            y1, y2 = min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)
            area = ann.get("area", 0)
            if not is_number(area):
                raise DatasetError(
                    f"expected a number, got {area!r}", instances_json, name, where + ".area"
                )
            if not (area > 0 and x2 > x1 and y2 > y1):
                continue
            labels.append(
                parse_id(
                    ann.get("category_id"),
                    space.object_position_by_id,
                    instances_json,
                    name,
                    where + ".category_id",
                    "unknown COCO category id {id}",
                )
            )
            boxes.append([x1, y1, x2, y2])
            ann_ids.append(aid)
        index = {a: i for i, a in enumerate(ann_ids)}
        unannotated = np.array(
            [
                lab == person_pos and a not in person_info
                for a, lab in zip(ann_ids, labels, strict=True)
            ],
            dtype=bool,
        )
        pairs = []
        for i, ann in enumerate(ann_ids):
            if ann not in person_info:
                continue
            for a, act in enumerate(actions):
                info = person_info[ann][a]
                if info is None:
                    raise DatasetError(
                        f"person {ann} is missing from action {act['entry']['action_name']!r}",
                        vcoco_json,
                        name,
                        f"[{a}].ann_id",
                    )
                label, role_objects = info
                if label != 1:
                    continue
                if not role_objects:  # agent-only action
                    pairs.append(HOIPair(i, None, act["positions"][0]))
                    continue
                for r, obj_ann in enumerate(role_objects):
                    if obj_ann != 0 and obj_ann not in index:
                        raise DatasetError(
                            f"role object annotation {obj_ann} of person {ann} "
                            f"({act['entry']['action_name']}-{act['roles'][r + 1]}) is not a kept "
                            "annotation of this image",
                            vcoco_json,
                            name,
                            f"[{a}].role_object_id",
                        )
                    obj = None if obj_ann == 0 else index[obj_ann]
                    pairs.append(HOIPair(i, obj, act["positions"][r]))
        image_path = _image_path(root, name)
        samples.append(
            Sample(name, image_path, width, height, boxes, labels, pairs, unannotated, iid)
        )
    return finish(samples, space, instances_json)


def _read_instances(path: Path) -> tuple[dict[int, dict], dict[int, list[tuple[int, int, dict]]]]:
    """The COCO instances file: image id -> image record, and image id -> [(index in the
    file, annotation id, annotation)] in file order. Image and annotation ids must be unique.
    """
    coco = load_json(path)
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise DatasetError("expected a COCO instances file", path, field="<root>")
    for key in ("images", "annotations"):
        if not isinstance(coco[key], list):
            raise DatasetError(f"expected a list, got {coco[key]!r:.40}", path, field=key)
    images: dict[int, dict] = {}
    first: dict[int, int] = {}
    for k, img in enumerate(coco["images"]):
        if not isinstance(img, dict):
            raise DatasetError("expected an object", path, field=f"images[{k}]")
        iid = parse_index(img.get("id"), path, None, f"images[{k}].id")
        if iid in images:
            raise DatasetError(
                f"duplicate image id {iid} (also images[{first[iid]}])",
                path,
                field=f"images[{k}].id",
            )
        name = img.get("file_name")
        if name is not None and not (isinstance(name, str) and name):
            raise DatasetError(
                f"expected a file name, got {name!r}", path, iid, f"images[{k}].file_name"
            )
        images[iid], first[iid] = img, k
    anns_by_image: dict[int, list[tuple[int, int, dict]]] = {}
    first = {}
    for k, ann in enumerate(coco["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict):
            raise DatasetError("expected an object", path, field=where)
        iid = parse_index(ann.get("image_id"), path, None, where + ".image_id")
        aid = parse_index(ann.get("id"), path, None, where + ".id")
        if aid in first:
            raise DatasetError(
                f"duplicate annotation id {aid} (also annotations[{first[aid]}])",
                path,
                field=where + ".id",
            )
        first[aid] = k
        anns_by_image.setdefault(iid, []).append((k, aid, ann))
    return images, anns_by_image


def parse_box_xywh(value: object, file: Path, image: str, field: str) -> tuple[float, ...]:
    """A COCO [x, y, w, h] box: four finite numbers with w, h >= 0."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise DatasetError(f"expected [x, y, w, h], got {value!r}", file, image, field)
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DatasetError(f"box has a non-numeric value: {value!r}", file, image, field) from None
    parse_box([x, y, x + w, y + h], file, image, field)  # finite, w >= 0, h >= 0
    return x, y, w, h


def _image_path(root: Path | None, name: str) -> Path | None:
    """root/name, or root/{train2014,val2014}/name when the COCO name says so and it exists."""
    if root is None:
        return None
    for sub in ("train2014", "val2014"):
        if sub in name and (root / sub / name).is_file():
            return root / sub / name
    return root / name
