"""Human-Object Geometrical Encoder (docs/method.md §2): unary queries from the CLIP map, refined
with box positional encodings, then fused into one query per (human, object) pair."""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torchvision.ops import roi_align

from linkhoi.model import ops
from linkhoi.model.config import LinkConfig


class PositionalEncoderLayer(nn.Module):
    """Post-norm transformer-encoder layer whose queries and keys get ``Linear(PE)`` added
    (positions steer attention, values stay content). ``use_pe=False`` is plain self-attention."""

    def __init__(
        self, d: int, heads: int, pe_dim: int, ffn_ratio: int, dropout: float, use_pe: bool
    ):
        super().__init__()
        self.pe_proj = nn.Linear(pe_dim, d) if use_pe else None
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, ffn_ratio * d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_ratio * d, d)
        )
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pe: Tensor, pad_mask: Tensor) -> Tensor:
        """x (B, N, d); pe (B, N, pe_dim); pad_mask (B, N) True at padding. Returns (B, N, d)."""
        qk = x if self.pe_proj is None else x + self.pe_proj(pe)
        attn, _ = self.attn(qk, qk, x, key_padding_mask=pad_mask, need_weights=False)
        x = self.norm1(x + self.drop(attn))
        return self.norm2(x + self.drop(self.ffn(x)))


class PairFusion(nn.Module):
    """UPT multi-modal fusion: LN(Linear(concat(q_i, q_j))) ⊕ LN(Linear(MLP(code))) -> ReLU -> MLP,
    the spatial MLP 36 -> 128 -> 256 -> d_pair."""

    def __init__(self, d: int, d_pair: int, hidden: tuple[int, int]):
        super().__init__()
        h1, h2 = hidden
        self.spatial = nn.Sequential(
            nn.Linear(36, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, d_pair),
            nn.ReLU(),
        )
        self.fc_app = nn.Linear(2 * d, d_pair)
        self.ln_app = nn.LayerNorm(d_pair)
        self.fc_sp = nn.Linear(d_pair, d_pair)
        self.ln_sp = nn.LayerNorm(d_pair)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_pair, d_pair), nn.ReLU(), nn.Linear(d_pair, d_pair), nn.ReLU()
        )

    def forward(self, unary: Tensor, pairs: Tensor, code: Tensor) -> Tensor:
        """unary (N, d) queries; pairs (P, 2) (human, object) indices; code (P, 36).
        Returns (P, d_pair)."""
        # Linear(concat(q_i, q_j)) = W_i q_i + W_j q_j + b: project the N detections, then
        # gather, instead of projecting P ~ N^2 concatenations (same function, far fewer FLOPs).
        d = unary.shape[-1]
        w = self.fc_app.weight
        proj_i = nnf.linear(unary, w[:, :d])
        proj_j = nnf.linear(unary, w[:, d:], self.fc_app.bias)
        app = self.ln_app(proj_i[pairs[:, 0]] + proj_j[pairs[:, 1]])
        sp = self.ln_sp(self.fc_sp(self.spatial(code)))
        return self.mlp(torch.relu(torch.cat([app, sp], -1)))


class GeometryEncoder(nn.Module):
    """Unary queries (roi_align on F), box-PE encoder layers, pair-query fusion."""

    def __init__(self, config: LinkConfig, clip_dim: int):
        super().__init__()
        self.config = config
        d = config.d_model
        pe_dim = 4 * config.pe_dims
        self.unary_proj = nn.Linear(clip_dim, d)
        self.layers = nn.ModuleList(
            PositionalEncoderLayer(
                d,
                config.num_heads,
                pe_dim,
                config.ffn_ratio,
                config.dropout,
                use_pe=config.use_geometry_encoder,
            )
            for _ in range(config.encoder_layers)
        )
        self.fusion = PairFusion(d, config.d_pair, config.spatial_hidden)

    def unary_queries(
        self, fmap: Tensor, frame_boxes: list[Tensor], frame_size: int
    ) -> list[Tensor]:
        """roi_align (7x7, aligned) on F, mean-pooled, Linear C -> d.

        Args: fmap (B, C, h, w); frame_boxes: B tensors (N_b, 4) in the R x R frame.
        Returns B tensors (N_b, d).
        """
        counts = [b.shape[0] for b in frame_boxes]
        if sum(counts) == 0:
            return [fmap.new_zeros(0, self.config.d_model) for _ in counts]
        pooled = roi_align(
            fmap,
            [b.to(fmap.dtype) for b in frame_boxes],
            output_size=self.config.roi_size,
            spatial_scale=fmap.shape[-1] / frame_size,
            sampling_ratio=-1,
            aligned=True,
        ).mean(dim=(2, 3))
        return list(self.unary_proj(pooled).split(counts))

    def encode(self, queries: list[Tensor], norm_boxes: list[Tensor]) -> list[list[Tensor]]:
        """Refine unary queries over all detections of each image.

        Args: queries B tensors (N_b, d); norm_boxes B tensors (N_b, 4) in [0, 1].
        Returns a list per layer of B tensors (N_b, d).
        """
        c = self.config
        live = [b for b, q in enumerate(queries) if q.shape[0] > 0]
        per_layer: list[list[Tensor]] = [list(queries) for _ in self.layers]
        if not live:
            return per_layer
        x, mask = ops.pad_sequences([queries[b] for b in live])
        pe, _ = ops.pad_sequences(
            [ops.box_encoding(norm_boxes[b], c.pe_dims, c.pe_temperature) for b in live]
        )
        for layer_idx, layer in enumerate(self.layers):
            x = layer(x, pe.to(x.dtype), mask)
            for row, b in enumerate(live):
                per_layer[layer_idx][b] = x[row, : queries[b].shape[0]]
        return per_layer

    def pair_queries(
        self, unary: Tensor, pixel_boxes: Tensor, pairs: Tensor, image_size: tuple[int, int]
    ) -> Tensor:
        """Fuse pair queries. unary (N, d); pixel_boxes (N, 4); pairs (P, 2). Returns (P, d_pair)."""
        if pairs.shape[0] == 0:
            return unary.new_zeros(0, self.config.d_pair)
        h, o = pairs[:, 0], pairs[:, 1]
        code = ops.pair_spatial_code(pixel_boxes[h], pixel_boxes[o], image_size).to(unary.dtype)
        return self.fusion(unary, pairs, code)
