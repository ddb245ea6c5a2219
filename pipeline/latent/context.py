"""The multi-scale autoregressive context model (ARM) over the latent grids (wavelet sub-bands).

A coefficient is predicted from N_FEATURES integers (see `BandContext`): its parent band's 3×3
neighbourhood one level coarser, its N/S/W/E in the same band (second checkerboard pass only), the
co-located coefficients of the sibling bands coded before it, of luma and Cb (chroma), and of the
GOP's low temporal frame, plus magnitude sums and flags. Every (band, temporal group, pass) is one
vectorised step, so the decoder never waits on a single symbol.

The ARM is an MLP (N_FEATURES → hidden → hidden (+residual) → 2) giving the mean μ and a spread index
s. Decoding runs it on integers: weights and biases in 2^-8 units, float64 matmuls of integer-valued
operands whose partial sums stay below 2^53 (so exact and order-independent), floor shifts between
layers. Fitting (per GOP) uses the float twin and `laplace_bits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.latent import tables

N_FEATURES = 27
W_BITS = 8  # ARM weights/biases in 2^-8 units (first-layer weights in 2^-W1_BITS: inputs can be large)
W1_BITS = 12
CTX_CLAMP = 4095  # context values are clamped to ±4095, sums of magnitudes to 4·4095
ACT_CLAMP = 1 << 24  # hidden activations (2^-8 units) are clamped to [0, 2^24]
_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _shift(x: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """x[..., i + di, j + dj] with zeros outside (x: (..., h, w))."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    si, sj = slice(max(di, 0), h + min(di, 0)), slice(max(dj, 0), w + min(dj, 0))
    ti, tj = slice(max(-di, 0), h + min(-di, 0)), slice(max(-dj, 0), w + min(-dj, 0))
    out[..., ti, tj] = x[..., si, sj]
    return out


