"""``load_backbone("hf:DIR")`` for CLIP, SigLIP, SigLIP2 and DINOv2 folders: tiny random models
built and saved by transformers itself (``save_pretrained``), a tokenizer made with
``tokenizers``; F, global and text equal the library's own forward, and a wrong mapping
(mutation) does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from linkhoi.model import load_backbone
from linkhoi.model.backbones import BackboneError, hf_adapter

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)

LAYERS = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
VISION = {**LAYERS, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8}
TEXT = {**LAYERS, "num_hidden_layers": 1, "max_position_embeddings": 16, "vocab_size": 64}
WORDS = ["a", "an", "photo", "of", "person", "riding", "horse", "holding", "cup", "object"]
PROMPTS = ["a photo of a person riding a horse", "a photo of a person holding a cup"]


def _tokenizer_files(directory: Path) -> None:
    """A word-level tokenizer (``tokenizers``) with the files AutoTokenizer reads."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>",
        "unk_token": "<unk>", "eos_token": "</s>", "model_max_length": 16,
    }))  # fmt: skip


def _model(kind: str):
    if kind == "clip":
        cfg = transformers.CLIPConfig(projection_dim=24, vision_config=VISION, text_config=TEXT)
        return transformers.CLIPModel(cfg)
    if kind == "siglip":
        cfg = transformers.SiglipConfig(vision_config=VISION, text_config=TEXT)
        return transformers.SiglipModel(cfg)
    if kind == "siglip2":
        vision = {k: v for k, v in VISION.items() if k != "image_size"}
        cfg = transformers.Siglip2Config(vision_config={**vision, "num_patches": 16},
                                         text_config=TEXT)  # fmt: skip
        return transformers.Siglip2Model(cfg)
    cfg = transformers.Dinov2Config(**{**VISION, "mlp_ratio": 2})
    return transformers.Dinov2Model(cfg)


def make_folder(root: Path, kind: str, tokenizer: bool = True) -> tuple[torch.nn.Module, Path]:
    """A transformers model of ``kind`` saved with ``save_pretrained`` (every tensor perturbed
    so that swapped or skipped parameters show)."""
    torch.manual_seed(5)
    model = _model(kind).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = root / kind
    model.save_pretrained(path)
    if tokenizer and kind != "dinov2":
        _tokenizer_files(path)
    return model, path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hf")
    return {k: make_folder(root, k) for k in ("clip", "siglip", "siglip2", "dinov2")}


def _image() -> Image.Image:
    rng = torch.Generator().manual_seed(0)
    pixels = (torch.rand(32, 32, 3, generator=rng) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def reference(kind: str, model, path: Path, image: Image.Image):
    """F (B, C, h, w), global and text embeddings computed by transformers' own classes."""
    with torch.no_grad():
        if kind == "siglip2":  # the library's NaFlex processor patchifies the image
            proc = transformers.Siglip2ImageProcessor(patch_size=8, max_num_patches=16)
            inputs = proc(images=[image], return_tensors="pt")
            vis = model.vision_model(**inputs)
            tokens, glob = vis.last_hidden_state, model.get_image_features(**inputs).pooler_output
        else:
            mean, std = hf_adapter.FAMILIES[kind].mean_std
            x = transformers.image_utils.to_numpy_array(image)  # already R x R: no resize
            pixels = (torch.tensor(x).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None,
                      None]) / torch.tensor(std)[:, None, None]  # fmt: skip
            pixels = pixels[None]
            if kind == "clip":
                vis = model.vision_model(pixel_values=pixels)
                tokens = model.visual_projection(
                    model.vision_model.post_layernorm(vis.last_hidden_state[:, 1:])
                )
                glob = model.get_image_features(pixel_values=pixels).pooler_output
            elif kind == "siglip":
                tokens = model.vision_model(pixel_values=pixels).last_hidden_state
                glob = model.get_image_features(pixel_values=pixels).pooler_output
            else:
                out = model(pixel_values=pixels)
                tokens, glob = out.last_hidden_state[:, 1:], out.pooler_output
        fmap = tokens.transpose(1, 2).reshape(1, tokens.shape[-1], 4, 4)
        text = None
        if kind != "dinov2":
            tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            if kind == "clip":
                enc = tok(PROMPTS, padding=True, return_tensors="pt")
                text = model.get_text_features(**enc).pooler_output
            else:  # SigLIP: padded to the maximum length, as trained; no attention mask
                enc = tok(PROMPTS, padding="max_length", max_length=16, return_tensors="pt")
                text = model.get_text_features(input_ids=enc["input_ids"]).pooler_output
    return fmap, glob, text


