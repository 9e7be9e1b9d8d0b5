"""open_clip models whose tokenizer open_clip fetches from a hub (SigLIP in open_clip: the text
config names ``hf_tokenizer_name``) take a local tokenizer folder: a tiny SigLIP-like open_clip
config built by open_clip itself and a tokenizer made with ``tokenizers`` and saved as a
transformers folder; text equals open_clip's own forward with open_clip's own tokenizer on that
folder; the folder travels with checkpoints and joins the text-embedding cache key."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from linkhoi.model import LinkConfig, create_model, load_backbone
from linkhoi.model.backbones import BackboneError
from linkhoi.model.backbones.tokenizer_folder import (
    open_clip_hf_tokenizer,
    open_clip_tokenizer_info,
)
from linkhoi.model.checkpoint import CheckpointError, load_model, model_payload

torch.set_num_threads(1)

# SigLIP's text config in open_clip (model_configs/ViT-B-16-SigLIP.json), made tiny.
SIGLIP_TEXT = {"context_length": 16, "vocab_size": 64, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
               "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2,
               "layers": 1, "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
               "norm_kwargs": {"eps": 1e-6}}  # fmt: skip
CONFIG = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": SIGLIP_TEXT,
}
WORDS = ["a", "an", "photo", "of", "person", "riding", "horse", "holding", "cup", "object",
         "and", "the", "with"]  # fmt: skip
# Capitals and punctuation: SigLIP's "canonicalize" cleaning lower-cases and drops them.
PROMPTS = ["A photo of a person riding a horse.", "a PHOTO of a person, holding a cup!"]
HEAD = dict(d_model=16, d_pair=16, d_latent=16, num_heads=4, pe_dims=16, spatial_hidden=(16, 16))


def make_tokenizer(folder: Path, words: list[str] = WORDS) -> Path:
    """A word-level tokenizer (``tokenizers``) appending ``</s>`` as SigLIP's does, saved as a
    transformers tokenizer folder (tokenizer.json, tokenizer_config.json, ...)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])  # fmt: skip
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("siglip_oc")
    spec_file = root / "tiny_siglip.json"
    spec_file.write_text(json.dumps(CONFIG))
    torch.manual_seed(3)
    cfg = {k: v for k, v in CONFIG.items() if k != "custom_text"}
    model = open_clip.model.CustomTextCLIP(**cfg).eval()
    with torch.no_grad():  # every tensor perturbed (LayerNorms start at 1/0)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    weights = root / "tiny_siglip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    tok = make_tokenizer(root / "tokenizer")
    return {"root": root, "json": spec_file, "weights": weights, "model": model, "tok": tok}


