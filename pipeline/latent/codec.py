"""`LatentCodec`: the overfitted multi-resolution latent codec family ("latent-v1").

Per GOP the encoder turns the frames into integer latent grids (the sub-bands of a fixed integer
3-D wavelet pyramid, quantised with step Δ), fits the context model (ARM) to them — the only
learned part, overfitted per GOP, no dataset training — and range-codes layer by layer with the
integer ARM. Layer 0's chunk starts with the GOP's parameter block (Δ, chroma step, effort, ARM).
Decoding K layers reads chunks 0..K-1; the finer layers are predicted from the ARM (`argmax`: its
rounded mean; `sample`: a draw from the fixed tables; `none`: zeros). All of decoding is integer.
The temporal transform is motion compensated; the motion fields head layer 2, so layer 1 alone (the
LL thumbnails, the cheapest preview) decodes with zero motion — the same rule for every decoder.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from pipeline.codec_api import DEFAULT_PREDICT, PREDICT_MODES, EncodedGop
from pipeline.encoder_options import DEFAULT_EFFORT, DEFAULT_FIDELITY
from pipeline.latent import gop as G
from pipeline.latent import mvcode
from pipeline.latent.bands import Geometry
from pipeline.latent.coder import SymbolDecoder, SymbolEncoder, pack_ints, table_bits, unpack_ints
from pipeline.latent.colour import CHROMA_UP, planes_to_rgb
from pipeline.latent.context import ARM, N_FEATURES, IntARM, arm_rows, laplace_bits
from pipeline.latent.dwt import MAX_SPATIAL_LEVELS, t_band_level, t_levels
from pipeline.latent.motion import (
    INTERP_NAMES,
    MAX_FRAMES,
    Field,
    block_grid,
    from_residuals,
    mode_from_symbol,
    still_fields,
)
from pipeline.latent.tables import N_SPREAD, SYMBOL_RANGE, probs

MODEL_ID = "latent-v1"
FAMILY = "latent"
LEVELS = 6  # spatial levels J: 7 layers, LL at 1/64
# 2: chroma upsampler, `mvcode` motion coding; 3: overlapped-block motion; 4: spread offsets per band class;
# 5: motion interpolation filter; 6: temporal step weights. Every older version still parses and decodes to its
# pinned pixels.
PARAM_VERSION = 6
# values in the block's integer head before any spread offsets
PARAM_FIELDS = {1: 18, 2: 20, 3: 21, 4: 22, 5: 23, 6: 24}
SPREAD_OFFSET_MAX = 32
MOTION_BLOCK16_MAX_STEP_Q8 = 8 * 16 * 256  # luma step <= 8 code values: 16×16 motion blocks; coarser: 32 or 16
# with OBMC, foreman BD PSNR-Y / MS-SSIM (fast, fidelities 36-60): 68.5 / 103.6 at 4, 65.8 / 97.2 at 2, 72.6 / 113.3
# at 8, 67.4 / 98.9 at 1
MOTION_LAMBDA_PER_STEP = 2.0
MOTION_LAYER = 1  # 0-based: the motion fields head layer 2's symbols; a 1-layer decode assumes no motion
MOTION_SUBPEL = 2  # quarter-pel vectors (closed loop: ~1 % fewer bits than half-pel on foreman and mobile)
# chroma step = 2/4 of the luma step. 6/4 → 3/4 (bilinear chroma): BD-rate in PSNR-RGB and MS-SSIM ~30 points
# better, PSNR-Y ~10 worse; 3/4 → 2/4 (with the nearest upsampler, fidelities 36-60, fast): foreman MS-SSIM
# -10, PSNR-RGB -11, PSNR-Y +4 points; mobile MS-SSIM -19, PSNR-RGB -10, PSNR-Y +17
CHROMA_STEP_Q2 = 2
MOTION_OBMC = True  # overlapped-block motion compensation (parameter-block version 3)
# motion interpolation (`motion.INTERP_NAMES`; parameter-block version 5): sharp 8/4-tap filters instead of
# bilinear, fast, fidelities 36-60, BD PSNR-Y / MS-SSIM / PSNR-RGB: mobile 116.4/115.9/67.3 → 42.1/38.0/7.4,
# foreman 49.1/71.2/33.7 → 48.5/75.0/32.4
MOTION_INTERP = 1
# temporal step weights (`gop.T_WEIGHTS_Q16`; parameter-block version 6), fast, fidelities 36-60, mean over the 5 dev
# clips of BD PSNR-Y / MS-SSIM / PSNR-RGB: norms (0) 44.6/55.6/24.8, ^1.25 (1) 43.2/51.5/22.1, ^1.5 (2) 42.1/49.7/19.9
# but foreman MS-SSIM 75.0 → 79.8 → 87.9 (the clip nearest the +100 % limit): 1 is the compromise
TEMPORAL_WEIGHTS = 1


def _fit_offset(y: np.ndarray, frac: np.ndarray, spread: np.ndarray) -> tuple[int, float]:
    """(offset, bits): the spread offset in ±SPREAD_OFFSET_MAX coding residuals `y` in the fewest bits, by
    descent from 0 (the bits are unimodal in the offset)."""
    def bits(o: int) -> float:
        return table_bits(y, frac, np.clip(spread + o, 0, N_SPREAD - 1))

    if not len(y):
        return 0, 0.0
    cur, b0 = 0, bits(0)
    for step in (1, -1):
        while abs(cur + step) <= SPREAD_OFFSET_MAX:
            b = bits(cur + step)
            if b >= b0:
                break
            cur, b0 = cur + step, b
        if cur:
            break
    return cur, b0


def _offset(spread: torch.Tensor, offsets: tuple[int, ...], cls_: int) -> torch.Tensor:
    """The ARM's spreads (n,) int64 moved by the class's offset (none before version 4), clamped to the tables."""
    return (spread + offsets[cls_]).clamp_(0, N_SPREAD - 1) if offsets else spread


def _bits_at(y: torch.Tensor, spread: int) -> float:
    """Bits of symbols `y` under the table of `spread` (frac 0)."""
    yy = y.numpy()
    return table_bits(yy, np.zeros(len(yy), dtype=np.int64), np.full(len(yy), spread)) if len(yy) else 0.0


def _best_spread(y: torch.Tensor) -> int:
    """The table spread (frac 0) coding `y` in the fewest bits."""
    return int(np.argmin([_bits_at(y, s) for s in range(N_SPREAD)])) if len(y) else 0


@dataclass(frozen=True)
class Effort:
    """Encoder work per GOP: ARM fitting steps, the ARM widths tried (the encoder keeps the one with the
    fewest total bits, parameters included), the parameter precisions tried."""

    name: str
    arm_steps: int
    hiddens: tuple[int, ...]
    batch: int = 1 << 16


EFFORTS = {
    "fast": Effort("fast", 300, (6,), 1 << 14),
    "medium": Effort("medium", 600, (4, 10), 1 << 15),
    "slow": Effort("slow", 2000, (4, 8, 16)),
}
PRECISIONS = ((8, 5), (9, 6), (10, 7), (12, 8))  # (w1_bits, w_bits) tried for the ARM parameters
EFFORT_CODES = {"fast": 0, "medium": 1, "slow": 2}


def step_for_quality(quality: float) -> int:
    """Luma quantiser step (1/256 of a 1/16 code value) for `quality` in [0, 100]: 100 = step 0.5,
    every 8 points halve/double it (0 → step ≈ 2^12.5)."""
    q = min(100.0, max(0.0, float(quality)))
    return max(1, round(0.5 * 2 ** ((100.0 - q) / 8.0) * 16 * 256))


@dataclass
class GopParams:
    """The parameter block at the head of layer 0 (all integers)."""

    step_q8: int
    chroma_step_q2: int
    effort: int
    hidden: int
    block: int  # motion block side (luma pixels)
    subpel: int  # vector grid: 4 >> subpel quarter-pels
    mv_spread: tuple[int, ...]  # table spreads of the motion classes (v1: modes, vectors; v2: modes, left, right)
    w1_bits: int  # ARM first-layer weights in 2^-w1_bits units
    w_bits: int  # other ARM weights in 2^-w_bits units
    arm: list[torch.Tensor]
    chroma_up: int = 0  # index into colour.CHROMA_UP (version 1 blocks: 0, bilinear)
    obmc: int = 0  # 1: overlapped-block motion compensation (version 3 blocks; older: 0)
    spread_off: tuple[int, ...] = ()  # per spread class (`gop.spread_classes`) added to the ARM's spread, or none (v4)
    interp: int = 0  # motion interpolation filter, index into motion.INTERP_NAMES (version 5; older: 0, bilinear)
    t_weights: int = 0  # temporal step weights, index into gop.T_WEIGHTS_Q16 (version 6; older: 0)
    version: int = PARAM_VERSION  # 1: motion coded by `motion.field_symbols`, bilinear chroma; 2: `mvcode`

    def to_bytes(self) -> bytes:
        """pack_ints(version, head fields, 6 ARM tensor spreads, blob length, subpel, chroma_up, right-vector
        spread, obmc, interp, t_weights, the spread offsets' count and values) + blob (the ARM tensors range-coded).
        Writes the current version only."""
        if self.version != PARAM_VERSION or len(self.mv_spread) != 3:
            raise ValueError(f"only parameter block version {PARAM_VERSION} is written")
        spreads = [_best_spread(t.reshape(-1)) for t in self.arm]
        enc = SymbolEncoder()
        for t, sp in zip(self.arm, spreads):
            y = t.reshape(-1).numpy()
            enc.encode(y, np.zeros(len(y), dtype=np.int64), np.full(len(y), sp, dtype=np.int64))
        blob = enc.finish()
        head = [PARAM_VERSION, self.step_q8, self.chroma_step_q2, self.effort, self.hidden, self.block,
                *self.mv_spread[:2], self.w1_bits, self.w_bits, *spreads, len(blob), self.subpel,
                self.chroma_up, self.mv_spread[2], self.obmc, self.interp, self.t_weights, len(self.spread_off),
                *self.spread_off]
        return pack_ints(head) + blob

    @classmethod
    def parse(cls, data: bytes) -> tuple[GopParams, int]:
        vals, end = unpack_ints(data, 0)
        version = vals[0] if vals else -1
        n_vals = PARAM_FIELDS.get(version)
        if n_vals is not None and version >= 4 and len(vals) >= n_vals:
            n_vals += vals[n_vals - 1]  # the spread offsets follow their count
        if n_vals is None or len(vals) != n_vals:
            raise ValueError(f"parameter block version {vals[0] if vals else '?'} unknown")
        chroma_up = vals[18] if version >= 2 else 0
        mv_spread = (vals[6], vals[7], vals[19]) if version >= 2 else (vals[6], vals[7])
        obmc = vals[20] if version >= 3 else 0
        spread_off = tuple(vals[PARAM_FIELDS[version]:]) if version >= 4 else ()
        interp = vals[21] if version >= 5 else 0
        t_weights = vals[22] if version >= 6 else 0
        hidden, block, w1_bits, w_bits = vals[4], vals[5], vals[8], vals[9]
        if (not 1 <= hidden <= 64 or vals[1] < 1 or not 1 <= vals[2] <= 64 or block not in (8, 16, 32, 64)
                or not all(0 <= v < N_SPREAD for v in mv_spread + tuple(vals[10:16])) or not 8 <= w1_bits <= 14
                or not 2 <= w_bits <= 12 or end + vals[16] > len(data) or not 0 <= vals[17] <= 2
                or chroma_up not in (0, 1) or obmc not in (0, 1) or interp not in range(len(INTERP_NAMES))
                or t_weights not in range(len(G.T_WEIGHTS_Q16))
                or any(abs(o) > SPREAD_OFFSET_MAX for o in spread_off)):
            raise ValueError("parameter block fields out of range")
        shapes = [(hidden, N_FEATURES), (hidden,), (hidden, hidden), (hidden,), (2, hidden), (2,)]
        dec = SymbolDecoder(data[end : end + vals[16]])
        arm = []
        for shp, sp in zip(shapes, vals[10:16]):
            n = math.prod(shp)
            try:
                y = dec.decode(np.zeros(n, dtype=np.int64), np.full(n, sp, dtype=np.int64))
            except Exception as exc:  # constriction raises on garbage payloads
                raise ValueError(f"ARM parameters do not decode ({exc})") from exc
            arm.append(torch.from_numpy(y).reshape(shp))
        return (cls(vals[1], vals[2], vals[3], hidden, block, vals[17], mv_spread, w1_bits, w_bits, arm,
                    chroma_up, obmc, spread_off, interp, t_weights, version), end + vals[16])


def _crc(values: list[np.ndarray]) -> int:
    crc = 0
    for v in values:
        crc = zlib.crc32(np.asarray(v, dtype="<i4").tobytes(), crc)
    return crc


class LatentCodec:
    """Encoder/decoder of the latent family. `quality` 0..100 sets Δ; `effort` the ARM fitting work."""

    family = FAMILY
    model_id = MODEL_ID
    tile = 1

    def __init__(self, quality: float = DEFAULT_FIDELITY, effort: str = DEFAULT_EFFORT,
                 chroma_step_q2: int = CHROMA_STEP_Q2,
                 seed: int = 0, levels: int = LEVELS):
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        if not 1 <= levels <= MAX_SPATIAL_LEVELS:
            raise ValueError(f"levels must be 1..{MAX_SPATIAL_LEVELS}")
        self.quality = quality
        self.effort = EFFORTS[effort]
        self.chroma_step_q2 = chroma_step_q2
        self.seed = seed
        self.levels = levels
        self.last_fit_s = 0.0
        self.last_breakdown: dict = {}  # what the last encode_gop spent, by part (bench/latent_bits.py)

    @property
    def n_layers(self) -> int:
        return self.levels + 1

    @property
    def scales(self) -> tuple[int, ...]:
        """Resolution divisor of each layer's finest band (64 … 1)."""
        return tuple(1 << (self.levels - m) for m in range(self.n_layers))

    # ---- encoder ---------------------------------------------------------------------------------------

    def motion_blocks(self, step_q8: int, frames: int) -> tuple[int, ...]:
        """Motion block sides the encoder tries (it keeps the one with the fewest estimated bits): 16 at fine
        steps, 32 and 16 at coarser ones (foreman wants 32 up to fidelity 60, mobile 16 from fidelity ~44),
        32 alone for one frame (no motion)."""
        if frames < 2:
            return (32,)
        return (16,) if step_q8 <= MOTION_BLOCK16_MAX_STEP_Q8 else (32, 16)

    def motion_lambda(self, step_q8: int) -> float:
        """Vector-smoothness weight of the motion search (SAD code values per quarter-pel of deviation)."""
        return MOTION_LAMBDA_PER_STEP * step_q8 / (16 * 256)

    @staticmethod
    def chroma_upsampler(frames_THWC: np.ndarray, rec: list[torch.Tensor]) -> int:
        """The `CHROMA_UP` code whose RGB reconstruction of the rebuilt planes `rec` is closest (squared
        error) to the source frames (T, H, W, 3) uint8; ties go to bilinear."""
        src = torch.from_numpy(frames_THWC).to(torch.int64)
        sse = [int(((planes_to_rgb(*rec, c).to(torch.int64) - src) ** 2).sum()) for c in range(len(CHROMA_UP))]
        return min(range(len(sse)), key=lambda c: (sse[c], c))

    def fit_arm(self, feats: torch.Tensor, target: torch.Tensor, hidden: int) -> ARM:
        """Fit the ARM (float twin) to the GOP's latents: minimise their code length (bits). On one torch
        thread: float reductions split over threads differ in their last bits, and the fitted weights are
        stored, so this keeps the chunks identical whatever thread count an actor runs with."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit_arm(feats, target, hidden)
        finally:
            torch.set_num_threads(threads)

    def _fit_arm(self, feats: torch.Tensor, target: torch.Tensor, hidden: int) -> ARM:
        torch.manual_seed(self.seed)
        e = self.effort
        arm = ARM(hidden)
        opt = torch.optim.Adam(arm.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / e.arm_steps)))
        n = len(target)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(e.arm_steps):
            idx = torch.randint(0, n, (min(e.batch, n),), generator=gen) if n > e.batch else slice(None)
            mu, s = arm(feats[idx])
            loss = laplace_bits(target[idx], mu, s).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return arm

    def _choose_arm(self, feats: torch.Tensor, target: torch.Tensor, row_cls: torch.Tensor, n_cls: int,
                    base: GopParams) -> GopParams:
        """Fit an ARM per width the effort allows, quantise it at each precision, fit its spread offsets
        per class (`row_cls` (n,) class index of each row), and keep the candidate with the fewest bits
        (parameter block + latents under the integer ARM)."""
        f64, tgt = feats.double(), target.to(torch.int64)
        order = torch.argsort(row_cls, stable=True).numpy()
        cuts = np.searchsorted(row_cls.numpy()[order], np.arange(n_cls + 1))
        groups = [order[cuts[c] : cuts[c + 1]] for c in range(n_cls)]
        best, best_bits = None, math.inf
        for hidden in self.effort.hiddens:
            arm = self.fit_arm(feats, target, hidden)
            for w1, wb in PRECISIONS:
                mu, frac, spread = arm_rows(f64, arm.quantized(w1, wb), w1, wb)
                y, fr, sp = (tgt - mu).numpy(), frac.numpy(), spread.numpy()
                offs, bits = zip(*(_fit_offset(y[g], fr[g], sp[g]) for g in groups)) if groups else ((), (0.0,))
                for off, latent_bits in ((tuple(offs), sum(bits)), ((), table_bits(y, fr, sp))):  # or none
                    cand = replace(base, hidden=hidden, w1_bits=w1, w_bits=wb,
                                   arm=arm.quantized(w1, wb), spread_off=off)
                    total = latent_bits + 8 * len(cand.to_bytes())
                    if total < best_bits:
                        best, best_bits = cand, total
        assert best is not None
        return best

    def encode_gop(self, frames_THWC: np.ndarray, scales: int | None = None, gop_index: int = 0,
                   frame_scales: int | None = None, generation: str = "auto") -> EncodedGop:
        """Encode one GOP (T, H, W, 3) uint8 → one chunk per layer 1..K (K = scales or all)."""
        from pipeline.codec.container import pack_chunk

        x = np.asarray(frames_THWC)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
            raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {x.shape} {x.dtype}")
        if frame_scales is not None:
            raise ValueError("the latent family has no keyframe mode yet (plain mode only)")
        if len(x) > MAX_FRAMES:
            raise ValueError(f"the latent codec takes GOPs of at most {MAX_FRAMES} frames, got {len(x)}")
        t0 = time.time()
        k_max = self.n_layers if scales is None else max(1, min(scales, self.n_layers))
        geo = Geometry(x.shape[0], x.shape[1], x.shape[2], self.levels)
        step_q8 = step_for_quality(self.quality)
        steps_t = G.step_tensors(geo, step_q8, self.chroma_step_q2, TEMPORAL_WEIGHTS)
        best = None
        for blk in self.motion_blocks(step_q8, geo.frames):
            q, fields, rec = G.analyse(torch.from_numpy(x), geo, blk, self.motion_lambda(step_q8), steps_t,
                                       MOTION_SUBPEL, MOTION_OBMC, MOTION_INTERP)
            mv_syms, _ = mvcode.field_symbols(fields, 4 >> MOTION_SUBPEL)
            mv_cls = [torch.cat([v for c, v in mv_syms if c == k] or [torch.zeros(0).long()]) for k in (0, 1, 2)]
            mv_spread = tuple(_best_spread(v) for v in mv_cls)
            est = G.entropy_bits(q, geo) + sum(_bits_at(v, sp) for v, sp in zip(mv_cls, mv_spread))
            if best is None or est < best[0]:
                best = (est, blk, q, fields, rec, mv_syms, mv_spread)
        _, block, q, fields, rec, mv_syms, mv_spread = best
        chroma_up = self.chroma_upsampler(x, rec)
        t_lv = torch.tensor(t_band_level(geo.frames))
        # every layer is fitted even when fewer are kept, so a `scales=K` stream holds exactly the first K
        # chunks of the full stream (same ARM, same predictions of the dropped layers)
        walk = [(m, st) for m in range(self.n_layers) for st in G.steps(geo, m)]
        feats, targets = [], []
        cache: dict = {}
        classes = G.spread_classes(geo, self.n_layers)
        row_cls = []
        for _m, st in walk:
            f, pos = G.step_features(geo, q, st, t_lv, cache)
            feats.append(f)
            targets.append(G.band_view(q, st.band)[st.frames].reshape(-1)[pos])
            row_cls.append(torch.full((len(pos),), classes[G.spread_class(st)], dtype=torch.int64))
        all_f = torch.cat(feats).float()
        all_t = torch.cat(targets).float()
        base = GopParams(step_q8, self.chroma_step_q2, EFFORT_CODES[self.effort.name], 0, block, MOTION_SUBPEL,
                         mv_spread, 0, 0, [], chroma_up, int(MOTION_OBMC), interp=MOTION_INTERP,
                         t_weights=TEMPORAL_WEIGHTS)
        params = self._choose_arm(all_f, all_t, torch.cat(row_cls), len(classes), base)
        encs = [SymbolEncoder() for _ in range(k_max)]
        syms: list[list[np.ndarray]] = [[] for _ in range(k_max)]
        bits = [0.0] * k_max
        for cls_, v in mv_syms if k_max > MOTION_LAYER else []:  # motion heads layer 2 (see module doc)
            y = v.numpy()
            z = np.zeros(len(y), dtype=np.int64)
            sp = np.full(len(y), mv_spread[cls_], dtype=np.int64)
            encs[MOTION_LAYER].encode(y, z, sp)
            bits[MOTION_LAYER] += table_bits(y, z, sp)
        motion_bits = bits[MOTION_LAYER] if k_max > MOTION_LAYER else 0.0
        arm = IntARM.of(params.arm, params.w1_bits, params.w_bits)
        cache = {}
        for (m, st), tg in zip(walk, targets):
            if m >= k_max:
                break
            mu, frac, spread, _ = G.step_arm(geo, q, st, t_lv, arm, cache)
            spread = _offset(spread, params.spread_off, classes[G.spread_class(st)])
            y = (tg.to(torch.int64) - mu).numpy()
            fr, sp = frac.numpy(), spread.numpy()
            encs[m].encode(y, fr, sp)
            bits[m] += table_bits(y, fr, sp)
            syms[m].append(tg.to(torch.int64).numpy())
        head = params.to_bytes()
        chunks, counts, crcs = [], [], []
        for m in range(k_max):
            payload = encs[m].finish()
            if m == 0:
                payload = head + payload
                bits[0] += 8 * len(head)
            cnt = int(sum(len(s) for s in syms[m]))
            crc = _crc(syms[m])
            chunks.append(pack_chunk(m + 1, cnt, crc, payload, gop_index))
            counts.append(cnt)
            crcs.append(crc)
        self.last_fit_s = time.time() - t0
        self.last_breakdown = {"params_bytes": len(head), "motion_bits": motion_bits, "hidden": params.hidden,
                               "arm_bits": [params.w1_bits, params.w_bits], "motion_block": block,
                               "chroma_up": CHROMA_UP[chroma_up],
                               "latent_bits": [b - (8 * len(head) if m == 0 else 0) - (motion_bits if m == MOTION_LAYER
                                                                                        else 0)
                                               for m, b in enumerate(bits)], "seconds": self.last_fit_s}
        return EncodedGop(chunks, counts, crcs, bits)

    # ---- decoder ---------------------------------------------------------------------------------------

    def decode_gop(self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = DEFAULT_PREDICT,
                   seed: int = 0, gop_index: int | None = None, context: str = "", frame_scales: int | None = None,
                   generate: int | None = None, batch_size: int | None = None) -> np.ndarray:
        """Decode one GOP from its first K chunks → (T, H, W, 3) uint8; layers K.. predicted by `predict`."""
        from pipeline.codec.container import parse_chunk
        from pipeline.errors import StreamError

        if predict not in PREDICT_MODES:
            raise ValueError(f"predict must be one of {PREDICT_MODES}, got {predict!r}")
        where = (context + ": " if context else "") + (f"GOP {gop_index}" if gop_index is not None else "GOP")
        if not chunks:
            raise StreamError(f"{where}: no layers to decode (layer 1 holds the GOP's parameters)")
        if len(chunks) > self.n_layers:
            raise StreamError(f"{where}: {len(chunks)} layer chunks, the latent codec has {self.n_layers}")
        if not 1 <= n_frames <= MAX_FRAMES:
            raise StreamError(f"{where}: {n_frames} frames in one GOP (the latent codec takes 1..{MAX_FRAMES})")
        geo = Geometry(n_frames, height, width, self.levels)
        parsed = []
        for m, c in enumerate(chunks):
            ch, _ = parse_chunk(c, 0, f"{where} scale {m + 1}")
            if ch.scale != m + 1:
                raise StreamError(f"{where} scale {m + 1}: chunk holds scale {ch.scale}; chunks out of order")
            expect = sum(b.shape[0] * b.shape[1] for b in geo.layer_bands(m)) * n_frames
            if ch.token_count != expect:
                raise StreamError(f"{where} scale {m + 1}: chunk has {ch.token_count} latents, expected {expect} "
                                  f"for {n_frames} frames of {width}x{height}; wrong size or damaged stream")
            parsed.append(ch)
        try:
            params, used = GopParams.parse(parsed[0].payload)
        except ValueError as exc:
            raise StreamError(f"{where}: layer 1 parameter block is damaged ({exc})") from exc
        decs = [SymbolDecoder(parsed[0].payload[used:])] + [SymbolDecoder(ch.payload) for ch in parsed[1:]]
        try:
            fields = (self._decode_fields(decs[MOTION_LAYER], params, n_frames, height, width)
                      if len(decs) > MOTION_LAYER else still_fields(n_frames, height, width, params.block))
        except Exception as exc:  # constriction raises on garbage payloads
            raise StreamError(f"{where} scale {MOTION_LAYER + 1}: motion decoding failed ({exc}); stream "
                              "damaged") from exc
        q = [torch.zeros((n_frames, *geo.plane_shape(p)), dtype=torch.int64) for p in range(3)]
        t_lv = torch.tensor(t_band_level(n_frames))
        rng = np.random.default_rng(seed)
        syms: list[list[np.ndarray]] = [[] for _ in parsed]
        n_decode = self.n_layers if predict != "none" else len(parsed)
        cache: dict = {}
        arm = IntARM.of(params.arm, params.w1_bits, params.w_bits)
        classes = G.spread_classes(geo, self.n_layers)
        if params.spread_off and len(params.spread_off) != len(classes):
            raise StreamError(f"{where}: layer 1 has {len(params.spread_off)} spread offsets, the geometry "
                              f"{len(classes)}; wrong size or damaged stream")
        for m in range(n_decode):
            for st in G.steps(geo, m):
                mu, frac, spread, pos = G.step_arm(geo, q, st, t_lv, arm, cache)
                spread = _offset(spread, params.spread_off, classes[G.spread_class(st)])
                if m < len(parsed):
                    try:
                        y = decs[m].decode(frac.numpy(), spread.numpy())
                    except Exception as exc:  # constriction raises on garbage payloads
                        raise StreamError(f"{where} scale {m + 1}: entropy decoding failed ({exc}); "
                                          "stream damaged") from exc
                elif predict == "argmax":
                    y = (frac.numpy() >= 4).astype(np.int64)
                else:
                    c = np.cumsum(probs()[frac.numpy(), spread.numpy()], 1)
                    y = (c < rng.random(len(c))[:, None]).sum(1) - SYMBOL_RANGE
                v = mu + torch.from_numpy(np.asarray(y, dtype=np.int64))
                view = G.band_view(q, st.band)[st.frames]
                flat = view.reshape(-1).clone()
                flat[pos] = v
                G.band_view(q, st.band)[st.frames] = flat.reshape(view.shape)
                if m < len(parsed):
                    syms[m].append(v.numpy())
            if m < len(parsed) and _crc(syms[m]) != parsed[m].token_crc:  # before a later layer reads garbage
                raise StreamError(f"{where} scale {m + 1}: latent checksum mismatch (decoder diverged or stream "
                                  f"damaged); decode with --scales {m} or re-fetch the stream")
        steps_t = G.step_tensors(geo, params.step_q8, params.chroma_step_q2, params.t_weights)
        return G.synthesise(G.dequantise(q, steps_t), geo, fields, params.block, params.chroma_up,
                            bool(params.obmc), params.interp).numpy()

    @staticmethod
    def _decode_fields(dec: SymbolDecoder, params: GopParams, frames: int, height: int, width: int
                       ) -> list[list[Field]]:
        """Motion fields from the head of layer 2's symbols: `mvcode` order (version 2) or
        `motion.field_symbols` order (version 1)."""
        nby, nbx = block_grid(height, width, params.block)
        unit = 4 >> params.subpel

        def take(cls_: int, n: int) -> torch.Tensor:
            z = np.zeros(n, dtype=np.int64)
            return torch.from_numpy(dec.decode(z, np.full(n, params.mv_spread[cls_], dtype=np.int64)))

        fields: list[list[Field]] = []
        n = frames
        for _ in range(t_levels(frames)):
            lev = []
            for _i in range(n // 2):
                if params.version >= 2:
                    lev.append(mvcode.decode_field(take, (nby, nbx), unit))
                    continue
                mode = mode_from_symbol(take(0, nby * nbx)).reshape(nby, nbx)
                mv_l = from_residuals(take(1, nby * nbx * 2) * unit, (nby, nbx, 2))
                mv_r = from_residuals(take(1, nby * nbx * 2) * unit, (nby, nbx, 2))
                lev.append(Field(mode, mv_l, mv_r))
            fields.append(lev)
            n = (n + 1) // 2
        return fields
