"""Motion-compensated temporal prediction (hierarchical, bi-directional) and its block motion fields.

At each temporal level the odd frames are predicted from the even ones around them: per B×B block
(luma; B/2 chroma) a mode — 0 both neighbours averaged, 1 left only, 2 right only — and vectors to the
left and right frames. The high frame is odd − prediction and the low frames are the even frames (no
update step), so the layout is the 5/3's ([L_J, H_J, …, H_1]). Prediction is integer interpolation
(1/4 pel luma, 1/8 pel chroma; bilinear, or since parameter block v5 HEVC-style 8/4-tap filters) with
edge clamping. The loop is closed: the encoder
(`gop.analyse`) predicts from the frames as the decoder rebuilds them (`inverse_mctf`), so a
reference's quantisation error is corrected by the frames predicted from it, not passed on.

Motion is estimated by the encoder only (coarse-to-fine SAD search with a vector-smoothness penalty,
on the source frames) and coded at the head of layer 2 (`field_symbols`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.latent.dwt import low_size, t_levels

# synthesis norms (Q16) of the predict-only temporal lifting, (low, high) per level: the open-loop error
# gains, kept as the quantiser's per-level step weights (measured best for the closed loop too)
NORM_PRED_Q16 = ((80265, 65536), (108679, 80265), (151939, 108679), (214249, 151939), (302772, 214249))
MAX_FRAMES = 1 << len(NORM_PRED_Q16)  # GOPs of up to 32 frames (5 temporal levels)


@dataclass
class Field:
    """Motion of one odd frame: mode (nby, nbx) int64 in {0, 1, 2}; mv_l, mv_r (nby, nbx, 2) (dy, dx) quarter-pel."""

    mode: torch.Tensor
    mv_l: torch.Tensor
    mv_r: torch.Tensor


def _pixel_mv(mv: torch.Tensor, block: int, h: int, w: int) -> torch.Tensor:
    """(nby, nbx, 2) block vectors → (h, w, 2) per pixel."""
    return mv.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]


# interpolation filters by stream code, per plane kind: (first tap's offset, taps per phase in 1/64)
# 0 bilinear (parameter blocks v1-v4); 1 sharp: HEVC-style 8-tap luma (1/4 pel), 4-tap chroma (1/8 pel)
_BILINEAR_LUMA = (0, tuple((64 - 16 * f, 16 * f) for f in range(4)))
_BILINEAR_CHROMA = (0, tuple((64 - 8 * f, 8 * f) for f in range(8)))
_SHARP_LUMA = (-3, ((0, 0, 0, 64, 0, 0, 0, 0), (-1, 4, -10, 58, 17, -5, 1, 0), (-1, 4, -11, 40, 40, -11, 4, -1),
                    (0, 1, -5, 17, 58, -10, 4, -1)))
_SHARP_CHROMA = (-1, ((0, 64, 0, 0), (-2, 58, 10, -2), (-4, 54, 16, -2), (-6, 46, 28, -4), (-4, 36, 36, -4),
                      (-4, 28, 46, -6), (-2, 16, 54, -4), (-2, 10, 58, -2)))
FILTERS = ((_BILINEAR_LUMA, _BILINEAR_CHROMA), (_SHARP_LUMA, _SHARP_CHROMA))
INTERP_NAMES = ("bilinear", "sharp")


@dataclass(frozen=True)
class Upsampled:
    """A reference plane (h, w) interpolated at every 1/2^f position, as a picture 2^f times finer: `sr`
    (h·2^f, w·2^f) float64, sr[i·2^f + a, j·2^f + b] = the integer filter sum in 1/4096 at (i + a/2^f,
    j + b/2^f) (exact: integers far below 2^53); samples round them to nearest. Positions are clamped to
    the plane, so vectors may point outside it."""

    sr: torch.Tensor
    h: int
    w: int
    frac_bits: int

    @property
    def index_dtype(self) -> torch.dtype:
        """int32 where every flat position of `sr` fits (cheaper gathers), else int64."""
        return torch.int32 if self.sr.numel() < 1 << 31 else torch.int64

    def vectors(self, mv: torch.Tensor) -> torch.Tensor:
        """Vectors (..., 2) in 1/2^f pel as `index_dtype`, each component clamped to ±the plane's extent
        (the sampled positions, clamped to the plane, are the same)."""
        one = 1 << self.frac_bits
        lim = torch.tensor([self.h * one, self.w * one])
        return torch.maximum(torch.minimum(mv, lim), -lim).to(self.index_dtype)


def upsample(ref: torch.Tensor, chroma: bool, interp: int = 0) -> Upsampled:
    """Interpolate ref (h, w) int64 at 1/4 pel (luma) or 1/8 pel (chroma) with filter `interp`
    (separable integer taps, edges replicated)."""
    off, taps = FILTERS[interp][int(chroma)]
    h, w = ref.shape
    n, k = len(taps), len(taps[0])
    kern = torch.tensor(taps, dtype=torch.float64)  # (phase, tap)
    x = F.pad(ref.double()[None, None], (-off, k - 1 + off, -off, k - 1 + off), mode="replicate")[0, 0]
    hx = (x.unfold(1, k, 1) @ kern.T).reshape(h + k - 1, w * n)  # columns (w, phase_x)
    sr = kern @ hx.unfold(0, k, 1).permute(0, 2, 1)  # (h, phase_y, w · phase_x)
    return Upsampled(sr.reshape(h * n, w * n), h, w, n.bit_length() - 1)


def compensate(ref: Upsampled, mv_px: torch.Tensor) -> torch.Tensor:
    """ref sampled at (i + mv_y / 2^f, j + mv_x / 2^f) for every pixel (i, j), mv_px (h, w, 2) → (h, w) int64."""
    pi, pj = _pixel_grid(ref.h, ref.w, ref.index_dtype)
    return _compensate_at(ref, pi, pj, ref.vectors(mv_px.reshape(-1, 2))).view(ref.h, ref.w)


@functools.lru_cache(maxsize=64)
def _pixel_grid(h: int, w: int, dtype: torch.dtype = torch.int64) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index (h·w,) of every pixel, raster order (shared: never written to)."""
    return torch.arange(h, dtype=dtype).repeat_interleave(w), torch.arange(w, dtype=dtype).repeat(h)


