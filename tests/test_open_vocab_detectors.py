"""Open-vocabulary transformers detectors (random-weight tiny OWL-ViT, OWLv2, Grounding DINO
with made-up tokenizers, nothing downloaded) prompted with a label space's object names, and
an open-vocabulary HOI query reaching an object the checkpoint never had."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.detections import DetectionError
from linkhoi.detections.hf import load_hf_detector
from linkhoi.detections.hf_open import OpenVocabDetector
from linkhoi.eval.triplets import read_triplets
from linkhoi.infer import Predictor, cli
from linkhoi.labels import load
from linkhoi.model import LinkConfig, create_model
from linkhoi.model.checkpoint import model_payload, save_checkpoint

tf = pytest.importorskip("transformers")
SPACE = load("synthetic")
SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)


def _clip_tokenizer() -> object:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())  # byte-level BPE without merges: one token a char
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    return tf.CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=16
    )


def _owl(kind: str) -> tuple[object, object]:
    vocab = 514
    text = dict(vocab_size=vocab, hidden_size=16, intermediate_size=16, num_hidden_layers=1)
    text |= dict(num_attention_heads=2, max_position_embeddings=24)
    text |= dict(bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    vision = dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=16)
    vision |= dict(num_hidden_layers=1, num_attention_heads=2)
    if kind == "owlvit":
        config = tf.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=16)
        model = tf.OwlViTForObjectDetection(config)
        image = tf.OwlViTImageProcessor(size=32, crop_size=32)
        return model, tf.OwlViTProcessor(image_processor=image, tokenizer=_clip_tokenizer())
    config = tf.Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    image = tf.Owlv2ImageProcessor(size={"height": 32, "width": 32})
    return tf.Owlv2ForObjectDetection(config), tf.Owlv2Processor(
        image_processor=image, tokenizer=_clip_tokenizer()
    )


def _grounding_dino() -> tuple[object, object]:
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ".",
        *sorted(
            {w for name in [*SPACE.objects, "giraffe"] for w in name.replace("_", " ").split()}
        ),
    ]
    tokenizer = tf.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = tf.GroundingDinoConfig(
        backbone_config=tf.SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 1],
            window_size=2,
            out_features=["stage1", "stage2"],
        ),
        text_config=tf.BertConfig(
            vocab_size=len(words),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=48,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=48,
        use_pretrained_backbone=False,
    )
    image = tf.GroundingDinoImageProcessor(size={"shortest_edge": 32, "longest_edge": 48})
    return tf.GroundingDinoForObjectDetection(config), tf.GroundingDinoProcessor(
        image_processor=image, tokenizer=tokenizer
    )


BUILDERS = {"owlvit": lambda: _owl("owlvit"), "owlv2": lambda: _owl("owlv2")}
BUILDERS["grounding_dino"] = _grounding_dino


def save_open(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    model, processor = BUILDERS[kind]()
    head = getattr(model, "box_head", None)
    if head is not None:  # OWL: boxes = the patch-grid prior, not random saturated junk
        with torch.no_grad():
            head.dense2.weight.zero_()
            head.dense2.bias.zero_()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _image(seed: int, size: tuple[int, int] = (60, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_prompted_with_label_space_objects_like_the_library(kind: str, tmp_path: Path) -> None:
    folder = save_open(kind, tmp_path / kind)
    det = load_hf_detector(folder, SPACE, score_threshold=0.0, device="cpu")
    assert isinstance(det, OpenVocabDetector)
    assert det.names == [o.replace("_", " ") for o in SPACE.objects]  # person first already
    image = _image(0)
    got = det.detect("a.png", image)
    processor = tf.AutoProcessor.from_pretrained(folder)
    model = tf.AutoModelForZeroShotObjectDetection.from_pretrained(folder).eval()
    inputs = processor(images=[image], text=[det.names], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    if kind == "grounding_dino":
        ref = processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=0.0,
            text_threshold=0.25,
            target_sizes=[(40, 60)],
        )[0]
        names = [p.replace("[SEP]", "").strip(" .") for p in ref["text_labels"]]
        keep = [n in det.names for n in names]
    else:
        ref = processor.post_process_grounded_object_detection(
            outputs, threshold=0.0, target_sizes=[(40, 60)]
        )[0]
        names = [det.names[int(i)] for i in ref["labels"]]
        keep = [True] * len(names)
    assert len(got) == sum(keep) and len(ref["scores"]) > 0
    boxes = ref["boxes"][keep].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, 60)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 40)
    torch.testing.assert_close(got.boxes, boxes)
    torch.testing.assert_close(got.scores, ref["scores"][keep].float())
    wanted = [SPACE.object_position(n) for n, k in zip(names, keep, strict=True) if k]
    assert got.labels.tolist() == wanted
    assert sum(det.dropped.values()) == len(keep) - sum(keep)


def test_new_object_through_open_vocabulary_hois(tmp_path: Path) -> None:
    folder = save_open("owlv2", tmp_path / "owlv2")
    with pytest.raises(DetectionError, match="giraffe"):  # not the checkpoint's object
        OpenVocabDetector(folder, SPACE, objects=["giraffe"])
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "tiny.pt",
        model_payload(create_model(LinkConfig(**SMALL), "synthetic", device="cpu")),
    )
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        _image(5 + i, (48, 48)).save(imgs / f"im{i}.png")  # square: OWLv2 boxes stay inside
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "out"
    argv = [str(imgs), "--checkpoint", str(ckpt), "--detector", f"hf:{folder}", "--no-draw"]
    argv += ["--objects", "giraffe, horse", "--hois", "feed giraffe; ride horse"]
    argv += ["--out", str(out), "--device", "cpu"]
    assert cli.run(parser.parse_args(argv)) == 0
    got = dict(read_triplets(out / "triplets.json"))
    objects = {t["object"] for ts in got.values() for t in ts}
    assert "giraffe" in objects  # an object class the training data never had
    assert {t["verb"] for ts in got.values() for t in ts} <= {"feed", "ride"}
    # The Python API: the same vocabulary and detector give the same triplets.
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    predictor.set_vocabulary(hois=[("feed", "giraffe"), ("ride", "horse")], objects=["giraffe"])
    source = OpenVocabDetector(folder, predictor.label_space, objects=["giraffe", "horse"])
    for name, triplets in got.items():
        api = predictor(str(imgs / name), source)
        assert [(t["hoi_id"], t["object_box"]) for t in api] == [
            (t["hoi_id"], t["object_box"]) for t in triplets
        ]
