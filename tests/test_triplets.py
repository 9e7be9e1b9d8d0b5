"""The triplet file: round trips, one clear error per kind of bad input, class resolution."""

from __future__ import annotations

import collections
import gzip
import json

import numpy as np
import pytest

from linkhoi.eval.base import EvalError
from linkhoi.eval.resolve import resolve_triplets
from linkhoi.eval.triplets import (
    TripletFileError,
    read_header,
    read_triplets,
    validate_detections,
    write_triplets,
)
from linkhoi.io import InputError
from linkhoi.labels import load

HICO = load("hico_det")


def det(**kw) -> dict:
    d = {"human_box": [1, 2, 30, 40], "object_box": [5, 6, 50, 60], "verb": "ride",
         "object": "bicycle", "score": 0.5}  # fmt: skip
    d.update(kw)
    return d


IMAGES = [
    ("a.jpg", [det(), det(score=np.float32(0.25), human_box=np.array([1.5, 2, 3, 4]))]),
    ("b.jpg", []),
    ("c.jpg", [det(object_box=None, object=None, verb="stand", extra_key=1)]),
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".json.gz", ".jsonl.gz"])
def test_round_trip(tmp_path, suffix: str) -> None:
    path = write_triplets(tmp_path / f"p{suffix}", IMAGES, "hico_det")
    header: dict = {}
    back = list(read_triplets(path, header=header))
    assert [n for n, _ in back] == ["a.jpg", "b.jpg", "c.jpg"]
    assert back[0][1][1]["score"] == 0.25 and back[0][1][1]["human_box"] == [1.5, 2, 3, 4]
    assert back[2][1][0]["object_box"] is None and back[2][1][0]["extra_key"] == 1
    assert header["label_space"] == "hico_det" and header["format"] == "hoi-triplets"
    assert read_header(path)["label_space"] == "hico_det"
    if suffix.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            assert fh.read(1) == b"{"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporaries


def test_bare_list_and_jsonl_without_header(tmp_path) -> None:
    (tmp_path / "p.json").write_text(json.dumps([{"file_name": "a.jpg", "detections": [det()]}]))
    assert [n for n, _ in read_triplets(tmp_path / "p.json")] == ["a.jpg"]
    (tmp_path / "q.jsonl").write_text(json.dumps({"file_name": "a.jpg", "detections": []}) + "\n\n")
    assert list(read_triplets(tmp_path / "q.jsonl")) == [("a.jpg", [])]


def test_failed_write_leaves_nothing(tmp_path) -> None:
    bad = IMAGES + [("d.jpg", [det(score=float("nan"))])]
    with pytest.raises(TripletFileError, match=r"d\.jpg.*detection 0.*score"):
        write_triplets(tmp_path / "p.jsonl", bad, "hico_det")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "p.jsonl").write_text("old")  # an existing file survives a failed rewrite
    with pytest.raises(TripletFileError):
        write_triplets(tmp_path / "p.jsonl", bad, "hico_det")
    assert (tmp_path / "p.jsonl").read_text() == "old"


def _write_raw(tmp_path, dets, name="img.jpg"):
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({"images": [{"file_name": name, "detections": dets}]}))
    return path