def _compensate_at(ref: Upsampled, pi: torch.Tensor, pj: torch.Tensor, mv: torch.Tensor) -> torch.Tensor:
    """ref sampled at (pi + mv_y / 2^f, pj + mv_x / 2^f) for pixels (pi, pj) (n,) and vectors mv (n, 2)
    (`Upsampled.vectors`), all `ref.index_dtype`, positions clamped to the plane → (n,) int64 (`compensate`
    is this over every pixel)."""
    f, h, w = ref.frac_bits, ref.h, ref.w
    one = 1 << f
    py = (pi * one + mv[:, 0]).clamp_(0, (h - 1) * one)
    px = (pj * one + mv[:, 1]).clamp_(0, (w - 1) * one)
    s = ref.sr.view(-1).index_select(0, py.mul_(w * one).add_(px))
    return torch.floor_(s.add_(2048.0).div_(4096.0)).to(torch.int64)


def _predict_px(left: Upsampled, right: Upsampled | None, fld: Field, iy: torch.Tensor, ix: torch.Tensor
                ) -> torch.Tensor:
    """Prediction (h, w) where pixel (i, j) uses the mode and vectors of block (iy[i], ix[j]) (vectors
    `Upsampled.vectors`)."""
    h, w = left.h, left.w
    pi, pj = _pixel_grid(h, w, left.index_dtype)
    pl = _compensate_at(left, pi, pj, fld.mv_l[iy[:, None], ix[None, :]].reshape(-1, 2)).view(h, w)
    if right is None:
        return pl
    pr = _compensate_at(right, pi, pj, fld.mv_r[iy[:, None], ix[None, :]].reshape(-1, 2)).view(h, w)
    mode = fld.mode[iy[:, None], ix[None, :]]
    bi = (pl + pr + 1) >> 1
    return torch.where(mode == 1, pl, torch.where(mode == 2, pr, bi))


