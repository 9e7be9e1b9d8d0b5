"""A vision-only backbone (DINOv2) with a text backbone whose weights a checkpoint leaves out:
``linkhoi detect --text-weights`` supplies them, checked against the stored hash."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file

from linkhoi.model import LinkConfig, create_model, load_backbone
from linkhoi.model.checkpoint import CheckpointError, load_model, model_payload, save_checkpoint

torch.set_num_threads(1)
HEAD = dict(d_model=16, d_pair=16, d_latent=16, num_heads=4, pe_dims=16, spatial_hidden=(16, 16))


def test_detect_text_weights_for_a_text_backbone_left_out(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    mlp_ratio=2, image_size=32, patch_size=8)  # fmt: skip
    transformers.Dinov2Model(cfg).save_pretrained(tmp_path / "dino")
    state = load_backbone("tiny").clip.state_dict()
    text_file, other = tmp_path / "text.safetensors", tmp_path / "other.safetensors"
    save_file({k: v.contiguous() + 1e-3 for k, v in state.items()}, str(text_file))
    save_file({k: v.contiguous() - 1e-3 for k, v in state.items()}, str(other))
    config = LinkConfig(backbone=f"hf:{tmp_path / 'dino'}", text_backbone="tiny", **HEAD)
    model = create_model(config, "synthetic", text_weights=text_file, device="cpu")
    ckpt = save_checkpoint(tmp_path / "m.pt", model_payload(model, include_backbone=False))
    with pytest.raises(CheckpointError, match="text_weights="):
        load_model(ckpt, device="cpu")
    image = tmp_path / "x.png"
    Image.new("RGB", (100, 80)).save(image)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"file_name": "x.png", "detections": []}]))
    from linkhoi.infer import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [str(image), "--checkpoint", str(ckpt), "--detections", str(dets), "--no-draw",
            "--verbs", "ride"]  # fmt: skip
    run = lambda *extra: cli.run(parser.parse_args([*argv, *extra]))  # noqa: E731
    assert run("--out", str(tmp_path / "a"), "--text-weights", str(text_file)) == 0
    assert run("--out", str(tmp_path / "b"), "--text-weights", str(other)) == 2
    err = capsys.readouterr().err
    assert hashlib.sha256(other.read_bytes()).hexdigest() in err and "backbone.text.sha256" in err
    assert run("--out", str(tmp_path / "c"), "--text-weights", str(tmp_path / "no")) == 2
    assert "--text-weights" in capsys.readouterr().err
    # The same checkpoint as a teacher: distill.teacher_text_weights gives its text tower.
    from linkhoi.data.synthetic import generate_world
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    world = generate_world(tmp_path / "w", num_train=2, num_test=1, image_size=(192, 192),
                           progress=False)  # fmt: skip
    head = ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in HEAD.items())
    overrides = [
        f"data.train={{path: {world.train}}}", f"data.image_root={world.images}",
        f"model={{backbone: tiny, {head}}}", f"distill.teachers=[{ckpt}]", "optim.batch_size=2",
        "runtime.max_steps=1", f"runtime.out_dir={tmp_path / 'run'}", "runtime.progress=false",
    ]  # fmt: skip
    with pytest.raises(CheckpointError, match="text_weights="):
        Trainer(apply_overrides(TrainConfig(), overrides))
    cfg = apply_overrides(
        TrainConfig(), [*overrides, f"distill.teacher_text_weights=[{text_file}]"]
    )
    assert Trainer(cfg).fit()["step"] == 1
