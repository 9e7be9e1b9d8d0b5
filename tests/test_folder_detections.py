"""Per-image detection folders (the UPT/SCG cache layout): reading, label kinds, rescaling
from the stated size, and one clear error per malformed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from linkhoi.detections import DetectionError
from linkhoi.detections.folder import FolderDetections
from linkhoi.detections.registry import make_source
from linkhoi.labels import load

HICO = load("hico_det")


def _write(folder: Path, name: str, data: object) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_upt_layout_positions_ids_and_names(tmp_path: Path) -> None:
    image = Image.new("RGB", (640, 480))
    # fredzzhang/hicodet preprocessing.py: labels are HICO-DET object indices (person = 49).
    _write(
        tmp_path,
        "HICO_test2015_00000001.json",
        {
            "boxes": [[10, 20, 110, 220], [300, 40, 500, 400]],
            "labels": [49, 9],
            "scores": [0.9, 0.5],
        },
    )
    source = make_source(f"folder:{tmp_path}", HICO)
    dets = source.detect("HICO_test2015_00000001.jpg", image)
    assert [HICO.objects[i] for i in dets.labels.tolist()] == ["person", "bicycle"]
    torch.testing.assert_close(dets.boxes[1], torch.tensor([300.0, 40, 500, 400]))
    assert dets.image_size == (640, 480)
    # Object ids (COCO category ids for hico_det: person 1, bicycle 2) and names.
    ids = FolderDetections(tmp_path, HICO, label_kind="ids")
    _write(tmp_path, "b.json", {"boxes": [[0, 0, 5, 5]] * 2, "labels": [1, 2], "scores": [1, 1]})
    assert ids.detect("b.jpg", image).labels.tolist() == dets.labels.tolist()
    _write(tmp_path, "c.json", {"boxes": [[0, 0, 5, 5]], "labels": ["dining table"], "scores": [1]})
    assert source.detect("c.jpg", image).labels.tolist() == [HICO.object_position("dining_table")]
    # A nested name finds its relative path, else its base name; no file -> no detections.
    _write(tmp_path, "sub/d.json", {"boxes": [], "labels": [], "scores": []})
    assert len(source.detect("sub/d.png", image)) == 0 and "sub/d.png" in source
    assert len(source.detect("other/b.png", image)) == 2
    assert len(source.detect("none.jpg", image)) == 0 and source.missing == 1


def test_stated_size_rescales_boxes(tmp_path: Path) -> None:
    # h_detr_cache.py: boxes in the 800-pixel resized frame, size = [h, w] of that frame.
    _write(
        tmp_path,
        "a.json",
        {"boxes": [[100, 200, 400, 600]], "labels": [49], "scores": [0.8], "size": [800, 1000]},
    )
    dets = FolderDetections(tmp_path, HICO).detect("a.jpg", Image.new("RGB", (500, 400)))
    torch.testing.assert_close(dets.boxes, torch.tensor([[50.0, 100, 200, 300]]))


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"boxes": [[0, 0, 5, 5]], "labels": [49]}, "scores", "missing or non-list 'scores'"),
        ({"boxes": [[0, 0, 5]], "labels": [49], "scores": [1]}, "boxes[0]", "4 numbers"),
        ({"boxes": [[5, 0, 1, 5]], "labels": [49], "scores": [1]}, "boxes[0].box", "inverted"),
        ({"boxes": [[0, 0, 900, 5]], "labels": [49], "scores": [1]}, "boxes[0].box", "outside"),
        ({"boxes": [[0, 0, 5, 5]], "labels": [49], "scores": [1.5]}, "boxes[0].score", "[0, 1]"),
        ({"boxes": [[0, 0, 5, 5]], "labels": [80], "scores": [1]}, "labels[0]", "0..79"),
        ({"boxes": [[0, 0, 5, 5]], "labels": ["unicorn"], "scores": [1]}, "labels[0]", "unicorn"),
        ({"boxes": [[0, 0, 5, 5]], "labels": [49, 1], "scores": [1]}, "labels", "differ"),
        ({"boxes": [], "labels": [], "scores": [], "size": [100, 50]}, "size", "not a resize"),
        ([1, 2], None, "must be a mapping"),
    ],
)
def test_bad_files_name_file_image_field(
    tmp_path: Path, data: object, field: str | None, message: str
) -> None:
    _write(tmp_path, "x.json", data)
    with pytest.raises(DetectionError) as err:
        FolderDetections(tmp_path, HICO).detect("x.jpg", Image.new("RGB", (640, 480)))
    text = str(err.value)
    assert "x.json" in text and "x.jpg" in text and message in text
    if field is not None:
        assert f"field '{field}'" in text


def test_bad_folder_and_kind(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="not found"):
        FolderDetections(tmp_path / "nope", HICO)
    with pytest.raises(DetectionError, match="label_kind"):
        FolderDetections(tmp_path, HICO, label_kind="coco")
    (tmp_path / "t.json").write_text("{trunc")
    with pytest.raises(DetectionError, match="invalid JSON"):
        FolderDetections(tmp_path, HICO).detect("t.jpg", Image.new("RGB", (10, 10)))
