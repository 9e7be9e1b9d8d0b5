"""VLM Linking Decoder (docs/method.md §3): pair queries read the CLIP map through a box-guided
spatial branch (over a learnt latent map F^l) and a semantic branch (over F itself)."""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from linkhoi.model import ops
from linkhoi.model.config import LinkConfig


class CrossAttention(nn.Module):
    """Multi-head cross-attention with explicit q/k/v projections and, optionally, conditional-DETR
    positions: per head, query = [content ; Linear(query PE)] and key = [content ; Linear(key PE)];
    values are content only. There is no output projection: the decoder's fusion MLP, a Linear
    first, follows directly (two Linears in a row would be one linear map)."""

    def __init__(self, d_query: int, d_kv: int, d_attn: int, heads: int, dropout: float, pos_dim=0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_query, d_attn)
        self.k = nn.Linear(d_kv, d_attn)
        self.v = nn.Linear(d_kv, d_attn)
        self.q_pos = nn.Linear(pos_dim, d_attn) if pos_dim else None
        self.k_pos = nn.Linear(pos_dim, d_attn) if pos_dim else None

    def _heads(self, x: Tensor) -> Tensor:  # (B, L, D) -> (B, H, L, D/H)
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        query_pe: Tensor | None = None,
        key_pe: Tensor | None = None,
    ) -> Tensor:
        """x (B, P, d_query); memory (B, HW, d_kv); query_pe (B, P, pos_dim) and key_pe
        (HW, pos_dim) when positional. Returns (B, P, d_attn)."""
        q, k = self._heads(self.q(x)), self._heads(self.k(memory))
        if self.q_pos is not None:
            q = torch.cat([q, self._heads(self.q_pos(query_pe))], -1)
            k_pos = self._heads(self.k_pos(key_pe).unsqueeze(0)).expand(k.shape[0], -1, -1, -1)
            k = torch.cat([k, k_pos], -1)
        v = self._heads(self.v(memory))
        width = v.shape[-1]
        if q.shape[-1] > width:
            # PyTorch's fused CPU kernel needs one head width for q, k and v; otherwise it falls
            # back to a slower path. Zero channels in v change nothing but the output's zero
            # tail, which is cut off.
            v = nnf.pad(v, (0, q.shape[-1] - width))
        out = nnf.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return out[..., :width].transpose(1, 2).flatten(2)


class LinkingDecoderLayer(nn.Module):
    """Self-attention (pair-box PE on q/k) -> spatial ⊕ semantic cross-attention -> fusion MLP,
    residual -> FFN; post-LayerNorm after each block."""

    def __init__(self, config: LinkConfig, clip_dim: int):
        super().__init__()
        c = config
        dp, drop = c.d_pair, c.dropout
        self.box_pe_dim = 4 * c.pe_dims
        self.pair_pe = nn.Linear(2 * self.box_pe_dim, dp)  # on concat(PE(human), PE(object))
        self.self_attn = nn.MultiheadAttention(dp, c.num_heads, dropout=drop, batch_first=True)
        self.norm1 = nn.LayerNorm(dp)
        fused = 0
        self.spatial = self.semantic = None
        if c.use_spatial_branch:
            pos = 2 * c.pe_dims
            self.spatial = CrossAttention(dp, c.d_latent, c.d_latent, c.num_heads, drop, pos)
            fused += c.d_latent
        if c.use_semantic_branch:  # the query projected to C, standard attention over F
            self.semantic = CrossAttention(dp, clip_dim, clip_dim, c.num_heads, drop)
            fused += clip_dim
        self.fuse = None
        if fused:
            self.fuse = nn.Sequential(nn.Linear(fused, dp), nn.ReLU(), nn.Linear(dp, dp))
            self.norm2 = nn.LayerNorm(dp)
        self.ffn = nn.Sequential(
            nn.Linear(dp, c.ffn_ratio * dp),
            nn.ReLU(),
            nn.Dropout(drop),
            nn.Linear(c.ffn_ratio * dp, dp),
        )
        self.norm3 = nn.LayerNorm(dp)
        self.drop = nn.Dropout(drop)

    def pair_encoding(self, det_pe: Tensor, pairs: Tensor) -> Tensor:
        """Linear(concat(PE(box_i), PE(box_j))) as W_i PE_i + W_j PE_j + b: projected per
        detection, then gathered per pair (same function, N instead of P ~ N^2 projections).

        det_pe (B, N, 4*pe_dims); pairs (B, P, 2). Returns (B, P, d_pair)."""
        w, d = self.pair_pe.weight, self.box_pe_dim
        proj_i = nnf.linear(det_pe, w[:, :d])
        proj_j = nnf.linear(det_pe, w[:, d:], self.pair_pe.bias)
        rows = torch.arange(det_pe.shape[0], device=det_pe.device).unsqueeze(1)
        return proj_i[rows, pairs[..., 0]] + proj_j[rows, pairs[..., 1]]

    def forward(
        self,
        x: Tensor,
        pad_mask: Tensor,
        pair_pe: Tensor,
        centre_pe: Tensor,
        latent: Tensor | None,
        cell_pe: Tensor,
        tokens: Tensor,
    ) -> Tensor:
        """x (B, P, d_pair); pad_mask (B, P) True at padding; pair_pe (B, P, d_pair) projected;
        centre_pe (B, P, 2*pe_dims); latent (B, HW, d_latent) or None; cell_pe (HW, 2*pe_dims);
        tokens = F as (B, HW, C). Returns (B, P, d_pair)."""
        qk = x + pair_pe
        attn, _ = self.self_attn(qk, qk, x, key_padding_mask=pad_mask, need_weights=False)
        x = self.norm1(x + self.drop(attn))
        if self.fuse is not None:
            parts = []
            if self.spatial is not None:
                parts.append(self.spatial(x, latent, centre_pe, cell_pe))
            if self.semantic is not None:
                parts.append(self.semantic(x, tokens))
            x = self.norm2(x + self.drop(self.fuse(torch.cat(parts, -1))))
        return self.norm3(x + self.drop(self.ffn(x)))


