"""The detection cache: each image runs through the detector once, cached output equals the
detector's, and other weights or thresholds never read stale entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.detections import DetectionError
from linkhoi.detections.cache import CachedDetector, image_key
from linkhoi.detections.hf import HFDetector
from linkhoi.detections.registry import make_source
from linkhoi.labels import load
from test_hf_detector import save_family

pytest.importorskip("transformers")
SPACE = load("synthetic")


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 64 + 8 * i, 3), np.uint8)) for i in range(3)]


def test_cache_hits_equal_detector_and_skip_it(tmp_path: Path) -> None:
    folder = save_family("deformable_detr", tmp_path / "ddetr")
    plain = HFDetector(folder, SPACE, device="cpu")
    images = _images()
    expected = plain.detect_batch(images)
    cached = make_source(f"hf:{folder}", SPACE, device="cpu", cache=tmp_path / "cache")
    assert isinstance(cached, CachedDetector)
    first = cached.detect_batch(images[:2])
    assert (cached.hits, cached.misses) == (0, 2)
    cached.source.model = None  # hits must not run the model
    with pytest.raises(TypeError):
        cached.detect_batch(images[2:])  # a miss needs it
    again = cached.detect_batch(images[:2])
    assert (cached.hits, cached.misses) == (2, 2)
    for a, b, c in zip(expected, first, again, strict=False):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.boxes, c.boxes)
        assert torch.equal(a.scores, c.scores) and a.labels.tolist() == c.labels.tolist()
        assert c.image_size == a.image_size
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    # Other weights or another threshold: another key, nothing reused.
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    assert HFDetector(other, SPACE).cache_key == plain.cache_key  # same files, same key
    retrained = save_family("deformable_detr", tmp_path / "retrained", seed=1)
    assert HFDetector(retrained, SPACE).cache_key != plain.cache_key
    assert HFDetector(folder, SPACE, score_threshold=0.3).cache_key != plain.cache_key
    assert image_key(images[0]) != image_key(images[0].rotate(90, expand=True))


def test_only_detector_models_are_cached(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="cannot be cached"):
        make_source(f"folder:{tmp_path}", SPACE, cache=tmp_path / "c")
