"""Training augmentation: flip and zoom move the image, its detections and its GT boxes together,
and the zoom really changes how large objects are relative to the image (the backbone's canvas)."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.detections import Detections
from linkhoi.train.augment import PAD_COLOUR, augment

GT = torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 10.0, 48.0, 20.0]])


def _image(w: int = 100, h: int = 50) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _dets(boxes) -> Detections:
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    n = len(boxes)
    return Detections(boxes, torch.arange(n), torch.linspace(0.9, 0.5, n), (100, 50))


def _pixels(image: Image.Image, box) -> np.ndarray:
    return np.asarray(image.crop(tuple(int(v) for v in box)))


class _Flip(random.Random):
    def random(self) -> float:  # flip_prob 0.5 -> always flip
        return 0.0


def test_flip_mirrors_image_and_boxes() -> None:
    image = _image()
    img2, dets2, gt2 = augment(image, _dets(GT), GT.clone(), _Flip(0), [1.0], 0.5)
    expected = torch.tensor([[70.0, 5.0, 90.0, 25.0], [52.0, 10.0, 60.0, 20.0]])  # x -> 100 - x
    assert img2.size == (100, 50) and torch.equal(gt2, expected)
    assert torch.equal(dets2.boxes, expected) and dets2.image_size == (100, 50)
    assert np.array_equal(_pixels(img2, expected[0]), _pixels(image, GT[0])[:, ::-1])
    same = augment(image, _dets(GT), GT.clone(), random.Random(0), [1.0], 0.0)
    assert same[0] is image and torch.equal(same[1].boxes, GT) and torch.equal(same[2], GT)


@pytest.mark.parametrize("seed", range(6))
def test_zoom_in_crops_a_window_that_keeps_every_gt_box(seed: int) -> None:
    image = _image()
    # A detection inside the GT span, one straddling the right edge of the window, one far off.
    dets = _dets([[12, 6, 28, 24], [30, 0, 100, 50], [90, 40, 99, 49]])
    img2, dets2, gt2 = augment(image, dets, GT.clone(), random.Random(seed), [2.0], 0.0)
    assert img2.size == (50, 25) and dets2.image_size == (50, 25)  # half the width and height
    assert (gt2[:, :2] >= 0).all() and (gt2[:, 2] <= 50).all() and (gt2[:, 3] <= 25).all()
    shift = gt2[0, :2] - GT[0, :2]  # the same integer offset for every box
    assert torch.equal(gt2 - GT, shift.repeat(2).expand(2, 4))
    for before, after in zip(GT, gt2, strict=True):  # the pixels under each box moved with it
        assert np.array_equal(_pixels(img2, after), _pixels(image, before))
    # Detections: kept ones shifted and clipped to the window; one entirely outside dropped.
    inside = dets2.boxes[dets2.labels == 0]
    assert torch.equal(inside, torch.tensor([[12.0, 6.0, 28.0, 24.0]]) + shift.repeat(2))
    assert (dets2.boxes >= 0).all() and (dets2.boxes[:, 2] <= 50).all()
    assert (dets2.boxes[:, 3] <= 25).all() and len(dets2.labels) == len(dets2.scores)
    assert dets2.labels.tolist() == [0, 1]  # the far one (x >= 90) is never in the window


def test_zoom_in_widens_the_window_when_gt_boxes_span_more() -> None:
    wide = torch.tensor([[5.0, 5.0, 15.0, 15.0], [80.0, 30.0, 95.0, 45.0]])  # spans 90 x 40
    img2, _, gt2 = augment(_image(), _dets(wide), wide.clone(), random.Random(1), [2.0], 0.0)
    assert img2.size[0] >= 90 and img2.size[1] >= 40
    assert (gt2[:, :2] >= 0).all() and (gt2[:, 2] <= img2.size[0]).all()


def test_zoom_out_pads_with_the_clip_mean_colour() -> None:
    image = _image()
    img2, dets2, gt2 = augment(image, _dets(GT), GT.clone(), random.Random(3), [0.5], 0.0)
    assert img2.size == (200, 100) and dets2.image_size == (200, 100)
    offset = gt2[0, :2] - GT[0, :2]
    assert torch.equal(dets2.boxes, gt2) and (offset >= 0).all()
    assert np.array_equal(_pixels(img2, gt2[0]), _pixels(image, GT[0]))
    x, y = (int(v) for v in offset)
    corners = [(0, 0), (199, 99)]
    outside = [c for c in corners if not (x <= c[0] < x + 100 and y <= c[1] < y + 50)]
    assert outside and all(img2.getpixel(c) == PAD_COLOUR for c in outside)
