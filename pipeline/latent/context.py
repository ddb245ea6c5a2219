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

import functools
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
_NB_COLS = [9, 10, 11, 12, 19]  # N, S, W, E and their magnitude sum
_WIN_COLS = [*range(9), 18]  # the parent's 3×3 window and its magnitude sum


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


@functools.lru_cache(maxsize=64)
def padded_index(n: int, h: int, w: int) -> torch.Tensor:
    """(n·h·w,) int64: flat index of (t, i, j) in (n, h + 2, w + 2) (shared: never written to)."""
    t = torch.arange(n).view(n, 1, 1) * ((h + 2) * (w + 2))
    return (t + (torch.arange(h).view(1, h, 1) + 1) * (w + 2) + torch.arange(w) + 1).reshape(-1)


@dataclass(frozen=True)
class BandInfo:
    """What the features say about a band besides its values."""

    orient: int
    level: int
    chroma: bool
    high_group: bool  # temporal frames 1.. (0 = the low frame)


class BandContext:
    """Features of one band group's coefficients (n, h, w) for the ARM: `rows` (the N_FEATURES columns, for
    fitting) and `arm` (the integer ARM's outputs), the same integers on both paths.

    Columns: the parent band's 3×3 neighbourhood (nearest-upsampled, one level coarser), the same band's
    N/S/W/E (second checkerboard pass only: their four neighbours are first-pass), the co-located
    coefficients of the sibling bands coded before (siblings), of luma and Cb (cross, chroma only) and of
    the low temporal frame (tparent (1, h, w), high group only), all clamped to ±CTX_CLAMP; then the
    magnitude sums of the parent and neighbour columns, the pass flag, band flags and the per-frame
    temporal level (t_levels (n,)). Everything but the same-band neighbours is laid out once here, so both
    checkerboard passes share it: the parent windows at the parent's resolution (a 2×2 block of the band
    shares its parent's window), the other value columns as they are, the constant columns per frame.
    """

    def __init__(self, shape: tuple[int, int, int], info: BandInfo, parent: torch.Tensor | None = None,
                 siblings: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                 cross: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                 tparent: torch.Tensor | None = None, t_levels: torch.Tensor | None = None):
        n, h, w = shape
        self.shape = shape
        nz = torch.zeros((n, h, w), dtype=torch.bool)  # some value column (0..8, 13..17) nonzero
        self.win_kp: torch.Tensor | None = None  # (10, n·ph·pw) parent windows (columns 0..8) and their sum (18)
        if parent is not None and parent.numel():
            ph, pw = parent.shape[-2:]
            pad = F.pad(parent.clamp(-CTX_CLAMP, CTX_CLAMP), (1, 1, 1, 1))
            win = torch.empty((10, n, ph, pw), dtype=torch.int64)
            for k, (di, dj) in enumerate((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)):
                win[k] = pad[..., 1 + di : 1 + di + ph, 1 + dj : 1 + dj + pw]
            torch.sum(win[:9].abs(), 0, out=win[9])
            self.win_kp = win.reshape(10, -1)
            # band (i, j) → parent (i // 2, j // 2), the last parent row/column repeated past the parent's end
            pi = (torch.arange(h) // 2).clamp(max=ph - 1)
            pj = (torch.arange(w) // 2).clamp(max=pw - 1)
            self.win_at = (torch.arange(n).view(n, 1, 1) * (ph * pw) + pi.view(1, h, 1) * pw + pj).reshape(-1)
            nz |= (self.win_kp[9] != 0).index_select(0, self.win_at).view(n, h, w)
        self.vals: list[tuple[int, torch.Tensor]] = []  # (column, flat (n·h·w or h·w,) int64)
        for k, x in enumerate((*siblings, *cross, tparent)):
            if x is not None:
                v = (_fit(x, h, w) if k < 4 else x).clamp(-CTX_CLAMP, CTX_CLAMP)
                nz |= v != 0
                self.vals.append((13 + k, v.reshape(-1)))
        self.cols = (_WIN_COLS if self.win_kp is not None else []) + [c for c, _ in self.vals]
        self._win_arm: IntARM | None = None
        self._win_pre = torch.zeros(0)
        self.zero = ~nz.reshape(-1)
        const = torch.zeros((n, N_FEATURES), dtype=torch.float64)  # columns 21..26 per frame (20 per pass)
        for k, flag in enumerate((info.high_group, info.chroma, info.orient == 0, info.orient == 3)):
            const[:, 21 + k] = float(flag)
        const[:, 25] = float(info.level)
        if t_levels is not None:
            const[:, 26] = t_levels.to(torch.float64)
        self.const = const

    def _static(self, pos: torch.Tensor) -> torch.Tensor:
        """(len(pos), len(self.cols)) float64: the value columns `cols` at flat positions `pos`."""
        n, h, w = self.shape
        x = [self.win_kp.index_select(1, self.win_at[pos]).T] if self.win_kp is not None else []
        for _, v in self.vals:
            x.append(v[pos if len(v) == n * h * w else pos % (h * w)][:, None])
        return torch.cat(x, 1).double() if x else torch.zeros((len(pos), 0), dtype=torch.float64)

    def _neighbours(self, cur: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(len(pos), 5) int64: N, S, W, E of flat positions `pos` in `cur` (n, h, w) (zeros outside),
        clamped, and their magnitude sum (columns 9..12, 19)."""
        n, h, w = self.shape
        flat = F.pad(cur, (1, 1, 1, 1)).reshape(-1)  # zeros around every frame
        at = padded_index(n, h, w).index_select(0, pos)
        nb = torch.stack([flat.index_select(0, at + di * (w + 2) + dj) for di, dj in _CROSS], -1)
        nb.clamp_(-CTX_CLAMP, CTX_CLAMP)
        return torch.cat([nb, nb.abs().sum(1, keepdim=True)], 1)

    def rows(self, cur: torch.Tensor, pos: torch.Tensor, second: bool) -> torch.Tensor:
        """Feature rows (len(pos), N_FEATURES) float32 at flat positions `pos` of one checkerboard pass
        (`second`) of the band given its current values `cur` (n, h, w)."""
        _, h, w = self.shape
        f = self.const.to(torch.float32)[pos // (h * w)]
        f[:, self.cols] = self._static(pos).float()
        if second:
            f[:, 20] = 1.0
            f[:, _NB_COLS] = self._neighbours(cur, pos).float()
        return f

    def arm(self, cur: torch.Tensor, pos: torch.Tensor, second: bool, arm: IntARM
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`arm_int(self.rows(cur, pos, second), ...)` (mu_int, frac, spread (len(pos),) int64) without the
        rows. The first layer's sum is exact in any order, so it is split: the constant columns per frame,
        the parent windows once per parent position, the other value columns per row. Rows whose value
        columns are all zero differ only by their frame: the ARM runs once per frame for them."""
        n, h, w = self.shape
        w1 = arm.w1
        c = self.const @ w1.T  # (n, hidden)
        if second:
            c += w1[:, 20]
        zero = self.zero.index_select(0, pos)
        if second:
            nb = self._neighbours(cur, pos)
            zero &= nb[:, 4] == 0
        out = [r.repeat_interleave(len(pos) // n) for r in arm.head(c)]  # a pass has as many positions per frame
        at = torch.nonzero(~zero).squeeze(1)
        if len(at):
            p = pos.index_select(0, at)
            a = c.index_select(0, p // (h * w))
            if self.win_kp is not None:
                a += self._win_sums(arm).index_select(0, self.win_at.index_select(0, p))
            for col, v in self.vals:
                a.addr_(v.index_select(0, p if len(v) == n * h * w else p % (h * w)).double(), w1[:, col])
            if second:
                a.addmm_(nb.index_select(0, at).double(), w1[:, _NB_COLS].T)
            for o, r in zip(out, arm.head(a)):
                o.index_copy_(0, at, r)
        return out[0], out[1], out[2]

    def _win_sums(self, arm: IntARM) -> torch.Tensor:
        """(n·ph·pw, hidden) float64: the parent windows' part of the first layer's sum (kept for `arm`)."""
        if self._win_arm is not arm:
            self._win_arm, self._win_pre = arm, self.win_kp.T.double() @ arm.w1[:, _WIN_COLS].T
        return self._win_pre


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
    """floor(v / 2^k) of integer-valued float64 (exact), a new tensor."""
    return torch.floor_(v / float(1 << k)) if k >= 0 else v * float(1 << -k)


@dataclass(frozen=True)
class IntARM:
    """The integer ARM's parameters (ARM.quantized()) as float64 (exact integers): w1 (hidden, N_FEATURES) in
    2^-w1_bits, w2, w3 in 2^-w_bits, biases in 2^-8 units."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    w3: torch.Tensor
    b3: torch.Tensor
    w1_bits: int
    w_bits: int

    @classmethod
    def of(cls, q: list[torch.Tensor], w1_bits: int = W1_BITS, w_bits: int = W_BITS) -> IntARM:
        return cls(*(v.double() for v in q), w1_bits, w_bits)

    def head(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_int, frac 0..7, spread 0..S-1), each (n,) int64, from the first layer's sums a = f @ w1.T
        (n, hidden) float64 (integers below 2^53: exact whatever the order of the sum)."""
        h1 = _floor_shift(a, self.w1_bits - W_BITS).add_(self.b1).clamp_(0, ACT_CLAMP)  # 2^-8 units
        h2 = _floor_shift(h1 @ self.w2.T, self.w_bits).add_(self.b2).clamp_(0, ACT_CLAMP).add_(h1).clamp_(0, ACT_CLAMP)
        o = _floor_shift(h2 @ self.w3.T, self.w_bits).add_(self.b3).to(torch.int64)  # 2^-8 units
        mu_q = o[:, 0].clamp(-(1 << (15 + W_BITS)), 1 << (15 + W_BITS)) + (1 << (W_BITS - 4))  # round to 1/8
        mu_int = mu_q >> W_BITS
        frac = (mu_q & ((1 << W_BITS) - 1)) >> (W_BITS - 3)  # = (mu_q - (mu_int << W_BITS)) >> (W_BITS - 3)
        spread = ((o[:, 1] + (1 << (W_BITS - 1))) >> W_BITS).clamp(0, tables.N_SPREAD - 1)
        return mu_int, frac, spread


def arm_int(f: torch.Tensor, q: list[torch.Tensor], w1_bits: int = W1_BITS, w_bits: int = W_BITS
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer ARM. f (n, N_FEATURES) integer-valued; q = ARM.quantized() →
    (mu_int, frac 0..7, spread 0..S-1), each (n,) int64. Bit-exact on any machine."""
    arm = IntARM.of(q, w1_bits, w_bits)
    return arm.head(f.double() @ arm.w1.T)


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