def _overlap_axis(n: int, b: int, nb: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For pixels 0..n-1 of an axis cut in blocks of b: the two nearest block centres (indices clamped to
    0..nb-1), the weight of the second in 1/(2b) (triangular windows of width 2b) and the pair's index
    0..nb (the first centre's unclamped index + 1)."""
    v = 2 * torch.arange(n) + 1 - b  # 2b × (position relative to block 0's centre)
    i0 = torch.div(v, 2 * b, rounding_mode="floor")
    return i0.clamp(0, nb - 1), (i0 + 1).clamp(0, nb - 1), v - 2 * b * i0, i0 + 1


def _predict_at(left: Upsampled, right: Upsampled | None, fld: Field, by: torch.Tensor, bx: torch.Tensor,
                pi: torch.Tensor, pj: torch.Tensor) -> torch.Tensor:
    """`_predict_px` at the pixels (pi, pj) (n,) (`index_dtype`) only, pixel k using block (by[k], bx[k])."""
    pl = _compensate_at(left, pi, pj, fld.mv_l[by, bx])
    if right is None:
        return pl
    pr = _compensate_at(right, pi, pj, fld.mv_r[by, bx])
    mode = fld.mode[by, bx]
    bi = (pl + pr + 1) >> 1
    return torch.where(mode == 1, pl, torch.where(mode == 2, pr, bi))


def predict(left: Upsampled, right: Upsampled | None, fld: Field, block: int, chroma: bool,
            obmc: bool = False) -> torch.Tensor:
    """Prediction (h, w) of an odd frame from its (upsampled) neighbours (chroma: vectors in 1/8 pel,
    blocks B/2). With `obmc` every pixel blends the predictions of the four nearest blocks' motion
    (bilinear weights over the block centres, in 1/(4B²)), so block edges do not show in the prediction."""
    h, w = left.h, left.w
    b = block // 2 if chroma else block
    nby, nbx = fld.mode.shape
    fld = Field(fld.mode, left.vectors(fld.mv_l), left.vectors(fld.mv_r))
    if not obmc:
        return _predict_px(left, right, fld, torch.arange(h) // b, torch.arange(w) // b)
    y0, y1, wy, qy = _overlap_axis(h, b, nby)
    x0, x1, wx, qx = _overlap_axis(w, b, nbx)
    out = _predict_px(left, right, fld, y0, x0)
    # where the four blocks move alike the blend is that prediction exactly: blend only elsewhere. Block
    # quads (qy, qx) = blocks (qy - 1, qy) × (qx - 1, qx), clamped: does any of the four move differently?
    motion = torch.cat([fld.mode[..., None], fld.mv_l, fld.mv_r], -1)  # (nby, nbx, 5)
    m = motion[torch.arange(-1, nby + 1).clamp(0, nby - 1)][:, torch.arange(-1, nbx + 1).clamp(0, nbx - 1)]
    c = m[:-1, :-1]
    quad_differs = (m[:-1, 1:] != c).any(-1) | (m[1:, :-1] != c).any(-1) | (m[1:, 1:] != c).any(-1)
    pi, pj = torch.nonzero(quad_differs[qy[:, None], qx[None, :]], as_tuple=True)
    if not len(pi):
        return out
    wy, wx = wy[pi], wx[pj]
    qi, qj = pi.to(left.index_dtype), pj.to(left.index_dtype)
    acc = (2 * b - wy) * ((2 * b - wx) * out[pi, pj] + wx * _predict_at(left, right, fld, y0[pi], x1[pj], qi, qj))
    acc += wy * ((2 * b - wx) * _predict_at(left, right, fld, y1[pi], x0[pj], qi, qj)
                 + wx * _predict_at(left, right, fld, y1[pi], x1[pj], qi, qj))
    sh = 2 * (2 * b).bit_length() - 2  # log2(4b²)
    out[pi, pj] = (acc + (1 << (sh - 1))) >> sh
    return out


def inverse_mctf(planes: list[torch.Tensor], fields: list[list[Field]], block: int, obmc: bool = False,
                 interp: int = 0) -> list[torch.Tensor]:
    """Frames of every plane (T, h, w) int64 from its temporal bands (Mallat order: [L_J, H_J, …, H_1]),
    coarsest level first: odd frame = high frame + prediction from the rebuilt even frames around it,
    with the motion `fields[level][i]` (odd frame i). `gop.analyse` mirrors this loop at the encoder."""
    t = planes[0].shape[0]
    out = [x.clone() for x in planes]
    for j in range(t_levels(t) - 1, -1, -1):
        n = low_size(t, j)
        n_lo = (n + 1) // 2
        for p, x in enumerate(out):
            s, d = x[:n_lo].clone(), x[n_lo:n].clone()
            ups = [upsample(s[i], p > 0, interp) for i in range(min(n_lo, d.shape[0] + 1))]
            for i in range(d.shape[0]):
                right = ups[i + 1] if i + 1 < n_lo else None
                d[i] = d[i] + predict(ups[i], right, fields[j][i], block, p > 0, obmc)
            x[0:n:2], x[1:n:2] = s, d
    return out


# ---- estimation (encoder only) ---------------------------------------------------------------------------


def _block_sad(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """(h, w) → per-block SAD (nby, nbx) (partial blocks padded by zeros)."""
    d = (a - b).abs().double()[None, None]
    h, w = a.shape
    d = F.pad(d, (0, -w % block, 0, -h % block))
    return F.avg_pool2d(d, block)[0, 0] * block * block


def _search(cur: torch.Tensor, ref: torch.Tensor, ref_up: Upsampled, block: int, radius: int, lam: float,
            subpel: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Best quarter-pel vector per block of `cur` in `ref` (both (h, w) int64 luma; `ref_up` = ref
    upsampled with the stream's filter) → (mv (nby, nbx, 2), cost)."""
    h, w = cur.shape
    nby, nbx = -(-h // block), -(-w // block)
    # 1. integer search at 1/4 resolution over ±radius, then ±2 at full resolution, then half and quarter pel
    cs = F.avg_pool2d(cur.double()[None], 4)[0].round().long()
    rs = F.avg_pool2d(ref.double()[None], 4)[0].round().long()
    r4 = max(1, radius // 4)
    b4 = max(1, block // 4)
    best = torch.full((-(-cs.shape[0] // b4), -(-cs.shape[1] // b4)), float("inf"), dtype=torch.float64)
    best_mv = torch.zeros(*best.shape, 2, dtype=torch.int64)
    zero = torch.zeros(*best.shape, 2, dtype=torch.int64)
    rs_up = upsample(rs, False)  # integer vectors only: every filter gives the samples themselves
    for dy in range(-r4, r4 + 1):
        for dx in range(-r4, r4 + 1):
            mv = zero + torch.tensor([dy * 4, dx * 4])  # quarter-pel at 1/4 res = integer pel
            pred = compensate(rs_up, _pixel_mv(mv, b4, *cs.shape))
            cost = _block_sad(cs, pred, b4) + lam * (abs(dy) + abs(dx)) * 0.25
            better = cost < best
            best = torch.where(better, cost, best)
            best_mv[better] = mv[better]
    mv = (best_mv * 4)[:nby, :nbx]  # quarter-pel at full res
    if mv.shape[0] < nby or mv.shape[1] < nbx:
        mv = F.pad(mv.permute(2, 0, 1)[None].double(), (0, nbx - mv.shape[1], 0, nby - mv.shape[0]),
                   mode="replicate")[0].permute(1, 2, 0).long()
    centre = torch.median(mv.reshape(-1, 2), 0).values
    cost = None
    for step, rad in ((4, 2), (2, 1), (1, 1))[: subpel + 1]:
        base = mv.clone()
        cost = None
        for dy in range(-rad, rad + 1):
            for dx in range(-rad, rad + 1):
                cand = base + torch.tensor([dy * step, dx * step])
                pred = compensate(ref_up, _pixel_mv(cand, block, h, w))
                c = _block_sad(cur, pred, block) / 16.0 + lam * (cand - centre).abs().sum(-1) / 4.0
                if cost is None:
                    cost, mv = c, cand
                else:
                    better = c < cost
                    cost = torch.where(better, c, cost)
                    mv = torch.where(better[..., None], cand, mv)
    return mv, cost


def _neighbour_median(mv: torch.Tensor) -> torch.Tensor:
    """Component-wise median of the 4-neighbourhood (edges replicated) of a block field (nby, nbx, 2)."""
    p = F.pad(mv.permute(2, 0, 1)[None].double(), (1, 1, 1, 1), mode="replicate")[0].long()
    nb = torch.stack([p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:], mv.permute(2, 0, 1)], 0)
    return nb.median(0).values.permute(1, 2, 0)


def _smooth(cur: torch.Tensor, ref: Upsampled, mv: torch.Tensor, block: int, lam: float,
            passes: int = 2, unit: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull vectors towards their neighbours' median where that costs little SAD (cheaper to code)."""
    h, w = cur.shape
    cost = None
    for _ in range(passes):
        pred = _neighbour_median(mv)
        cands = [mv, pred] + [pred + unit * torch.tensor(o) for o in ((0, 1), (0, -1), (1, 0), (-1, 0))]
        best, cost = None, None
        for cand in cands:
            pr = compensate(ref, _pixel_mv(cand, block, h, w))
            c = _block_sad(cur, pr, block) / 16.0 + lam * (cand - pred).abs().sum(-1) / 4.0
            if cost is None:
                best, cost = cand, c
            else:
                better = c < cost
                cost = torch.where(better, c, cost)
                best = torch.where(better[..., None], cand, best)
        mv = best
    return mv, cost


def estimate_level(odd: torch.Tensor, even: torch.Tensor, level: int, block: int, lam: float,
                   subpel: int = 2, interp: int = 0) -> list[Field]:
    """Motion fields of one temporal level: each odd frame (m, H, W) int64 luma against the even frames
    around it (n_lo, H, W) (the right one absent past the end: left only); vectors in quarter-pel units on
    a grid of 4 >> subpel (subpel 0: integer pel, 1: half, 2: quarter)."""
    unit = 4 >> subpel
    radius = min(32, 8 << level)
    fields = []
    ups = [upsample(even[i], False, interp) for i in range(min(even.shape[0], odd.shape[0] + 1))]
    for i in range(odd.shape[0]):
        mv_l, c_l = _smooth(odd[i], ups[i], _search(odd[i], even[i], ups[i], block, radius, lam, subpel)[0], block,
                            lam, unit=unit)
        if i + 1 < even.shape[0]:
            mv_r, c_r = _smooth(odd[i], ups[i + 1], _search(odd[i], even[i + 1], ups[i + 1], block, radius, lam,
                                                            subpel)[0], block, lam, unit=unit)
            h, w = odd[i].shape
            bi = (compensate(ups[i], _pixel_mv(mv_l, block, h, w))
                  + compensate(ups[i + 1], _pixel_mv(mv_r, block, h, w)) + 1) >> 1
            c_b = _block_sad(odd[i], bi, block) / 16.0
            mode = torch.where((c_b <= c_l) & (c_b <= c_r), 0, torch.where(c_l <= c_r, 1, 2))
        else:
            mv_r = torch.zeros_like(mv_l)
            mode = torch.ones(mv_l.shape[:2], dtype=torch.int64)
        fields.append(Field(mode, mv_l, mv_r))
    return fields


# ---- coding: causal median prediction (left, up, up-right), residuals range-coded -------------------------


def causal_pred(x: list[list[list[int]]], i: int, j: int) -> list[int]:
    """Component-wise median of the left, upper and upper-right vectors of x (nested lists (nby, nbx, c)):
    the left one alone in the first row, the upper one in the first column, zeros at (0, 0)."""
    if not i:
        return list(x[i][j - 1]) if j else [0] * len(x[0][0])
    if not j:
        return list(x[i - 1][j])
    return [max(min(a, b), min(max(a, b), c))
            for a, b, c in zip(x[i][j - 1], x[i - 1][j], x[i - 1][min(j + 1, len(x[0]) - 1)])]


def residuals(x: torch.Tensor) -> torch.Tensor:
    """(nby, nbx, c) int64 → residuals against `causal_pred`, raster order, flattened."""
    xl = x.tolist()
    out = [[[a - p for a, p in zip(xl[i][j], causal_pred(xl, i, j))] for j in range(x.shape[1])]
           for i in range(x.shape[0])]
    return torch.tensor(out, dtype=x.dtype).reshape(-1)


def from_residuals(r: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of `residuals`: (nby·nbx·c,) → (nby, nbx, c)."""
    rl = r.reshape(shape).tolist()
    x = [[[0] * shape[2] for _ in range(shape[1])] for _ in range(shape[0])]
    for i in range(shape[0]):
        for j in range(shape[1]):
            x[i][j] = [a + p for a, p in zip(rl[i][j], causal_pred(x, i, j))]
    return torch.tensor(x, dtype=r.dtype)


MODE_SYMBOL = (0, 1, -1)  # mode 0 (both), 1 (left), 2 (right) as symbols near 0


def field_symbols(fields: list[list[Field]], unit: int) -> list[tuple[int, torch.Tensor]]:
    """[(class, symbols)] in coding order; class 0 = modes, 1 = vector residuals in grid units (`unit`
    quarter-pels; every vector is a multiple of it)."""
    out = []
    sym = torch.tensor(MODE_SYMBOL)
    for lev in fields:
        for f in lev:
            out.append((0, sym[f.mode.reshape(-1)]))
            out.append((1, residuals(f.mv_l) // unit))
            out.append((1, residuals(torch.where((f.mode != 1)[..., None], f.mv_r, 0)) // unit))
    return out


def mode_from_symbol(y: torch.Tensor) -> torch.Tensor:
    """Inverse of MODE_SYMBOL; ValueError for other values."""
    if len(y) and (y.min() < -1 or y.max() > 1):
        raise ValueError("motion mode out of range")
    return torch.where(y < 0, 2, y)


def block_grid(height: int, width: int, block: int) -> tuple[int, int]:
    return -(-height // block), -(-width // block)


def still_fields(frames: int, height: int, width: int, block: int) -> list[list[Field]]:
    """Zero motion, both neighbours averaged: what a decoder without the motion layer assumes."""
    nby, nbx = block_grid(height, width, block)
    out, n = [], frames
    for _ in range(t_levels(frames)):
        z = torch.zeros((nby, nbx, 2), dtype=torch.int64)
        out.append([Field(torch.zeros((nby, nbx), dtype=torch.int64), z, z) for _ in range(n // 2)])
        n = (n + 1) // 2
    return out