BAD = [
    ({"human_box": [1, 2, 3, 4], "object_box": None, "verb": "ride"}, "missing key 'score'"),
    (det(score=float("nan")), "'score' is nan"),
    (det(score=float("inf")), "'score' is inf"),
    (det(score="0.5"), "'score' must be a number"),
    (det(human_box=[10, 2, 3, 4]), "x2 < x1"),
    (det(object_box=[1, 9, 3, 4]), "'object_box' has x2 < x1 or y2 < y1"),
    (det(human_box=[1, 2, 3]), r"'human_box' must be \[x1, y1, x2, y2\]"),
    (det(object_box=[1, 2, float("nan"), 4]), "non-finite"),
    ({"human_box": [1, 2, 3, 4], "object_box": None, "score": 1}, "missing key 'verb'"),
    ("not a dict", "must be an object"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_detection_one_clear_error(tmp_path, bad, message: str) -> None:
    path = _write_raw(tmp_path, [det(), bad])
    with pytest.raises(TripletFileError, match=message) as info:
        list(read_triplets(path))
    text = str(info.value)
    assert str(path) in text and "'img.jpg'" in text and "detection 1" in text
    # the evaluator path (checks skipped in the reader) finds the same problem
    dets = next(read_triplets(path, check_detections=False))[1]
    with pytest.raises(TripletFileError, match=message):
        resolve_triplets(dets, HICO, path, "img.jpg")


def test_record_level_errors(tmp_path) -> None:
    p = tmp_path / "dup.json"
    p.write_text(json.dumps([{"file_name": "a.jpg", "detections": []}] * 2))
    with pytest.raises(TripletFileError, match=r"'a\.jpg'.*duplicate file_name"):
        list(read_triplets(p))
    p.write_text(json.dumps([{"file_name": "a.jpg"}]))
    with pytest.raises(TripletFileError, match="missing key 'detections'"):
        list(read_triplets(p))
    p.write_text(json.dumps([{"detections": []}]))
    with pytest.raises(TripletFileError, match="image record #0: missing or empty key 'file_name'"):
        list(read_triplets(p))
    p.write_text(json.dumps({"format": "hoi-triplets"}))
    with pytest.raises(TripletFileError, match="missing top-level key 'images'"):
        list(read_triplets(p))
    with pytest.raises(TripletFileError, match="no such predictions file"):
        list(read_triplets(tmp_path / "nope.json"))


def test_truncated_files(tmp_path) -> None:
    full = write_triplets(tmp_path / "p.json", IMAGES, "hico_det").read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(TripletFileError, match="not valid JSON.*truncated"):
        list(read_triplets(cut))
    lines = write_triplets(tmp_path / "p.jsonl", IMAGES, "hico_det").read_bytes()
    cutl = tmp_path / "cut.jsonl"
    cutl.write_bytes(lines[:-20])
    with pytest.raises(TripletFileError, match="line 4 is not valid JSON.*truncated"):
        list(read_triplets(cutl))
    gz = gzip.compress(lines)
    cutg = tmp_path / "cut.jsonl.gz"
    cutg.write_bytes(gz[: len(gz) - 12])
    with pytest.raises(TripletFileError, match="truncated"):
        list(read_triplets(cutg))


def _pos(verb: str, obj: str | None) -> int:
    return HICO.hoi_position(HICO.verb_position(verb), HICO.object_position(obj))


def test_resolve_names_ids_and_hoi_ids_agree() -> None:
    ride = _pos("ride", "bicycle")
    h = HICO.hois[ride]
    dets = [
        det(),
        {**det(), "verb": None, "object": None, "verb_id": h.verb_id, "object_id": h.object_id},
        {**det(), "verb_id": h.verb_id, "object_id": h.object_id},  # names and ids together
        {k: v for k, v in det().items() if k not in ("verb", "object")} | {"hoi_id": h.id},
        det(verb="Ride", object="bicycle"),  # forgiving case
        det(object="dining table", verb="eat_at"),  # spaces vs underscores
        det(object="apple", verb="ride"),  # valid names, not a class -> -1
    ]
    a = resolve_triplets(dets, HICO)
    assert a.hois.tolist() == [ride] * 5 + [_pos("eat_at", "dining_table"), -1]
    assert a.verbs[-1] == HICO.verb_position("ride") and a.objects[-1] == HICO.object_position(
        "apple"
    )
    np.testing.assert_array_equal(a.human_boxes[0], [1, 2, 30, 40])
    assert a.scores.dtype == np.float64 and a.object_boxes.shape == (7, 4)
    empty = resolve_triplets([], HICO)
    assert len(empty) == 0 and empty.human_boxes.shape == (0, 4)


def test_resolve_errors_name_the_detection() -> None:
    ride = HICO.hois[_pos("ride", "bicycle")]
    cases = [
        (det(verb="flyy"), "detection 1: unknown verb name 'flyy'"),
        (det(object="unicorn"), "unknown object name 'unicorn'"),
        ({**det(), "verb_id": 999}, "unknown verb id 999"),
        ({**det(), "verb_id": ride.verb_id + 1}, "verb 'ride' and verb_id .* disagree"),
        ({**det(), "hoi_id": ride.id + 1}, "hoi_id .* disagrees with verb 'ride'"),
        ({**det(), "hoi_id": 601}, "unknown hoi_id 601"),
    ]
    for bad, message in cases:
        with pytest.raises(TripletFileError, match=message) as info:
            resolve_triplets([det(), bad], HICO, "preds.json", "x.jpg")
        assert "preds.json: image 'x.jpg'" in str(info.value)


def test_ambiguous_swig_name_asks_for_ids() -> None:
    swig = load("swig_hoi")
    dup = next(n for n, c in collections.Counter(swig.objects).items() if c > 1)
    h = next(h for h in swig.hois if h.object == dup)
    bad = det(verb=h.verb, object=dup)
    with pytest.raises(TripletFileError, match=f"object name '{dup}' is ambiguous.*object_id"):
        resolve_triplets([bad], swig)
    ok = {**bad, "object": None, "object_id": h.object_id}
    a = resolve_triplets([ok, {**bad, "hoi_id": h.id, "object": None}], swig)
    assert a.hois.tolist() == [swig.hoi_position_by_id(h.id)] * 2


def test_ids_win_over_an_ambiguous_name() -> None:
    swig = load("swig_hoi")
    dup = next(n for n, c in collections.Counter(swig.objects).items() if c > 1)
    h = next(h for h in swig.hois if h.object == dup)
    other = next(o for o in swig.objects if swig.objects.count(o) == 1)
    bad = det(verb=h.verb, object=dup)
    # the id decides; the ambiguous name is one of its names (any case or spacing)
    dets = [{**bad, "object_id": h.object_id}, {**bad, "hoi_id": h.id},
            {**bad, "object": dup.upper(), "verb_id": h.verb_id, "object_id": h.object_id},
            {**bad, "hoi_id": h.id, "verb_id": h.verb_id, "object_id": h.object_id}]  # fmt: skip
    a = resolve_triplets(dets, swig)
    assert a.hois.tolist() == [swig.hoi_position_by_id(h.id)] * 4
    # a name that fits none of the id's names is an error
    for wrong, msg in [
        ({**bad, "object": "no such thing", "object_id": h.object_id}, "unknown object name"),
        ({**bad, "object": other, "object_id": h.object_id}, "disagree"),
    ]:
        with pytest.raises(TripletFileError, match=msg):
            resolve_triplets([wrong], swig)
    ids_of_dup = [swig.object_ids[p] for p, o in enumerate(swig.objects) if o == dup]
    not_dup = next(i for i in swig.object_ids if i not in ids_of_dup)
    with pytest.raises(TripletFileError, match=f"object '{dup}' is not a name of object_id"):
        resolve_triplets([{**bad, "object_id": not_dup}], swig)
    h2 = next(x for x in swig.hois if x.object != dup)
    with pytest.raises(TripletFileError, match=f"object '{dup}' is not a name of hoi_id"):
        resolve_triplets([{**bad, "verb": h2.verb, "hoi_id": h2.id}], swig)


def test_validate_detections_accepts_good_input() -> None:
    validate_detections([det(), det(object_box=None, verb="stand", object=None)], "f", "i")
    validate_detections([], "f", "i")


def test_in_memory_numpy_values_are_accepted() -> None:
    # detections straight from a model: numpy boxes and numpy scalar scores
    d1 = det(human_box=np.array([1.0, 2, 3, 4]), object_box=np.array([5.0, 6, 7, 8]),
             score=np.float32(0.75))  # fmt: skip
    d2 = det(object_box=None, object=None, score=np.float64(0.5))
    a = resolve_triplets([d1, d2], HICO)
    np.testing.assert_array_equal(a.object_boxes[0], [5, 6, 7, 8])
    assert np.isnan(a.object_boxes[1]).all() and a.scores.tolist() == [0.75, 0.5]
    assert a.hois.tolist() == [_pos("ride", "bicycle"), -1]  # "ride" without object: no class
    bad = det(human_box=np.array([3.0, 2, 1, 4]))
    with pytest.raises(TripletFileError, match="detection 0: field 'human_box' has x2 < x1"):
        resolve_triplets([bad], HICO)


# A null object_box beside a malformed one: the malformed box must not be broadcast ([1], 5)
# or parsed ("0.5") into the other detections' array (the V-COCO / SWiG-HOI path).
BAD_OBJECT_BOXES = [[1], "0.5", True, -5, 1e30, ["1", "2", "3", "4"], [1, 2, 3]]


@pytest.mark.parametrize("box", BAD_OBJECT_BOXES)
def test_bad_object_box_beside_a_null_one(tmp_path, box) -> None:
    dets = [det(object_box=None, object=None, verb="stand"), det(object_box=box)]
    path = _write_raw(tmp_path, dets)
    message = r"raw\.json: image 'img\.jpg', detection 1: field 'object_box' must be \[x1, y1"
    with pytest.raises(TripletFileError, match=message):
        list(read_triplets(path))
    with pytest.raises(TripletFileError, match=message):
        resolve_triplets(dets, HICO, path, "img.jpg")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (det(score=10**30), "score"),
        (det(score=-(10**20)), "score"),
        (det(human_box=[0, 0, 10**30, 5]), "human_box"),
        (det(object_box=[0, 0, 5, 2**64]), "object_box"),
    ],
)
def test_integer_too_large_names_the_field(tmp_path, bad, field: str) -> None:
    path = _write_raw(tmp_path, [det(), bad])
    message = rf"image 'img\.jpg', detection 1: field '{field}' .*integer beyond 64 bits"
    with pytest.raises(TripletFileError, match=message):
        list(read_triplets(path))
    with pytest.raises(TripletFileError, match=message):
        resolve_triplets([det(), bad], HICO, path, "img.jpg")
    # within uint64 numpy still reads it: a (very large) finite number, accepted
    validate_detections([det(score=2**63)], path, "img.jpg")


