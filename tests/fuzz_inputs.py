"""Inputs for tests/test_eval_fuzz.py: small random HICO-DET ground truths and triplet
files, and the hostile changes made to them (wrong types, NaN / 1e400 literals, huge ints,
duplicate keys, bad boxes, disagreeing names and ids, odd file names, json / jsonl / gz)."""

from __future__ import annotations

import copy
import gzip
import json
import random
from pathlib import Path
from typing import Any

from linkhoi.data.sample import Sample
from linkhoi.labels import load

HICO = load("hico_det")
# hostile values; "@@X@@" strings become the bare JSON literal X in the file text
HOSTILE: list[Any] = [
    True, False, None, "0.5", "", "ride", 3.0, -0.0, 0, 1, -1, 2**63, 10**30, 10**400,
    "@@NaN@@", "@@Infinity@@", "@@-Infinity@@", "@@1e400@@", "@@-0@@", "@@1E2@@", [], {},
    [1, 2, 3], [1, 2, 3, 4, 5], {"x1": 1}, [1, 2, 3, "4"], [1, True, 3, 4], [[1, 2], [3, 4]],
    [5, 5, 5, 5], [10, 10, 1, 1], [1, "@@NaN@@", 3, 4], [1, 2, "@@1e400@@", 4], [1, 2, 3, None],
    [1.5, 2, 10**30, 4], [-0.0, 0, 1, 1], "Ride", "hair drier", "person", "Ŝ/ü.jpg",
    "@@1e30@@", 2**64, 2**64 - 1, -(2**63) - 1, [1, 2, 2**64, 4], "@@DEEP@@", "obj", "instr",
]  # fmt: skip


CLASSES = random.Random(1).sample(range(len(HICO.hois)), 10)  # few: batches meet them again


def any_class(rng: random.Random) -> int:
    """A class position: mostly one of CLASSES, sometimes any of the 600."""
    return rng.choice(CLASSES) if rng.random() < 0.9 else rng.randrange(len(HICO.hois))


def literals(text: str) -> str:
    """Turn the ``"@@X@@"`` placeholders of a json.dumps text into bare literals / keys."""
    for lit in ("NaN", "Infinity", "-Infinity", "1e400", "-0", "1E2", "1e30"):
        text = text.replace(f'"@@{lit}@@"', lit)
    text = text.replace('"@@DEEP@@"', "[" * 1100 + "]" * 1100)  # beyond both parsers' depth
    for key in ("score", "human_box", "verb", "bbox", "category_id", "file_name"):
        text = text.replace(f'"@@dup_{key}@@"', f'"{key}"')  # a duplicated key
    return text


def gt_records(rng: random.Random, n_images: int = 6) -> list[dict]:
    """PPDM-layout records with valid pairs (some images empty)."""
    hoi_o, coco = HICO.hoi_object_positions(), HICO.object_ids
    records = []
    for i in range(n_images):
        anns: list[dict] = []
        hois: list[dict] = []
        for _ in range(rng.randint(0, 3)):
            c = rng.choice(CLASSES)
            for cat in (1, int(coco[hoi_o[c]])):
                x, y = rng.randint(1, 80), rng.randint(1, 80)
                anns.append({"bbox": [x, y, x + rng.randint(0, 40), y + rng.choice([0, 7.5, 30])],
                             "category_id": cat})  # fmt: skip
            h = {"subject_id": len(anns) - 2, "object_id": len(anns) - 1,
                 "category_id": HICO.hois[c].verb_id}  # fmt: skip
            if rng.random() < 0.3:
                h["hoi_category_id"] = HICO.hois[c].id
            hois.append(h)
        rec = {"file_name": f"HICO_test2015_{i + 1:08d}.jpg", "annotations": anns,
               "hoi_annotation": hois}  # fmt: skip
        if rng.random() < 0.3:
            rec.update(width=640, height=480)
        records.append(rec)
    return records


def mutate_gt(rng: random.Random, records: list[dict]) -> None:
    """One hostile change somewhere in the records (in one not broken before)."""
    keys = ("file_name", "annotations", "hoi_annotation")
    good = [r for r in records if type(r) is dict and all(type(r.get(k)) in (str, list) for k in keys)]  # fmt: skip
    rec = rng.choice(good or [{}])
    kind = rng.randrange(6)
    lst = rec["annotations"] if kind in (0, 2) and rng.random() < 0.5 else rec["hoi_annotation"]
    entry = rng.choice(lst) if lst else None
    if not rec or (kind < 3 and type(entry) is not dict):
        return
    if kind == 0:
        key = rng.choice(["bbox", "category_id", "@@dup_bbox@@", "@@dup_category_id@@",
                          "subject_id", "object_id", "hoi_category_id"])  # fmt: skip
        entry[key] = rng.choice([*HOSTILE, 0, 1, 2, 5, 91, 99, 600, 601, 2**64, 2**70])
    elif kind == 1:
        entry[rng.choice(["bbox", "category_id"])] = rng.choice(HOSTILE)
    elif kind == 2 and entry:
        entry.pop(rng.choice(sorted(entry)))
    elif kind == 3:
        key = rng.choice(["file_name", "annotations", "hoi_annotation", "width", "height"])
        rec[key] = rng.choice([*HOSTILE, good[0]["file_name"], "a/b.jpg", 0, 10**5])
    elif kind == 4:
        rec.pop(rng.choice(sorted(rec)))
    else:
        records.insert(rng.randrange(len(records) + 1), rng.choice([None, 7, [], {}, copy.deepcopy(rec)]))  # fmt: skip


