"""The `Codec` API: encode a GOP into one chunk per scale, decode any prefix of scales.

Per GOP and scale k, chunk k holds scale k's tokens of every frame (frames in order, tiles in raster
order, each tile's token block row-major), range-coded with the context model's quantized
probabilities p(x[f,k] | x[f,<k], x[f-1,k], x[key,k]). The probability path (quantizer,
φ convs, context transformer) runs in float64 on the CPU; see entropy.py for the integer tables.

Keyframe mode (CGVC): the keyframe carries every scale, the other frames only their first K' scales
(their dense control prior); the decoder generates their finer scales with the same context model,
which sees the keyframe's real tokens at those scales. Chunks k > K' then hold the keyframe alone.
"""

from __future__ import annotations

import copy
import hashlib
import io
import zlib
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.codec.config import CodecConfig
from pipeline.codec.context import ContextModel
from pipeline.codec.entropy import (
    ScaleDecoder,
    ScaleEncoder,
    argmax_symbols,
    cross_entropy_bits,
    quantize_logits,
    sample_symbols,
)
from pipeline.codec.tiles import TileGrid
from pipeline.codec.tokenizer import Tokenizer, blocks_to_grid, grid_to_blocks, group_tiles
from pipeline.codec_api import DEFAULT_PREDICT, GENERATION_MODES, PREDICT_MODES, EncodedGop
from pipeline.errors import StreamError
from pipeline.pgv import pack_chunk, parse_chunk

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "progvc.pt"
__all__ = ["GENERATION_MODES", "PREDICT_MODES", "Codec", "EncodedGop", "coded_scales"]

FrameTokens = list[torch.Tensor]  # per scale: (Hk, Wk) long


