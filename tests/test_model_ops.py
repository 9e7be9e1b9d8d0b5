"""Pure functions of the LINK head (linkhoi.model.ops) and LinkConfig, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from linkhoi.model import ops
from linkhoi.model.config import ConfigError, LinkConfig


def test_boxes_to_frame_and_normalize():
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    # Image 200 x 100 resized to 224 x 224: x scales by 1.12, y by 2.24.
    assert torch.allclose(
        ops.boxes_to_frame(boxes, (200, 100), 224), torch.tensor([[11.2, 44.8, 123.2, 156.8]])
    )
    norm = ops.normalize_boxes(torch.tensor([[10.0, 20.0, 250.0, 70.0]]), (200, 100))
    assert torch.allclose(norm, torch.tensor([[0.05, 0.2, 1.0, 0.7]]))  # x2 clamped to 1


def test_sine_encoding_values():
    pe = ops.sine_encoding(torch.tensor([0.0, 0.25]), dims=4, temperature=20.0)
    assert pe.shape == (2, 4)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    f = math.sqrt(20.0)  # channels 2, 3 use temperature^(2/4)
    expected = [
        math.sin(2 * math.pi * 0.25),
        math.cos(2 * math.pi * 0.25),
        math.sin(2 * math.pi * 0.25 / f),
        math.cos(2 * math.pi * 0.25 / f),
    ]
    assert torch.allclose(pe[1], torch.tensor(expected), atol=1e-6)


def test_box_and_grid_encodings():
    box = torch.tensor([[0.1, 0.2, 0.5, 0.6]])
    pe = ops.box_encoding(box, dims=128, temperature=20.0)
    assert pe.shape == (1, 512)
    centre = ops.sine_encoding(torch.tensor([0.3, 0.4]), 128, 20.0).flatten()
    size = ops.sine_encoding(torch.tensor([0.4, 0.4]), 128, 20.0).flatten()
    assert torch.allclose(pe[0], torch.cat([centre, size]), atol=1e-6)
    grid = ops.grid_encoding(2, 3, dims=8)
    assert grid.shape == (6, 16)
    # Row-major: index 1 is row 0, column 1, whose centre is (1.5/3, 0.5/2).
    assert torch.allclose(grid[1], ops.point_encoding(torch.tensor([0.5, 0.25]), 8))


def test_pairwise_iou_is_diagonal_of_box_iou():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    boxes1 = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 40 + 1], 1)
    xy = torch.rand(20, 2, generator=g) * 50
    boxes2 = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 40 + 1], 1)
    assert torch.allclose(ops.pairwise_iou(boxes1, boxes2), box_iou(boxes1, boxes2).diag())


def test_pair_spatial_code_hand_computed():
    eps = 1e-10
    h = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), 10 x 20, area 200
    o = torch.tensor([[10.0, 0.0, 30.0, 10.0]])  # centre (20, 5), 20 x 10, area 200
    code = ops.pair_spatial_code(h, o, (100, 50))
    assert code.shape == (1, 36)
    dx, dy = 15 / 10, 5 / 20  # |centre offset| / human width, height
    # fmt: off
    f = [
        5 / 100, 10 / 50, 20 / 100, 5 / 50,  # centres
        10 / 100, 20 / 50, 20 / 100, 10 / 50,  # sizes
        200 / 5000, 200 / 5000, 1.0,  # areas, area ratio
        0.5, 2.0,  # aspect ratios
        0.0,  # IoU (touching boxes)
        dx, 0.0, 0.0, dy,  # object is right of and above the human
    ]
    # fmt: on
    expected = torch.tensor(f + [math.log(v + eps) for v in f], dtype=torch.float32)
    assert torch.allclose(code[0], expected, rtol=1e-5, atol=1e-6)
    # A human box 1e-3 px wide: area ratio, aspect ratio and offsets would be ~1e4-1e6,
    # past float16's range; capped, the code survives a half-precision cast.
    thin = torch.tensor([[5.0, 0.0, 5.001, 20.0]])
    code = ops.pair_spatial_code(thin, o, (100, 50))
    assert code[0, :18].max() == 1e4 and torch.isfinite(code.half()).all()


def test_enumerate_pairs():
    pairs = ops.enumerate_pairs(torch.tensor([0, 1, 0, 2]), human_label=0)
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [2, 0], [2, 1], [2, 3]]
    assert ops.enumerate_pairs(torch.tensor([1, 2]), 0).shape == (0, 2)  # no human
    assert ops.enumerate_pairs(torch.tensor([0]), 0).shape == (0, 2)  # a lone human
    assert ops.enumerate_pairs(torch.zeros(0, dtype=torch.int64), 0).shape == (0, 2)


def test_pad_sequences():
    x, mask = ops.pad_sequences([torch.ones(2, 3), torch.full((1, 3), 2.0)])
    assert x.shape == (2, 2, 3) and mask.tolist() == [[False, False], [False, True]]
    assert x[1, 1].abs().sum() == 0 and x[1, 0, 0] == 2


def test_prior_fused_logits_identity_and_stability():
    o = torch.linspace(-8, 8, 33).unsqueeze(1)
    p = torch.tensor([[0.01, 0.3, 0.9, 1.0]])
    psi = ops.prior_fused_logits(o, p)
    assert torch.allclose(torch.sigmoid(psi), p * torch.sigmoid(o), atol=1e-6)
    naive = torch.log(p / (1 + torch.exp(-o) - p))
    assert torch.allclose(psi, naive, atol=1e-5)
    assert torch.equal(psi[:, 3], o[:, 0])  # P = 1 leaves O unchanged
    # Large |O| stays finite where the naive form overflows (e^{-O}) or loses precision.
    big = ops.prior_fused_logits(torch.tensor([[-200.0, 200.0]]), torch.tensor([[0.5, 0.5]]))
    assert torch.isfinite(big).all()
    assert torch.isclose(big[0, 1], torch.tensor(math.log(0.5 / 0.5)), atol=1e-6)  # σ(Ψ) -> P
    assert torch.isclose(big[0, 0], torch.tensor(-200.0 + math.log(0.5)), atol=1e-3)
    # Gradients are finite even for P = 1.
    o2 = torch.tensor([[3.0]], requires_grad=True)
    ops.prior_fused_logits(o2, torch.tensor([[1.0]])).sum().backward()
    assert torch.isclose(o2.grad, torch.tensor([[1.0]]))


def test_prior_fused_logits_of_half_precision_logits():
    # fp16 logits, as autocast gives on GPU: a tiny prior (1e-4 x 1e-4 detection scores) must
    # not round to 0 (Ψ = -inf, NaN loss); the result is the float32 computation.
    o = torch.tensor([[2.0, -1.0]])
    prior = torch.tensor([[1e-8], [3e-8]])
    half = ops.prior_fused_logits(o.half(), prior)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    torch.testing.assert_close(half, ops.prior_fused_logits(o, prior))


def test_config_round_trip_and_errors():
    cfg = LinkConfig(backbone="tiny", d_model=32, use_spatial_branch=False)
    data = cfg.to_dict()
    assert data["spatial_hidden"] == [128, 256]
    assert LinkConfig.from_dict(data) == cfg
    assert cfg.d_pair == 384 and cfg.prior_lambda_test == 2.8
    assert math.isclose(cfg.logit_scale_init, 1 / 0.07)
    with pytest.raises(ConfigError, match="unknown model config key.*d_modle"):
        LinkConfig.from_dict({"d_modle": 3})
    with pytest.raises(ConfigError, match="num_heads"):
        LinkConfig(d_model=30, num_heads=8)
    with pytest.raises(ConfigError, match="encoder_layers"):
        LinkConfig(encoder_layers=0)
