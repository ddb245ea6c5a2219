"""One GOP of the latent codec: transform + quantise (encoder), the shared coding walk, reconstruct.

The walk (`steps`) is the single order both sides follow: for every layer, plane and band, the low
temporal frame then the high ones, each in two checkerboard passes. Encoder and decoder call
`step_arm` on the same values, so they compute the same integer ARM outputs (the encoder fits the ARM to
`step_features`' rows, whose `arm_int` they equal).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pipeline.latent import dwt
from pipeline.latent.bands import Band, Geometry
from pipeline.latent.colour import planes_to_rgb, rgb_to_planes
from pipeline.latent.context import BandContext, BandInfo, IntARM, second_pass
from pipeline.latent.motion import NORM_PRED_Q16, Field, estimate_level, inverse_mctf, predict, upsample

RHO_DETAIL_Q8 = 98  # dead-zone rounding offset of detail bands (0.38), LL rounds to nearest
RHO_LL_Q8 = 128


@dataclass(frozen=True)
class Step:
    band: Band
    frames: slice  # temporal indices (Mallat order)
    second: bool  # checkerboard pass


def steps(geo: Geometry, layer: int) -> Iterator[Step]:
    groups = [slice(0, 1)] + ([slice(1, geo.frames)] if geo.frames > 1 else [])
    for b in geo.layer_bands(layer):
        if b.shape[0] == 0 or b.shape[1] == 0:
            continue
        for g in groups:
            yield Step(b, g, False)
            yield Step(b, g, True)


def spread_class(st: Step) -> tuple[int, int, int, int]:
    """(chroma, level, orientation, high group) of a step: the steps that share one spread offset."""
    b = st.band
    return int(b.plane > 0), b.level, b.orient, int(st.frames.start > 0)


def spread_classes(geo: Geometry, layers: int) -> dict[tuple[int, int, int, int], int]:
    """Index of every spread class of the first `layers` layers, numbered in coding order (both sides build
    the same numbering from the geometry)."""
    out: dict[tuple[int, int, int, int], int] = {}
    for m in range(layers):
        for st in steps(geo, m):
            out.setdefault(spread_class(st), len(out))
    return out


def band_view(q: list[torch.Tensor], b: Band) -> torch.Tensor:
    """The band's (T, h, w) view of the quantised planes (writes go through)."""
    return q[b.plane][:, b.rows[0] : b.rows[1], b.cols[0] : b.cols[1]]


def step_context(geo: Geometry, q: list[torch.Tensor], st: Step, t_levels: torch.Tensor, cache: dict | None = None
                 ) -> tuple[BandContext, torch.Tensor, torch.Tensor]:
    """(context, the band group's current values (n, h, w), flat positions (len,) of the step's pass).
    `cache` (one dict per walk) keeps a band group's `BandContext` from its first pass for its second."""
    b, fr = st.band, st.frames
    cur = band_view(q, b)[fr]
    key = (b.plane, b.orient, b.layer, fr.start)
    ctx = cache.pop(key, None) if cache is not None and st.second else None
    if ctx is None:
        par = geo.parent(b)
        sib: list[torch.Tensor | None] = [None, None]
        for i, o in enumerate(range(1, b.orient)):
            s = geo.find(b.plane, o, b.layer)
            sib[i] = band_view(q, s)[fr] if s is not None and min(s.shape) > 0 else None
        cross: list[torch.Tensor | None] = [None, None]
        for i, p in enumerate(range(b.plane)):
            c = geo.find(p, b.orient, b.layer)
            cross[i] = band_view(q, c)[fr] if c is not None and min(c.shape) > 0 else None
        tpar = band_view(q, b)[0:1] if fr.start > 0 else None
        info = BandInfo(b.orient, b.level, b.plane > 0, fr.start > 0)
        ctx = BandContext(tuple(cur.shape), info, band_view(q, par)[fr] if par is not None else None,
                          (sib[0], sib[1]), (cross[0], cross[1]), tpar, t_levels[fr])
        if cache is not None and not st.second:
            cache[key] = ctx
    return ctx, cur, pass_positions(*cur.shape, st.second)


@functools.lru_cache(maxsize=256)
def pass_positions(n: int, h: int, w: int, second: bool) -> torch.Tensor:
    """Flat positions (ascending) of a checkerboard pass in (n, h, w) (shared: never written to)."""
    mask = second_pass(h, w).expand(n, h, w)
    return torch.nonzero((mask if second else ~mask).reshape(-1)).squeeze(1)


