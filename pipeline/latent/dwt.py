"""Integer lifting wavelet (CDF 9/7, space), multi-level, Mallat layout; temporal level helpers.

Every lifting step is x += (c · (a + b) + 2^13) >> 14 with c in Q14 and symmetric extension at the
edges, on int64 tensors: the inverse undoes the forward exactly and every machine computes the same
integers. Low band first along a dimension (ceil(n/2) samples), high band after it.
Un-normalised lifting: the synthesis basis norms of each band are in `NORM_Q16` (committed constants,
so quantiser steps derived from them are integers on every machine).
"""

from __future__ import annotations

import torch

Q = 14
CDF97 = (-25987, -868, 14465, 7266)  # α, β, γ, δ in Q14 (-1.586134, -0.052980, 0.882911, 0.443507)
# L2 norms (Q16) of the 1-D synthesis basis functions of the un-normalised lifting, per level j = 1, 2, ...:
# (low, high) of a band after j analysis levels; an impulse of 2^24 run through the integer inverse on a
# 1024-sample signal (tests/test_latent_dwt.py re-measures them). A 2-D/3-D band's norm is their product.
NORM97_Q16 = ((74698, 58147), (87935, 64452), (102145, 76822), (117790, 89815), (135528, 103772),
              (155846, 119460), (179182, 137387), (208449, 165822))
MAX_SPATIAL_LEVELS = len(NORM97_Q16)


def _pair_sum(v: torch.Tensor, dim: int, n_out: int, shift: int) -> torch.Tensor:
    """out[i] = v[i - shift] + v[i + 1 - shift] along `dim` for i < n_out (shift 0 or 1), indices past either
    end of v mirrored onto its first/last sample (symmetric extension); a new tensor."""
    m = v.shape[dim]
    shape = list(v.shape)
    shape[dim] = n_out
    out = v.new_empty(shape)
    lo, hi = shift, min(n_out, m - 1 + shift)  # i whose both taps are inside v
    torch.add(v.narrow(dim, 0, hi - lo), v.narrow(dim, 1, hi - lo), out=out.narrow(dim, lo, hi - lo))
    if shift:  # i = 0: v[-1] := v[0]
        torch.mul(v.narrow(dim, 0, 1), 2, out=out.narrow(dim, 0, 1))
    if hi < n_out:  # i = m - 1 + shift: v[m] := v[m - 1]
        torch.mul(v.narrow(dim, m - 1, 1), 2, out=out.narrow(dim, hi, n_out - hi))
    return out


def _lift_1d(x: torch.Tensor, dim: int, coefs: tuple[int, ...], inverse: bool) -> torch.Tensor:
    """One level along `dim` of length n: forward: interleaved samples → [low | high];
    inverse: [low | high] → interleaved."""
    n = x.shape[dim]
    if n < 2:
        return x
    n_lo = (n + 1) // 2
    n_hi = n - n_lo
    even = [slice(None)] * x.dim()
    even[dim] = slice(0, None, 2)
    odd = list(even)
    odd[dim] = slice(1, None, 2)
    if inverse:
        s, d = x.narrow(dim, 0, n_lo).clone(), x.narrow(dim, n_lo, n_hi).clone()
    else:
        s, d = x[tuple(even)].clone(), x[tuple(odd)].clone()
    half = 1 << (Q - 1)
    # d[i] sits between s[i] and s[i+1] (mirror: s[n_lo] := s[n_lo - 1] when n is even)
    # s[i] sits between d[i-1] and d[i] (mirror: d[-1] := d[0]; d[n_hi] := d[n_hi - 1])
    steps = list(enumerate(coefs))
    if inverse:
        steps.reverse()
    sign = -1 if inverse else 1
    for i, c in steps:
        if i % 2 == 0:  # predict: update d from s
            d.add_(_pair_sum(s, dim, n_hi, 0).mul_(c).add_(half).bitwise_right_shift_(Q), alpha=sign)
        else:  # update: s from d
            s.add_(_pair_sum(d, dim, n_lo, 1).mul_(c).add_(half).bitwise_right_shift_(Q), alpha=sign)
    if inverse:
        out = torch.empty_like(x)
        out[tuple(even)] = s
        out[tuple(odd)] = d
        return out
    return torch.cat([s, d], dim)


def low_size(n: int, levels: int) -> int:
    for _ in range(levels):
        n = (n + 1) // 2
    return n


def dwt2(x: torch.Tensor, levels: int, inverse: bool = False) -> torch.Tensor:
    """Multi-level 2-D CDF 9/7 on the last two dims of int64 x (Mallat layout). inverse=True undoes it."""
    h, w = x.shape[-2:]
    sizes = [(low_size(h, j), low_size(w, j)) for j in range(levels)]
    x = x.clone()
    order = range(levels - 1, -1, -1) if inverse else range(levels)
    for j in order:
        hh, ww = sizes[j]
        blk = x[..., :hh, :ww]
        if inverse:
            blk = _lift_1d(_lift_1d(blk, -1, CDF97, True), -2, CDF97, True)
        else:
            blk = _lift_1d(_lift_1d(blk, -2, CDF97, False), -1, CDF97, False)
        x[..., :hh, :ww] = blk
    return x


def t_levels(t: int) -> int:
    """Temporal levels for a GOP of t frames: until one low frame is left."""
    j = 0
    while t > 1:
        t = (t + 1) // 2
        j += 1
    return j


def t_band_level(t: int) -> list[int]:
    """Per temporal index of the Mallat layout: 0 for the low frame, j for frames of band H_j."""
    levels = t_levels(t)
    out = [0] * t
    for j in range(1, levels + 1):
        lo, hi = low_size(t, j), low_size(t, j - 1)
        for i in range(lo, hi):
            out[i] = j
    return out
