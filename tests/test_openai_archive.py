"""OpenAI TorchScript archives read without running any code (issue 12 item 1), loaded
directly by packaged configs (issue 14 item 1)."""

from __future__ import annotations

import copy
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from linkhoi.model import load_backbone
from linkhoi.model.backbone import ClipBackbone, load_clip
from linkhoi.model.clip_loading import ClipLoadError, detect_format
from linkhoi.model.openai_archive import read_openai_archive

torch.set_num_threads(1)
EXTRAS = {"input_resolution": 64, "context_length": 77, "vocab_size": 49408}


class _Archive(torch.nn.Module):
    """CLIP's submodules and parameters (OpenAI's names) plus OpenAI's extra tensors."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, param in clip.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, value in EXTRAS.items():
            self.register_buffer(name, torch.tensor(value))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


def write_openai_archive(clip: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """A TorchScript archive shaped like OpenAI's: fp16 tensors whose storages are tagged
    ``cuda:0`` (written on a CPU machine by renaming the location in data.pkl). Returns the
    fp16 state dict it holds."""
    half = copy.deepcopy(clip).half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(_Archive(half))
        plain = path.with_suffix(".cpu.pt")
        torch.jit.save(scripted, str(plain))
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                # Pickle opcodes hold no byte offsets, so the string can change length.
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
                assert b"cuda:0" in data
            dst.writestr(item, data)
    plain.unlink()
    return {k: v for k, v in half.state_dict().items()}


@pytest.fixture(scope="module")
def tiny():
    model, info = load_clip("tiny", None, device="cpu")
    return model


def _evil_archive(path: Path, payload: object) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(payload, protocol=2))
        zf.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("evil/code/__torch__/evil.py", "def __setstate__(self, s): pass\n")
        zf.writestr("evil/version", "3\n")


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_issue12_item1_archive_code_never_runs(tmp_path: Path, capsys) -> None:
    import argparse

    from linkhoi.model import cli as convert_cli

    marker = tmp_path / "pwned"
    src = tmp_path / "ViT-B-16.pt"
    _evil_archive(src, {"visual": _RunsCommand(marker)})
    assert detect_format(src) == "openai-torchscript"
    with pytest.raises(ClipLoadError, match=r"ViT-B-16.pt: refuses global (posix|os)\.system"):
        load_clip("tiny", src, device="cpu")
    parser = argparse.ArgumentParser()
    convert_cli.add_arguments(parser)
    dst = tmp_path / "out.safetensors"
    assert convert_cli.run(parser.parse_args([str(src), str(dst)])) == 2
    assert "refuses global" in capsys.readouterr().err
    assert not marker.exists() and not dst.exists()


def test_issue12_item1_no_jit_load_in_the_package() -> None:
    root = Path(__file__).resolve().parents[1] / "src" / "linkhoi"
    calls = [p for p in root.rglob("*.py") if re.search(r"jit\.load\s*\(", p.read_text())]
    assert calls == []


def test_issue12_item1_fp16_cuda_archive_reads_on_cpu(tiny, tmp_path: Path) -> None:
    src = tmp_path / "ViT-tiny.pt"
    want = write_openai_archive(tiny, src)
    state = read_openai_archive(src)
    assert set(state) == set(want) | set(EXTRAS)  # attribute-only tensors (attn_mask) left out
    for key, value in want.items():
        assert state[key].dtype == torch.float16 and state[key].device.type == "cpu"
        assert torch.equal(state[key], value), key
    # Loading casts to fp32: the features are those of the fp16-rounded weights.
    loaded, info = load_clip("tiny", src, device="cpu")
    rounded = copy.deepcopy(tiny).half().float()
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = ClipBackbone(loaded, info)(images)[0]
    ref = ClipBackbone(rounded, {**info, "sha256": "x"})(images)[0]
    assert torch.equal(got, ref)


def test_issue12_item1_truncated_archive_is_one_error(tiny, tmp_path: Path) -> None:
    src = tmp_path / "ViT-tiny.pt"
    write_openai_archive(tiny, src)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[: len(data) // 2] if "/data/" in item.filename else data)
    with pytest.raises(ClipLoadError, match=r"bad.pt: entry .*/data/\d+ holds \d+ bytes"):
        load_clip("tiny", bad, device="cpu")


@pytest.mark.parametrize("name", ["hico_det_teacher", "vcoco_student"])
def test_issue14_item1_packaged_config_loads_as_shipped(
    name: str, tiny, tmp_path: Path, monkeypatch
) -> None:
    """A packaged config names OpenAI archives (weights/ViT-*.pt); with such an archive in its
    place the backbone loads as configured, no conversion step. The aliases are shrunk to the
    tiny architecture so that the archive stays small."""
    from linkhoi.model.backbones import open_clip_adapter
    from linkhoi.train.config import load_config

    cfg = load_config(name)
    assert cfg.runtime.clip_weights.endswith(".pt")
    monkeypatch.chdir(tmp_path)
    tiny_alias = open_clip_adapter.ALIASES["tiny"]
    monkeypatch.setitem(open_clip_adapter.ALIASES, cfg.model["backbone"], tiny_alias)
    path = Path(cfg.runtime.clip_weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_openai_archive(tiny, path)
    backbone = load_backbone(cfg.model["backbone"], cfg.runtime.clip_weights, device="cpu")
    assert (
        backbone.spec == cfg.model["backbone"] and backbone.info["format"] == "openai-torchscript"
    )
    assert backbone.embed_dim == 64
