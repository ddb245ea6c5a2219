"""`LatentCodec`: the overfitted multi-resolution latent codec family ("latent-v1").

Per GOP the encoder turns the frames into integer latent grids (the sub-bands of a fixed integer
3-D wavelet pyramid, quantised with step Δ), fits the context model (ARM) to them — the only
learned part, overfitted per GOP, no dataset training — and range-codes layer by layer with the
integer ARM. Layer 0's chunk starts with the GOP's parameter block (Δ, chroma step, effort, ARM).
Decoding K layers reads chunks 0..K-1; the finer layers are predicted from the ARM (`argmax`: its
rounded mean; `sample`: a draw from the fixed tables; `none`: zeros). All of decoding is integer.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.codec_api import EncodedGop
from pipeline.latent import gop as G
from pipeline.latent.bands import Geometry
from pipeline.latent.coder import SymbolDecoder, SymbolEncoder, pack_ints, table_bits, unpack_ints
from pipeline.latent.context import ARM, N_FEATURES, arm_int, laplace_bits
from pipeline.latent.dwt import MAX_SPATIAL_LEVELS, t_band_level

MODEL_ID = "latent-v1"
FAMILY = "latent"
LEVELS = 6  # spatial levels J: 7 layers, LL at 1/64
PARAM_VERSION = 1
PREDICT_MODES = ("argmax", "sample", "none")


@dataclass(frozen=True)
class Effort:
    name: str
    arm_steps: int
    hidden: int
    batch: int = 1 << 16


EFFORTS = {
    "fast": Effort("fast", 300, 8),
    "medium": Effort("medium", 1000, 12),
    "slow": Effort("slow", 3000, 16),
}
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
    arm: list[torch.Tensor]

    def to_bytes(self) -> bytes:
        flat = [PARAM_VERSION, self.step_q8, self.chroma_step_q2, self.effort, self.hidden]
        for t in self.arm:
            flat += [int(v) for v in t.reshape(-1)]
        return pack_ints(flat)

    @classmethod
    def parse(cls, data: bytes) -> tuple[GopParams, int]:
        vals, end = unpack_ints(data, 0)
        if len(vals) < 5 or vals[0] != PARAM_VERSION:
            raise ValueError(f"parameter block version {vals[0] if vals else '?'} unknown")
        hidden = vals[4]
        if not 1 <= hidden <= 64 or vals[1] < 1 or not 4 <= vals[2] <= 64:
            raise ValueError("parameter block fields out of range")
        shapes = [(hidden, N_FEATURES), (hidden,), (hidden, hidden), (hidden,), (2, hidden), (2,)]
        need = sum(math.prod(s) for s in shapes)
        if len(vals) != 5 + need:
            raise ValueError(f"parameter block holds {len(vals) - 5} ARM values, expected {need}")
        arm, o = [], 5
        for s in shapes:
            n = math.prod(s)
            arm.append(torch.tensor(vals[o : o + n], dtype=torch.int64).reshape(s))
            o += n
        return cls(vals[1], vals[2], vals[3], hidden, arm), end


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

    def __init__(self, quality: float = 60.0, effort: str = "medium", chroma_step_q2: int = 6, seed: int = 0,
                 levels: int = LEVELS):
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

    @property
    def n_layers(self) -> int:
        return self.levels + 1

    @property
    def scales(self) -> tuple[int, ...]:
        """Resolution divisor of each layer's finest band (64 … 1)."""
        return tuple(1 << (self.levels - m) for m in range(self.n_layers))

    # ---- encoder ---------------------------------------------------------------------------------------

    def fit_arm(self, feats: torch.Tensor, target: torch.Tensor) -> ARM:
        """Fit the ARM (float twin) to the GOP's latents: minimise their code length (bits)."""
        torch.manual_seed(self.seed)
        e = self.effort
        arm = ARM(e.hidden)
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

    def encode_gop(self, frames_THWC: np.ndarray, scales: int | None = None, gop_index: int = 0,
                   frame_scales: int | None = None, generation: str = "auto") -> EncodedGop:
        """Encode one GOP (T, H, W, 3) uint8 → one chunk per layer 1..K (K = scales or all)."""
        from pipeline.codec.container import pack_chunk

        x = np.asarray(frames_THWC)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
            raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {x.shape} {x.dtype}")
        if frame_scales is not None:
            raise ValueError("the latent family has no keyframe mode yet (plain mode only)")
        t0 = time.time()
        k_max = self.n_layers if scales is None else max(1, min(scales, self.n_layers))
        geo = Geometry(x.shape[0], x.shape[1], x.shape[2], self.levels)
        step_q8 = step_for_quality(self.quality)
        steps_t = G.step_tensors(geo, step_q8, self.chroma_step_q2)
        q = G.quantise(G.analyse(torch.from_numpy(x), geo), steps_t, geo)
        t_lv = torch.tensor(t_band_level(geo.frames))
        walk = [(m, st) for m in range(k_max) for st in G.steps(geo, m)]
        feats, targets = [], []
        for _m, st in walk:
            f, pos = G.step_features(geo, q, st, t_lv)
            feats.append(f)
            targets.append(G.band_view(q, st.band)[st.frames].reshape(-1)[pos])
        all_f = torch.cat(feats).float()
        all_t = torch.cat(targets).float()
        arm = self.fit_arm(all_f, all_t)
        params = GopParams(step_q8, self.chroma_step_q2, EFFORT_CODES[self.effort.name], self.effort.hidden,
                           arm.quantized())
        encs = [SymbolEncoder() for _ in range(k_max)]
        syms: list[list[np.ndarray]] = [[] for _ in range(k_max)]
        bits = [0.0] * k_max
        for (m, _st), f, tg in zip(walk, feats, targets):
            mu, frac, spread = arm_int(f, params.arm)
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
        return EncodedGop(chunks, counts, crcs, bits)

    # ---- decoder ---------------------------------------------------------------------------------------

    def decode_gop(self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = "argmax",
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
        q = [torch.zeros((n_frames, *geo.plane_shape(p)), dtype=torch.int64) for p in range(3)]
        t_lv = torch.tensor(t_band_level(n_frames))
        rng = np.random.default_rng(seed)
        syms: list[list[np.ndarray]] = [[] for _ in parsed]
        n_decode = self.n_layers if predict != "none" else len(parsed)
        for m in range(n_decode):
            for st in G.steps(geo, m):
                f, pos = G.step_features(geo, q, st, t_lv)
                mu, frac, spread = arm_int(f, params.arm)
                if m < len(parsed):
                    try:
                        y = decs[m].decode(frac.numpy(), spread.numpy())
                    except Exception as exc:  # constriction raises on garbage payloads
                        raise StreamError(f"{where} scale {m + 1}: entropy decoding failed ({exc}); "
                                          "stream damaged") from exc
                elif predict == "argmax":
                    y = (frac.numpy() >= 4).astype(np.int64)
                else:
                    from pipeline.latent.tables import SYMBOL_RANGE, probs

                    c = np.cumsum(probs()[frac.numpy(), spread.numpy()], 1)
                    y = (c < rng.random(len(c))[:, None]).sum(1) - SYMBOL_RANGE
                v = mu + torch.from_numpy(np.asarray(y, dtype=np.int64))
                view = G.band_view(q, st.band)[st.frames]
                flat = view.reshape(-1).clone()
                flat[pos] = v
                G.band_view(q, st.band)[st.frames] = flat.reshape(view.shape)
                if m < len(parsed):
                    syms[m].append(v.numpy())
        for m, ch in enumerate(parsed):
            if _crc(syms[m]) != ch.token_crc:
                raise StreamError(f"{where} scale {m + 1}: latent checksum mismatch (decoder diverged or stream "
                                  f"damaged); decode with --scales {m} or re-fetch the stream")
        steps_t = G.step_tensors(geo, params.step_q8, params.chroma_step_q2)
        return G.synthesise(G.dequantise(q, steps_t), geo).numpy()
