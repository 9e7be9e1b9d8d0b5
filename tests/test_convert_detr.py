"""`linkhoi convert-detr`: a facebookresearch/detr-layout state dict built for the test (every
key and shape of DETR-R50, from torchvision's ResNet-50 and torch's transformer layers, whose
parameter names DETR's modules share) converts, loads strictly, and maps back unchanged."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet50

from linkhoi.detections import DetectionError
from linkhoi.detections import detr_convert as dc
from linkhoi.detections.hf import HFDetector
from linkhoi.labels import load

pytest.importorskip("transformers")
# 265 ResNet-50 tensors + 6 x 12 encoder + 6 x 18 decoder + 2 + 2 + 1 + 2 + 6 other tensors
NUM_KEYS_R50 = 265 + 72 + 108 + 13


def original_detr_state(num_classes: int, layers: int = 6, d: int = 256) -> dict:
    """The state dict facebookresearch/detr's DETR-R50 has (FrozenBatchNorm2d: no
    num_batches_tracked; no fc), with random values."""
    torch.manual_seed(0)
    state = {
        f"backbone.0.body.{k}": v
        for k, v in resnet50(weights=None).state_dict().items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    for i in range(layers):
        enc = nn.TransformerEncoderLayer(d, 8, 2048)  # self_attn, linear1/2, norm1/2 as DETR
        dec = nn.TransformerDecoderLayer(d, 8, 2048)  # + multihead_attn, norm3
        state |= {f"transformer.encoder.layers.{i}.{k}": v for k, v in enc.state_dict().items()}
        state |= {f"transformer.decoder.layers.{i}.{k}": v for k, v in dec.state_dict().items()}
    extra = {
        "transformer.decoder.norm": nn.LayerNorm(d),
        "input_proj": nn.Conv2d(2048, d, 1),
        "query_embed": nn.Embedding(100, d),
        "class_embed": nn.Linear(d, num_classes + 1),
        "bbox_embed.layers.0": nn.Linear(d, d),
        "bbox_embed.layers.1": nn.Linear(d, d),
        "bbox_embed.layers.2": nn.Linear(d, 4),
    }
    for name, module in extra.items():
        state |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
    return state


def test_hico_detr_converts_loads_strictly_and_round_trips(tmp_path: Path) -> None:
    state = original_detr_state(num_classes=80)  # HICO-DET fine-tuned: 80 objects + no object
    assert len(state) == NUM_KEYS_R50  # the whole model
    mapped = dc.original_to_hf(state)
    back = dc.hf_to_original(mapped)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    model = dc.convert_state(state, "hico_det")  # strict load inside
    assert list(model.config.id2label.values()) == list(load("hico_det").objects)
    sd = model.state_dict()
    assert set(sd) == set(mapped)
    assert all(torch.equal(sd[k], v) for k, v in mapped.items())
    torch.testing.assert_close(  # the key third of the packed cross-attention projection
        sd["model.decoder.layers.3.encoder_attn.k_proj.weight"],
        state["transformer.decoder.layers.3.multihead_attn.in_proj_weight"][256:512],
    )


def test_cli_and_bad_checkpoints(tmp_path: Path, capsys) -> None:
    state = original_detr_state(num_classes=80, layers=1)  # one layer each
    ckpt = tmp_path / "detr-r50-hicodet.pth"
    torch.save({"model_state_dict": state, "epoch": 30}, ckpt)  # UPT / pocket's wrapping
    parser = argparse.ArgumentParser()
    dc.add_arguments(parser)
    out = tmp_path / "detr-hico"
    assert dc.run(parser.parse_args([str(ckpt), str(out)])) == 0
    assert f"--detector hf:{out}" in capsys.readouterr().out
    # The folder is a detector: shrink DETR's 800-pixel resize to keep the test fast.
    pre = json.loads((out / "preprocessor_config.json").read_text())
    pre["size"] = {"shortest_edge": 64, "longest_edge": 96}
    (out / "preprocessor_config.json").write_text(json.dumps(pre))
    det = HFDetector(out, load("hico_det"), score_threshold=0.0, device="cpu")
    assert det.names == list(load("hico_det").objects) and det.unmapped == []
    dets = det.detect("x.png", Image.new("RGB", (64, 48), (120, 80, 40)))
    assert dets.image_size == (64, 48) and len(dets) > 0
    coco = dict(state, **{"class_embed.weight": torch.zeros(92, 256)})
    cfg = dc.detr_config(coco, dc.class_names("auto", 91))
    assert (cfg.encoder_layers, cfg.num_labels, cfg.id2label[1]) == (1, 91, "person")
    assert dc.run(parser.parse_args([str(ckpt), str(out)])) == 2  # exists: never overwritten
    assert "output folder exists" in capsys.readouterr().err
    # A pickle with code is refused by weights_only loading, not executed.
    evil = tmp_path / "evil.pth"
    torch.save({"model": state, "obj": argparse.Namespace(a=1)}, evil)
    assert dc.run(parser.parse_args([str(evil), str(tmp_path / "e")])) == 2
    assert "cannot read the checkpoint safely" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    with pytest.raises(DetectionError, match="say which with --classes"):
        dc.class_names("auto", 7)
    with pytest.raises(DetectionError, match="unexpected DETR key"):
        dc.original_to_hf({"transformer.encoder.layers.0.foo.weight": torch.zeros(1)})
    names = tmp_path / "names.txt"
    names.write_text("person\nhorse\n")
    assert dc.class_names(str(names), 2) == ["person", "horse"]
