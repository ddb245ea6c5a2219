"""The `Codec` API: encode a GOP into one chunk per scale, decode any prefix of scales.

Per GOP and scale k, chunk k holds scale k's tokens of every frame (frames in order, tiles in raster
order, each tile's token block row-major), range-coded with the context model's quantized
probabilities p(x[f,k] | x[f,<k], x[f-1,k], x[key,k]). The probability path (quantizer,
φ convs, context transformer) runs in float64 on the CPU; see entropy.py for the integer tables.
"""

from __future__ import annotations

import copy
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.codec.config import CodecConfig
from pipeline.codec.container import pack_chunk, parse_chunk
from pipeline.codec.context import ContextModel, scale_features
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
from pipeline.errors import StreamError

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "progvc.pt"
PREDICT_MODES = ("argmax", "sample", "none")

FrameTokens = list[torch.Tensor]  # per scale: (Hk, Wk) long


@dataclass
class EncodedGop:
    """One GOP's coded scales: chunks[k] for scale k+1, plus per-scale statistics."""

    chunks: list[bytes]
    token_counts: list[int]
    checksums: list[int]
    ce_bits: list[float]

    @property
    def coded_bits(self) -> list[int]:
        return [8 * len(c) for c in self.chunks]


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


def tokens_crc(symbols: list[np.ndarray]) -> int:
    crc = 0
    for s in symbols:
        crc = zlib.crc32(np.asarray(s, dtype="<u2").tobytes(), crc)
    return crc