def _fit(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Crop or edge-pad the last two dims of x to (h, w)."""
    x = x[..., :h, :w]
    if x.shape[-2] < h:
        x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], h - x.shape[-2], x.shape[-1])], -2)
    if x.shape[-1] < w:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], w - x.shape[-1])], -1)
    return x


def second_pass(h: int, w: int) -> torch.Tensor:
    """(h, w) bool: True where (i + j) is odd (the second checkerboard pass)."""
    return (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 1


@dataclass(frozen=True)
class BandInfo:
    """What the features say about a band besides its values."""

    orient: int
    level: int
    chroma: bool
    high_group: bool  # temporal frames 1.. (0 = the low frame)


class BandContext:
    """Features of one band's coefficients (n, h, w) for the ARM, `rows(cur, pos)` → (len(pos), N_FEATURES).

    Columns: the parent band's 3×3 neighbourhood (nearest-upsampled, one level coarser), the same band's
    N/S/W/E (second checkerboard pass only: their four neighbours are first-pass), the co-located
    coefficients of the sibling bands coded before (siblings), of luma and Cb (cross, chroma only) and of
    the low temporal frame (tparent (1, h, w), high group only), all clamped to ±CTX_CLAMP; then the
    magnitude sums of the parent and neighbour columns, the pass flag, band flags and the per-frame
    temporal level (t_levels (n,)). Everything but the same-band neighbours is computed once here, so
    both checkerboard passes share it.
    """

    def __init__(self, shape: tuple[int, int, int], info: BandInfo, parent: torch.Tensor | None = None,
                 siblings: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                 cross: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                 tparent: torch.Tensor | None = None, t_levels: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32):
        n, h, w = shape
        self.shape = shape
        f = torch.zeros((n, h, w, N_FEATURES), dtype=dtype)  # absent inputs stay zero

        def put(k: int, x: torch.Tensor) -> None:
            f[..., k] = x.to(dtype).clamp(-CTX_CLAMP, CTX_CLAMP)

        if parent is not None and parent.numel():
            up = parent.to(dtype).clamp(-CTX_CLAMP, CTX_CLAMP).repeat_interleave(2, -2).repeat_interleave(2, -1)
            offsets = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
            if up.shape[-2] >= h and up.shape[-1] >= w:  # windows of the zero-padded upsampled parent
                pad = F.pad(up, (2, 2, 2, 2))
                for k, (di, dj) in enumerate(offsets):
                    f[..., k] = pad[..., 2 + 2 * di : 2 + 2 * di + h, 2 + 2 * dj : 2 + 2 * dj + w]
            else:  # the parent is short of the band: `_fit` repeats its last row/column
                for k, (di, dj) in enumerate(offsets):
                    put(k, _fit(_shift(up, 2 * di, 2 * dj), h, w))  # = the parent's shift, upsampled
        # 9..12: same-band neighbours, filled per pass by `rows`
        for k, x in enumerate((*siblings, *cross, tparent)):
            if x is not None:
                put(13 + k, _fit(x, h, w) if k < 4 else x)
        f[..., 18] = f[..., 0:9].abs().sum(-1)
        self.second = second_pass(h, w).to(dtype).expand(n, h, w)
        f[..., 20] = self.second
        for k, flag in enumerate((info.high_group, info.chroma, info.orient == 0, info.orient == 3)):
            f[..., 21 + k] = float(flag)
        f[..., 25] = float(info.level)
        if t_levels is not None:
            f[..., 26] = t_levels.to(dtype).view(n, 1, 1)
        self.static = f.reshape(-1, N_FEATURES)

    def rows(self, cur: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Feature rows at flat positions `pos` of the band given its current values `cur` (n, h, w)."""
        f = self.static[pos]
        sec = self.second.reshape(-1)[pos]
        if bool(sec.any()):
            n, h, w = self.shape
            flat = F.pad(cur.to(f.dtype), (1, 1, 1, 1)).reshape(-1)  # zeros around every frame
            t, ij = pos // (h * w), pos % (h * w)
            at = t * ((h + 2) * (w + 2)) + (ij // w + 1) * (w + 2) + ij % w + 1
            nb = torch.stack([flat[at + di * (w + 2) + dj] for di, dj in _CROSS], -1)
            nb = nb.clamp(-CTX_CLAMP, CTX_CLAMP) * sec[:, None]
            f[:, 9:13] = nb
            f[:, 19] = nb.abs().sum(-1)
        return f


class ARM(nn.Module):
    """Float ARM for fitting: features (..., N_FEATURES) → μ (...), spread index s (...)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.hidden = hidden
        self.l1 = nn.Linear(N_FEATURES, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.copy_(torch.tensor([0.0, 20.0]))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.l1(f))
        h = torch.relu(self.l2(h)) + h
        o = self.out(h)
        return o[..., 0], o[..., 1]

    def _params(self) -> list[torch.Tensor]:
        return [self.l1.weight, self.l1.bias, self.l2.weight, self.l2.bias, self.out.weight, self.out.bias]

    def quantized(self, w1_bits: int = W1_BITS, w_bits: int = W_BITS) -> list[torch.Tensor]:
        """Integer parameters, int64, each within ±2^15: W1 in 2^-w1_bits units, W2 and W3 in 2^-w_bits,
        the biases in 2^-8 (activation) units."""
        bits = _param_bits(w1_bits, w_bits)
        return [torch.round(p.detach().double() * (1 << b)).clamp(-(1 << 15), 1 << 15).to(torch.int64)
                for p, b in zip(self._params(), bits)]

    def load_quantized(self, q: list[torch.Tensor], w1_bits: int = W1_BITS, w_bits: int = W_BITS) -> None:
        with torch.no_grad():
            for p, v, b in zip(self._params(), q, _param_bits(w1_bits, w_bits)):
                p.copy_(v.double().reshape(p.shape) / (1 << b))


def _param_bits(w1_bits: int, w_bits: int) -> list[int]:
    return [w1_bits, W_BITS, w_bits, W_BITS, w_bits, W_BITS]


def _floor_shift(v: torch.Tensor, k: int) -> torch.Tensor:
    """floor(v / 2^k) of integer-valued float64 (exact)."""
    return torch.floor(v / float(1 << k)) if k >= 0 else v * float(1 << -k)


def arm_int(f: torch.Tensor, q: list[torch.Tensor], w1_bits: int = W1_BITS, w_bits: int = W_BITS
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer ARM. f (n, N_FEATURES) integer-valued; q = ARM.quantized() →
    (mu_int, frac 0..7, spread 0..S-1), each (n,) int64. Bit-exact on any machine."""
    w1, b1, w2, b2, w3, b3 = (v.double() for v in q)
    h1 = (_floor_shift(f.double() @ w1.T, w1_bits - W_BITS) + b1).clamp(0, ACT_CLAMP)  # 2^-8 units
    h2 = ((_floor_shift(h1 @ w2.T, w_bits) + b2).clamp(0, ACT_CLAMP) + h1).clamp(0, ACT_CLAMP)
    o = (_floor_shift(h2 @ w3.T, w_bits) + b3).to(torch.int64)  # 2^-8 units
    mu_q = o[:, 0].clamp(-(1 << (15 + W_BITS)), 1 << (15 + W_BITS)) + (1 << (W_BITS - 4))  # round to 1/8
    mu_int = mu_q >> W_BITS
    frac = (mu_q - (mu_int << W_BITS)) >> (W_BITS - 3)
    spread = ((o[:, 1] + (1 << (W_BITS - 1))) >> W_BITS).clamp(0, tables.N_SPREAD - 1)
    return mu_int, frac, spread


def arm_rows(f: torch.Tensor, q: list[torch.Tensor], w1_bits: int = W1_BITS, w_bits: int = W_BITS
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`arm_int` of feature rows f (n, N_FEATURES), evaluated once per distinct row among those whose value
    features (0..17, so also their sums 18, 19) are all zero (most rows of fine bands at low rates);
    the same results as `arm_int` on every row."""
    zero = (f[:, 13:20] == 0).all(1)  # 18, 19 = the parent and neighbour magnitude sums
    n_zero = int(zero.sum())
    zrows = f[zero]
    tail = zrows[:, 20:]  # such rows differ only in the pass, band flags and levels (small integers)
    if n_zero < 256 or bool((tail < 0).any()) or bool((tail > 15).any()):
        return arm_int(f, q, w1_bits, w_bits)
    rest = torch.nonzero(~zero).squeeze(1)
    key = (tail.to(torch.int64) * (16 ** torch.arange(tail.shape[1]))).sum(1)
    _, inv = torch.unique(key, return_inverse=True)
    first = torch.zeros(int(inv.max()) + 1, dtype=torch.int64).scatter_(0, inv, torch.arange(n_zero))
    uniq = zrows[first]
    mu_u, frac_u, spread_u = arm_int(uniq, q, w1_bits, w_bits)
    mu_r, frac_r, spread_r = arm_int(f[rest], q, w1_bits, w_bits)
    out = []
    for u, r in ((mu_u, mu_r), (frac_u, frac_r), (spread_u, spread_r)):
        v = torch.empty(len(f), dtype=torch.int64)
        v[zero] = u[inv]
        v[rest] = r
        out.append(v)
    return out[0], out[1], out[2]


def laplace_bits(z: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Bits of integer-valued z under the tables' discrete Laplace P(y) ∝ r^|y - μ|, r = q_s^8, with the
    spread index s continuous (fitting only; the range limit ±E is ignored)."""
    s = s.clamp(0, tables.N_SPREAD - 1)
    d = (tables.D0 / tables.ONE) * torch.exp(s * math.log(tables.RATIO_Q16 / 65536.0))
    log_r = 8.0 * torch.log1p(-d)  # < 0
    f = mu - torch.floor(mu)
    log_z = torch.logaddexp(f * log_r, (1 - f) * log_r) - torch.log1p(-torch.exp(log_r))
    return ((z - mu).abs() * -log_r + log_z) / math.log(2.0)