def _errors(kind: str, folders: dict) -> tuple[float, float, float]:
    model, path = folders[kind]
    bb = load_backbone(f"hf:{path}", device="cpu")
    image = _image()
    fmap, glob = bb(bb.preprocess(image)[None])
    ref_f, ref_g, ref_t = reference(kind, model, path, image)
    text_err = 0.0 if ref_t is None else float((bb.encode_text(PROMPTS) - ref_t).abs().max())
    return float((fmap - ref_f).abs().max()), float((glob - ref_g).abs().max()), text_err


@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2", "dinov2"])
def test_hf_folder_matches_library_forward(kind: str, folders: dict) -> None:
    assert max(_errors(kind, folders)) < 1e-5
    bb = load_backbone(f"hf:{folders[kind][1]}", device="cpu")
    assert bb.grid == (4, 4) and bb.image_size == 32
    assert bb.text_dim == (0 if kind == "dinov2" else 24 if kind == "clip" else 32)
    if kind == "siglip":
        assert bb.mean == (0.5, 0.5, 0.5)


def _skip_clip_norm(model, images):
    out = model.vision_model(pixel_values=images)
    hidden = out.last_hidden_state[:, 1:]  # post_layernorm left out
    return model.visual_projection(hidden), model.visual_projection(out.pooler_output)


