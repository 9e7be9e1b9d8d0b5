"""Pair labelling, focal loss, L_M normalisation, zero-shot annotations, KD terms (hand-checked)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from linkhoi.data import HOIPair, Sample
from linkhoi.train.config import DistillConfig
from linkhoi.train.distill import Distiller, bernoulli_kl, softmax_kl
from linkhoi.train.losses import (
    focal_loss,
    gt_pair_tensor,
    matching_loss,
    pair_targets,
    remove_unseen,
    unannotated_pairs,
)


def test_pair_targets_hand_checked() -> None:
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # 0 human, identical to GT human
            [20, 0, 30, 10],  # 1 object, identical to GT object 1
            [100, 100, 110, 110],  # 2 object far away
            [0, 0, 10, 9],  # 3 human, IoU 0.9 with GT human
            [0, 0, 10, 4.9],  # 4 human, IoU 0.49 with GT human
        ],
        dtype=torch.float32,
    )
    gt_boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [22, 0, 30, 10]], dtype=torch.float32)
    gt = gt_pair_tensor(
        [HOIPair(0, 1, 2), HOIPair(0, 2, 3), HOIPair(0, None, 5)]  # g2 has IoU 0.8 with box 1
    )
    assert gt.tolist() == [[0, 1, 2], [0, 2, 3], [0, -1, 5]]
    pairs = torch.tensor([[0, 1], [0, 2], [3, 1], [3, 2], [4, 1]])
    t = pair_targets(pairs, boxes, gt_boxes, gt, num_classes=6)
    assert t.shape == (5, 6)
    positive = [sorted(torch.nonzero(row).flatten().tolist()) for row in t]
    assert positive == [[2, 3, 5], [5], [2, 3, 5], [5], []]
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    # No pairs or no GT: all zeros of the right shape.
    assert pair_targets(pairs, boxes, gt_boxes, gt[:0], 6).sum() == 0
    assert pair_targets(pairs[:0], boxes, gt_boxes, gt, 6).shape == (0, 6)


def test_focal_loss_values_and_stability() -> None:
    x = torch.tensor([[0.0, 2.0, -1.5]])
    t = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False]])
    got = focal_loss(x, t, mask, alpha=0.5, gamma=0.1)
    # x=0, t=1: CE log 2, (1 - p_t)^γ = 0.5^0.1, α_t = 0.5.
    first = math.log(2) * 0.5**0.1 * 0.5
    p = 1 / (1 + math.exp(-2.0))  # x=2, t=0: CE = -log(1-p), (1-p_t) = p
    second = -math.log(1 - p) * p**0.1 * 0.5
    assert got.item() == pytest.approx(first + second, rel=1e-6)
    ref = sigmoid_focal_loss(x, t, alpha=0.5, gamma=0.1, reduction="none")
    assert got.item() == pytest.approx((ref * mask).sum().item(), rel=1e-6)
    # Saturated logits keep a finite gradient (the plain power gives NaN here).
    xs = torch.tensor([[200.0, -200.0, 30.0]], requires_grad=True)
    loss = focal_loss(xs, torch.tensor([[1.0, 0.0, 1.0]]), torch.ones(1, 3, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(xs.grad).all()
    # -inf at masked entries does not leak NaN.
    xm = torch.tensor([[float("-inf"), 1.0]], requires_grad=True)
    loss = focal_loss(xm, torch.zeros(1, 2), torch.tensor([[False, True]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(xm.grad).all() and xm.grad[0, 0] == 0


def _out(fused, valid, layers=None):
    return {"fused_logits": fused, "valid": valid, "layer_logits": layers or [fused]}


def test_matching_loss_normalised_by_positives_with_aux_and_mask() -> None:
    torch.manual_seed(0)
    f1, f2, aux1 = torch.randn(3, 4), torch.randn(2, 4), torch.randn(3, 4)
    v1 = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    v2 = torch.ones(2, 4, dtype=torch.bool)
    t1 = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float32)
    t2 = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32)
    outs = [_out(f1, v1, [aux1, f1]), _out(f2, v2)]
    loss, stats = matching_loss(outs, [t1, t2], aux_loss=True)
    # Positives on valid entries: (0,0), (1,1), (2,3) in image 1 ((0,2) is masked) + 1 in image 2.
    assert stats["positives"] == 4
    main = focal_loss(f1, t1, v1) + focal_loss(f2, t2, v2)
    assert loss.item() == pytest.approx(((main + focal_loss(aux1, t1, v1)) / 4).item(), rel=1e-6)
    no_aux, _ = matching_loss(outs, [t1, t2], aux_loss=False)
    assert no_aux.item() == pytest.approx((main / 4).item(), rel=1e-6)
    # Class mask: class 3 removed -> positives 2, and class 3 logits get no gradient.
    f1g = f1.clone().requires_grad_(True)
    mask = torch.tensor([True, True, True, False])
    loss, stats = matching_loss([_out(f1g, v1), _out(f2, v2)], [t1, t2], class_mask=mask)
    assert stats["positives"] == 2
    loss.backward()
    assert (f1g.grad[:, 3] == 0).all() and (f1g.grad[:, :2] != 0).any()
    # No positives at all: divided by 1, not 0.
    zero, stats = matching_loss([_out(f2, v2)], [torch.zeros(2, 4)], aux_loss=False)
    assert stats["positives"] == 0
    assert zero.item() == pytest.approx(focal_loss(f2, torch.zeros(2, 4), v2).item())


def test_unannotated_persons_are_left_out_of_the_loss() -> None:
    # GT: person 0 annotated, person 1 not (V-COCO); candidates: near person 0, near person 1.
    gt_boxes = torch.tensor([[0, 0, 10, 10], [50, 0, 60, 10], [20, 0, 30, 10]], dtype=torch.float32)
    unannotated = torch.tensor([False, True, False])
    boxes = torch.tensor([[0, 0, 10, 10], [50, 0, 60, 9], [20, 0, 30, 10]], dtype=torch.float32)
    pairs = torch.tensor([[0, 2], [1, 2], [1, 0]])
    ignore = unannotated_pairs(pairs, boxes, gt_boxes, unannotated)
    assert ignore.tolist() == [False, True, True]
    assert not unannotated_pairs(pairs, boxes, gt_boxes, torch.zeros(3, dtype=torch.bool)).any()
    logits = torch.randn(3, 2, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    out = [
        {"fused_logits": logits, "valid": torch.ones(3, 2, dtype=torch.bool), "layer_logits": []}
    ]
    loss, _ = matching_loss(out, [targets], ignore=[ignore])
    loss.backward()
    assert (logits.grad[1:] == 0).all() and (logits.grad[0] != 0).all()
    assert loss.item() == pytest.approx(
        focal_loss(logits[:1], targets[:1], out[0]["valid"][:1]).item()
    )


def _sample(name: str, pairs: list[HOIPair]) -> Sample:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]], dtype=float)
    return Sample(name, None, 32, 32, boxes, np.array([0, 1, 2]), pairs)


def test_remove_unseen_drops_only_unseen_pairs() -> None:
    samples = [
        _sample("a", [HOIPair(0, 1, 5), HOIPair(0, 2, 1)]),  # keeps one seen pair
        _sample("b", [HOIPair(0, 1, 5), HOIPair(0, 2, 7)]),  # only unseen pairs: dropped
        _sample("c", [HOIPair(0, 2, 2)]),
        _sample("d", []),  # nothing to remove: kept
    ]
    kept = remove_unseen(samples, [5, 7])
    assert [s.file_name for s in kept] == ["a", "c", "d"]
    assert kept[0].pairs == [HOIPair(0, 2, 1)]
    assert np.array_equal(kept[0].boxes, samples[0].boxes)  # boxes stay (they are detections)
    assert len(samples[0].pairs) == 2  # input untouched


def test_kl_terms_hand_checked() -> None:
    # Bernoulli KL: zero when the distributions agree; log 2 for p_t = 1 vs σ(0) = 0.5.
    x = torch.tensor([0.3, -2.0, 4.0])
    assert torch.allclose(bernoulli_kl(torch.sigmoid(x / 2), x, 2.0), torch.zeros(3), atol=1e-6)
    assert bernoulli_kl(torch.tensor(1.0), torch.tensor(0.0), 1.0).item() == pytest.approx(
        math.log(2)
    )
    q = torch.randn(5, 8)
    assert torch.allclose(
        softmax_kl(torch.softmax(q / 2, -1), q, 2.0, -1), torch.zeros(5), atol=1e-6
    )
    p = torch.tensor([1.0, 0.0])
    assert softmax_kl(p, torch.zeros(2), 1.0, 0).item() == pytest.approx(math.log(2))


def _model_like(d_model: int, d_pair: int, d_latent: int) -> torch.nn.Module:
    m = torch.nn.Module()
    m.config = SimpleNamespace(d_model=d_model, d_pair=d_pair, d_latent=d_latent)
    return m


def _outputs(d_model, d_pair, d_latent, hw, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    return [
        {
            "pairs": torch.tensor([[0, 1], [0, 2]]),
            "fused_logits": r(2, 4),
            "valid": torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1]], dtype=torch.bool),
            "unary_queries": [r(3, d_model), r(3, d_model)],
            "pair_queries": [r(2, d_pair), r(2, d_pair)],
            "latent_map": r(d_latent, hw, hw),
        }
    ]


def test_distiller_losses_zero_on_self_and_switches() -> None:
    cfg = DistillConfig()
    student, teacher = _model_like(8, 12, 6), _model_like(8, 12, 6)
    dist = Distiller(student, [teacher], cfg)
    assert list(dist.parameters()) == []  # equal widths: no adapters, teacher not registered
    same = _outputs(8, 12, 6, 4, seed=1)
    loss, stats = dist.loss(same, [same])
    assert set(stats) == {"kd_logit", "kd_query", "kd_map"}
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    other = _outputs(8, 12, 6, 4, seed=2, requires_grad=True)
    loss, stats = dist.loss(other, [same])
    assert all(v > 0 for v in stats.values())
    loss.backward()
    assert other[0]["latent_map"].grad.abs().sum() > 0
    assert other[0]["pair_queries"][0].grad.abs().sum() > 0
    # Masked logits (valid False) get no gradient.
    assert other[0]["fused_logits"].grad[0, 2] == 0
    # Each level switches off independently.
    for level in ("logit", "query", "map"):
        off = Distiller(student, [teacher], DistillConfig(**{level: False}))
        _, stats = off.loss(other, [same])
        assert f"kd_{level}" not in stats and len(stats) == 2


def test_distiller_adapters_for_different_widths_and_two_teachers() -> None:
    student = _model_like(8, 12, 6)
    teachers = [_model_like(16, 20, 10), _model_like(16, 20, 10)]
    dist = Distiller(student, teachers, DistillConfig())
    assert isinstance(dist.unary_adapter, torch.nn.Linear)
    assert dist.unary_adapter.weight.shape == (16, 8)
    assert dist.pair_adapter.weight.shape == (20, 12)
    assert not hasattr(dist, "map_adapters")  # the map target is resampled, never learned
    s_out = _outputs(8, 12, 6, 4, seed=3, requires_grad=True)
    t_outs = [_outputs(16, 20, 10, 7, seed=4), _outputs(16, 20, 10, 7, seed=5)]
    loss, stats = dist.loss(s_out, t_outs)
    loss.backward()
    assert torch.isfinite(loss) and dist.unary_adapter.weight.grad is not None
    # Only the student's side learns: every distiller parameter is a student-side adapter.
    assert {n.split(".")[0] for n, _ in dist.named_parameters()} == {
        "unary_adapter",
        "pair_adapter",
    }
    # Averaged targets: two identical teachers give the same logit KD as one.
    one = Distiller(student, teachers[:1], DistillConfig(query=False, map=False))
    two = Distiller(student, teachers, DistillConfig(query=False, map=False))
    l1, _ = one.loss(s_out, t_outs[:1])
    l2, _ = two.loss(s_out, [t_outs[0], t_outs[0]])
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)


def test_resample_map_space_and_channels() -> None:
    from linkhoi.train.distill import resample_map

    # Channel c of the teacher holds the value c everywhere: linear resampling of 10 channels
    # onto 4 (ends kept) reads channels 0, 3, 6, 9.
    t_map = torch.arange(10.0).view(1, 10, 1, 1).expand(2, 10, 6, 6)
    out = resample_map(t_map, (2, 4, 3, 3))
    assert out.shape == (2, 4, 3, 3)
    torch.testing.assert_close(out[0, :, 1, 1], torch.tensor([0.0, 3.0, 6.0, 9.0]))
    # Space is bilinear: a map constant along x keeps its per-row values' mean structure.
    ramp = torch.linspace(0, 1, 4).view(1, 1, 4, 1).expand(1, 2, 4, 4)
    space = resample_map(ramp, (1, 2, 2, 2))
    assert torch.equal(space[0, 0], space[0, 1]) and space[0, 0, 0, 0] < space[0, 0, 1, 0]
    same = torch.randn(1, 3, 5, 5)
    assert torch.equal(resample_map(same, same.shape), same)  # nothing to do: untouched