class LinkingDecoder(nn.Module):
    """Connector MLP F -> F^l (once per image) and ``decoder_layers`` linking layers."""

    def __init__(self, config: LinkConfig, clip_dim: int):
        super().__init__()
        self.config = config
        self.connector = None
        if config.use_spatial_branch:
            self.connector = nn.Sequential(
                nn.Linear(clip_dim, config.d_latent),
                nn.ReLU(),
                nn.Linear(config.d_latent, config.d_latent),
            )
        self.layers = nn.ModuleList(
            LinkingDecoderLayer(config, clip_dim) for _ in range(config.decoder_layers)
        )

    def latent_map(self, fmap: Tensor) -> Tensor | None:
        """F (B, C, h, w) -> F^l (B, d_latent, h, w); None when the spatial branch is off."""
        if self.connector is None:
            return None
        return self.connector(fmap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(
        self,
        fmap: Tensor,
        latent: Tensor | None,
        queries: list[Tensor],
        norm_boxes: list[Tensor],
        pairs: list[Tensor],
    ) -> list[list[Tensor]]:
        """Decode pair queries.

        Args: fmap F (B, C, h, w); latent F^l (B, d_latent, h, w) or None; queries B tensors
        (P_b, d_pair); norm_boxes B tensors (N_b, 4) in [0, 1]; pairs B tensors (P_b, 2).
        Returns a list per layer of B tensors (P_b, d_pair). Images with P_b = 0 are skipped
        (never padded: an all-masked row would put NaN into the gradients).
        """
        c = self.config
        per_layer: list[list[Tensor]] = [list(queries) for _ in self.layers]
        live = [b for b, q in enumerate(queries) if q.shape[0] > 0]
        if not live:
            return per_layer
        x, mask = ops.pad_sequences([queries[b] for b in live])
        det_pe, _ = ops.pad_sequences(
            [ops.box_encoding(norm_boxes[b], c.pe_dims, c.pe_temperature) for b in live]
        )
        det_pe = det_pe.to(x.dtype)
        idx, _ = ops.pad_sequences([pairs[b] for b in live])  # padding points at detection 0
        # The pair's centre: the centre of the union box of human and object.
        centres = []
        for b in live:
            h, o = norm_boxes[b][pairs[b][:, 0]], norm_boxes[b][pairs[b][:, 1]]
            lo, hi = torch.minimum(h[:, :2], o[:, :2]), torch.maximum(h[:, 2:], o[:, 2:])
            centres.append((lo + hi) / 2)
        centre, _ = ops.pad_sequences(centres)
        centre_pe = ops.point_encoding(centre, c.pe_dims, c.pe_temperature).to(x.dtype)
        rows = torch.tensor(live, device=fmap.device)
        f = fmap.index_select(0, rows)
        h, w = f.shape[-2:]
        cell_pe = ops.grid_encoding(h, w, c.pe_dims, c.pe_temperature, device=f.device).to(x.dtype)
        tokens = f.flatten(2).transpose(1, 2)
        lat = None if latent is None else latent.index_select(0, rows).flatten(2).transpose(1, 2)
        for layer_idx, layer in enumerate(self.layers):
            pair_pe = layer.pair_encoding(det_pe, idx)
            x = layer(x, mask, pair_pe, centre_pe, lat, cell_pe, tokens)
            for row, b in enumerate(live):
                per_layer[layer_idx][b] = x[row, : queries[b].shape[0]]
        return per_layer
