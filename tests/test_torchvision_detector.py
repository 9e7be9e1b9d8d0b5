"""TorchvisionDetector: random-weight torchvision models saved to disk and loaded by file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import detection as tvd

from linkhoi.detections import DetectionError, Detections, TorchvisionDetector
from linkhoi.detections.torchvision_detector import COCO_CATEGORIES, coco_to_label_space
from linkhoi.labels import load

NAME = "ssdlite320_mobilenet_v3_large"  # the smallest torchvision detector (3.4M parameters)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = getattr(tvd, NAME)(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("tv") / "ssd.pth"
    torch.save(model.state_dict(), path)
    return path


def test_coco_names_map_to_label_space_objects() -> None:
    hico = load("hico_det")
    table = coco_to_label_space(hico)
    assert len(COCO_CATEGORIES) == 91 and table[0] == -1  # background
    for coco, ours in [
        ("person", "person"),
        ("dining table", "dining_table"),
        ("hair drier", "hair_drier"),
        ("baseball bat", "baseball_bat"),
        ("sports ball", "sports_ball"),
    ]:
        assert table[COCO_CATEGORIES.index(coco)] == hico.object_position(ours)
    assert (table >= 0).sum() == 80  # every COCO class is a HICO-DET object
    assert table[COCO_CATEGORIES.index("N/A")] == -1
    synthetic = load("synthetic")
    small = coco_to_label_space(synthetic)
    assert small[COCO_CATEGORIES.index("horse")] == synthetic.object_position("horse")
    assert small[COCO_CATEGORIES.index("dining table")] == -1  # not in the space: dropped


def test_load_and_detect(weights: Path, tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    det = TorchvisionDetector(NAME, weights, "hico_det", score_threshold=0.0, device="cpu")
    out = det.detect("x.png", image)
    assert isinstance(out, Detections) and out.image_size == (64, 48)
    assert len(out) > 0
    assert int(out.labels.min()) >= 0 and int(out.labels.max()) < 117
    assert float(out.scores.min()) >= 0 and float(out.scores.max()) <= 1
    # safetensors holds the same weights: the same detections.
    st = tmp_path / "ssd.safetensors"
    state = torch.load(weights, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    again = TorchvisionDetector(NAME, st, "hico_det", score_threshold=0.0, device="cpu")
    torch.testing.assert_close(again.detect("x.png", image).boxes, out.boxes)
    # Opening by path applies the same loading as the rest of linkhoi.
    path = tmp_path / "x.png"
    image.save(path)
    torch.testing.assert_close(det.detect(str(path)).scores, out.scores)


def test_labels_mapped_and_unknown_dropped(weights: Path) -> None:
    synthetic = load("synthetic")
    det = TorchvisionDetector(NAME, weights, synthetic, score_threshold=0.3, device="cpu")
    coco = [COCO_CATEGORIES.index(n) for n in ("person", "dining table", "horse", "cup")]
    fake = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [1, 1, 5, 5], [2, 2, 8, 9], [3, 3, 6, 6]]),
        "labels": torch.tensor(coco),
        "scores": torch.tensor([0.9, 0.95, 0.6, 0.2]),  # the cup is below the threshold
    }
    det.model = lambda tensors: [fake for _ in tensors]  # what torchvision returns
    out = det.detect("y.png", Image.new("RGB", (20, 20)))
    assert out.labels.tolist() == [
        synthetic.object_position("person"),
        synthetic.object_position("horse"),
    ]
    assert out.boxes.tolist() == [[0.0, 0, 10, 10], [2, 2, 8, 9]]


def test_bad_weights_and_names(weights: Path, tmp_path: Path) -> None:
    # torchvision names that are not COCO box detectors (a class, a people-only model).
    for name in ("FasterRCNN", "keypointrcnn_resnet50_fpn"):
        with pytest.raises(DetectionError, match=f"unknown torchvision detector '{name}'"):
            TorchvisionDetector(name, weights, "hico_det")
    with pytest.raises(DetectionError, match="unknown torchvision detector 'yolo'"):
        TorchvisionDetector("yolo", weights, "synthetic")
    with pytest.raises(DetectionError, match="not found"):
        TorchvisionDetector(NAME, tmp_path / "missing.pth", "synthetic")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(DetectionError, match="junk.pth"):
        TorchvisionDetector(NAME, junk, "synthetic")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(
        DetectionError, match=r"do not fit torchvision detector.*(Missing|Unexpected) key"
    ):
        TorchvisionDetector(NAME, other, "synthetic")
