"""HICO-DET readers: PPDM/CDN/GEN-VLKT json, the official anno_bbox.mat, fredzzhang's json.

All three keep the official box convention (1-based inclusive pixel indices) and yield the
same samples for the same images (docs/datasets.md, HICO-DET). A verb that is not valid
for its object in the label space raises DatasetError by default; ``on_invalid="warn"``
skips that pair with a warning instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from linkhoi.data.hico_fast import ppdm_samples
from linkhoi.data.images import image_size
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
    parse_box,
    parse_id,
    parse_index,
    parse_size,
    resolve_label_space,
)
from linkhoi.matfile import check_mat_size

ON_INVALID = ("error", "warn")


class InvalidHOIWarning(UserWarning):
    """A pair whose verb is not valid for its object was skipped (on_invalid="warn")."""


def _invalid(message: str, file: Path, image: str, field: str, on_invalid: str) -> None:
    if on_invalid == "warn":
        warnings.warn(
            str(DatasetError(message + "; pair skipped", file, image, field)),
            InvalidHOIWarning,
            stacklevel=3,
        )
        return
    raise DatasetError(message + " (pass on_invalid='warn' to skip such pairs)", file, image, field)


def _size(record: dict, file_name: str, image_root: Path | None, path: Path) -> tuple[int, int]:
    """(width, height) from the record, else from the image header, else (0, 0) = unknown."""
    if "width" in record and "height" in record:
        return parse_size(record, path, file_name)
    if image_root is not None and (image_root / file_name).is_file():
        return image_size(image_root / file_name)
    return 0, 0


def _progress(records: Any, path: Path) -> Any:
    """A progress bar for full-size files (thousands of images); silent for small ones."""
    return tqdm(
        records, desc=f"reading {path.name}", unit="img", leave=False, disable=len(records) < 5000
    )


def _setup(label_space: Any, image_root: Any, on_invalid: str = "error") -> tuple[Any, Any, int]:
    """(label space, image root or None, object position of people) after checking on_invalid."""
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    space = resolve_label_space(label_space, "hico_det")
    root = None if image_root is None else Path(image_root)
    return space, root, space.object_position(space.human)


def read_hico_json(
    path: str | Path,
    image_root: str | Path | None = None,
    label_space: Any = None,
    on_invalid: str = "error",
) -> list[Sample]:
    """Read ``trainval_hico.json`` / ``test_hico.json`` (PPDM/CDN/GEN-VLKT layout)."""
    path = Path(path)
    return _from_ppdm(load_json(path), path, image_root, label_space, on_invalid)


def _from_ppdm(
    data: object, path: Path, image_root: Any, label_space: Any, on_invalid: str
) -> list[Sample]:
    space, root, human = _setup(label_space, image_root, on_invalid)
    if not isinstance(data, list):
        raise DatasetError("expected a JSON list of image records", path, field="<root>")
    fast = ppdm_samples(data, path, space, root, human, lambda r, n: _size(r, n, root, path))
    if fast is not None:  # the plain case, checked on arrays; else the per-record checks
        return finish(fast, space, path)
    samples = []
    for rec, name in image_records(_progress(data, path), path):
        unknown = "unknown object category id {id} ({err})"
        boxes, labels = parse_annotations(rec, "annotations", space, path, name, unknown)
        pairs = []
        for where, hoi in entries(rec, "hoi_annotation", path, name):
            keys = ("subject_id", "object_id")
            sub, obj = box_indices(hoi, keys, len(boxes), path, name, where, noun="annotations")
            if labels[sub] != human:
                raise DatasetError("the subject is not a person", path, name, where + ".subject_id")
            verb = parse_id(
                hoi.get("category_id"),
                space.verb_position_by_id,
                path,
                name,
                where + ".category_id",
                "unknown verb id {id}",
            )
            position = space.hoi_position(verb, labels[obj])
            if position is None:
                _invalid(
                    f"verb {space.verbs[verb]!r} is not valid for object "
                    f"{space.objects[labels[obj]]!r} in label space {space.name!r}",
                    path,
                    name,
                    where + ".category_id",
                    on_invalid,
                )
                continue
            if "hoi_category_id" in hoi:
                stated = parse_index(hoi["hoi_category_id"], path, name, where + ".hoi_category_id")
                if stated != space.hois[position].id:
                    _invalid(
                        f"hoi_category_id {stated} disagrees with (verb, object) -> "
                        f"HOI {space.hois[position].id}",
                        path,
                        name,
                        where + ".hoi_category_id",
                        on_invalid,
                    )
                    continue
            pairs.append(HOIPair(sub, obj, position))
        width, height = _size(rec, name, root, path)
        samples.append(_sample(name, root, width, height, boxes, labels, pairs))
    return finish(samples, space, path)


def _sample(
    name: str,
    root: Path | None,
    width: int,
    height: int,
    boxes: list,
    labels: list,
    pairs: list[HOIPair],
) -> Sample:
    image_path = None if root is None else root / name
    return Sample(name, image_path, int(width), int(height), boxes, labels, pairs)


def _mat_box(struct: Any, path: Path, name: str, field: str) -> list[float]:
    try:
        values = [float(np.asarray(getattr(struct, k)).item()) for k in ("x1", "y1", "x2", "y2")]
    except (AttributeError, ValueError, TypeError):
        raise DatasetError("expected a struct with x1, y1, x2, y2", path, name, field) from None
    return parse_box(values, path, name, field)


def read_hico_mat(
    path: str | Path,
    split: str = "test",
    image_root: str | Path | None = None,
    label_space: Any = None,
) -> list[Sample]:
    """Read the official ``anno_bbox.mat`` (``bbox_test`` or ``bbox_train``).

    Invisible HOI entries (invis=1) are skipped. The boxes of one ``hoi(j)`` entry are added
    in connection order, each once inside the entry, never merged across entries
    (docs/datasets.md, HICO-DET), so the result equals :func:`read_hico_json` on the converted json.
    """
    import scipy.io

    path = Path(path)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    key = f"bbox_{split}"
    check_mat_size(path, DatasetError)
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True, variable_names=[key])
    except FileNotFoundError:
        raise DatasetError("file not found", path) from None
    except Exception as err:  # scipy raises several unrelated types on corrupt files
        raise DatasetError(f"not a readable MATLAB file ({err})", path) from None
    if key not in mat:
        raise DatasetError(f"variable {key!r} not found", path, field=key)
    space, root, human = _setup(label_space, image_root)
    samples = []
    for i, rec in enumerate(_progress(np.atleast_1d(mat[key]), path)):
        try:
            name = str(rec.filename)
        except AttributeError:
            raise DatasetError(
                "entry has no filename", path, f"#{i + 1}", f"{key}.filename"
            ) from None
        try:
            width = int(np.asarray(rec.size.width).item())
            height = int(np.asarray(rec.size.height).item())
        except (AttributeError, ValueError):
            width, height = 0, 0
        boxes: list[list[float]] = []
        labels: list[int] = []
        pairs: list[HOIPair] = []
        entries = np.atleast_1d(getattr(rec, "hoi", np.zeros(0)))
        for j, entry in enumerate(entries):
            where = f"hoi({j + 1})"
            if int(np.asarray(getattr(entry, "invis", 0)).sum()) == 1:
                continue
            position = parse_id(
                np.asarray(entry.id).item(),
                space.hoi_position_by_id,
                path,
                name,
                where + ".id",
                "unknown HOI id {id}",
            )
            obj_label = space.object_position(space.hois[position].object)
            humans = np.atleast_1d(entry.bboxhuman)
            objects = np.atleast_1d(entry.bboxobject)
            conn = np.asarray(entry.connection, dtype=np.float64).reshape(-1, 2)
            local_h: dict[int, int] = {}
            local_o: dict[int, int] = {}
            for r, (hk, ok) in enumerate(conn.astype(np.int64)):
                for k, items, local, label, fld in (
                    (hk, humans, local_h, human, "bboxhuman"),
                    (ok, objects, local_o, obj_label, "bboxobject"),
                ):
                    if not 1 <= k <= len(items):
                        raise DatasetError(
                            f"1-based index {k} out of range ({len(items)} {fld} boxes)",
                            path,
                            name,
                            f"{where}.connection({r + 1})",
                        )
                    if k not in local:
                        local[k] = len(boxes)
                        boxes.append(_mat_box(items[k - 1], path, name, f"{where}.{fld}({k})"))
                        labels.append(label)
                pairs.append(HOIPair(local_h[hk], local_o[ok], position))
        samples.append(_sample(name, root, width, height, boxes, labels, pairs))
    return finish(samples, space, path)


def read_hico_instances(
    path: str | Path,
    image_root: str | Path | None = None,
    label_space: Any = None,
    on_invalid: str = "error",
) -> list[Sample]:
    """Read fredzzhang's ``instances_{train,test}2015.json`` (0-based indices, HICO order).

    Boxes repeat once per pair in that file; exact duplicates (same box, same label) within an
    image are merged so that pairs point at shared boxes. Images listed in ``empty`` are kept.
    """
    path = Path(path)
    return _from_instances(load_json(path), path, image_root, label_space, on_invalid)


def _name_map(names: Any, space_names: tuple[str, ...], path: Path, fld: str) -> list[int]:
    """File index -> label-space position, matched by name (spaces and underscores alike)."""
    lookup = {n.replace(" ", "_"): p for p, n in enumerate(space_names)}
    if names is None:
        return list(range(len(space_names)))
    if not isinstance(names, list):
        raise DatasetError("expected a list of names", path, field=fld)
    out = []
    for k, n in enumerate(names):
        if str(n).replace(" ", "_") not in lookup:
            raise DatasetError(f"unknown name {n!r}", path, field=f"{fld}[{k}]")
        out.append(lookup[str(n).replace(" ", "_")])
    return out


def _add_box(index: dict, boxes: list, labels: list, box: list[float], label: int) -> int:
    """Index of (box, label) in the image, appending it the first time it is seen."""
    key = (*box, label)
    if key not in index:
        index[key] = len(boxes)
        boxes.append(box)
        labels.append(label)
    return index[key]


def _from_instances(
    data: object, path: Path, image_root: Any, label_space: Any, on_invalid: str
) -> list[Sample]:
    space, root, human = _setup(label_space, image_root, on_invalid)
    if not isinstance(data, dict) or not all(k in data for k in ("annotation", "filenames")):
        raise DatasetError("expected keys 'annotation' and 'filenames'", path, field="<root>")
    names, annos = data["filenames"], data["annotation"]
    sizes = data.get("size") or [[0, 0]] * len(names)
    if not (len(names) == len(annos) == len(sizes)):
        raise DatasetError("filenames, annotation and size differ in length", path, field="size")
    obj_map = _name_map(data.get("objects"), space.objects, path, "objects")
    verb_map = _name_map(data.get("verbs"), space.verbs, path, "verbs")
    samples = []
    for i, (name, anno) in enumerate(zip(names, annos, strict=True)):
        if not isinstance(name, str) or not isinstance(anno, dict):
            raise DatasetError("bad file name or annotation entry", path, f"#{i}", "annotation")
        fields = {
            k: list(anno.get(k) or []) for k in ("boxes_h", "boxes_o", "hoi", "object", "verb")
        }
        n = len(fields["hoi"])
        for k, v in fields.items():
            if len(v) != n:
                raise DatasetError(f"{len(v)} entries where 'hoi' has {n}", path, name, k)
        index: dict[tuple, int] = {}
        boxes, labels, pairs = [], [], []

        for k in range(n):
            obj_idx = parse_index(fields["object"][k], path, name, f"object[{k}]")
            verb_idx = parse_index(fields["verb"][k], path, name, f"verb[{k}]")
            if not 0 <= obj_idx < len(obj_map):
                raise DatasetError(
                    f"object index {obj_idx} out of range", path, name, f"object[{k}]"
                )
            if not 0 <= verb_idx < len(verb_map):
                raise DatasetError(f"verb index {verb_idx} out of range", path, name, f"verb[{k}]")
            obj_label, verb = obj_map[obj_idx], verb_map[verb_idx]
            hbox = parse_box(fields["boxes_h"][k], path, name, f"boxes_h[{k}]")
            obox = parse_box(fields["boxes_o"][k], path, name, f"boxes_o[{k}]")
            position = space.hoi_position(verb, obj_label)
            if position is None:
                _invalid(
                    f"verb {space.verbs[verb]!r} is not valid for object "
                    f"{space.objects[obj_label]!r} in label space {space.name!r}",
                    path,
                    name,
                    f"verb[{k}]",
                    on_invalid,
                )
                continue
            stated = parse_index(fields["hoi"][k], path, name, f"hoi[{k}]")
            if stated + 1 != space.hois[position].id:
                _invalid(
                    f"hoi {stated} (0-based) disagrees with (verb, object) -> "
                    f"HOI {space.hois[position].id - 1}",
                    path,
                    name,
                    f"hoi[{k}]",
                    on_invalid,
                )
                continue
            h, o = (
                _add_box(index, boxes, labels, hbox, human),
                _add_box(index, boxes, labels, obox, obj_label),
            )
            pairs.append(HOIPair(h, o, position))
        size = sizes[i]
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise DatasetError(f"expected [width, height], got {size!r}", path, name, "size")
        width = parse_index(size[0], path, name, "size[0]")
        height = parse_index(size[1], path, name, "size[1]")
        samples.append(_sample(name, root, width, height, boxes, labels, pairs))
    return finish(samples, space, path)


def read_hico(
    path: str | Path,
    split: str = "test",
    image_root: str | Path | None = None,
    label_space: Any = None,
    on_invalid: str = "error",
) -> list[Sample]:
    """Read any HICO-DET annotation file, detecting its format from the content.

    ``.mat`` -> official anno_bbox.mat (``split`` selects bbox_train/bbox_test); a JSON list ->
    PPDM/GEN-VLKT; a JSON object with ``annotation``/``filenames`` -> fredzzhang's instances;
    a ``linkhoi-annotations`` JSON -> the project's generic format.
    """
    path = Path(path)
    if path.suffix.lower() == ".mat":
        return read_hico_mat(path, split, image_root, label_space)
    data = load_json(path)
    if isinstance(data, list):
        return _from_ppdm(data, path, image_root, label_space, on_invalid)
    if isinstance(data, dict) and "annotation" in data and "filenames" in data:
        return _from_instances(data, path, image_root, label_space, on_invalid)
    if isinstance(data, dict) and data.get("format") == "linkhoi-annotations":
        from linkhoi.data.generic import read_generic

        return read_generic(path, label_space, image_root=image_root)
    raise DatasetError("unrecognised HICO-DET annotation format", path, field="<root>")