def _siglip2_wrong_patch_order(model, images):
    p = 8
    b, c, h, w = images.shape
    patches = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 5, 3, 1)  # p x p swapped
    patches = patches.reshape(b, (h // p) * (w // p), -1)
    mask = torch.ones(patches.shape[:2], dtype=torch.int32)
    shapes = torch.tensor([[h // p, w // p]] * b)
    out = model.vision_model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes)
    return out.last_hidden_state, out.pooler_output


def _dinov2_before_norm(model, images):
    out = model(pixel_values=images, output_hidden_states=True)
    return out.hidden_states[-1][:, 1:], out.pooler_output


MUTATIONS = {
    "clip": {"vision": _skip_clip_norm},
    "siglip": {"pad_to_max_length": False},  # SigLIP text without max-length padding
    "siglip2": {"vision": _siglip2_wrong_patch_order},
    "dinov2": {"vision": _dinov2_before_norm},
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_hf_mapping_mutation_is_caught(kind: str, folders: dict, monkeypatch) -> None:
    import dataclasses

    family = dataclasses.replace(hf_adapter.FAMILIES[kind], **MUTATIONS[kind])
    monkeypatch.setitem(hf_adapter.FAMILIES, kind, family)
    assert max(_errors(kind, folders)) > 1e-4


def test_hf_errors_name_the_file(folders: dict, tmp_path: Path) -> None:
    import shutil

    with pytest.raises(BackboneError, match="no such folder"):
        load_backbone(f"hf:{tmp_path / 'nothing'}")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "siglp"}))
    with pytest.raises(BackboneError, match=r"config.json: field model_type is 'siglp'.*siglip"):
        load_backbone(f"hf:{odd}")
    # A SigLIP folder without tokenizer files: one error saying which files to put there.
    bare = tmp_path / "bare"
    shutil.copytree(folders["siglip"][1], bare)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    with pytest.raises(BackboneError, match="tokenizer.json"):
        load_backbone(f"hf:{bare}")
    # Weights of another architecture name the first mismatching field.
    with pytest.raises(BackboneError, match=r"model.safetensors: does not match .*field"):
        load_backbone(f"hf:{folders['siglip'][1]}", folders["clip"][1] / "model.safetensors")


def test_hf_tokenizer_from_another_folder(folders: dict, tmp_path: Path) -> None:
    """tokenizer=DIR: the tokenizer files of another folder, the same text as the folder's own;
    the files' hash is the text cache key's, also for a checkpoint whose folder is gone."""
    import shutil

    from linkhoi.model.backbones import rebuild_backbone

    bare, tok = tmp_path / "bare", tmp_path / "tok"
    shutil.copytree(folders["siglip"][1], bare)
    tok.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).rename(tok / name)
    own = load_backbone(f"hf:{folders['siglip'][1]}")
    bb = load_backbone(f"hf:{bare}", tokenizer=tok)
    assert torch.equal(bb.encode_text(PROMPTS), own.encode_text(PROMPTS))
    assert bb.info["tokenizer_sha256"] == own.info["tokenizer_sha256"] != ""
    record = {**bb.record(), "included": True}
    shutil.rmtree(bare)
    gone = rebuild_backbone(record)  # the recorded tokenizer folder is still there
    gone.load_state_dict(bb.state_dict())
    assert torch.equal(gone.encode_text(PROMPTS), own.encode_text(PROMPTS))
    with pytest.raises(BackboneError, match="no text tower"):
        load_backbone(f"hf:{folders['dinov2'][1]}", tokenizer=tok)


def test_clip_folder_without_tokenizer_uses_open_clip_bpe(tmp_path: Path) -> None:
    import open_clip

    torch.manual_seed(1)
    cfg = transformers.CLIPConfig(projection_dim=16, vision_config=VISION,
                                  text_config={**TEXT, "vocab_size": 49408})  # fmt: skip
    model = transformers.CLIPModel(cfg).eval()
    model.save_pretrained(tmp_path / "clip")
    bb = load_backbone(f"hf:{tmp_path / 'clip'}", device="cpu")
    ids = open_clip.tokenize(PROMPTS, 16)
    with torch.no_grad():
        want = model.get_text_features(input_ids=ids, attention_mask=(ids != 0).long())
    torch.testing.assert_close(bb.encode_text(PROMPTS), want.pooler_output, atol=1e-5, rtol=0)


HEAD = "d_model: 16, d_pair: 16, d_latent: 16, num_heads: 4, pe_dims: 16, spatial_hidden: [16, 16]"


def _train_and_detect(tmp_path: Path, model_yaml: str, before_detect=None) -> dict:
    """One training step with ``model=model_yaml``, then ``linkhoi detect`` from last.pt."""
    import argparse

    from linkhoi.data.synthetic import generate_world
    from linkhoi.eval.triplets import read_triplets
    from linkhoi.infer import cli
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    world = generate_world(tmp_path / "w", num_train=2, num_test=1, image_size=(192, 192),
                           progress=False)  # fmt: skip
    cfg = apply_overrides(TrainConfig(), [
        f"data.train={{path: {world.train}}}", f"data.image_root={world.images}",
        f"model={{{model_yaml}, {HEAD}}}", "optim.batch_size=2", "runtime.max_steps=1",
        f"runtime.out_dir={tmp_path / 'run'}", "runtime.progress=false",
    ])  # fmt: skip
    trainer = Trainer(cfg)
    assert trainer.fit()["step"] == 1
    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    if before_detect:
        before_detect()
    first = json.loads(Path(world.test).read_text())["images"][0]["file_name"]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = [str(Path(world.images) / first), "--checkpoint", str(tmp_path / "run" / "last.pt"),
            "--no-draw", "--detections", str(world.detections["good"]),
            "--out", str(tmp_path / "det")]  # fmt: skip
    assert cli.run(parser.parse_args(args)) == 0
    assert len(list(read_triplets(tmp_path / "det" / "triplets.json"))) == 1
    return {"trainer": trainer, "ckpt": ckpt}


def test_siglip_train_checkpoint_detect(folders: dict, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "siglip"
    shutil.copytree(folders["siglip"][1], folder)
    # The checkpoint of a small model holds its weights and config: detect runs without the folder.
    out = _train_and_detect(tmp_path, f"backbone: 'hf:{folder}'", lambda: shutil.rmtree(folder))
    record = out["ckpt"]["backbone"]
    assert record["included"] and record["config"]["model_type"] == "siglip"
    assert out["trainer"].model.backbone.mean == (0.5, 0.5, 0.5)


def test_dinov2_with_text_tower_train_checkpoint_detect(folders: dict, tmp_path: Path) -> None:
    dino, clip = folders["dinov2"][1], folders["clip"][1]
    model_yaml = f"backbone: 'hf:{dino}', text_backbone: 'hf:{clip}'"
    out = _train_and_detect(tmp_path, model_yaml)
    model = out["trainer"].model
    # F has DINOv2's width (32); the classifier projects into the CLIP text width (24).
    assert model.backbone.embed_dim == 32 and model.backbone.text_dim == 24
    assert tuple(model.text.shape)[1] == 24 and model.classifier.out_features == 24
    assert out["ckpt"]["backbone"]["text"]["spec"] == f"hf:{clip}"
    with pytest.raises(BackboneError, match="no text tower"):
        load_backbone(f"hf:{dino}").encode_text(PROMPTS)


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_issue12_item19_pickle_bin_is_one_error_and_safetensors_preferred(
    folders: dict, tmp_path: Path
) -> None:
    import shutil

    from linkhoi.model.clip_loading import ClipLoadError, read_state_dict

    marker = tmp_path / "pwned"
    folder = tmp_path / "clip"
    shutil.copytree(folders["clip"][1], folder)
    torch.save({"weight": _RunsCommand(marker)}, folder / "pytorch_model.bin")
    # Both files: model.safetensors is read, the pickle is never opened.
    assert load_backbone(f"hf:{folder}", device="cpu").info["weights"].endswith(".safetensors")
    (folder / "model.safetensors").unlink()
    for load in (lambda: load_backbone(f"hf:{folder}"), lambda: read_state_dict(folder)):
        with pytest.raises(ClipLoadError) as err:
            load()
        message = str(err.value)
        assert "pytorch_model.bin: holds pickled code or objects" in message
        assert "\n" not in message and "weights_only=False" not in message
    assert not marker.exists()


def test_model_cost_benchmark_takes_any_spec(folders: dict, capsys) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_cost.py"
    spec = importlib.util.spec_from_file_location("model_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--backbone", f"hf:{folders['siglip2'][1]}", "--label-space", "synthetic",
            "--repeats", "1", "--set", "num_heads=4"]  # fmt: skip
    assert module.main(args) == 0
    out = capsys.readouterr().out
    assert "grid=(4, 4)" in out and out.strip().splitlines()[-1].startswith("ratio=")


def test_teachers_of_other_families_distil_into_a_clip_student(folders: dict, tmp_path: Path):
    """The multi-teacher variant: a CLIP teacher and a SigLIP teacher (another backbone, grid
    and width), here with a DINOv2 teacher (CLIP text tower) too, distil into a tiny CLIP
    student; every KD level gives a finite loss."""
    from linkhoi.data.synthetic import generate_world
    from linkhoi.model import LinkConfig, create_model
    from linkhoi.model.checkpoint import model_payload, save_checkpoint
    from linkhoi.train.config import TrainConfig, apply_overrides
    from linkhoi.train.trainer import Trainer

    head = dict(d_model=16, d_pair=16, d_latent=16, num_heads=4, pe_dims=16,
                spatial_hidden=(16, 16))  # fmt: skip
    teachers = []
    dino, clip = (f"hf:{folders[k][1]}" for k in ("dinov2", "clip"))
    for name, spec, text in (("clip", "tiny", None), ("siglip", f"hf:{folders['siglip'][1]}", None),
                             ("dinov2", dino, clip)):  # fmt: skip
        config = LinkConfig(backbone=spec, text_backbone=text, **head)
        model = create_model(config, "synthetic", device="cpu")
        teachers.append(str(save_checkpoint(tmp_path / f"{name}.pt", model_payload(model))))
    world = generate_world(tmp_path / "w", num_train=2, num_test=1, image_size=(192, 192),
                           progress=False)  # fmt: skip
    cfg = apply_overrides(TrainConfig(), [
        f"data.train={{path: {world.train}}}", f"data.image_root={world.images}",
        f"model={{backbone: tiny, {HEAD}}}", f"distill.teachers={teachers}",
        "optim.batch_size=2", "runtime.max_steps=1", f"runtime.out_dir={tmp_path / 'run'}",
        "runtime.progress=false",
    ])  # fmt: skip
    trainer = Trainer(cfg)
    assert len(trainer.teachers) == 3 and len(trainer.data.groups) == 3  # three backbones
    assert trainer.fit()["step"] == 1
    last = trainer.history[-1]
    assert all(torch.isfinite(torch.tensor(last[k])) for k in ("kd_logit", "kd_query", "kd_map"))