def reference_tokens(folder: Path, model_cfg: dict) -> torch.Tensor:
    """Token ids from open_clip's own ``get_tokenizer`` for a local folder (its ``local-dir:``
    schema reads the model config from ``open_clip_config.json`` in the folder)."""
    ref_dir = folder.parent / f"{folder.name}_ref"
    shutil.copytree(folder, ref_dir, dirs_exist_ok=True)
    (ref_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    return open_clip.get_tokenizer(f"local-dir:{ref_dir}")(PROMPTS)


def test_open_clip_hub_tokenizer_model_takes_a_local_folder(siglip: dict) -> None:
    bb = load_backbone(f"open_clip:{siglip['json']}", siglip["weights"], tokenizer=siglip["tok"])
    ids = reference_tokens(siglip["tok"], CONFIG)
    assert isinstance(open_clip.get_tokenizer(f"local-dir:{siglip['tok']}_ref"),
                      open_clip.tokenizer.HFTokenizer)  # fmt: skip
    assert ids.shape == (2, 16) and torch.equal(bb.tokenize(PROMPTS), ids)
    with torch.no_grad():
        want = siglip["model"].encode_text(ids)
    torch.testing.assert_close(bb.encode_text(PROMPTS), want, atol=1e-5, rtol=0)
    assert bb.info["tokenizer"] == str(siglip["tok"]) and len(bb.info["tokenizer_sha256"]) == 64
    record = bb.record()
    assert record["tokenizer"] == str(siglip["tok"])
    assert record["tokenizer_sha256"] == bb.info["tokenizer_sha256"]


def test_tokenizer_mutations_change_the_text(siglip: dict, monkeypatch) -> None:
    """Without the config's tokenizer_kwargs (SigLIP's "canonicalize"), or without padding to
    the context length (the last token is pooled), the embeddings differ."""
    ids = reference_tokens(siglip["tok"], CONFIG)
    with torch.no_grad():
        want = siglip["model"].encode_text(ids)
    plain = siglip["root"] / "no_kwargs.json"
    text = {k: v for k, v in SIGLIP_TEXT.items() if k != "tokenizer_kwargs"}
    plain.write_text(json.dumps({**CONFIG, "text_cfg": text}))
    bb = load_backbone(f"open_clip:{plain}", siglip["weights"], tokenizer=siglip["tok"])
    assert (bb.encode_text(PROMPTS) - want).abs().max() > 1e-3

    call = open_clip.tokenizer.HFTokenizer.__call__

    def longest(self, texts, context_length=None):  # padding to the longest prompt only
        ids = call(self, texts, context_length)
        return ids[:, : int((ids != self.tokenizer.pad_token_id).sum(1).max())]

    monkeypatch.setattr(open_clip.tokenizer.HFTokenizer, "__call__", longest)
    bb = load_backbone(f"open_clip:{siglip['json']}", siglip["weights"], tokenizer=siglip["tok"])
    assert bb.tokenize(PROMPTS).shape[1] < 16
    assert (bb.encode_text(PROMPTS) - want).abs().max() > 1e-3


def test_real_siglip_config_tokenizes_as_open_clip(siglip: dict) -> None:
    """open_clip's ViT-B-16-SigLIP config (context 64, canonicalize): the adapter's tokenizer
    gives open_clip's get_tokenizer ids on the same local folder (the model is not built)."""
    cfg = open_clip.get_model_config("ViT-B-16-SigLIP")
    spec = "open_clip:ViT-B-16-SigLIP"
    info = open_clip_tokenizer_info(cfg, "ViT-B-16-SigLIP", spec, siglip["tok"])
    assert info["hub_tokenizer"] == "timm/ViT-B-16-SigLIP"
    tokenize = open_clip_hf_tokenizer(Path(info["tokenizer"]), info["tokenizer_cfg"], spec)
    ids = tokenize(PROMPTS)
    assert ids.shape == (2, 64) and torch.equal(ids, reference_tokens(siglip["tok"], cfg))


def test_missing_tokenizer_folder_is_one_clear_error(siglip: dict, tmp_path: Path) -> None:
    spec = f"open_clip:{siglip['json']}"
    with pytest.raises(BackboneError, match=r"nope of backbone .*no such folder.*tokenizer.json"):
        load_backbone(spec, siglip["weights"], tokenizer=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match=r"no tokenizer files; copy tokenizer.json"):
        load_backbone(spec, siglip["weights"], tokenizer=tmp_path / "empty")
    # The real SigLIP name: refused before the model is built, naming the hub tokenizer.
    with pytest.raises(BackboneError, match=r"timm/ViT-B-16-SigLIP.*no such folder"):
        load_backbone("open_clip:ViT-B-16-SigLIP", tokenizer=tmp_path / "nope")
    # Without a folder the image side works; text names what to put where.
    bb = load_backbone(spec, siglip["weights"])
    assert bb(torch.zeros(1, 3, 32, 32))[0].shape == (1, 32, 2, 2)
    with pytest.raises(
        BackboneError, match=r"'timm/ViT-B-16-SigLIP'.*tokenizer.json.*tokenizer=DIR"
    ):
        bb.encode_text(PROMPTS)
    # A CLIP BPE model given a folder: refused, the folder would not be used.
    with pytest.raises(BackboneError, match="built-in CLIP BPE"):
        load_backbone("tiny", tokenizer=siglip["tok"])


def test_text_cache_key_includes_the_tokenizer(siglip: dict, tmp_path: Path) -> None:
    """Two tokenizer folders (one word fewer): same weights, other cache entries and
    embeddings; the same folder again reads the cache."""
    other = make_tokenizer(tmp_path / "other", [w for w in WORDS if w != "horse"])
    cache = tmp_path / "cache"
    spec = f"open_clip:{siglip['json']}"
    first = create_model(LinkConfig(backbone=spec, tokenizer=str(siglip["tok"]), **HEAD),
                         "synthetic", siglip["weights"], cache, "cpu")  # fmt: skip
    second = create_model(LinkConfig(backbone=spec, tokenizer=str(other), **HEAD),
                          "synthetic", siglip["weights"], cache, "cpu")  # fmt: skip
    assert len(list((cache / "text").iterdir())) == 2
    assert not torch.allclose(first.text, second.text)
    again = create_model(LinkConfig(backbone=spec, tokenizer=str(siglip["tok"]), **HEAD),
                         "synthetic", siglip["weights"], cache, "cpu")  # fmt: skip
    assert len(list((cache / "text").iterdir())) == 2 and torch.equal(again.text, first.text)


def test_train_checkpoint_detect_with_tokenizer_folder(siglip: dict, tmp_path: Path, capsys):
    """model.tokenizer: one training step; the checkpoint records the folder and its hash;
    linkhoi detect --verbs encodes new prompts with it, with --tokenizer after a move, and a
    folder of another tokenizer is refused naming both hashes."""
    from linkhoi.data.synthetic import generate_world
    from linkhoi.infer import cli
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    world = generate_world(tmp_path / "w", num_train=2, num_test=1, image_size=(192, 192),
                           progress=False)  # fmt: skip
    tok = tmp_path / "tok"
    shutil.copytree(siglip["tok"], tok)
    head = ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in HEAD.items())
    cfg = apply_overrides(TrainConfig(), [
        f"data.train={{path: {world.train}}}", f"data.image_root={world.images}",
        f"model={{backbone: 'open_clip:{siglip['json']}', tokenizer: '{tok}', {head}}}",
        f"runtime.clip_weights={siglip['weights']}", "optim.batch_size=2",
        "runtime.max_steps=1", f"runtime.out_dir={tmp_path / 'run'}", "runtime.progress=false",
        f"runtime.cache_dir={tmp_path / 'cache'}",
    ])  # fmt: skip
    assert Trainer(cfg).fit()["step"] == 1
    ckpt = tmp_path / "run" / "last.pt"
    record = torch.load(ckpt, map_location="cpu", weights_only=True)["backbone"]
    assert record["tokenizer"] == str(tok) and len(record["tokenizer_sha256"]) == 64
    first = json.loads(Path(world.test).read_text())["images"][0]["file_name"]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [str(Path(world.images) / first), "--checkpoint", str(ckpt), "--no-draw",
            "--detections", str(world.detections["good"]), "--verbs", "ride, hold"]  # fmt: skip
    assert cli.run(parser.parse_args([*argv, "--out", str(tmp_path / "d1")])) == 0
    moved = tmp_path / "moved"
    tok.rename(moved)
    assert cli.run(parser.parse_args([*argv, "--out", str(tmp_path / "d2")])) == 2
    assert "tokenizer=DIR" in capsys.readouterr().err  # the recorded folder is gone
    assert cli.run(parser.parse_args([*argv, "--out", str(tmp_path / "d3"),
                                      "--tokenizer", str(moved)])) == 0  # fmt: skip
    other = make_tokenizer(tmp_path / "other", WORDS[:-1])
    assert cli.run(parser.parse_args([*argv, "--out", str(tmp_path / "d4"),
                                      "--tokenizer", str(other)])) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert record["tokenizer_sha256"] in err and "tokenizer_sha256" in err
    # The same check in Python, for the payload.
    with pytest.raises(CheckpointError, match="not the tokenizer"):
        load_model(ckpt, siglip["weights"], "cpu", tokenizer=other)
    model = load_model(ckpt, device="cpu", tokenizer=moved)
    assert model_payload(model)["backbone"]["tokenizer"] == str(moved)


