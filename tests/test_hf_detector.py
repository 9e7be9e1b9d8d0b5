"""transformers detectors from a local folder: random-weight tiny models of each DETR family
saved with save_pretrained, run through linkhoi and through the library's own processor and
post-processing; `linkhoi detect --detector hf:DIR` against the Python Predictor."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.detections import DetectionError
from linkhoi.detections.hf import HFDetector, load_hf_detector, weights_hash
from linkhoi.eval.triplets import read_triplets
from linkhoi.infer import Predictor, cli
from linkhoi.labels import load
from linkhoi.model import LinkConfig, create_model
from linkhoi.model.checkpoint import model_payload, save_checkpoint

tf = pytest.importorskip("transformers")

SPACE = load("synthetic")
ID2LABEL = {0: "person", 1: "horse", 2: "dining table", 3: "giraffe"}  # 2, 3: not synthetic's
SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)


def _resnet(out: list[str]) -> object:
    return tf.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], out_features=out
    )


def _detr_common(d_model: int = 16, decoder_layers: int = 1) -> dict:
    return dict(
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=decoder_layers,  # Deformable DETR's weight tying needs 2
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        id2label=ID2LABEL,
    )


def _rt_detr(config_cls: type) -> object:
    backbone = tf.RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
        layer_type="basic",
    )
    return config_cls(
        backbone_config=backbone,
        encoder_hidden_dim=16,
        encoder_in_channels=[16, 16, 16],
        feat_strides=[8, 16, 32],
        encoder_ffn_dim=16,
        encoder_attention_heads=2,
        encoder_layers=1,
        hidden_expansion=0.5,
        d_model=16,
        decoder_ffn_dim=16,
        decoder_attention_heads=2,
        decoder_layers=2,
        decoder_in_channels=[16, 16, 16],
        num_queries=10,
        num_feature_levels=3,
        decoder_n_points=2,
        num_denoising=0,
        id2label=ID2LABEL,
    )


SMALL_SIZE = {"shortest_edge": 64, "longest_edge": 96}
# family -> (model builder, image processor); backbones built from configs (nothing downloaded).
FAMILIES: dict[str, Callable[[], tuple[object, object]]] = {
    "detr": lambda: (
        tf.DetrForObjectDetection(
            tf.DetrConfig(backbone_config=_resnet(["stage4"]), **_detr_common())
        ),
        tf.DetrImageProcessor(size=SMALL_SIZE),
    ),
    "conditional_detr": lambda: (
        tf.ConditionalDetrForObjectDetection(
            tf.ConditionalDetrConfig(backbone_config=_resnet(["stage4"]), **_detr_common())
        ),
        tf.ConditionalDetrImageProcessor(size=SMALL_SIZE),
    ),
    "deformable_detr": lambda: (
        tf.DeformableDetrForObjectDetection(
            tf.DeformableDetrConfig(
                backbone_config=_resnet(["stage2", "stage3", "stage4"]),
                num_feature_levels=3,
                encoder_n_points=2,
                decoder_n_points=2,
                **_detr_common(d_model=32, decoder_layers=2),  # GroupNorm(32) in the input proj
            )
        ),
        tf.DeformableDetrImageProcessor(size=SMALL_SIZE),
    ),
    "dab_detr": lambda: (
        tf.DabDetrForObjectDetection(
            tf.DabDetrConfig(
                backbone_config=_resnet(["stage4"]),
                hidden_size=16,
                encoder_layers=1,
                decoder_layers=1,
                encoder_ffn_dim=16,
                decoder_ffn_dim=16,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                num_queries=10,
                id2label=ID2LABEL,
            )
        ),
        tf.ConditionalDetrImageProcessor(size=SMALL_SIZE),
    ),
    "rt_detr": lambda: (
        tf.RTDetrForObjectDetection(_rt_detr(tf.RTDetrConfig)),
        tf.RTDetrImageProcessor(size={"height": 64, "width": 64}),
    ),
    "rt_detr_v2": lambda: (
        tf.RTDetrV2ForObjectDetection(_rt_detr(tf.RTDetrV2Config)),
        tf.RTDetrImageProcessor(size={"height": 64, "width": 64}),
    ),
}


def save_family(name: str, folder: Path, seed: int = 0) -> Path:
    """A random-weight tiny detector of family `name` written with save_pretrained."""
    torch.manual_seed(seed)
    model, processor = FAMILIES[name]()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _image(seed: int, size: tuple[int, int] = (100, 70)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_matches_library_post_processing(family: str, tmp_path: Path) -> None:
    folder = save_family(family, tmp_path / family)
    det = HFDetector(folder, SPACE, score_threshold=0.0, device="cpu")
    image = _image(1)
    got = det.detect("a.png", image)

    # The library's own pipeline on the same folder.
    processor = tf.AutoImageProcessor.from_pretrained(folder)
    model = tf.AutoModelForObjectDetection.from_pretrained(folder).eval()
    with torch.no_grad():
        outputs = model(**processor(images=[image], return_tensors="pt"))
    ref = processor.post_process_object_detection(
        outputs, threshold=0.0, target_sizes=[(image.height, image.width)]
    )[0]
    names = [ID2LABEL[int(c)] for c in ref["labels"]]
    keep = [n in ("person", "horse") for n in names]  # the synthetic space lacks the others
    assert len(ref["labels"]) > 0 and sum(keep) == len(got) > 0
    boxes = ref["boxes"][keep].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.height)
    torch.testing.assert_close(got.boxes, boxes)
    torch.testing.assert_close(got.scores, ref["scores"][keep].float())
    expected = [SPACE.object_position(n) for n, k in zip(names, keep, strict=True) if k]
    assert got.labels.tolist() == expected and got.image_size == (100, 70)
    assert sum(det.dropped.values()) == len(names) - sum(keep)  # unmapped: dropped, counted
    assert set(det.dropped) <= {"dining table", "giraffe"}
    assert det.unmapped == ["dining table", "giraffe"]


def test_batches_and_errors(tmp_path: Path) -> None:
    folder = save_family("detr", tmp_path / "detr")
    det = load_hf_detector(folder, SPACE, score_threshold=0.0, device="cpu", batch_size=2)
    assert isinstance(det, HFDetector)
    images = [_image(i, (64 + 8 * i, 64)) for i in range(3)]
    batch = det.detect_batch(images)
    assert [d.image_size for d in batch] == [im.size for im in images]
    for im, d in zip(images, batch, strict=True):
        assert float(d.boxes[:, 2].max()) <= im.width and float(d.boxes.min()) >= 0
    # Retraining changes the hash; a copy of the same files has the same one.
    save_family("detr", tmp_path / "other", seed=1)
    assert weights_hash(folder) != weights_hash(tmp_path / "other")
    with pytest.raises(DetectionError, match="not found"):
        HFDetector(tmp_path / "missing", SPACE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectionError, match="config.json"):
        HFDetector(tmp_path / "empty", SPACE)
    with pytest.raises(DetectionError, match="open-vocabulary"):
        load_hf_detector(folder, SPACE, objects=["horse"])


def test_detect_cli_equals_predictor(tmp_path: Path) -> None:
    # Deformable DETR's post-processing keeps the top (query, class) pairs: persons and horses.
    folder = save_family("deformable_detr", tmp_path / "ddetr")
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "tiny.pt",
        model_payload(create_model(LinkConfig(**SMALL), "synthetic", device="cpu")),
    )
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        _image(10 + i).save(imgs / f"im{i}.png")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "out"
    argv = [str(imgs), "--checkpoint", str(ckpt), "--detector", f"hf:{folder}"]
    argv += ["--out", str(out), "--no-draw", "--device", "cpu", "--batch-size", "2"]
    assert cli.run(parser.parse_args(argv)) == 0
    got = dict(read_triplets(out / "triplets.json"))
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    source = HFDetector(folder, predictor.label_space, device="cpu")
    assert sum(len(t) for t in got.values()) > 0
    for name, triplets in got.items():
        api = predictor(str(imgs / name), source, top_k=100)
        assert [(t["hoi_id"], t["human_box"], t["object_box"]) for t in api] == [
            (t["hoi_id"], t["human_box"], t["object_box"]) for t in triplets
        ]
        np.testing.assert_allclose(
            [t["score"] for t in api], [t["score"] for t in triplets], rtol=1e-4, atol=1e-6
        )
