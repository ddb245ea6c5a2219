"""Whole-video helpers on top of `Codec`: source → `.pgv`, `.pgv` (any layer prefix) → frames/file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.codec.codec import Codec
from pipeline.codec.container import GopEntry, PgvStream, StreamHeader, read_pgv, write_pgv


@dataclass
class EncodeStats:
    """What `encode_video` wrote: the header, bytes per layer, model cross-entropy per scale."""

    header: StreamHeader
    path: str
    total_bytes: int
    layer_bytes: list[int]
    ce_bits: list[float]
    seconds: float
    gop_chunk_bytes: list[list[int]] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.header.frame_count / max(self.seconds, 1e-9)


def check_mode(mode: str, frame_scales: int | None, n_layers: int) -> int | None:
    """Validated `frame_scales` for the header: None in plain mode, 1..n_layers in keyframe mode."""
    from pipeline.codec.container import MODES
    from pipeline.errors import ProGVCError

    if mode not in MODES:
        raise ProGVCError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "plain":
        if frame_scales is not None:
            raise ProGVCError("--frame-scales applies to --mode keyframe only")
        return None
    if frame_scales is None or not 1 <= frame_scales <= n_layers:
        raise ProGVCError(
            f"--mode keyframe needs --frame-scales K with 1 <= K <= {n_layers} (the keyframes' scales); "
            f"got {frame_scales}"
        )
    return frame_scales


def fixed_gops(frame_count: int, max_gop: int) -> list[GopEntry]:
    """GOPs of max_gop frames (the last may be shorter)."""
    return [GopEntry(s, min(max_gop, frame_count - s), True) for s in range(0, frame_count, max_gop)]


def plan(src: str | Path, frame_count: int, max_gop: int) -> list[GopEntry]:
    """Colour-distance GOPs from pipeline.gop when it is available, else fixed-length GOPs."""
    try:
        from pipeline.gop import plan_gops
    except ImportError:
        return fixed_gops(frame_count, max_gop)
    return plan_gops(src, max_gop=max_gop)


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def encode_video(
    src: str | Path,
    out_pgv: str | Path,
    codec: Codec | None = None,
    scales: int | None = None,
    max_gop: int = 16,
    gops: list[GopEntry] | None = None,
    progress: bool = True,
    mode: str = "plain",
    frame_scales: int | None = None,
    generation: str = "auto",
) -> EncodeStats:
    """Encode every frame of `src` (anything PyAV reads) into `out_pgv` with K = scales (default all).

    mode="keyframe": each GOP's keyframe keeps K scales, the other frames `frame_scales` (1..K);
    `generation` "auto": the encoder picks per GOP how many frames get generated detail, "all": every one.
    """
    from pipeline import video_io

    codec = codec or Codec.load()
    frame_scales = check_mode(mode, frame_scales, scales or codec.cfg.n_scales)
    info = video_io.probe(src)
    t0 = time.time()
    gops = gops if gops is not None else plan(src, info.frame_count, max_gop)
    fps = Fraction(info.fps).limit_denominator(1001 * 1000)
    chunks: list[list[bytes]] = []
    ce = [0.0] * (scales or codec.cfg.n_scales)
    frames = video_io.iter_frames(src)
    n_done = 0
    real_gops: list[GopEntry] = []
    with _bar(info.frame_count, f"encode {Path(src).name}", progress) as bar:
        for g in gops:
            buf = [fr for _, fr in zip(range(g.frame_count), frames)]
            if not buf:
                break
            enc = codec.encode_gop(np.stack(buf), scales=scales, frame_scales=frame_scales, gop_index=len(real_gops),
                                   generation=generation)
            chunks.append(enc.chunks)
            for k, b in enumerate(enc.ce_bits):
                ce[k] += b
            real_gops.append(GopEntry(n_done, len(buf), True, enc.generate))
            n_done += len(buf)
            bar.update(len(buf))
    header = StreamHeader(
        model_id=codec.model_id, width=info.width, height=info.height, fps_num=fps.numerator,
        fps_den=fps.denominator, frame_count=n_done, scales=tuple(codec.cfg.scales), tile=codec.cfg.tile,
        gops=real_gops, mode=mode, frame_scales=frame_scales,
    )
    total = write_pgv(out_pgv, header, chunks)
    n_layers = len(ce)
    layer_bytes = [sum(len(c[k]) for c in chunks) for k in range(n_layers)]
    return EncodeStats(header, str(out_pgv), total, layer_bytes, ce, time.time() - t0,
                       [[len(x) for x in c] for c in chunks])


def iter_decoded(
    stream: PgvStream, codec: Codec, scales: int | None = None, predict: str = "argmax", seed: int = 0,
    source: str = "stream", progress: bool = False,
) -> Iterator[np.ndarray]:
    """Decoded frames (H, W, 3) uint8 of a parsed stream using its first `scales` layers."""
    h = stream.header
    h.check_model(codec.model_id, source)
    k = stream.n_layers if scales is None else min(scales, stream.n_layers)
    with _bar(h.frame_count, f"decode {Path(source).name} K={k}", progress) as bar:
        for g, gop in enumerate(h.gops):
            frames = codec.decode_gop(stream.gop_chunks(g, k), gop.frame_count, h.width, h.height, predict=predict,
                                      seed=seed + g, gop_index=g, context=source, frame_scales=h.frame_scales,
                                      generate=gop.generate)
            yield from frames
            bar.update(gop.frame_count)


def decode_video(
    pgv: str | Path, out: str | Path | None = None, scales: int | None = None, predict: str = "argmax",
    seed: int = 0, codec: Codec | None = None, progress: bool = True,
) -> np.ndarray | int:
    """Decode `pgv` with its first `scales` layers; write `out` (.mp4/.mkv/.y4m) and return the frame
    count, or return the frames (T, H, W, 3) when `out` is None."""
    from pipeline.errors import StreamError

    codec = codec or Codec.load()
    stream = read_pgv(pgv, scales=scales)
    if scales is not None and stream.n_layers < scales:
        raise StreamError(f"{pgv}: holds {stream.n_layers} complete layers, --scales {scales} asked for more")
    it = iter_decoded(stream, codec, scales, predict, seed, str(pgv), progress)
    if out is None:
        return np.stack(list(it))
    from pipeline import video_io

    h = stream.header
    return video_io.write_video(out, it, Fraction(h.fps_num, h.fps_den))
