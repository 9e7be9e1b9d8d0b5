"""The benchmark scripts keep their output contract (other tools read their last line), and
model_cost.py's MAC count sees the fused attention kernels."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_vit_macs(tokens: int = 17, width: int = 64, layers: int = 2, patch_pixels: int = 768):
    """Multiply-accumulates of the "tiny" CLIP image tower (64 px, patch 16: 16 patches + the
    class token), written out: patch conv, per block q/k/v/out projections, attention scores and
    weighted sum (heads x head width = width), the 4x MLP; then the projection of every token."""
    conv = (tokens - 1) * width * patch_pixels
    block = (
        tokens * width * 4 * width + 2 * tokens * tokens * width + 2 * tokens * width * 4 * width
    )
    return conv + layers * block + tokens * width * width


def test_model_cost_output_and_mac_count(capsys: pytest.CaptureFixture[str]) -> None:
    model_cost = _script("model_cost")
    args = ["--backbone", "tiny", "--label-space", "synthetic", "--repeats", "1"]
    assert model_cost.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{4}", lines[-1])
    values = dict(re.findall(r"(\w+)=([\d.]+)", "\n".join(lines)))
    assert values["pairs"] == "435"  # 15 humans x (30 - 1) other detections
    # Counted with the fused kernels switched off: the attention blocks are in the count.
    assert float(values["backbone_gmac"]) * 1e9 == pytest.approx(_tiny_vit_macs(), rel=1e-3)
    assert float(values["mac_ratio"]) == pytest.approx(
        float(values["head_gmac"]) / float(values["backbone_gmac"]), rel=1e-2
    )


def test_detector_swap_prints_each_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from linkhoi.model import LinkConfig, create_model
    from linkhoi.model.checkpoint import model_payload, save_checkpoint

    torch.manual_seed(0)
    small = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)
    ckpt = save_checkpoint(
        tmp_path / "tiny.pt",
        model_payload(create_model(LinkConfig(**small), "synthetic", device="cpu")),
    )
    args = [str(ckpt), "--world", str(tmp_path / "world"), "--num-test", "3", "--device", "cpu"]
    assert _script("detector_swap").main(args) == 0
    rows = {ln[:28].strip(): ln.split() for ln in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"ground truth", "simulated good", "simulated noisy"}
    assert rows["ground truth"][-2] == "100.0%"  # ground truth covers every pair
    assert float(rows["simulated noisy"][-2].rstrip("%")) < 100.0