class ProGVCModel(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.tokenizer = Tokenizer(cfg)
        self.context = ContextModel(cfg)


def _model_id(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def coded_scales(frame: int, n_layers: int, frame_scales: int | None) -> int:
    """Scales of GOP frame `frame` carried by `n_layers` layers: all of them for the keyframe (frame 0)
    and in plain mode (`frame_scales` None), at most `frame_scales` for the other frames (keyframe mode)."""
    if frame == 0 or frame_scales is None:
        return n_layers
    return min(n_layers, frame_scales)


def best_prefix(gain: np.ndarray) -> int:
    """The prefix length G in 0..len(gain) with the largest summed gain[:G] (the shortest on ties)."""
    return int(np.argmax(np.concatenate([[0.0], np.cumsum(gain)])))


def tokens_crc(symbols: list[np.ndarray]) -> int:
    crc = 0
    for s in symbols:
        crc = zlib.crc32(np.asarray(s, dtype="<u2").tobytes(), crc)
    return crc


class Codec:
    """A loaded ProGVC model of the "vq" family (implements `pipeline.codec_api.CodecFamily`).
    `batch_size` = tiles per context-model forward (never changes results)."""

    family = "vq"

    def __init__(self, cfg: CodecConfig, model: ProGVCModel, device: str = "cpu", batch_size: int | None = None,
                 meta: dict | None = None):
        self.cfg = cfg
        self.model = model.eval().requires_grad_(False)
        self.model_id = _model_id(model.state_dict())
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.meta = meta or {}
        self.tok = self.model.tokenizer
        self.tok.encoder.to(self.device)
        self.tok.decoder.to(self.device)
        self.ctx64 = copy.deepcopy(self.model.context).double().eval()
        if cfg.codebook_size > 65536:
            raise ValueError("codebook_size must fit uint16 token checksums")

    # ---- what the stream header records (pipeline.codec_api.CodecFamily) -----------------------

    @property
    def n_layers(self) -> int:
        return self.cfg.n_scales

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(self.cfg.scales)

    @property
    def tile(self) -> int:
        return int(self.cfg.tile)

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def random(cls, cfg: CodecConfig | None = None, seed: int = 0, **kw) -> Codec:
        """A randomly initialised model (tests, smoke runs)."""
        cfg = cfg or CodecConfig.tiny()
        torch.manual_seed(seed)
        m = ProGVCModel(cfg)
        with torch.no_grad():  # spread the codebook so random tokens vary
            m.tokenizer.quant.codebook.weight.normal_(0, 0.5)
        return cls(cfg, m, **kw)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", batch_size: int | None = None) -> Codec:
        """Load weights (default: the shipped models/progvc.pt)."""
        from pipeline.errors import ProGVCError

        p = Path(path) if path else DEFAULT_WEIGHTS
        if not p.exists():
            raise ProGVCError(f"{p}: model weights not found; pass --weights PATH or train/export a model")
        try:
            s = torch.load(p, map_location="cpu", weights_only=True)
            cfg = CodecConfig.from_dict(s["config"])
            m = ProGVCModel(cfg)
            m.load_state_dict(s["state_dict"])
        except Exception as exc:  # noqa: BLE001
            raise ProGVCError(f"{p}: not a ProGVC weights file ({exc})") from exc
        return cls(cfg, m, device=device, batch_size=batch_size, meta=s.get("meta", {}))

    def save(self, path: str | Path) -> None:
        torch.save({"config": self.cfg.to_dict(), "state_dict": self.model.state_dict(), "meta": self.meta}, path)

    # ---- tokens ----------------------------------------------------------------------------

    def grid(self, height: int, width: int) -> TileGrid:
        return self.tok.grid_for(height, width)

    def encode_tokens(self, frames_THWC: np.ndarray) -> list[FrameTokens]:
        """Tokens of every frame (encoder CNN one frame at a time, float64 quantizer)."""
        out = []
        for fr in frames_THWC:
            x = torch.from_numpy(np.ascontiguousarray(fr)).permute(2, 0, 1)[None].float().div(255.0)
            out.append([t.cpu() for t in self.tok.encode_frame(x.to(self.device))])
        return out

    def decode_tokens(self, tokens: list[FrameTokens], width: int, height: int) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 from tokens (any number of scales per frame)."""
        grid = self.grid(height, width)
        out = np.empty((len(tokens), height, width, 3), dtype=np.uint8)
        for i, tk in enumerate(tokens):
            f = self.tok.tokens_to_latent(tk, grid).to(self.device)
            out[i] = self.tok.decode_latent(f, height, width).cpu().numpy()
        return out

    def _scale_tables(
        self, grid: TileGrid, n_scales: int, prev: FrameTokens | None, key: FrameTokens | None,
        batch_size: int | None,
    ) -> Generator[np.ndarray, torch.Tensor, None]:
        """Coroutine over the scales of one frame: yields the integer weight table (n_k, V) of scale k
        (tiles in raster order, each block row-major), then receives that scale's token grid (Hk, Wk).

        Encoder and decoder run exactly this code (same shapes, KV-cached float64 context model), so
        they compute the same tables.
        """
        q = self.tok.quant
        bs = batch_size or self.batch_size
        subs = []  # (ids, th, tw, sizes, cache, acc)
        for (th, tw), ids in group_tiles(grid).items():
            step = bs or len(ids)
            for j in range(0, len(ids), step):
                sub = ids[j : j + step]
                acc = torch.zeros((len(sub), self.cfg.latent_dim, th, tw), dtype=torch.float64)
                subs.append((sub, th, tw, q.sizes(th, tw), [None] * len(self.ctx64.blocks), acc))
        for k in range(n_scales):
            pb = grid_to_blocks(prev[k], grid, k) if prev is not None else None
            kb = grid_to_blocks(key[k], grid, k) if key is not None else None
            rows: list[np.ndarray | None] = [None] * grid.n_tiles
            for sub, _th, _tw, sizes, cache, acc in subs:
                hk, wk = sizes[k]
                f = acc if (hk, wk) == tuple(acc.shape[-2:]) else F.interpolate(acc, size=(hk, wk), mode="area")
                pv = torch.stack([pb[i] for i in sub]) if pb is not None else None
                kv = torch.stack([kb[i] for i in sub]) if kb is not None else None
                with torch.no_grad():
                    logits = self.ctx64.step(k, f, pv, kv, cache)  # (n, hk*wk, V)
                w = quantize_logits(logits.reshape(-1, logits.shape[-1]))
                n_k = hk * wk
                for j, i in enumerate(sub):
                    rows[i] = w[j * n_k : (j + 1) * n_k]
            idx = yield np.concatenate(rows)  # type: ignore[arg-type]
            if k + 1 < n_scales:
                blocks = grid_to_blocks(idx, grid, k)
                for n_, (sub, th, tw, _s, _c, acc) in enumerate(subs):
                    t = q.scale_contrib64(torch.stack([blocks[i] for i in sub]), k, th, tw)
                    subs[n_] = (sub, th, tw, _s, _c, acc + t)

    # ---- GOP coding --------------------------------------------------------------------------

    def encode_gop(
        self, frames_THWC: np.ndarray, scales: int | None = None, batch_size: int | None = None,
        frame_scales: int | None = None, gop_index: int = 0, generation: str = "auto",
    ) -> EncodedGop:
        """Encode one GOP (frame 0 = keyframe): one chunk per scale 1..K (K = scales or N), each tagged with
        `gop_index` (its position in the stream, checked by `.pgv` readers).

        Keyframe mode (`frame_scales` = K' < K): frames 1.. are coded at scales 1..K' only, so chunks
        K'+1..K hold the keyframe's tokens alone (see `coded_scales`). `generation="auto"` then also picks
        how many frames after the keyframe get generated fine scales (`choose_generation`); "all": every one.
        """
        if generation not in GENERATION_MODES:
            raise ValueError(f"generation must be one of {GENERATION_MODES}, got {generation!r}")
        x = np.asarray(frames_THWC)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
            raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {x.shape} {x.dtype}")
        if frame_scales is not None and frame_scales < 1:
            raise ValueError(f"frame_scales must be at least 1, got {frame_scales}")
        n = self.cfg.n_scales if scales is None else max(1, min(scales, self.cfg.n_scales))
        _, h, w, _ = x.shape
        grid = self.grid(h, w)
        tokens = self.encode_tokens(x)
        encs = [ScaleEncoder() for _ in range(n)]
        ce = [0.0] * n
        syms: list[list[np.ndarray]] = [[] for _ in range(n)]
        for f, cur in enumerate(tokens):
            n_f = coded_scales(f, n, frame_scales)
            gen = self._scale_tables(grid, n_f, tokens[f - 1] if f else None, tokens[0] if f else None, batch_size)
            wk = next(gen)
            for k in range(n_f):
                s = np.concatenate([b.flatten().numpy() for b in grid_to_blocks(cur[k], grid, k)])
                encs[k].encode(s, wk)
                ce[k] += cross_entropy_bits(wk, s)
                syms[k].append(s)
                if k + 1 < n_f:
                    wk = gen.send(cur[k])
        chunks, counts, crcs = [], [], []
        for k in range(n):
            crc = tokens_crc(syms[k])
            cnt = int(sum(len(s) for s in syms[k]))
            chunks.append(pack_chunk(k + 1, cnt, crc, encs[k].finish(), gop_index))
            counts.append(cnt)
            crcs.append(crc)
        enc = EncodedGop(chunks, counts, crcs, ce)
        if generation == "auto" and frame_scales is not None and frame_scales < self.cfg.n_scales and len(x) > 1:
            enc.generate = self.choose_generation(x, chunks, frame_scales, batch_size)
        return enc

    def choose_generation(
        self, frames_THWC: np.ndarray, chunks: list[bytes], frame_scales: int, batch_size: int | None = None,
    ) -> int:
        """Keyframe mode, encoder side: G = how many frames after the keyframe should get generated fine
        scales. Decodes the GOP as a decoder would, with generated scales and without, and returns the
        prefix length 0..T-1 that minimises the summed squared error against the source (generated detail
        fades as the content moves away from the keyframe; past that point the coarse scales alone are
        closer). Costs about one decode."""
        t, h, w, _ = frames_THWC.shape
        gen = self.decode_gop_tokens(chunks, t, w, h, "argmax", batch_size=batch_size, frame_scales=frame_scales)
        n_coded = coded_scales(1, len(chunks), frame_scales)
        ref = frames_THWC[1:].astype(np.float64)
        with_gen = self.decode_tokens(gen[1:], w, h).astype(np.float64)
        without = self.decode_tokens([tk[:n_coded] for tk in gen[1:]], w, h).astype(np.float64)
        gain = ((without - ref) ** 2).mean(axis=(1, 2, 3)) - ((with_gen - ref) ** 2).mean(axis=(1, 2, 3))
        return best_prefix(gain)

    def decode_gop_tokens(
        self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = DEFAULT_PREDICT,
        seed: int = 0,
        gop_index: int | None = None, context: str = "", batch_size: int | None = None,
        frame_scales: int | None = None, generate: int | None = None,
    ) -> list[FrameTokens]:
        """Tokens of every frame: scales 1..K from the chunks, K+1..N predicted (unless predict="none").

        Frame-major: all K range decoders stay open while the frames are decoded in order. Keyframe mode
        (`frame_scales` = K' as encoded): frames 1.. have min(K, K') coded scales, the rest predicted
        from their own coarse scales, the previous frame and the keyframe's tokens — frames 1..`generate`
        only, when the encoder chose a prefix (the header's GOP entry); the later ones keep their coded scales.
        """
        if predict not in PREDICT_MODES:
            raise ValueError(f"predict must be one of {PREDICT_MODES}, got {predict!r}")
        where = (context + ": " if context else "") + (f"GOP {gop_index}" if gop_index is not None else "GOP")
        if len(chunks) > self.cfg.n_scales:
            raise StreamError(f"{where}: {len(chunks)} scale chunks, the model has {self.cfg.n_scales}")
        grid = self.grid(height, width)
        parsed, decs = [], []
        for k, c in enumerate(chunks):
            ch, _ = parse_chunk(c, 0, f"{where} scale {k + 1}", scale=k + 1)
            n_in = sum(coded_scales(f, len(chunks), frame_scales) > k for f in range(n_frames))
            expect = n_in * grid.tokens_per_frame(k)
            if ch.token_count != expect:
                raise StreamError(
                    f"{where} scale {k + 1}: chunk has {ch.token_count} tokens, expected {expect} for "
                    f"{n_in} frames of {width}x{height}; wrong frame count/size/mode or damaged stream"
                )
            parsed.append(ch)
            decs.append(ScaleDecoder(ch.payload))
        rng = np.random.default_rng(seed)
        tokens: list[FrameTokens] = [[] for _ in range(n_frames)]
        syms: list[list[np.ndarray]] = [[] for _ in range(len(chunks))]
        for f in range(n_frames):
            n_coded = coded_scales(f, len(chunks), frame_scales)
            generated = predict != "none" and (f == 0 or generate is None or f <= generate)
            n_total = self.cfg.n_scales if generated else n_coded
            if n_total == 0:
                break
            gen = self._scale_tables(grid, n_total, tokens[f - 1] if f else None, tokens[0] if f else None,
                                     batch_size)
            wk = next(gen)
            for k in range(n_total):
                try:
                    if k < n_coded:
                        s = decs[k].decode(wk)
                        syms[k].append(s)
                    elif predict == "argmax":
                        s = argmax_symbols(wk)
                    else:
                        s = sample_symbols(wk, rng)
                except Exception as exc:  # constriction raises on garbage payloads
                    raise StreamError(
                        f"{where} scale {k + 1}: entropy decoding failed ({exc}); stream damaged"
                    ) from exc
                blocks, o = [], 0
                for _, _, hk, wk_ in grid.token_blocks(k):
                    blocks.append(torch.from_numpy(s[o : o + hk * wk_].reshape(hk, wk_).copy()))
                    o += hk * wk_
                tokens[f].append(blocks_to_grid(blocks, grid, k))
                if k + 1 < n_total:
                    wk = gen.send(tokens[f][k])
        for k, ch in enumerate(parsed):
            if tokens_crc(syms[k]) != ch.token_crc:
                raise StreamError(
                    f"{where} scale {k + 1}: token checksum mismatch (decoder diverged or stream damaged); "
                    f"decode with --scales {k} or re-fetch the stream"
                )
        return tokens

    def decode_gop(
        self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = DEFAULT_PREDICT,
        seed: int = 0,
        gop_index: int | None = None, context: str = "", batch_size: int | None = None,
        frame_scales: int | None = None, generate: int | None = None,
    ) -> np.ndarray:
        """Decode one GOP from its first K chunks → (T, H, W, 3) uint8 (`frame_scales`, `generate`: keyframe
        mode, as the stream header says)."""
        toks = self.decode_gop_tokens(chunks, n_frames, width, height, predict, seed, gop_index, context, batch_size,
                                      frame_scales, generate)
        return self.decode_tokens(toks, width, height)


def codec_bytes(codec: Codec) -> bytes:
    buf = io.BytesIO()
    codec.save(buf)  # type: ignore[arg-type]
    return buf.getvalue()
