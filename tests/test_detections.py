"""Detection sources: the Detections type, files (project + COCO), ground truth, proposals."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi import labels
from linkhoi.detections import (
    CallableDetector,
    DetectionError,
    Detections,
    DetectionSource,
    FileDetections,
    GroundTruthDetections,
    filter_proposals,
    write_detections,
)

try:  # the real sample type (another engineer's module); duck-typed stand-in otherwise
    from linkhoi.data.sample import Sample
except ImportError:  # pragma: no cover

    @dataclass
    class Sample:  # type: ignore[no-redef]
        file_name: str
        image_path: Path | None
        width: int
        height: int
        boxes: np.ndarray
        labels: np.ndarray
        pairs: list = field(default_factory=list)


HICO = labels.load("hico_det")
PERSON = HICO.object_position("person")
HORSE = HICO.object_position("horse")
CUP = HICO.object_position("cup")


def dets(boxes, labs, scores, size=(100, 100)) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32), torch.tensor(labs), torch.tensor(scores), size
    )


# ------------------------------------------------------------------------- Detections
def test_detections_type() -> None:
    d = dets([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], [PERSON, HORSE, CUP], [0.9, 0.5, 0.1])
    assert len(d) == 3 and d.boxes.dtype == torch.float32 and d.labels.dtype == torch.int64
    sub = d.select([2, 0])
    assert sub.labels.tolist() == [CUP, PERSON] and sub.image_size == (100, 100)
    assert torch.allclose(sub.scores, torch.tensor([0.1, 0.9]))
    assert d.select(d.scores > 0.4).labels.tolist() == [PERSON, HORSE]
    assert len(d.select(slice(1, None))) == 2
    assert d.to("cpu").boxes.equal(d.boxes)
    e = Detections.empty((64, 32))
    assert len(e) == 0 and e.boxes.shape == (0, 4) and e.image_size == (64, 32)
    with pytest.raises(DetectionError, match="differ in length"):
        dets([[0, 0, 1, 1]], [0, 1], [0.5])


# ------------------------------------------------------------------------- CallableDetector
def test_callable_detector(tmp_path: Path) -> None:
    calls = []

    def fn(image: Image.Image):
        calls.append(image.size)
        return [[1, 2, 30, 40], [0, 0, 5, 5]], ["person", HORSE], [0.9, 0.4]

    src = CallableDetector(fn, "hico_det", image_root=tmp_path)
    assert isinstance(src, DetectionSource)
    Image.new("RGB", (48, 50)).save(tmp_path / "a.png")
    d = src.detect("a.png")  # opened from image_root
    assert calls == [(48, 50)] and d.image_size == (48, 50)
    assert d.labels.tolist() == [PERSON, HORSE]
    assert d.boxes[0].tolist() == [1, 2, 30, 40]
    d2 = src.detect("whatever", image=Image.new("RGB", (60, 60)))
    assert d2.image_size == (60, 60)

    bad = CallableDetector(lambda im: ([[0, 0, 5, 5]], ["unicorn"], [0.5]), HICO)
    with pytest.raises(DetectionError, match=r"image 'x'.*labels\[0\].*unknown object 'unicorn'"):
        bad.detect("x", image=Image.new("RGB", (10, 10)))
    outside = CallableDetector(lambda im: ([[0, 0, 50, 5]], [PERSON], [0.5]), HICO)
    with pytest.raises(DetectionError, match="outside the 10x10 image"):
        outside.detect("x", image=Image.new("RGB", (10, 10)))
    with pytest.raises(DetectionError, match="cannot open image"):
        src.detect("missing.png")
    # Malformed detector output: one error naming the detector, the image and what is wrong.
    img = Image.new("RGB", (10, 10))
    for out, message in [
        (([[0, 0, 5, 5, 1]], [PERSON], [0.5]), r"boxes are not an \(N, 4\) array.*\(1, 5\)"),
        (([[0, 0, 5, 5], [0, 0, 5]], [PERSON] * 2, [0.5] * 2), "boxes are not an"),
        (([[0, 0, 5, 5]], [PERSON], ["high"]), r"scores are not an \(N,\) array"),
        (([[0, 0, 5, 5]], [PERSON], None), "returned None"),
    ]:
        odd = CallableDetector(lambda im, out=out: out, HICO)
        with pytest.raises(DetectionError, match=rf"image 'x'.*{message}"):
            odd.detect("x", image=img)


def test_callable_detector_sees_the_upright_image(tmp_path: Path) -> None:
    raw = Image.new("RGB", (40, 20))
    exif = raw.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: upright it is 20 x 40
    raw.save(tmp_path / "r.jpg", exif=exif)
    sizes = []
    src = CallableDetector(lambda im: sizes.append(im.size) or ([], [], []), HICO, tmp_path)
    assert src.detect("r.jpg").image_size == (20, 40) and sizes == [(20, 40)]


# ------------------------------------------------------------------------- files: project json
def test_file_round_trip(tmp_path: Path) -> None:
    a = dets([[0.5, 1.25, 30.0, 40.5], [2, 3, 4, 5]], [PERSON, HORSE], [0.987654, 0.25], (64, 48))
    b = Detections.empty((32, 32))
    path = write_detections(tmp_path / "out" / "dets.json", [("a.jpg", a), ("b.jpg", b)], HICO)
    raw = json.loads(path.read_text())
    assert raw["format"] == "linkhoi-detections" and raw["label_space"] == "hico_det"
    assert raw["images"][0]["detections"][1]["label"] == "horse"
    assert not list(path.parent.glob("*.tmp"))  # atomic: no temporary file left behind
    src = FileDetections(path, "hico_det")
    assert src.file_names == ["a.jpg", "b.jpg"] and "a.jpg" in src and len(src) == 2
    back = src.detect("a.jpg")
    assert back.boxes.equal(a.boxes) and back.scores.equal(a.scores) and back.labels.equal(a.labels)
    assert back.image_size == (64, 48)
    assert len(src.detect("b.jpg")) == 0
    none = src.detect("c.jpg", image=Image.new("RGB", (20, 10)))  # no record: empty
    assert len(none) == 0 and none.image_size == (20, 10)
    # Writing plain records gives the same file content as writing Detections.
    write_detections(tmp_path / "again.json", raw["images"], HICO)
    assert json.loads((tmp_path / "again.json").read_text()) == raw
    # Gzipped by name, read back the same.
    gz = write_detections(tmp_path / "dets.json.gz", [("a.jpg", a), ("b.jpg", b)], HICO)
    assert json.loads(gzip.decompress(gz.read_bytes())) == raw
    back = FileDetections(gz, "hico_det").detect("a.jpg")
    assert back.boxes.equal(a.boxes) and back.labels.equal(a.labels)


def test_file_bare_list_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    recs = [
        {
            "file_name": "x.png",
            "detections": [{"box": [1, 1, 9, 9], "label": "dining table", "score": 0.5}],
        }
    ]
    path.write_text(json.dumps(recs))
    src = FileDetections(path, HICO, image_root=tmp_path, image_sizes={"y.png": (7, 7)})
    Image.new("RGB", (12, 10)).save(tmp_path / "x.png")
    d = src.detect("x.png")  # size from the image header under image_root
    assert d.image_size == (12, 10) and d.labels.tolist() == [HICO.object_position("dining_table")]
    assert src.detect("y.png").image_size == (7, 7)
    with pytest.raises(DetectionError, match="image 'z.png'.*image size unknown"):
        FileDetections(path, HICO).detect("z.png")


def test_file_swig_ambiguous_names_use_ids(tmp_path: Path) -> None:
    swig = labels.load("swig_hoi")
    ball_ids = [i for i, n in zip(swig.object_ids, swig.objects, strict=True) if n == "ball"]
    pos = swig.object_position_by_id(ball_ids[1])
    d = dets([[0, 0, 5, 5]], [pos], [0.5], (10, 10))
    path = write_detections(tmp_path / "s.json", {"s.jpg": d}, swig)
    det = json.loads(path.read_text())["images"][0]["detections"][0]
    assert det["label"] == "ball" and det["label_id"] == ball_ids[1]
    assert FileDetections(path, swig).detect("s.jpg").labels.tolist() == [pos]
    det.pop("label_id")
    path.write_text(json.dumps([{"file_name": "s.jpg", "detections": [det]}]))
    with pytest.raises(DetectionError, match="ambiguous"):
        FileDetections(path, swig)


def _one(det: dict, **rec) -> list:
    return [{"file_name": "img.jpg", "width": 100, "height": 80, "detections": [det], **rec}]


GOOD = {"box": [10, 10, 50, 50], "label": "person", "score": 0.9}
BAD_PROJECT = [
    (_one({**GOOD, "label": "unicorn"}), r"detections\[0\]\.label.*unknown object 'unicorn'"),
    (_one({**GOOD, "box": [10, 10, float("nan"), 50]}), r"detections\[0\]\.box.*not finite"),
    (_one({**GOOD, "score": float("inf")}), r"detections\[0\]\.score.*not finite"),
    (_one({**GOOD, "box": [50, 10, 10, 50]}), r"detections\[0\]\.box.*inverted"),
    (_one({**GOOD, "box": [10, 10, 102, 50]}), r"detections\[0\]\.box.*outside the 100x80 image"),
    (_one({**GOOD, "box": [-1.5, 10, 50, 50]}), r"outside the 100x80 image"),
    (_one({**GOOD, "score": 1.5}), r"detections\[0\]\.score.*outside \[0, 1\]"),
    (_one({**GOOD, "box": [1, 2, 3]}), r"detections\[0\]\.box.*4 numbers"),
    (_one({"box": [1, 2, 3, 4], "score": 0.5}), r"detections\[0\]\.label.*missing label"),
    (_one(GOOD) + _one(GOOD), r"image 'img.jpg', field '\[1\]\.file_name'.*duplicate file name"),
    ({"format": "other", "images": []}, r"field 'format'.*unknown format"),
    (_one({**GOOD, "label_id": 2}), r"disagrees with label_id"),
    ([{**_one(GOOD)[0], "width": float("inf")}], r"field '\[0\]\.width'.*bad width/height inf"),
]


@pytest.mark.parametrize(("content", "message"), BAD_PROJECT)
def test_file_bad_input(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DetectionError, match=message) as err:
        FileDetections(path, HICO)
    assert str(path) in str(err.value)
    if "file_name" not in message and "format" not in message:
        assert "image 'img.jpg'" in str(err.value)


def test_file_within_one_pixel_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_one({**GOOD, "box": [-1, -0.5, 101, 81]})))
    assert len(FileDetections(path, HICO).detect("img.jpg")) == 1
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(_one(GOOD))[:-7])
    with pytest.raises(DetectionError, match=r"cut\.json.*invalid JSON \(truncated\?\)"):
        FileDetections(cut, HICO)
    with pytest.raises(DetectionError, match="not found"):
        FileDetections(tmp_path / "nope.json", HICO)
    with pytest.raises(DetectionError, match="duplicate file name"):
        write_detections(tmp_path / "w.json", _one(GOOD) + _one(GOOD))
    assert not (tmp_path / "w.json").exists() and not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------------- files: COCO results
COCO_FILE = {
    "images": [
        {"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 8, "file_name": "b.jpg", "width": 50, "height": 50},
    ],
    "categories": [
        {"id": 1, "name": "person"},
        {"id": 67, "name": "dining table"},
        {"id": 99, "name": "dragon"},
    ],
}
RESULTS = [
    {"image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.8},
    {"image_id": 8, "category_id": 67, "bbox": [0, 0, 50, 50], "score": 0.3},
    {"image_id": 7, "category_id": 67, "bbox": [1, 2, 3, 4], "score": 0.6},
]


def test_coco_results(tmp_path: Path) -> None:
    res, cats = tmp_path / "res.json", tmp_path / "instances.json"
    res.write_text(json.dumps(RESULTS))
    cats.write_text(json.dumps(COCO_FILE))
    src = FileDetections(res, HICO, categories=cats)
    a = src.detect("a.jpg")
    assert a.boxes.tolist() == [[10, 20, 40, 60], [1, 2, 4, 6]]  # xywh -> x1y1x2y2
    assert a.labels.tolist() == [PERSON, HICO.object_position("dining_table")]
    assert torch.allclose(a.scores, torch.tensor([0.8, 0.6])) and a.image_size == (100, 80)
    assert len(src.detect("b.jpg")) == 1
    # Without `categories`, category ids are the label space's official (COCO) ids.
    by_id = FileDetections(res, HICO, categories={"images": COCO_FILE["images"]})
    assert by_id.detect("a.jpg").labels.equal(a.labels)
    with pytest.raises(DetectionError, match="need the COCO-style file"):
        FileDetections(res, HICO)


BAD_COCO = [
    ({"category_id": 99}, r"field '\[0\]\.category_id'.*'dragon'.*unknown object"),
    ({"category_id": 5}, r"image 'a.jpg'.*unknown category id 5"),
    ({"image_id": 9}, r"field '\[0\]\.image_id'.*image_id 9 is not in"),
    ({"bbox": [10, 20, -30, 40]}, r"image 'a.jpg', field '\[0\]\.bbox'.*inverted"),
    ({"bbox": [90, 20, 30, 40]}, r"field '\[0\]\.bbox'.*outside the 100x80 image"),
    ({"score": float("nan")}, r"field '\[0\]\.score'.*not finite"),
    ({"score": "high"}, r"field '\[0\]\.score'.*must be a number"),
]


@pytest.mark.parametrize(("patch", "message"), BAD_COCO)
def test_coco_bad_input(tmp_path: Path, patch: dict, message: str) -> None:
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{**RESULTS[0], **patch}, *RESULTS[1:]]))
    with pytest.raises(DetectionError, match=message) as err:
        FileDetections(res, HICO, categories=COCO_FILE)
    assert str(res) in str(err.value)


@pytest.mark.parametrize("size", [(-640, 0), (float("inf"), 80), ("100", 80)])
def test_coco_bad_image_sizes(tmp_path: Path, size: tuple) -> None:
    res = tmp_path / "res.json"
    res.write_text(json.dumps(RESULTS))
    images = [{**COCO_FILE["images"][0], "width": size[0], "height": size[1]}]
    cats = {**COCO_FILE, "images": images + COCO_FILE["images"][1:]}
    with pytest.raises(DetectionError, match=r"image 'a.jpg', field 'images\[0\]\.width'.*bad"):
        FileDetections(res, HICO, categories=cats)


def test_file_size_must_agree_with_the_image(tmp_path: Path) -> None:
    # Boxes made on the raw 100x80 frame of a photo whose upright (EXIF) image is 80x100.
    path = tmp_path / "d.json"
    path.write_text(json.dumps(_one(GOOD)))
    src = FileDetections(path, HICO)
    assert src.detect("img.jpg", image=Image.new("RGB", (100, 80))).image_size == (100, 80)
    with pytest.raises(
        DetectionError, match=r"image 'img.jpg', field 'width'.*100x80 but it is 80x100"
    ):
        src.detect("img.jpg", image=Image.new("RGB", (80, 100)))
    raw = Image.new("RGB", (40, 20))
    exif = raw.getexif()
    exif[0x0112] = 6  # upright it is 20 x 40
    raw.save(tmp_path / "r.jpg", exif=exif)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"file_name": "r.jpg", "detections": []}]))
    assert FileDetections(bare, HICO, image_root=tmp_path).detect("r.jpg").image_size == (20, 40)


def test_coco_duplicate_file_names(tmp_path: Path) -> None:
    cats = tmp_path / "instances.json"
    dup = {**COCO_FILE, "images": COCO_FILE["images"] + [{"id": 9, "file_name": "a.jpg"}]}
    cats.write_text(json.dumps(dup))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(RESULTS))
    with pytest.raises(
        DetectionError, match=r"instances\.json.*image 'a.jpg'.*images\[2\].*duplicate"
    ):
        FileDetections(res, HICO, categories=cats)


# ------------------------------------------------------------------------- ground truth
def test_ground_truth() -> None:
    boxes = np.array([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
    s = Sample("g.jpg", None, 64, 48, boxes, np.array([PERSON, CUP]), [])
    src = GroundTruthDetections([s])
    assert isinstance(src, DetectionSource) and "g.jpg" in src
    d = src.detect("g.jpg")
    assert d.boxes.tolist() == boxes.tolist() and d.labels.tolist() == [PERSON, CUP]
    assert d.scores.tolist() == [1.0, 1.0] and d.image_size == (64, 48)
    unsized = Sample("u.jpg", None, 0, 0, boxes, np.array([PERSON, CUP]), [])
    assert GroundTruthDetections([unsized]).detect(
        "u.jpg", Image.new("RGB", (70, 50))
    ).image_size == (70, 50)
    assert src.detect("g.jpg", Image.new("RGB", (64, 48))).image_size == (64, 48)
    with pytest.raises(
        DetectionError, match=r"image 'g.jpg', field 'width'.*64x48 but it is 48x64"
    ):
        src.detect("g.jpg", Image.new("RGB", (48, 64)))  # e.g. an EXIF-rotated photo
    with pytest.raises(DetectionError, match="no ground-truth sample"):
        src.detect("other.jpg")
    with pytest.raises(DetectionError, match="duplicate file name"):
        GroundTruthDetections([s, s])


# ------------------------------------------------------------------------- proposals
def row(n: int, y: float = 0.0) -> list[list[float]]:
    """n disjoint 8x8 boxes along a row (no NMS interaction)."""
    return [[10.0 * i, y, 10.0 * i + 8, y + 8] for i in range(n)]


def test_proposals_nms_per_class() -> None:
    d = dets(
        [[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [50, 50, 60, 60]],
        [PERSON, PERSON, HORSE, PERSON],
        [0.9, 0.95, 0.8, 0.7],
    )
    out = filter_proposals(d, PERSON, min_humans=0, min_objects=0)
    # IoU(box0, box1) = 0.9 > 0.5: the lower-scored person goes; the horse (other class) stays.
    assert out.scores.tolist() == pytest.approx([0.95, 0.7, 0.8])
    assert out.labels.tolist() == [PERSON, PERSON, HORSE]


def test_proposals_threshold_and_range() -> None:
    # 5 humans, 3 pass 0.2 (0.2 itself passes): keep exactly those 3.
    d = dets(row(5), [PERSON] * 5, [0.9, 0.05, 0.2, 0.1, 0.5])
    assert filter_proposals(d, PERSON).scores.tolist() == pytest.approx([0.9, 0.5, 0.2])
    # 4 objects with 4 passing + 1 below: in [3, 15] -> only the passing ones.
    d = dets(row(5), [HORSE] * 5, [0.3, 0.6, 0.19, 0.4, 0.25])
    assert filter_proposals(d, PERSON).scores.tolist() == pytest.approx([0.6, 0.4, 0.3, 0.25])


def test_proposals_minimum_and_maximum() -> None:
    # Only 1 human passes: the top 3 humans are kept anyway.
    d = dets(row(4), [PERSON] * 4, [0.01, 0.9, 0.1, 0.05])
    assert filter_proposals(d, PERSON).scores.tolist() == pytest.approx([0.9, 0.1, 0.05])
    # Fewer than the minimum exist: all of them (2) are kept.
    d = dets(row(2), [CUP] * 2, [0.01, 0.02])
    assert filter_proposals(d, PERSON).scores.tolist() == pytest.approx([0.02, 0.01])
    # 20 humans and 20 objects pass: the top 15 of each, humans first.
    scores = torch.linspace(0.3, 0.99, 20).tolist()
    d = dets(row(20) + row(20, y=50), [PERSON] * 20 + [CUP] * 20, scores + scores, (300, 300))
    out = filter_proposals(d, PERSON)
    assert out.labels.tolist() == [PERSON] * 15 + [CUP] * 15
    top15 = sorted(scores, reverse=True)[:15]
    assert out.scores.tolist() == pytest.approx(top15 + top15)
    assert (
        filter_proposals(d, PERSON, max_humans=4, max_objects=2).labels.tolist()
        == [PERSON] * 4 + [CUP] * 2
    )


def test_proposals_clip_and_empty() -> None:
    d = dets([[-10, -5, 50, 60], [200, 200, 220, 220]], [PERSON, CUP], [0.9, 0.9], (40, 30))
    out = filter_proposals(d, PERSON)
    assert out.boxes.tolist() == [[0, 0, 40, 30]]  # clipped; the box outside the image is dropped
    assert len(filter_proposals(d, PERSON, drop_empty=False)) == 2
    e = Detections.empty((10, 10))
    assert len(filter_proposals(e, PERSON)) == 0
