"""Multi-scale autoregressive context model: p(x[f,k] | x[f,<k], x[f-1,k], x[key,k]) per latent tile.

One sequence per tile: the token positions of scales 0..K-1 in order (≤ 680 for the default
schedule). Input at scale k's positions (VAR teacher forcing): projection of the accumulated quantized
latent of scales < k, area-resized to scale k's map, + scale embedding + 2-D position embedding
+ embedding of the previous frame's token at the same scale/position (learned "none" for a GOP's
first frame) + embedding of the keyframe's token there ("none" for the keyframe itself).
Attention is block-causal over scales (a position sees its own and coarser scales).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.codec.config import CodecConfig


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mlp * d)
        self.fc2 = nn.Linear(mlp * d, d)
        self.heads = heads

    def step(self, x: torch.Tensor, cache: list, i: int) -> torch.Tensor:
        """Incremental pass for the positions of one new scale; cache[i] holds (k, v) of coarser scales."""
        n, l, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(n, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
        if cache[i] is not None:
            k = torch.cat([cache[i][0], k], 2)
            v = torch.cat([cache[i][1], v], 2)
        cache[i] = (k, v)
        y = ((q @ k.transpose(-1, -2)) * (1.0 / (d // h) ** 0.5)).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(n, l, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(n, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (1.0 / (d // h) ** 0.5) + bias
        y = att.softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(n, l, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ContextModel(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        d, v = cfg.ctx_dim, cfg.codebook_size
        self.feat = nn.Linear(cfg.latent_dim, d)
        self.scale_emb = nn.Embedding(cfg.n_scales, d)
        self.row_emb = nn.Embedding(max(cfg.scales), d)
        self.col_emb = nn.Embedding(max(cfg.scales), d)
        self.prev_emb = nn.Embedding(v + 1, d)  # index v = none
        self.key_emb = nn.Embedding(v + 1, d)
        self.blocks = nn.ModuleList(Block(d, cfg.ctx_heads, cfg.ctx_mlp) for _ in range(cfg.ctx_layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, v)
        for e in (self.scale_emb, self.row_emb, self.col_emb, self.prev_emb, self.key_emb):
            nn.init.normal_(e.weight, std=0.02)

    def embed(self, k: int, f: torch.Tensor, prev: torch.Tensor | None, key: torch.Tensor | None) -> torch.Tensor:
        """Input vectors (N, hk*wk, d) of scale k's positions (see the module docstring)."""
        v = self.cfg.codebook_size
        n, _, hk, wk = f.shape
        x = self.feat(f.to(self.feat.weight.dtype).permute(0, 2, 3, 1))  # (N, hk, wk, d)
        x = x + self.scale_emb.weight[k] + self.row_emb.weight[:hk, None] + self.col_emb.weight[None, :wk]
        for emb, toks in ((self.prev_emb, prev), (self.key_emb, key)):
            x = x + (emb.weight[v] if toks is None else emb(toks))
        return x.reshape(n, hk * wk, -1)

    def step(self, k: int, f: torch.Tensor, prev: torch.Tensor | None, key: torch.Tensor | None,
             cache: list) -> torch.Tensor:
        """Logits (N, hk*wk, V) of scale k given the KV cache of scales < k (updated in place).

        Same result as `forward` on scales 0..k (up to float rounding): attention is block-causal.
        """
        x = self.embed(k, f, prev, key)
        for i, b in enumerate(self.blocks):
            x = b.step(x, cache, i)
        return self.head(self.ln(x))

    def forward(
        self,
        feats: list[torch.Tensor],
        prev: list[torch.Tensor | None],
        key: list[torch.Tensor | None],
    ) -> torch.Tensor:
        """Logits (N, L, V) for scales 0..K-1 of N same-size tiles.

        feats[k]: (N, C, hk, wk) accumulated latent of scales < k resized to scale k's map;
        prev[k], key[k]: (N, hk, wk) tokens of the previous frame / keyframe, or None (= "none").
        """
        dt = self.feat.weight.dtype
        parts, scale_ids = [], []
        for k, f in enumerate(feats):
            parts.append(self.embed(k, f, prev[k], key[k]))
            scale_ids.append(torch.full((parts[-1].shape[1],), k))
        x = torch.cat(parts, 1)
        sid = torch.cat(scale_ids)
        bias = torch.zeros((len(sid), len(sid)), dtype=dt)
        bias.masked_fill_(sid[None, :] > sid[:, None], float("-inf"))
        for b in self.blocks:
            x = b(x, bias)
        return self.head(self.ln(x))


def scale_features(
    tokens: list[torch.Tensor],
    n_scales: int,
    contrib: Callable[[torch.Tensor, int], torch.Tensor],
    shape: tuple[int, int, int, int],
    sizes: list[tuple[int, int]],
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """Inputs feats[k] for k < n_scales: accumulated latent of tokens[<k] area-resized to sizes[k].

    tokens[k]: (N, hk, wk); contrib(idx, k) → (N, C, th, tw); shape = (N, C, th, tw).
    """
    acc = torch.zeros(shape, dtype=dtype)
    feats = []
    for k in range(n_scales):
        if k > 0:
            acc = acc + contrib(tokens[k - 1], k - 1)
        hk, wk = sizes[k]
        feats.append(acc if (hk, wk) == tuple(shape[-2:]) else F.interpolate(acc, size=(hk, wk), mode="area"))
    return feats
