"""Fixed integer probability tables of the latent codec (built from integers only; no float on the path).

A latent symbol is coded relative to the context model's prediction: y = z - mu_int, with y in
[-E, E] (E = `SYMBOL_RANGE`). Its distribution is a discrete Laplace P(y) ∝ q_s^|8y - m| where
m = 0..7 is the 1/8 fraction of the predicted mean and s = 0..S-1 indexes the spread. The decay per
1/8 step, q_s = 1 - d_s (fixed point 2^-30), follows an integer recurrence, so every machine builds
bit-identical tables; `probs()` divides those integers once in float64 (IEEE-exact), which is what
constriction's categorical model consumes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SYMBOL_RANGE = 127  # |y| <= E
N_SYMBOLS = 2 * SYMBOL_RANGE + 1
N_FRAC = 8  # mean fraction steps (1/8)
N_SPREAD = 64  # spread steps
ONE = 1 << 30
D0 = (ONE * 9) // 10  # d_0: sharpest spread (q = 0.1 per 1/8 step)
RATIO_Q16 = 58000  # d_{s+1} = d_s * RATIO / 2^16  (≈ 0.885 per step)
PROB_BITS = 24  # weights are in 2^-24 units, at least 1


def decay_q30() -> list[int]:
    """q_s in 2^-30 units for s = 0..S-1 (integer recurrence)."""
    d, out = D0, []
    for _ in range(N_SPREAD):
        out.append(ONE - d)
        d = (d * RATIO_Q16) >> 16
    return out


def _pow_q30(q: int, n: np.ndarray) -> np.ndarray:
    """q^n in 2^-30 fixed point for every n (int64 array), by square-and-multiply with a floor after each
    product (operands < 2^31, so every product fits int64)."""
    r = np.full(n.shape, ONE, dtype=np.int64)
    b = q
    for bit in range(int(n.max()).bit_length()):
        r = np.where((n >> bit) & 1, (r * b) >> 30, r)
        b = (b * b) >> 30
    return r


@lru_cache(maxsize=1)
def weights() -> np.ndarray:
    """(N_FRAC, N_SPREAD, N_SYMBOLS) int64 integer weights, each >= 1."""
    ys = range(-SYMBOL_RANGE, SYMBOL_RANGE + 1)
    w = np.empty((N_FRAC, N_SPREAD, N_SYMBOLS), dtype=np.int64)
    for s, q in enumerate(decay_q30()):
        powers = _pow_q30(q, np.arange(8 * (2 * SYMBOL_RANGE + 1) + N_FRAC, dtype=np.int64))
        for m in range(N_FRAC):
            w[m, s] = np.maximum(1, powers[np.abs(8 * np.asarray(ys) - m)] >> (30 - PROB_BITS))
    return w


@lru_cache(maxsize=1)
def probs() -> np.ndarray:
    """(N_FRAC, N_SPREAD, N_SYMBOLS) float64 = weights / row sums."""
    w = weights()
    return w / w.sum(-1, keepdims=True).astype(np.float64)


def spread_scale(s: float) -> float:
    """Laplace scale b (in latent units) of the continuous spread index s (for fitting only)."""
    d = (D0 / ONE) * (RATIO_Q16 / 65536.0) ** s
    return -1.0 / (8.0 * math.log1p(-d))