def detection(rng: random.Random, hb: list, ob: list, c: int) -> dict:
    """A detection of class position ``c`` named in one of the format's ways (in a file of
    exact names only, from ``NAMES_ONLY[0]``: the named structs' path)."""
    h = HICO.hois[c]
    d: dict[str, Any] = {"human_box": hb, "object_box": ob, "score": rng.choice([0.1, 0.5, 0.9, 1])}
    style = 0 if NAMES_ONLY[0] else rng.randrange(5)
    if style in (0, 4):
        d.update(verb=h.verb, object=h.object)
    if style in (1, 4):
        d.update(verb_id=h.verb_id, object_id=h.object_id)
    if style in (2, 4):
        d["hoi_id"] = h.id
    if style == 3:  # names in another spelling (case, space for underscore)
        d.update(verb=h.verb.upper().replace("_", " "), object=h.object.replace("_", " "))
    return d


def predictions(rng: random.Random, samples: list[Sample]) -> list[dict]:
    """Per image ``{"file_name", "detections"}``: jittered ground truth and random pairs."""
    images, NAMES_ONLY[0] = [], rng.random() < 0.4
    for s in samples:
        dets = []
        for p in s.pairs:
            for _ in range(rng.randint(0, 2)):
                b = [[v + rng.choice([0, 0, 1, -3]) for v in s.boxes[k].tolist()] for k in (p.human, p.object)]  # fmt: skip
                b = [[min(x[0], x[2]), min(x[1], x[3]), max(x[0], x[2]), max(x[1], x[3])] for x in b]  # fmt: skip
                dets.append(detection(rng, *b, p.hoi if rng.random() < 0.8 else any_class(rng)))  # fmt: skip
        for _ in range(rng.randint(0, 2)):
            dets.append(detection(rng, [1, 1, 50, 50], rng.choice([None, [5, 5, 90, 60]]), any_class(rng)))  # fmt: skip
        rng.shuffle(dets)
        if rng.random() < 0.9:
            images.append({"file_name": s.file_name, "detections": dets})
    if rng.random() < 0.5:
        images.append({"file_name": "not_in_gt.jpg", "detections": [detection(rng, [1, 1, 2, 2], None, 0)]})  # fmt: skip
    rng.shuffle(images)
    return images


NAMES_ONLY = [False]
DET_KEYS = ["human_box", "object_box", "score", "verb", "object", "verb_id", "object_id",
            "hoi_id", "role", "scor", "@@dup_score@@", "@@dup_human_box@@", "@@dup_verb@@"]  # fmt: skip


def mutate_predictions(rng: random.Random, images: list[Any], header: dict) -> None:
    """One hostile change: a detection field, an image field, a whole image, the header."""
    kind = rng.randrange(10)
    im = rng.choice(images) if images else None
    dets = im.get("detections") if type(im) is dict else None
    if kind < 6 and type(dets) is list and dets and type(det := rng.choice(dets)) is dict:
        if kind == 5 and det:
            del det[rng.choice(sorted(det))]
        else:
            det[rng.choice(DET_KEYS)] = rng.choice([*HOSTILE, 5, 58, 117, 600, 601])
    elif kind < 8 and type(im) is dict:
        key = rng.choice(["file_name", "detections", "@@dup_file_name@@", "extra"])
        names = [f"test2015/{im.get('file_name')}", "HICO_test2015_00000002.jpg", "x/../a.jpg"]
        im[key] = rng.choice([*HOSTILE, *names])
    elif kind == 8:
        images.insert(rng.randrange(len(images) + 1), rng.choice([copy.deepcopy(im), None, 3, {}]))
    else:
        key = rng.choice(["label_space", "version", "format", "extra"])
        header[key] = rng.choice(["hico_det", "vcoco", 1, 1.0, 2, True, None, "hoi-triplets"])


def write_predictions(rng: random.Random, images: list, header: dict, folder: Path) -> Path:
    """The images as ``.json`` (object with header, or a bare list) or ``.jsonl`` (with or
    without a header line, blank lines), optionally gzipped."""
    form = rng.choice(["json", "list", "jsonl", "jsonl_header"])
    lines = [json.dumps(im) for im in images] + rng.choice([[], [""], ["", ""]])
    text = {"json": json.dumps({**header, "images": images}), "list": json.dumps(images),
            "jsonl": "\n".join(lines), "jsonl_header": "\n".join([json.dumps(header), *lines])}[form]  # fmt: skip
    suffix = ".jsonl" if form.startswith("jsonl") else ".json"
    path = folder / f"preds{suffix}{rng.choice(['', '', '', '.gz'])}"
    data = literals(text).encode()
    data = rng.choice([b"", b"", b"", b"\xef\xbb\xbf", b" \n"]) + data.replace(
        b"\n", rng.choice([b"\n", b"\r\n"])
    )
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