def step_features(geo: Geometry, q: list[torch.Tensor], st: Step, t_levels: torch.Tensor,
                  cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, N_FEATURES) float32, flat positions (n,) in the band's (frames, h, w) group) of a step
    (the encoder's fitting set)."""
    ctx, cur, pos = step_context(geo, q, st, t_levels, cache)
    return ctx.rows(cur, pos, st.second), pos


def step_arm(geo: Geometry, q: list[torch.Tensor], st: Step, t_levels: torch.Tensor, arm: IntARM,
             cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu_int, frac, spread, flat positions), each (n,) int64, of a step: the integer ARM on its features
    (`arm_int` of `step_features`' rows), what the encoder codes with and the decoder decodes with."""
    ctx, cur, pos = step_context(geo, q, st, t_levels, cache)
    mu, frac, spread = ctx.arm(cur, pos, st.second, arm)
    return mu, frac, spread, pos


# temporal step weights (Q16, (low, high) per temporal level), chosen per GOP by the parameter block's
# `t_weights` (version 6; older blocks: 0): 0 = NORM_PRED_Q16, the predict-only lifting's synthesis norms;
# 1 = those norms ^1.25 and 2 = ^1.5 (rounded once, here), finer steps for the frames others predict from
T_WEIGHTS_Q16 = (
    NORM_PRED_Q16,
    ((84438, 65536), (123328, 84438), (187485, 123328), (288090, 187485), (443889, 288090)),
    ((88828, 65536), (139952, 88828), (231347, 139952), (387381, 231347), (650779, 387381)),
)


def band_steps_q8(geo: Geometry, step_q8: int, chroma_step_q2: int, t_weights: int = 0) -> list[list[int]]:
    """Quantiser step (1/256 coefficient units) per (band index, temporal index): the luma step (1/256 of
    a 1/16 code value) divided by the band's spatial synthesis norm and its temporal weight
    (`T_WEIGHTS_Q16[t_weights]`); chroma steps scaled by chroma_step_q2 / 4."""
    norms = T_WEIGHTS_Q16[t_weights]
    tj = dwt.t_levels(geo.frames)
    tl = dwt.t_band_level(geo.frames)
    out = []
    for b in geo.bands:
        lo_hi = dwt.NORM97_Q16[b.level - 1]
        nr = lo_hi[0] if b.orient in (0, 1) else lo_hi[1]
        nc = lo_hi[0] if b.orient in (0, 2) else lo_hi[1]
        per_t = []
        for t in range(geo.frames):
            nt = 1 << 16 if tj == 0 else (norms[tj - 1][0] if tl[t] == 0 else norms[tl[t] - 1][1])
            s = (step_q8 << 48) // (nt * nr * nc)
            if b.plane:
                s = s * chroma_step_q2 // 4
            per_t.append(max(1, s))
        out.append(per_t)
    return out


def step_tensors(geo: Geometry, step_q8: int, chroma_step_q2: int, t_weights: int = 0) -> list[torch.Tensor]:
    """Per plane (T, h, w) int64 quantiser steps laid out like the coefficients (`band_steps_q8`)."""
    st = band_steps_q8(geo, step_q8, chroma_step_q2, t_weights)
    out = []
    for p in range(3):
        h, w = geo.plane_shape(p)
        out.append(torch.ones((geo.frames, h, w), dtype=torch.int64))
    for bi, b in enumerate(geo.bands):
        v = torch.tensor(st[bi], dtype=torch.int64).view(-1, 1, 1)
        band_view(out, b)[:] = v
    return out


def rounding_q8(geo: Geometry, plane: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Dead-zone rounding offsets (1/256) laid out like a plane's (T, h, w) coefficients: LL to nearest."""
    rho = torch.full(shape, RHO_DETAIL_Q8, dtype=torch.int64)
    for b in geo.bands:
        if b.plane == plane and b.orient == 0:
            rho[:, b.rows[0] : b.rows[1], b.cols[0] : b.cols[1]] = RHO_LL_Q8
    return rho


def quantise_plane(c: torch.Tensor, s: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Dead-zone quantisation of coefficients `c` with steps `s` and rounding offsets `rho` (same shapes)."""
    return torch.sign(c) * ((c.abs() * 256 + ((rho * s) >> 8)) // s)


def _dequantise_plane(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.sign(q) * ((q.abs() * s + 128) >> 8)


def analyse(frames_THWC: torch.Tensor, geo: Geometry, block: int, motion_lam: float, steps_q8: list[torch.Tensor],
            subpel: int = 1, obmc: bool = False, interp: int = 0
            ) -> tuple[list[torch.Tensor], list[list[Field]], list[torch.Tensor]]:
    """RGB frames → (per plane (T, h, w) int64 quantised coefficients, the motion fields, the planes as
    the decoder will rebuild them (T, h, w) int64), closed loop.

    The temporal lifting is coded from the coarsest level down, as the decoder rebuilds it: each high
    frame is the source frame minus the prediction from the *decoded* neighbours (their quantised
    coefficients synthesised exactly as `synthesise` does), so quantisation error of a reference is
    corrected by what is predicted from it instead of adding up level after level.
    """
    planes = list(rgb_to_planes(frames_THWC))
    t = geo.frames
    levels = dwt.t_levels(t)
    q = [torch.zeros_like(x) for x in planes]
    rho = [rounding_q8(geo, p, tuple(x.shape)) for p, x in enumerate(planes)]
    fields: list[list[Field]] = [[] for _ in range(levels)]

    def code(x: torch.Tensor, p: int, lo: int, hi: int) -> torch.Tensor:
        """Quantise frames x (n, h, w) into Mallat slots lo..hi of plane p; return their reconstruction."""
        lv = geo.plane_levels(p)
        q[p][lo:hi] = quantise_plane(dwt.dwt2(x, lv), steps_q8[p][lo:hi], rho[p][lo:hi])
        return dwt.dwt2(_dequantise_plane(q[p][lo:hi], steps_q8[p][lo:hi]), lv, inverse=True)

    n_top = dwt.low_size(t, levels)
    rec = [code(x[:: 1 << levels][:n_top], p, 0, n_top) for p, x in enumerate(planes)]
    for j in range(levels - 1, -1, -1):
        n = dwt.low_size(t, j)
        n_lo = (n + 1) // 2
        src = [x[1 << j :: 2 << j][: n - n_lo] for x in planes]
        # motion is searched on the source frames: measured better than on the rebuilt ones
        fields[j] = estimate_level(src[0], planes[0][:: 2 << j][:n_lo], j, block, motion_lam, subpel, interp)
        for p, s in enumerate(rec):
            ups = [upsample(s[i], p > 0, interp) for i in range(min(n_lo, n - n_lo + 1))]
            pred = torch.stack([predict(ups[i], ups[i + 1] if i + 1 < n_lo else None, fields[j][i], block, p > 0, obmc)
                                for i in range(n - n_lo)])
            odd = code(src[p] - pred, p, n_lo, n) + pred
            full = torch.empty((n, *s.shape[1:]), dtype=s.dtype)
            full[0::2], full[1::2] = s, odd
            rec[p] = full
    return q, fields, rec


def entropy_bits(q: list[torch.Tensor], geo: Geometry) -> float:
    """Zeroth-order entropy (bits) of the quantised latents, per band and temporal group (low frame, high
    frames): the encoder's cheap estimate of their cost when it compares analyses (measured close to what
    the fitted ARM spends at effort fast)."""
    total = 0.0
    for b in geo.bands:
        v = band_view(q, b)
        for g in (v[:1], v[1:]):
            if g.numel():
                _, n = torch.unique(g, return_counts=True)
                p = n.double() / g.numel()
                total -= float((n * torch.log2(p)).sum())
    return total


def dequantise(q: list[torch.Tensor], steps_q8: list[torch.Tensor]) -> list[torch.Tensor]:
    return [_dequantise_plane(x, s) for x, s in zip(q, steps_q8)]


def synthesise(coef: list[torch.Tensor], geo: Geometry, fields: list[list[Field]], block: int,
               chroma_up: int = 0, obmc: bool = False, interp: int = 0) -> torch.Tensor:
    """Per plane coefficients → uint8 RGB frames (T, H, W, 3), chroma upsampled by `CHROMA_UP[chroma_up]`.
    Integer only."""
    spatial = [dwt.dwt2(c, geo.plane_levels(p), inverse=True) for p, c in enumerate(coef)]
    return planes_to_rgb(*inverse_mctf(spatial, fields, block, obmc, interp), chroma_up)
