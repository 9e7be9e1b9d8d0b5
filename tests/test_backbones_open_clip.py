"""``load_backbone`` with open_clip specs: a custom config file (``open_clip:PATH.json``) built by
open_clip itself, compared with open_clip's own forward; aliases; self-contained checkpoints;
training, checkpoint and ``linkhoi detect`` through ``model.backbone``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from linkhoi.model import LinkConfig, create_model, load_backbone
from linkhoi.model.backbones import BackboneError
from linkhoi.model.checkpoint import load_model, model_payload

torch.set_num_threads(1)

# A user's own small CLIP size (open_clip config format), QuickGELU as OpenAI trained.
CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 2,
                   "head_width": 16, "pool_type": "avg"},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}  # fmt: skip
HEAD = dict(d_model=16, d_pair=16, d_latent=16, num_heads=4, pe_dims=16, spatial_hidden=(16, 16))
PROMPTS = ["a photo of a person riding a horse", "a photo of a person holding a cup"]


def _library_model(cfg: dict) -> torch.nn.Module:
    """The model open_clip builds for ``cfg``, every tensor perturbed (LayerNorms start at 1/0)."""
    torch.manual_seed(7)
    model = open_clip.model.CLIP(**{k: v for k, v in cfg.items()}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _reference(model: torch.nn.Module, images: torch.Tensor):
    """F, global and text from open_clip's own forward (``output_tokens``: patch tokens after
    ``ln_post``; projected by ``visual.proj`` as the pooled embedding is)."""
    visual = model.visual
    visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = visual(images)
        visual.output_tokens = False
        b, n, _ = tokens.shape
        side = int(n**0.5)
        fmap = (tokens @ visual.proj).reshape(b, side, side, -1).permute(0, 3, 1, 2)
        tok = open_clip.tokenize(PROMPTS, CONFIG["text_cfg"]["context_length"])
        return fmap, model.encode_image(images), model.encode_text(tok)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("oc")
    spec_file = root / "my_clip.json"
    spec_file.write_text(json.dumps(CONFIG))
    model = _library_model(CONFIG)
    weights = root / "my_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return {"root": root, "json": spec_file, "weights": weights, "model": model}


def test_custom_config_file_matches_open_clip_forward(custom: dict) -> None:
    bb = load_backbone(f"open_clip:{custom['json']}", custom["weights"], device="cpu")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fmap, glob = bb(images)
    ref_f, ref_g, ref_t = _reference(custom["model"], images)
    assert fmap.shape == (2, 32, 4, 4) and bb.grid == (4, 4) and bb.embed_dim == bb.text_dim == 32
    torch.testing.assert_close(fmap, ref_f, atol=1e-5, rtol=0)
    torch.testing.assert_close(glob, ref_g, atol=1e-5, rtol=0)
    torch.testing.assert_close(bb.encode_text(PROMPTS), ref_t, atol=1e-5, rtol=0)
    assert bb.spec == f"open_clip:{custom['json']}" and len(bb.sha256) == 64
    assert bb.preprocess(Image.new("RGB", (90, 40))).shape == (3, 64, 64)


def test_custom_config_quick_gelu_is_honoured(custom: dict, tmp_path: Path) -> None:
    # Mutation: the same weights read with GELU instead of QuickGELU give other features.
    gelu = tmp_path / "gelu.json"
    gelu.write_text(json.dumps({**CONFIG, "quick_gelu": False}))
    bb = load_backbone(f"open_clip:{gelu}", custom["weights"], device="cpu")
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _, ref_g, ref_t = _reference(custom["model"], images)
    assert (bb(images)[1] - ref_g).abs().max() > 1e-3
    assert (bb.encode_text(PROMPTS) - ref_t).abs().max() > 1e-3


def test_aliases_equal_their_open_clip_config(tmp_path: Path) -> None:
    from linkhoi.model.backbone import BACKBONES

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(BACKBONES["tiny"].model_config()))
    alias, spelled = load_backbone("tiny", device="cpu"), load_backbone(f"open_clip:{path}")
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert alias.sha256 == spelled.sha256  # the same seeded random initialisation
    assert torch.equal(alias(images)[0], spelled(images)[0])
    assert torch.equal(alias.encode_text(PROMPTS), spelled.encode_text(PROMPTS))


def test_unknown_names_list_close_matches(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="ViT-B-16"):
        load_backbone("open_clip:ViT-B-61")
    with pytest.raises(BackboneError, match="vit-b16"):
        load_backbone("vit-b61")
    with pytest.raises(BackboneError, match="missing.json: open_clip model config file not found"):
        load_backbone(f"open_clip:{tmp_path / 'missing.json'}")
    with pytest.raises(BackboneError, match=r"Hugging Face model 'roberta-base'.*config.json.*"
                       r"tokenizer=DIR"):  # fmt: skip
        load_backbone("open_clip:roberta-ViT-B-32")  # text tower's config read from a hub
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}}))
    with pytest.raises(BackboneError, match="bad.json: field 'text_cfg' is missing"):
        load_backbone(f"open_clip:{bad}")


def test_weights_of_another_size_name_the_field(custom: dict, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"my_clip.safetensors: .*field '\S+'"):
        load_backbone("tiny", custom["weights"])


def _dets():
    from linkhoi.detections import Detections
    from linkhoi.labels import load

    space = load("synthetic")
    labels = [space.object_position(x) for x in ("person", "horse", "cup")]
    boxes = [[5, 5, 40, 75], [50, 10, 95, 60], [20, 50, 60, 78]]
    return Detections(torch.tensor(boxes), torch.tensor(labels), torch.ones(3) * 0.9, (100, 80))


def test_small_backbone_checkpoint_is_self_contained(custom: dict, tmp_path: Path, monkeypatch):
    import shutil

    from linkhoi.model import checkpoint

    spec_file = tmp_path / "clip.json"
    shutil.copy(custom["json"], spec_file)
    weights = tmp_path / "clip.safetensors"
    shutil.copy(custom["weights"], weights)
    config = LinkConfig(backbone=f"open_clip:{spec_file}", **HEAD)
    model = create_model(config, "synthetic", clip_weights=weights, device="cpu").eval()
    payload = model_payload(model)  # small: weights and architecture travel with it
    assert payload["backbone"]["included"] and payload["backbone"]["config"] == CONFIG
    spec_file.unlink()
    weights.unlink()
    loaded = load_model(payload, device="cpu")
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    want = model(images, [_dets()])[0]["logits"]
    assert torch.equal(loaded(images, [_dets()])[0]["logits"], want)
    # Mutation: a size limit below the model leaves the weights out; then they are needed.
    monkeypatch.setattr(checkpoint, "SMALL_BACKBONE_BYTES", 1 << 10)
    lean = model_payload(model)
    assert not lean["backbone"]["included"]
    with pytest.raises(checkpoint.CheckpointError, match="clip_weights"):
        load_model(lean, device="cpu")


def test_train_checkpoint_detect_with_config_file_backbone(custom: dict, tmp_path: Path) -> None:
    """model.backbone = open_clip:PATH.json with runtime.clip_weights: one training step, then
    linkhoi detect from the checkpoint alone (config file and weights deleted)."""
    import shutil

    from linkhoi.data.synthetic import generate_world
    from linkhoi.eval.triplets import read_triplets
    from linkhoi.infer import cli
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    world = generate_world(tmp_path / "w", num_train=2, num_test=1, image_size=(192, 192),
                           progress=False)  # fmt: skip
    spec_file, weights = tmp_path / "c.json", tmp_path / "c.safetensors"
    shutil.copy(custom["json"], spec_file)
    shutil.copy(custom["weights"], weights)
    head = ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in HEAD.items())
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"data.train={{path: {world.train}}}",
            f"data.image_root={world.images}",
            f"model={{backbone: 'open_clip:{spec_file}', {head}}}",
            f"runtime.clip_weights={weights}",
            "optim.batch_size=2",
            "runtime.max_steps=1",
            f"runtime.out_dir={tmp_path / 'run'}",
            "runtime.progress=false",
        ],
    )
    result = Trainer(cfg).fit()
    assert result["step"] == 1
    spec_file.unlink()
    weights.unlink()
    record = json.loads(Path(world.test).read_text())
    first = record["images"][0]
    image = Path(world.images) / first["file_name"]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "det"
    args = [str(image), "--checkpoint", str(tmp_path / "run" / "last.pt"), "--no-draw",
            "--detections", str(world.detections["good"]), "--out", str(out)]  # fmt: skip
    assert cli.run(parser.parse_args(args)) == 0
    assert len(list(read_triplets(out / "triplets.json"))) == 1
    assert (tmp_path / "run" / "last.pt").stat().st_size < 40 << 20


def test_issue14_item2_clip_weights_of_another_model_refused(custom: dict, tmp_path: Path, capsys):
    """``linkhoi detect --clip-weights`` with a checkpoint that holds its backbone: a file of
    another model is refused naming both hashes (it used to be ignored without a word)."""
    import hashlib

    from linkhoi.infer import cli
    from linkhoi.model.checkpoint import save_checkpoint

    model = create_model(LinkConfig(backbone="tiny", **HEAD), "synthetic", device="cpu")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model_payload(model))
    stored = torch.load(ckpt, weights_only=True)["backbone"]["sha256"]
    other = tmp_path / "other.safetensors"
    state = {k: v.contiguous() + 1 for k, v in model.backbone.clip.state_dict().items()}
    save_file(state, str(other))
    image = tmp_path / "x.png"
    Image.new("RGB", (100, 80)).save(image)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"file_name": "x.png", "detections": []}]))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [str(image), "--checkpoint", str(ckpt), "--detections", str(dets), "--no-draw",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert cli.run(parser.parse_args([*argv, "--clip-weights", str(other)])) == 2
    err = capsys.readouterr().err
    assert stored in err and hashlib.sha256(other.read_bytes()).hexdigest() in err
    assert not (tmp_path / "o" / "triplets.json").exists()
    # The same weights saved to a file are accepted.
    same = tmp_path / "same.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.clip.state_dict().items()}, str(same))
    assert cli.run(parser.parse_args([*argv, "--clip-weights", str(same)])) == 0


TIMM_CONFIG = {
    "embed_dim": 192,
    "custom_text": True,
    "vision_cfg": {"image_size": 64, "timm_model_name": "vit_tiny_patch16_224",
                   "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1, "no_causal_mask": True, "pool_type": "last"},
}  # fmt: skip


def test_timm_tower_feature_map_is_the_normed_patch_tokens(tmp_path: Path) -> None:
    """An open_clip model with a timm trunk (as SigLIP's in open_clip): F = the trunk's final
    tokens after its norm, without the class token; global = encode_image."""
    path = tmp_path / "timm.json"
    path.write_text(json.dumps(TIMM_CONFIG))
    bb = load_backbone(f"open_clip:{path}", device="cpu")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fmap, glob = bb(images)
    trunk = bb.clip.visual.trunk
    with torch.no_grad():
        tokens = trunk.forward_features(images)[:, trunk.num_prefix_tokens :]  # after trunk.norm
        ref_g = bb.clip.encode_image(images)
    ref_f = tokens.transpose(1, 2).reshape(2, 192, 4, 4)
    torch.testing.assert_close(fmap, ref_f, atol=1e-5, rtol=0)
    torch.testing.assert_close(glob, ref_g, atol=1e-5, rtol=0)
    assert bb.grid == (4, 4) and bb.embed_dim == 192
    # Mutation: the trunk's last tokens without its final norm differ.
    with torch.no_grad():
        raw = trunk.forward_intermediates(images, indices=1, intermediates_only=True, norm=False)
    assert raw[0].shape == ref_f.shape and (raw[0] - ref_f).abs().max() > 1e-3