def test_transformers_text_tower_reads_its_config_from_the_folder(tmp_path: Path) -> None:
    """open_clip configs with ``hf_model_name`` (roberta-ViT-B-32, xlm-roberta, mt5, nllb):
    the tokenizer folder also holds the text model's config.json; text equals open_clip's own
    model built on that folder with its own tokenizer."""
    import transformers

    folder = make_tokenizer(tmp_path / "roberta")
    transformers.RobertaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64, pad_token_id=0,
                               max_position_embeddings=24).save_pretrained(folder)  # fmt: skip
    text = {"hf_model_name": "roberta-base", "hf_tokenizer_name": "roberta-base",
            "hf_pooler_type": "mean_pooler", "context_length": 16}  # fmt: skip
    config = {"embed_dim": 32, "quick_gelu": True, "text_cfg": text,
              "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1,
                             "head_width": 16}}  # fmt: skip
    (tmp_path / "roberta_clip.json").write_text(json.dumps(config))
    torch.manual_seed(4)
    local = {**text, "hf_model_name": str(folder), "hf_model_pretrained": False}
    model = open_clip.model.CustomTextCLIP(32, config["vision_cfg"], local, quick_gelu=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    weights = tmp_path / "roberta_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    spec = f"open_clip:{tmp_path / 'roberta_clip.json'}"
    bb = load_backbone(spec, weights, tokenizer=folder)
    ids = reference_tokens(folder, config)
    with torch.no_grad():
        want = model.encode_text(ids)
    torch.testing.assert_close(bb.encode_text(PROMPTS), want, atol=1e-5, rtol=0)
    (folder / "config.json").unlink()
    with pytest.raises(BackboneError, match=r"'roberta-base'.*config.json.*tokenizer=DIR"):
        load_backbone(spec, weights, tokenizer=folder)