class Codec:
    """A loaded ProGVC model. `batch_size` = tiles per context-model forward (never changes results)."""

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

    def _weights(
        self, grid: TileGrid, ids: list[int], n_scales: int, cur: FrameTokens, prev: FrameTokens | None,
        key: FrameTokens | None, th: int, tw: int, batch_size: int | None,
    ) -> list[np.ndarray]:
        """Integer weight tables for tiles `ids` (same size) of one frame, scales 0..n_scales-1.

        Returns one (len(ids) * n_k, V) int64 array per scale, tiles in the order of `ids`.
        """
        q = self.tok.quant
        sizes = q.sizes(th, tw)[:n_scales]
        bs = batch_size or self.batch_size or len(ids)
        per_scale: list[list[np.ndarray]] = [[] for _ in range(n_scales)]
        blocks = [grid_to_blocks(cur[k], grid, k) for k in range(min(len(cur), n_scales))]
        pblocks = [grid_to_blocks(prev[k], grid, k) for k in range(n_scales)] if prev is not None else None
        kblocks = [grid_to_blocks(key[k], grid, k) for k in range(n_scales)] if key is not None else None
        for j0 in range(0, len(ids), bs):
            sub = ids[j0 : j0 + bs]
            toks = [torch.stack([blocks[k][i] for i in sub]) for k in range(len(blocks))]
            feats = scale_features(
                toks, n_scales, lambda idx, k: q.scale_contrib64(idx, k, th, tw),
                (len(sub), self.cfg.latent_dim, th, tw), sizes, torch.float64,
            )
            pv = [torch.stack([pblocks[k][i] for i in sub]) for k in range(n_scales)] if pblocks else [None] * n_scales
            kv = [torch.stack([kblocks[k][i] for i in sub]) for k in range(n_scales)] if kblocks else [None] * n_scales
            with torch.no_grad():
                logits = self.ctx64(feats, pv, kv)  # (n, L, V)
            o = 0
            for k, (hk, wk) in enumerate(sizes):
                n_k = hk * wk
                per_scale[k].append(quantize_logits(logits[:, o : o + n_k].reshape(-1, logits.shape[-1])))
                o += n_k
        return [np.concatenate(p) for p in per_scale]

    def _frame_tables(
        self, grid: TileGrid, n_scales: int, cur: FrameTokens, prev: FrameTokens | None, key: FrameTokens | None,
        batch_size: int | None, only_last: bool = False,
    ) -> list[tuple[list[int], list[np.ndarray]]]:
        """For every tile-size group: (tile ids, per-scale weights); raster order is restored by callers."""
        out = []
        for (th, tw), ids in group_tiles(grid).items():
            w = self._weights(grid, ids, n_scales, cur, prev, key, th, tw, batch_size)
            out.append((ids, w[-1:] if only_last else w))
        return out

    @staticmethod
    def _raster(grid: TileGrid, k: int, groups: list[tuple[list[int], np.ndarray]]) -> list[np.ndarray]:
        """Per tile (raster order): its weight rows at scale k from group-ordered tables."""
        blocks = grid.token_blocks(k)
        rows: list[np.ndarray | None] = [None] * grid.n_tiles
        for ids, w in groups:
            o = 0
            for i in ids:
                n = blocks[i][2] * blocks[i][3]
                rows[i] = w[o : o + n]
                o += n
        return rows  # type: ignore[return-value]

    # ---- GOP coding --------------------------------------------------------------------------

    def encode_gop(
        self, frames_THWC: np.ndarray, scales: int | None = None, batch_size: int | None = None
    ) -> EncodedGop:
        """Encode one GOP (frame 0 = keyframe): one chunk per scale 1..K (K = scales or N)."""
        frames_THWC = np.asarray(frames_THWC)
        x = frames_THWC
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or not len(x):
            raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {x.shape} {x.dtype}")
        n = self.cfg.n_scales if scales is None else max(1, min(scales, self.cfg.n_scales))
        _, h, w, _ = frames_THWC.shape
        grid = self.grid(h, w)
        tokens = self.encode_tokens(frames_THWC)
        encs = [ScaleEncoder() for _ in range(n)]
        ce = [0.0] * n
        syms: list[list[np.ndarray]] = [[] for _ in range(n)]
        for f, cur in enumerate(tokens):
            prev = tokens[f - 1] if f > 0 else None
            key = tokens[0] if f > 0 else None
            groups = self._frame_tables(grid, n, cur, prev, key, batch_size)
            for k in range(n):
                rows = self._raster(grid, k, [(ids, w[k]) for ids, w in groups])
                s = np.concatenate([b.flatten().numpy() for b in grid_to_blocks(cur[k], grid, k)])
                wk = np.concatenate(rows)
                encs[k].encode(s, wk)
                ce[k] += cross_entropy_bits(wk, s)
                syms[k].append(s)
        chunks, counts, crcs = [], [], []
        for k in range(n):
            crc = tokens_crc(syms[k])
            cnt = int(sum(len(s) for s in syms[k]))
            chunks.append(pack_chunk(k + 1, cnt, crc, encs[k].finish()))
            counts.append(cnt)
            crcs.append(crc)
        return EncodedGop(chunks, counts, crcs, ce)

    def decode_gop_tokens(
        self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = "argmax", seed: int = 0,
        gop_index: int | None = None, context: str = "", batch_size: int | None = None,
    ) -> list[FrameTokens]:
        """Tokens of every frame: scales 1..K from the chunks, K+1..N predicted (unless predict="none")."""
        if predict not in PREDICT_MODES:
            raise ValueError(f"predict must be one of {PREDICT_MODES}, got {predict!r}")
        if len(chunks) > self.cfg.n_scales:
            raise StreamError(f"{context or 'stream'}: {len(chunks)} scale chunks, the model has {self.cfg.n_scales}")
        grid = self.grid(height, width)
        where = (context + ": " if context else "") + (f"GOP {gop_index}" if gop_index is not None else "GOP")
        tokens: list[FrameTokens] = [[] for _ in range(n_frames)]
        rng = np.random.default_rng(seed)
        n_total = self.cfg.n_scales if predict != "none" else len(chunks)
        for k in range(n_total):
            coded = k < len(chunks)
            if coded:
                ch, _ = parse_chunk(chunks[k], 0, f"{where} scale {k + 1}")
                if ch.scale != k + 1:
                    raise StreamError(f"{where} scale {k + 1}: chunk holds scale {ch.scale}; chunks out of order")
                expect = n_frames * grid.tokens_per_frame(k)
                if ch.token_count != expect:
                    raise StreamError(
                        f"{where} scale {k + 1}: chunk has {ch.token_count} tokens, expected {expect} for "
                        f"{n_frames} frames of {width}x{height}; wrong frame count/size or damaged stream"
                    )
                dec = ScaleDecoder(ch.payload)
                syms = []
            for f in range(n_frames):
                prev = tokens[f - 1] if f > 0 else None
                key = tokens[0] if f > 0 else None
                groups = self._frame_tables(grid, k + 1, tokens[f], prev, key, batch_size, only_last=True)
                rows = self._raster(grid, k, [(ids, w[0]) for ids, w in groups])
                wk = np.concatenate(rows)
                try:
                    if coded:
                        s = dec.decode(wk)
                    elif predict == "argmax":
                        s = argmax_symbols(wk)
                    else:
                        s = sample_symbols(wk, rng)
                except Exception as exc:  # constriction raises on garbage payloads
                    raise StreamError(
                        f"{where} scale {k + 1}: entropy decoding failed ({exc}); stream damaged"
                    ) from exc
                if coded:
                    syms.append(s)
                blocks, o = [], 0
                for _, _, hk, wk_ in grid.token_blocks(k):
                    blocks.append(torch.from_numpy(s[o : o + hk * wk_].reshape(hk, wk_).copy()))
                    o += hk * wk_
                tokens[f].append(blocks_to_grid(blocks, grid, k))
            if coded and tokens_crc(syms) != ch.token_crc:
                raise StreamError(
                    f"{where} scale {k + 1}: token checksum mismatch (decoder diverged or stream damaged); "
                    f"decode with --scales {k} or re-fetch the stream"
                )
        return tokens

    def decode_gop(
        self, chunks: list[bytes], n_frames: int, width: int, height: int, predict: str = "argmax", seed: int = 0,
        gop_index: int | None = None, context: str = "", batch_size: int | None = None,
    ) -> np.ndarray:
        """Decode one GOP from its first K chunks → (T, H, W, 3) uint8."""
        toks = self.decode_gop_tokens(chunks, n_frames, width, height, predict, seed, gop_index, context, batch_size)
        return self.decode_tokens(toks, width, height)


def codec_bytes(codec: Codec) -> bytes:
    buf = io.BytesIO()
    codec.save(buf)  # type: ignore[arg-type]
    return buf.getvalue()
