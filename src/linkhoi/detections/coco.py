"""COCO detection results read for `FileDetections`.

Results are a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with a
COCO-style file (or mapping) whose `images` map ids to file names (and sizes) and whose
`categories` map ids to names (without `categories`, category ids are the label space's
official object ids). COCO boxes become [x, y, x + w, y + h].
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from linkhoi.detections.base import DetectionError, first_problem, position_by_id
from linkhoi.io import brief, is_number, is_size, load_json
from linkhoi.labels import LabelError, LabelSpace

# boxes (N, 4) float32, labels (N,) int64, scores (N,) float32
Record = tuple[np.ndarray, np.ndarray, np.ndarray]


def read_coco_results(
    results: list,
    categories: str | Path | Mapping[str, Any],
    label_space: LabelSpace,
    path: Path,
    sizes: dict[str, tuple[int, int]],
) -> dict[str, Record]:
    """The records of COCO `results` (read from `path`) by file name, in file order of first
    appearance. `categories` is the COCO-style file or its content; the image sizes it states
    are added to `sizes`."""
    cat_src: Path | str = "<categories>"
    if not isinstance(categories, Mapping):
        cat_src = Path(categories)
        categories = load_json(cat_src, DetectionError)
        if not isinstance(categories, Mapping):
            raise DetectionError("COCO-style file must be a mapping", cat_src, field="<top>")
    name_of_image = _image_names(categories, cat_src, sizes)
    cats = categories.get("categories")
    cat_name: dict[Any, Any] = {}
    if cats is not None:
        if not isinstance(cats, list):
            raise DetectionError("must be a list of {id, name}", cat_src, field="categories")
        for i, c in enumerate(cats):
            _check_entry(c, "name", "category needs id and name", cat_src, f"categories[{i}]")
            cat_name[c["id"]] = c["name"]
    cat_pos: dict[Any, int] = {}
    n = len(results)
    boxes = np.zeros((n, 4), dtype=np.float64)
    scores = np.zeros(n, dtype=np.float64)
    labels = np.zeros(n, dtype=np.int64)
    names: list[str] = []
    for k, r in enumerate(results):
        fld = f"[{k}]"
        if not isinstance(r, Mapping):
            raise DetectionError("result must be a mapping", path, field=fld)
        name = name_of_image.get(r.get("image_id"))
        if name is None:
            raise DetectionError(
                f"image_id {brief(r.get('image_id'))} is not in the COCO-style file {cat_src}",
                path,
                field=f"{fld}.image_id",
            )
        cid = r.get("category_id")
        if cid not in cat_pos:
            where = (path, name, f"{fld}.category_id")
            cat_pos[cid] = _category(cid, cat_name, cats is None, label_space, where)
        bbox, score = r.get("bbox"), r.get("score")
        if not (isinstance(bbox, list | tuple) and len(bbox) == 4 and all(map(is_number, bbox))):
            raise DetectionError(
                f"bbox must be 4 numbers [x, y, w, h], got {brief(bbox)}", path, name, f"{fld}.bbox"
            )
        if not is_number(score):
            raise DetectionError(
                f"score must be a number, got {brief(score)}", path, name, f"{fld}.score"
            )
        x, y, w, h = bbox
        boxes[k] = (x, y, x + w, y + h)
        scores[k], labels[k] = score, cat_pos[cid]
        names.append(name)
    wh = np.array([sizes.get(nm, (0, 0)) for nm in names], dtype=np.float64)
    problem = first_problem(boxes, scores, wh.reshape(-1, 2))
    if problem is not None:
        k, msg, key = problem
        raise DetectionError(msg, path, names[k], f"[{k}].{'bbox' if key == 'box' else key}")
    groups: dict[str, list[int]] = {}  # file order of first appearance
    for k, name in enumerate(names):
        groups.setdefault(name, []).append(k)
    records = {}
    for name, rows in groups.items():
        idx = np.array(rows, dtype=np.int64)
        records[name] = (
            boxes[idx].astype(np.float32),
            labels[idx],
            scores[idx].astype(np.float32),
        )
    return records


def _check_entry(entry: Any, text_key: str, message: str, src: Path | str, field: str) -> None:
    """An `images` / `categories` entry: a mapping with an `id` and a string `text_key`."""
    if (
        not isinstance(entry, Mapping)
        or "id" not in entry
        or not isinstance(entry.get(text_key), str)
    ):
        raise DetectionError(message, src, field=field)


def _image_names(
    categories: Mapping[str, Any], src: Path | str, sizes: dict[str, tuple[int, int]]
) -> dict[Any, str]:
    """Image id -> file name from the `images` list; the sizes it states go to `sizes`."""
    imgs = categories.get("images")
    if not isinstance(imgs, list):
        raise DetectionError("needs an `images` list (id, file_name)", src, field="images")
    name_of_image: dict[Any, str] = {}
    seen: set[str] = set()
    for i, im in enumerate(imgs):
        _check_entry(im, "file_name", "image entry needs id and file_name", src, f"images[{i}]")
        name = im["file_name"]
        if name in seen:
            raise DetectionError("duplicate file name", src, name, f"images[{i}].file_name")
        if im["id"] in name_of_image:
            raise DetectionError(
                f"duplicate image id {brief(im['id'])}", src, name, f"images[{i}].id"
            )
        seen.add(name)
        name_of_image[im["id"]] = name
        if "width" in im or "height" in im:
            w, h = im.get("width"), im.get("height")
            if not (is_size(w) and is_size(h)):
                raise DetectionError(
                    f"bad width/height {brief(w)}/{brief(h)}", src, name, f"images[{i}].width"
                )
            sizes[name] = (int(w), int(h))
    return name_of_image


def _category(
    cid: Any,
    cat_name: dict[Any, str],
    use_ids: bool,
    label_space: LabelSpace,
    where: tuple[Path, str, str],
) -> int:
    """The object position of COCO category `cid`; `where` is (file, image, field)."""
    if use_ids:  # no `categories`: category ids are the label space's official ids
        return position_by_id(label_space, cid, *where)
    if cid not in cat_name:
        raise DetectionError(f"unknown category id {brief(cid)}", *where)
    try:
        return label_space.object_position(cat_name[cid])
    except LabelError as err:
        raise DetectionError(f"category {cid!r} ({cat_name[cid]!r}): {err}", *where) from None
