"""Bjøntegaard delta rate and delta quality with piecewise cubic Hermite interpolation (PCHIP).

As in the JCT-VC/JVET common-test-condition sheets (and the `bjontegaard` package, which matches them):
log10(rate) is interpolated as a PCHIP function of quality (BD-rate), or quality of log10(rate)
(BD-quality), both curves are integrated exactly over the *overlapping* range only, and
BD-rate = (10 ** mean log-rate difference - 1) * 100 %. Negative BD-rate = the test codec needs fewer
bits than the anchor for the same quality.

Curves with more than the usual four points are fine. Points that are not on the curve's Pareto front
(another point of the same curve has lower-or-equal rate and higher-or-equal quality) are dropped first,
so the curve is strictly monotone and PCHIP is well defined; an operator would never pick a dominated
setting. With fewer than two points left, or without overlap, the result is None with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BDResult:
    """A BD figure (`value`: % for rate, quality units for quality) or None with `reason`."""

    value: float | None
    reason: str | None = None
    overlap: tuple[float, float] | None = None  # integration interval (quality, or log10 rate)
    n_anchor: int = 0  # points used after Pareto filtering
    n_test: int = 0


def pareto_front(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Non-dominated points, sorted by rate ascending (quality then strictly ascending too)."""
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"rate {r.shape} and quality {q.shape} must be 1-D of equal length")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    keep_r: list[float] = []
    keep_q: list[float] = []
    for i in order:
        if not keep_q or q[i] > keep_q[-1]:
            if keep_r and r[i] == keep_r[-1]:
                continue
            keep_r.append(float(r[i]))
            keep_q.append(float(q[i]))
    return np.array(keep_r), np.array(keep_q)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots: Fritsch-Carlson weighted harmonic mean, shape-preserving ends."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        d[:] = m[0]
        return d
    for k in range(1, n - 1):
        if m[k - 1] * m[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])

    def end(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            return 3 * m0
        return e

    d[0] = end(h[0], h[1], m[0], m[1])
    d[-1] = end(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral from lo to hi (inside [x0, xn]) of the PCHIP interpolant through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        m = (y[k + 1] - y[k]) / h
        c2 = (3 * m - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * m) / h**2

        def anti(t: float, k: int = k, c2: float = c2, c3: float = c3) -> float:
            return y[k] * t + d[k] * t**2 / 2 + c2 * t**3 / 3 + c3 * t**4 / 4

        total += anti(b - x[k]) - anti(a - x[k])
    return total


def _prepare(
    rate_anchor: Sequence[float],
    q_anchor: Sequence[float],
    rate_test: Sequence[float],
    q_test: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    ra, qa = pareto_front(rate_anchor, q_anchor)
    rt, qt = pareto_front(rate_test, q_test)
    if len(ra) < 2 or len(rt) < 2:
        why = f"too few RD points on the Pareto front (anchor {len(ra)}, test {len(rt)}; need 2 each)"
        return ra, qa, rt, qt, why
    return ra, qa, rt, qt, None


def bd_rate(
    rate_anchor: Sequence[float],
    q_anchor: Sequence[float],
    rate_test: Sequence[float],
    q_test: Sequence[float],
) -> BDResult:
    """BD-rate of test vs anchor in % over the overlapping quality range (PCHIP of log10 rate)."""
    ra, qa, rt, qt, why = _prepare(rate_anchor, q_anchor, rate_test, q_test)
    if why:
        return BDResult(None, why, None, len(ra), len(rt))
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if hi <= lo:
        why = f"no overlap in quality: anchor {qa[0]:.4g}..{qa[-1]:.4g}, test {qt[0]:.4g}..{qt[-1]:.4g}"
        return BDResult(None, why, None, len(ra), len(rt))
    ia = pchip_integral(qa, np.log10(ra), lo, hi)
    it = pchip_integral(qt, np.log10(rt), lo, hi)
    avg = (it - ia) / (hi - lo)
    return BDResult((math.pow(10.0, avg) - 1.0) * 100.0, None, (float(lo), float(hi)), len(ra), len(rt))


def bd_quality(
    rate_anchor: Sequence[float],
    q_anchor: Sequence[float],
    rate_test: Sequence[float],
    q_test: Sequence[float],
) -> BDResult:
    """BD-quality (e.g. BD-PSNR in dB) of test vs anchor over the overlapping log10-rate range."""
    ra, qa, rt, qt, why = _prepare(rate_anchor, q_anchor, rate_test, q_test)
    if why:
        return BDResult(None, why, None, len(ra), len(rt))
    la, lt = np.log10(ra), np.log10(rt)
    lo, hi = max(la[0], lt[0]), min(la[-1], lt[-1])
    if hi <= lo:
        why = f"no overlap in rate: anchor {ra[0]:.4g}..{ra[-1]:.4g}, test {rt[0]:.4g}..{rt[-1]:.4g}"
        return BDResult(None, why, None, len(ra), len(rt))
    avg = (pchip_integral(lt, qt, lo, hi) - pchip_integral(la, qa, lo, hi)) / (hi - lo)
    return BDResult(float(avg), None, (float(lo), float(hi)), len(ra), len(rt))