BAD_HEADERS = [
    ({"format": "nope"}, r"field 'format' is 'nope'; expected 'hoi-triplets'"),
    ({"format": None}, r"field 'format' is None"),
    ({"version": 99}, r"field 'version' is 99; only version 1"),
    ({"version": "1"}, r"field 'version' is '1'; only version 1"),
    ({"version": True}, r"field 'version' is True"),
    ({"label_space": 3}, r"field 'label_space' must be a label-space name \(a string\), got 3"),
    ({"label_space": ["hico_det"]}, r"field 'label_space' must be .*got \['hico_det'\]"),
    ({"label_space": ""}, r"field 'label_space' must be .*got ''"),
]


@pytest.mark.parametrize(("header", "message"), BAD_HEADERS)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bad_header_one_clear_error(tmp_path, header: dict, message: str, suffix: str) -> None:
    path = tmp_path / f"p{suffix}"
    full = {"format": "hoi-triplets", "version": 1, "label_space": "hico_det", **header}
    record = {"file_name": "a.jpg", "detections": [det()]}
    if suffix == ".json":
        path.write_text(json.dumps({**full, "images": [record]}))
    else:
        path.write_text(json.dumps(full) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(TripletFileError, match=rf"^{tmp_path}/p{suffix}: {message}"):
        list(read_triplets(path, check_detections=False))


def test_good_headers_are_accepted(tmp_path) -> None:
    record = {"file_name": "a.jpg", "detections": [det()]}
    for header in (
        {},
        {"version": 1.0},
        {"label_space": None},
        {"benchmark": "x", "box_format": "xyxy"},
    ):
        path = tmp_path / "p.json"
        path.write_text(json.dumps({**header, "images": [record]}))
        assert [n for n, _ in read_triplets(path)] == ["a.jpg"]


def test_jsonl_header_only_on_the_first_line(tmp_path) -> None:
    # a later line without file_name is a broken image record, not a second header to skip
    path = tmp_path / "p.jsonl"
    lines = [{"format": "hoi-triplets"}, {"file_name": "a.jpg", "detections": []},
             {"file_nam": "b.jpg", "detections_": []}]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(TripletFileError, match="image record #1: missing or empty key 'file_name'"):
        list(read_triplets(path))


def test_error_classes_are_input_errors() -> None:
    assert issubclass(TripletFileError, InputError) and issubclass(EvalError, InputError)
    err = TripletFileError("p.json: image 'a.jpg', detection 0: field 'score' is nan")
    assert str(err) == "p.json: image 'a.jpg', detection 0: field 'score' is nan"
