"""The project's own annotation json: reading, atomic writing and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import DatasetError, HOIPair, Sample, read_dataset, read_generic, write_generic
from linkhoi.labels import load

DOC = {
    "format": "linkhoi-annotations",
    "version": 1,
    "label_space": "hico_det",
    "images": [
        {
            "file_name": "img_000001.png",
            "width": 320,
            "height": 256,
            "boxes": [
                {"box": [10, 20, 110, 200], "label": "person"},
                {"box": [50, 100, 300, 250], "label": "horse"},
            ],
            "hois": [{"human": 0, "object": 1, "verb": "ride"}],
        }
    ],
}


def _write(tmp_path: Path, doc: object, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_read_generic_by_hand(tmp_path: Path) -> None:
    hico = load("hico_det")
    (s,) = read_generic(_write(tmp_path, DOC))
    assert s.image_path == tmp_path / "img_000001.png"  # default root: the json's folder
    np.testing.assert_array_equal(s.boxes, [[10, 20, 110, 200], [50, 100, 300, 250]])
    assert s.labels.tolist() == [hico.object_position("person"), hico.object_position("horse")]
    ride_horse = next(p for p, h in enumerate(hico.hois) if (h.verb, h.object) == ("ride", "horse"))
    assert s.pairs == [HOIPair(0, 1, ride_horse)]
    doc = dict(DOC, image_root="pics")
    assert read_generic(_write(tmp_path, doc))[0].image_path == tmp_path / "pics" / "img_000001.png"
    assert read_dataset("generic", path=tmp_path / "ann.json", image_root="/x")[
        0
    ].image_path == Path("/x/img_000001.png")


def _roundtrip(tmp_path: Path, samples: list[Sample], space: str) -> list[Sample]:
    path = tmp_path / "out" / "rt.json"
    write_generic(path, samples, space)
    assert [p.name for p in path.parent.iterdir()] == ["rt.json"]  # no temp file left behind
    return read_generic(path)


def test_round_trip_every_label_space(tmp_path: Path) -> None:
    root = tmp_path / "images"
    vcoco, swig = load("vcoco"), load("swig_hoi")
    hit_obj = next(p for p, h in enumerate(vcoco.hois) if h.name == "hit_obj")
    stand = next(p for p, h in enumerate(vcoco.hois) if h.name == "stand")
    samples_v = [
        Sample(
            "a.jpg",
            root / "a.jpg",
            100,
            80,
            np.array([[0, 0, 9, 9], [5, 5, 20, 20], [1, 1, 2, 2.5]]),
            np.array([0, 36, 0]),
            [HOIPair(0, 1, hit_obj), HOIPair(0, None, stand)],
            np.array([False, False, True]),
            image_id=42,
        ),
        Sample("b.jpg", root / "b.jpg", 10, 10, np.zeros((0, 4)), np.zeros(0), []),
    ]
    assert _roundtrip(tmp_path, samples_v, "vcoco") == samples_v
    # SWiG: 'ball' names two categories (23 and 730): written with its official id
    ball = swig.object_position_by_id(730)
    hoi = next(p for p, h in enumerate(swig.hois) if h.object_id == 730)
    samples_s = [
        Sample(
            "s.jpg",
            root / "s.jpg",
            50,
            50,
            np.array([[0, 0, 9, 9], [5, 5, 20, 20]]),
            np.array([0, ball]),
            [HOIPair(0, 1, hoi)],
        )
    ]
    back = _roundtrip(tmp_path, samples_s, "swig_hoi")
    assert back == samples_s and back[0].labels[1] == ball
    (hico,) = read_generic(_write(tmp_path, DOC))
    assert _roundtrip(tmp_path, [hico], "hico_det")[0].pairs == hico.pairs


def test_write_rejects_pair_not_matching_its_object(tmp_path: Path) -> None:
    hico = load("hico_det")
    ride_horse = next(p for p, h in enumerate(hico.hois) if (h.verb, h.object) == ("ride", "horse"))
    bad = Sample(
        "a.jpg",
        None,
        10,
        10,
        np.array([[0, 0, 1, 1], [0, 0, 2, 2]]),
        np.array([hico.human_position, hico.object_position("cup")]),
        [HOIPair(0, 1, ride_horse)],
    )
    with pytest.raises(DatasetError, match="does not match") as err:
        write_generic(tmp_path / "x.json", [bad], "hico_det")
    assert "'a.jpg'" in str(err.value) and "pairs[0]" in str(err.value)
    assert not (tmp_path / "x.json").exists()


def test_label_space_file_relative_to_json(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        "name: mine\nhuman: person\nverbs: [ride, hold]\nobjects: [person, horse, cup]\n"
        "hois:\n  - {verb: ride, object: horse}\n  - {verb: hold, object: cup}\n"
    )
    doc = dict(DOC, label_space="space.yaml")
    (s,) = read_generic(_write(tmp_path, doc))
    assert s.labels.tolist() == [0, 1] and s.pairs == [HOIPair(0, 1, 0)]


@pytest.mark.parametrize(
    ("edit", "field", "match"),
    [
        (lambda im: im["boxes"][1].update(label="unicorn"), "boxes[1].label", "unknown category"),
        (lambda im: im["boxes"][1].update(box=[1, 2, float("nan"), 4]), "boxes[1].box", "NaN"),
        (lambda im: im["boxes"][1].update(box=[50, 100, 400, 250]), "boxes[1]", "outside"),
        (lambda im: im["hois"][0].update(verb="eat"), "hois[0].verb", "not an HOI class"),
        (lambda im: im["hois"][0].update(object=2), "hois[0].object", "out of range"),
        (lambda im: im["boxes"][1].update(label=["horse"]), "boxes[1].label", "got \\['horse'\\]"),
        (lambda im: im["boxes"][1].update(label={"a": 1}), "boxes[1].label", "a string"),
        (lambda im: im["boxes"][1].update(label=None), "boxes[1].label", "got None"),
        (lambda im: im["boxes"][1].update(unannotated="no"), "boxes[1].unannotated", "true or"),
        (lambda im: im.update(width=-5), "width", "positive integer, got -5$"),
        (lambda im: im.update(height=0), "height", "positive integer, got 0$"),
        (lambda im: im.update(width="320"), "width", "positive integer, got '320'$"),
        (lambda im: im.update(width=320.5), "width", "positive integer, got 320.5$"),
        (lambda im: im.pop("height"), "height", "positive integer, got None$"),
        (lambda im: im.update(hois={}), "hois", r"expected a list \(\[\] for none\), got \{\}"),
        (lambda im: im.update(hois=None), "hois", r"expected a list .*got None"),
        (lambda im: im.pop("hois"), "hois", r"expected a list .*missing"),
        (lambda im: im.update(boxes=None), "boxes", r"expected a list .*got None"),
        (lambda im: im["hois"][0].update(verb=["ride"]), "hois[0].verb", "must be a string"),
        (
            lambda im: im["hois"][0].update(human=1, object=0),
            "hois[0].human",
            "box 1 is a 'horse', not a 'person'",
        ),
    ],
)
def test_bad_input(tmp_path: Path, edit, field: str, match: str) -> None:
    doc = json.loads(json.dumps(DOC))
    edit(doc["images"][0])
    with pytest.raises(DatasetError, match=match) as err:
        read_generic(_write(tmp_path, doc))
    msg = str(err.value)
    assert "ann.json" in msg and "image 'img_000001.png'" in msg and repr(field) in msg, msg


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="truncated"):
        read_generic(_write(tmp_path, json.dumps(DOC)[:50]))
    with pytest.raises(DatasetError, match="duplicate file name"):
        read_generic(_write(tmp_path, dict(DOC, images=DOC["images"] * 2)))
    with pytest.raises(DatasetError, match="label space"):
        read_generic(_write(tmp_path, dict(DOC, label_space="no_such_space")))
    with pytest.raises(DatasetError, match="not a 'linkhoi-annotations' file"):
        read_generic(_write(tmp_path, [1, 2]))


def test_empty_file_name(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["images"][0]["file_name"] = ""
    with pytest.raises(DatasetError, match=r"ann\.json', image '#0', field 'file_name': empty"):
        read_generic(_write(tmp_path, doc))


def test_unknown_size_is_left_out_and_read_back_as_zero(tmp_path: Path) -> None:
    (s,) = read_generic(_write(tmp_path, DOC))
    s.width = s.height = 0  # e.g. read from a PPDM json without its images
    path = tmp_path / "out.json"
    write_generic(path, [s], "hico_det")
    assert "width" not in json.loads(path.read_text())["images"][0]
    (back,) = read_generic(path)
    assert (back.width, back.height) == (0, 0) and back == s
