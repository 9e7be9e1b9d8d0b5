"""Predictor (linkhoi.infer) on a tiny random checkpoint written by the test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.detections import DetectionError, Detections, FileDetections
from linkhoi.infer import InferenceError, Predictor, open_vocabulary_space
from linkhoi.labels import load
from linkhoi.model import ConfigError, LinkConfig, create_model
from linkhoi.model.checkpoint import model_payload, save_checkpoint

SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)
SPACE = load("synthetic")
P, HORSE, CUP, BALL = (SPACE.object_position(n) for n in ("person", "horse", "cup", "ball"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model(LinkConfig(**SMALL), "synthetic", device="cpu")
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", model_payload(model))


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device="cpu")


def _image(w: int = 120, h: int = 100, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _dets(size: tuple[int, int] = (120, 100)) -> Detections:
    boxes = [[10, 10, 50, 90], [60, 20, 110, 80], [5, 5, 30, 30], [70, 60, 90, 95]]
    return Detections(
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor([P, HORSE, CUP, P]),
        torch.tensor([0.9, 0.8, 0.5, 0.7]),
        size,
    )


def test_triplets_are_valid_pairs_of_the_detections(predictor: Predictor) -> None:
    dets = _dets()
    out = predictor(_image(), dets, top_k=7)
    assert 0 < len(out) <= 7
    boxes = {tuple(b) for b in dets.boxes.tolist()}
    humans = {
        tuple(b)
        for b, lab in zip(dets.boxes.tolist(), dets.labels.tolist(), strict=True)
        if lab == P
    }
    scores = [t["score"] for t in out]
    assert scores == sorted(scores, reverse=True)
    for t in out:
        assert tuple(t["human_box"]) in humans and tuple(t["object_box"]) in boxes
        assert t["human_box"] != t["object_box"]
        hoi = SPACE.hois[SPACE.hoi_position_by_id(t["hoi_id"])]
        assert (hoi.verb, hoi.object) == (t["verb"], t["object"])  # class valid for its object
        assert 0 < t["score"] <= 1
    # A threshold keeps exactly the scores above it.
    cut = scores[len(scores) // 2]
    above = predictor(_image(), dets, top_k=7, threshold=cut)
    assert [t["score"] for t in above] == [s for s in scores if s > cut]


def test_checkpoint_proposal_settings_and_top_k_apply(tmp_path: Path) -> None:
    # Trained with at most 1 human kept and 5 triplets per image: inference does the same.
    torch.manual_seed(0)
    cfg = LinkConfig(**SMALL, proposals={"min_humans": 1, "max_humans": 1}, top_k=5)
    model = create_model(cfg, "synthetic", device="cpu")
    path = save_checkpoint(tmp_path / "p.pt", model_payload(model))
    pred = Predictor.from_checkpoint(path, device="cpu")
    assert pred.model.config.proposals == {"min_humans": 1, "max_humans": 1}
    out = pred(_image(), _dets())
    assert 0 < len(out) <= 5
    assert {tuple(t["human_box"]) for t in out} == {(10.0, 10.0, 50.0, 90.0)}  # best human
    assert len(pred(_image(), _dets(), top_k=50)) > 5  # an explicit top_k still wins
    with pytest.raises(ConfigError, match=r"proposals: unknown key\(s\) \['max_human'\]"):
        LinkConfig(proposals={"max_human": 2})


def test_batch_list_callable_and_single_agree(predictor: Predictor) -> None:
    imgs = [_image(seed=1), _image(seed=2)]
    single = [predictor(im, _dets(), top_k=5) for im in imgs]
    batched = predictor(imgs, [_dets(), _dets()], top_k=5, batch_size=2)
    d = _dets()

    def fn(image: Image.Image):  # a user's detector: names are accepted as labels
        names = [SPACE.objects[i] for i in d.labels.tolist()]
        return d.boxes.numpy(), names, d.scores.numpy()

    called = predictor(imgs, fn, top_k=5)
    for a, b, c in zip(single, batched, called, strict=True):
        assert [t["hoi_id"] for t in a] == [t["hoi_id"] for t in b] == [t["hoi_id"] for t in c]
        np.testing.assert_allclose([t["score"] for t in a], [t["score"] for t in b], rtol=1e-4)
        np.testing.assert_allclose([t["score"] for t in a], [t["score"] for t in c], rtol=1e-4)


def test_no_pairs_give_empty_lists(predictor: Predictor) -> None:
    assert predictor(_image(), Detections.empty((120, 100))) == []
    objects_only = Detections(
        torch.tensor([[1.0, 1, 20, 20]]), torch.tensor([CUP]), [0.9], (120, 100)
    )
    assert predictor(_image(), objects_only) == []
    with pytest.raises(InferenceError, match="no detections"):
        predictor(_image())


def test_detections_passed_in_are_checked(predictor: Predictor, tmp_path: Path) -> None:
    good = _dets()
    for change, message in [
        ({"scores": torch.tensor([0.9, float("nan"), 0.5, 0.7])}, r"detections\[1\]\.score"),
        ({"scores": torch.tensor([5.0, 0.8, 0.5, 0.7])}, r"detections\[0\]\.score.*outside"),
        ({"labels": torch.tensor([P, 999, CUP, P])}, r"field 'labels'.*positions must be in"),
    ]:
        bad = Detections(**{**vars(good), **change})
        with pytest.raises(DetectionError, match=rf"image '<image>'.*{message}"):
            predictor(_image(), bad)
    with pytest.raises(InferenceError, match="batch_size must be an integer >= 1"):
        predictor([_image()], [good], batch_size=0)
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": "linkhoi-detections", "images": []}))
    with pytest.raises(InferenceError, match="a PIL image has no file name"):
        predictor(_image(), FileDetections(path, "synthetic"))


def test_image_formats_and_size_mismatch(predictor: Predictor, tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((100, 120), 90, np.uint8)).save(gray)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((100, 120), 40000, np.uint16)).save(deep)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (120, 100), (10, 200, 30, 128)).save(rgba)
    for path in (gray, deep, rgba):
        assert len(predictor(path, _dets(), top_k=3)) == 3
    with pytest.raises(InferenceError, match="120x100 image but the image"):
        predictor(_image(w=80), _dets())


def test_open_vocabulary_replaces_and_restores(predictor: Predictor) -> None:
    before = predictor(_image(), _dets(), top_k=10)
    prompts = predictor.set_vocabulary(["ride", "feed"], [("hold", "cup")])
    try:
        assert prompts == [
            "a photo of a person riding an object",
            "a photo of a person feeding an object",
            "a photo of a person holding a cup",
        ]
        out = predictor(_image(), _dets(), top_k=100)
        # 2 humans x 3 other boxes = 6 pairs; ride and feed fit all 6, hold only the 2 with the cup.
        pairs = {(tuple(t["human_box"]), tuple(t["object_box"])) for t in out}
        assert len(pairs) == 6 and len(out) == 2 * 6 + 2
        assert {t["verb"] for t in out} == {"ride", "feed", "hold"}
        assert all(t["object"] == "cup" for t in out if t["verb"] == "hold")
        assert predictor.label_space.name == "synthetic+open"
    finally:
        predictor.set_vocabulary()
    assert predictor(_image(), _dets(), top_k=10) == before
    with pytest.raises(InferenceError, match="giraffe"):
        predictor.set_vocabulary(hois=[("feed", "giraffe")])


def test_open_vocabulary_space() -> None:
    space = open_vocabulary_space(SPACE, ["ride"], [("ride", "horse")])
    assert [h.name for h in space.hois] == ["ride", "ride horse"]
    assert space.hoi_positions_for_object(HORSE).tolist() == [0, 1]
    assert space.hoi_positions_for_object(CUP).tolist() == [0]


def test_detection_file_of_another_label_space(predictor: Predictor, tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    rec = {
        "file_name": "a.png",
        "detections": [{"box": [1, 1, 5, 5], "label": "person", "score": 1}],
    }
    path.write_text(
        json.dumps({"format": "linkhoi-detections", "label_space": "hico_det", "images": [rec]})
    )
    with pytest.raises(DetectionError, match=r"dets\.json', field 'label_space': is 'hico_det'"):
        FileDetections(path, "synthetic")  # the header is checked before the records
    with pytest.raises(
        InferenceError, match="'hico_det' but the checkpoint is for label space 'synthetic'"
    ):
        predictor(_image(), FileDetections(path, "hico_det"))
    gz = tmp_path / "dets.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DetectionError, match="field 'label_space'"):
        FileDetections(gz, "synthetic")
