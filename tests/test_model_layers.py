"""The head's building blocks against their plain definitions (docs/method.md §2-§3): the fast forms
(per-detection projections, padded fused attention) must compute the same function."""

import math

import torch
import torch.nn.functional as nnf

from linkhoi.model import LinkConfig, ops
from linkhoi.model.decoder import CrossAttention, LinkingDecoderLayer
from linkhoi.model.geometry import PairFusion


def _reference_attention(att: CrossAttention, x, memory, query_pe=None, key_pe=None):
    """Per head: softmax([q ; q_pos] · [k ; k_pos] / sqrt(width)) v, written out by hand."""
    h = att.heads

    def head(t, i):  # (L, D) -> head i's (L, D/H) slice
        return t.view(t.shape[0], h, -1)[:, i]

    q, k, v = att.q(x[0]), att.k(memory[0]), att.v(memory[0])
    outs = []
    for i in range(h):
        qi, ki = head(q, i), head(k, i)
        if att.q_pos is not None:
            qi = torch.cat([qi, head(att.q_pos(query_pe[0]), i)], -1)
            ki = torch.cat([ki, head(att.k_pos(key_pe), i)], -1)
        weights = torch.softmax(qi @ ki.t() / math.sqrt(qi.shape[-1]), -1)
        outs.append(weights @ head(v, i))
    return torch.cat(outs, -1).unsqueeze(0)


def test_cross_attention_with_positions_matches_definition():
    torch.manual_seed(0)
    # Content width 16 per head + position width 16 per head; values 16 wide (padded inside).
    att = CrossAttention(d_query=24, d_kv=12, d_attn=32, heads=2, dropout=0.0, pos_dim=8).eval()
    x, memory = torch.randn(1, 7, 24), torch.randn(1, 5, 12)
    query_pe, key_pe = torch.randn(1, 7, 8), torch.randn(5, 8)
    out = att(x, memory, query_pe, key_pe)
    assert out.shape == (1, 7, 32)
    torch.testing.assert_close(out, _reference_attention(att, x, memory, query_pe, key_pe))


def test_cross_attention_plain_matches_definition():
    torch.manual_seed(1)
    att = CrossAttention(d_query=24, d_kv=12, d_attn=16, heads=4, dropout=0.0).eval()
    x, memory = torch.randn(1, 6, 24), torch.randn(1, 9, 12)
    torch.testing.assert_close(att(x, memory), _reference_attention(att, x, memory))


def test_pair_encoding_equals_linear_on_concatenated_box_encodings():
    torch.manual_seed(2)
    cfg = LinkConfig(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=8)
    layer = LinkingDecoderLayer(cfg, clip_dim=32)
    boxes = torch.rand(6, 2, 2).sort(dim=1).values.transpose(1, 2).reshape(6, 4)
    det_pe = ops.box_encoding(boxes, cfg.pe_dims, cfg.pe_temperature).unsqueeze(0)
    pairs = torch.tensor([[0, 1], [0, 5], [2, 0], [2, 3]]).unsqueeze(0)
    expected = layer.pair_pe(torch.cat([det_pe[0, pairs[0, :, 0]], det_pe[0, pairs[0, :, 1]]], -1))
    torch.testing.assert_close(layer.pair_encoding(det_pe, pairs)[0], expected)


def test_pair_fusion_equals_linear_on_concatenated_queries():
    torch.manual_seed(3)
    fusion = PairFusion(d=16, d_pair=24, hidden=(8, 12)).eval()
    unary, code = torch.randn(5, 16), torch.randn(4, 36)
    pairs = torch.tensor([[0, 1], [0, 4], [3, 2], [3, 0]])
    app = fusion.ln_app(fusion.fc_app(torch.cat([unary[pairs[:, 0]], unary[pairs[:, 1]]], -1)))
    sp = fusion.ln_sp(fusion.fc_sp(fusion.spatial(code)))
    expected = fusion.mlp(nnf.relu(torch.cat([app, sp], -1)))
    torch.testing.assert_close(fusion(unary, pairs, code), expected)
