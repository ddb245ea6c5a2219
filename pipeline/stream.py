"""The stream-level API: header building, encoding a video, and the one decode loop.

Everything here talks to a codec only through `pipeline.codec_api.CodecFamily` and finds the codec of a
stream by its header's model id (`pipeline.registry`), so it works for any codec family and for streams
made by older models. The CLI (`progvc encode/decode`), the codec actors (encode, quality, decode), the
`reserve` flow, `progvc eval` and the benchmarks all decode through `decode_gop_frames`, which

- checks every chunk with the container's one checker (`pipeline.pgv.parse_chunk`: marker, length, CRC,
  scale, GOP tag) and the stream's model id;
- seeds GOP g's sampling with `seed + g` (so `--predict sample` gives the same pixels whichever process
  decodes which GOP);
- hands the coding mode (keyframe mode's `frame_scales`, each GOP's generated prefix) from the header to
  the codec.

Encoder settings (`--fidelity`, `--effort`) reach a family's encoder only through `encoder_for`, and what
an encoder was made with through `encoder_settings` (the header's optional `encoder` field); families
without such settings (VQ) refuse them with one line.

Torch is imported only when a codec is opened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.codec_api import DEFAULT_PREDICT, CodecFamily, CodecInfo
from pipeline.errors import ProGVCError, StreamError
from pipeline.pgv import MODES, GopEntry, PgvStream, StreamHeader, parse_chunk, read_pgv, write_pgv

# ---- header ----------------------------------------------------------------------------------------


def build_header(
    codec: CodecFamily | CodecInfo, width: int, height: int, gops: list[GopEntry], fps: Fraction | float = 1,
    frame_scales: int | None = None, mode: str | None = None, encoder: dict | None = None,
) -> StreamHeader:
    """The header of a stream coded by `codec` (a loaded codec or its `CodecInfo`): frame size, frame rate
    (`fps`: kept exact when a Fraction), GOP table, the coding mode (`mode` defaults to "keyframe" when
    `frame_scales` is given, else "plain") and the encoder's settings (`encoder_settings(codec)`; None: the
    field is left out)."""
    fr = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001 * 1000)
    return StreamHeader(
        model_id=codec.model_id, width=int(width), height=int(height), fps_num=fr.numerator,
        fps_den=fr.denominator, frame_count=sum(g.frame_count for g in gops), scales=tuple(codec.scales),
        tile=int(codec.tile), gops=list(gops),
        mode=mode or ("plain" if frame_scales is None else "keyframe"), frame_scales=frame_scales,
        encoder=dict(encoder) if encoder else None,
    )


def encoder_for(codec: CodecFamily, fidelity: float | None = None, effort: str | None = None) -> CodecFamily:
    """The encoder of `codec`'s family for `fidelity` (0..100) and `effort` ("fast" | "medium" | "slow"); None
    leaves that setting as `codec` has it. ProGVCError (one line) for a bad value, or when either is given
    to a family without these settings (the VQ family). The family's hook is `pipeline.registry.register_encoder`."""
    from pipeline.registry import check_encoder_options, encoder_hook

    check_encoder_options(codec.model_id, fidelity, effort, family=codec.family)
    hook = encoder_hook(codec.family)
    if hook is None or (fidelity is None and effort is None):
        return codec
    return hook.configure(codec, fidelity, effort)


def encoder_settings(codec: CodecFamily) -> dict | None:
    """The settings `codec` encodes with, as the stream header records them (`{"fidelity": 60, "effort":
    "medium"}`), or None for a family without such settings."""
    from pipeline.registry import encoder_hook

    hook = encoder_hook(codec.family)
    return hook.describe(codec) if hook is not None else None


def check_mode(mode: str, frame_scales: int | None, n_layers: int) -> int | None:
    """Validated `frame_scales` for the header: None in plain mode, 1..n_layers in keyframe mode."""
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


# ---- decoding ----------------------------------------------------------------------------------------


def open_for_stream(header: StreamHeader, weights: str | None = None, device: str = "cpu",
                    source: str = "stream") -> CodecFamily:
    """The codec that decodes `header`'s stream: `weights` (a file or model id) when given, which must be
    the stream's model; else the stream's own model id, from the registry."""
    from pipeline.registry import open_codec

    codec = open_codec(weights or header.model_id, device)
    header.check_model(codec.model_id, source)
    return codec


def decode_gop_frames(
    codec: CodecFamily, header: StreamHeader, g: int, chunks: list[bytes], predict: str = DEFAULT_PREDICT,
    seed: int = 0,
    context: str = "stream", entry: GopEntry | None = None,
) -> np.ndarray:
    """GOP `g` of the stream `header` describes, decoded from its first K chunks -> (T, H, W, 3) uint8.

    The one place that calls a codec's `decode_gop`. `entry`: GOP g's entry when `header` carries no GOP
    table (`GopRun`). Sampling (`predict="sample"`) is seeded with `seed + g`."""
    header.check_model(codec.model_id, context)
    entry = entry if entry is not None else header.gops[g]
    where = f"{context}: GOP {g}"
    if len(chunks) > header.n_scales:
        raise StreamError(f"{where}: {len(chunks)} layers, the stream has {header.n_scales}")
    for k, c in enumerate(chunks):
        parse_chunk(c, 0, f"{where} scale {k + 1}", scale=k + 1, gop=header.chunk_gop(g))
    return codec.decode_gop(
        list(chunks), entry.frame_count, header.width, header.height, predict=predict, seed=seed + g,
        gop_index=g, context=context, frame_scales=header.frame_scales, generate=entry.generate,
    )


def iter_decoded(
    stream: PgvStream, codec: CodecFamily | None = None, scales: int | None = None, predict: str = DEFAULT_PREDICT,
    seed: int = 0, source: str = "stream", progress: bool = False,
) -> Iterator[np.ndarray]:
    """The decode loop: frames (H, W, 3) uint8 of a parsed stream from its first `scales` layers, GOP by
    GOP. `codec` None: the stream's own model (registry)."""
    h = stream.header
    codec = codec if codec is not None else open_for_stream(h, source=source)
    h.check_model(codec.model_id, source)
    k = stream.n_layers if scales is None else min(scales, stream.n_layers)
    with progress_bar(h.frame_count, f"decode {Path(source).name} K={k}", progress) as bar:
        for g, gop in enumerate(h.gops):
            yield from decode_gop_frames(codec, h, g, stream.gop_chunks(g, k), predict, seed, source)
            bar.update(gop.frame_count)


@dataclass
class GopRun:
    """Consecutive GOPs `first, first+1, ...` of one stream with their first-K chunks: one unit of decoding
    work (an actor call). `header` is the stream's without its GOP table (that can be long); `entries` are
    the run's own GOP entries."""

    header: StreamHeader
    first: int
    entries: list[GopEntry]
    chunks: list[list[bytes]]

    @property
    def frame_count(self) -> int:
        return sum(e.frame_count for e in self.entries)


def gop_runs(header: StreamHeader, gop_chunks: list[list[bytes]], max_frames: int) -> list[GopRun]:
    """The stream cut into runs of whole GOPs of at most `max_frames` frames (a longer GOP is a run alone)."""
    if len(gop_chunks) != len(header.gops):
        raise StreamError(f"header lists {len(header.gops)} GOPs, {len(gop_chunks)} were given")
    bare = replace(header, gops=[])
    runs: list[GopRun] = []
    for g, (entry, chunks) in enumerate(zip(header.gops, gop_chunks)):
        if not runs or runs[-1].frame_count + entry.frame_count > max_frames:
            runs.append(GopRun(bare, g, [], []))
        runs[-1].entries.append(entry)
        runs[-1].chunks.append(list(chunks))
    return runs


def decode_run(codec: CodecFamily, run: GopRun, predict: str = DEFAULT_PREDICT, seed: int = 0,
               context: str = "stream") -> np.ndarray:
    """Every frame of a `GopRun` -> (sum T, H, W, 3) uint8 (GOP g seeded with `seed + g` as everywhere)."""
    parts = [decode_gop_frames(codec, run.header, run.first + i, chunks, predict, seed, context, entry)
             for i, (entry, chunks) in enumerate(zip(run.entries, run.chunks))]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def decode_video(
    pgv: str | Path, out: str | Path | None = None, scales: int | None = None, predict: str = DEFAULT_PREDICT,
    seed: int = 0, codec: CodecFamily | None = None, progress: bool = True,
) -> np.ndarray | int:
    """Decode `pgv` with its first `scales` layers (by the stream's own model unless `codec` is given);
    write `out` (.mp4/.mkv/.y4m) and return the frame count, or return the frames (T, H, W, 3) when `out`
    is None."""
    stream = read_pgv(pgv, scales=scales)
    if scales is not None and stream.n_layers < scales:
        raise StreamError(f"{pgv}: holds {stream.n_layers} complete layers, --scales {scales} asked for more")
    it = iter_decoded(stream, codec, scales, predict, seed, str(pgv), progress)
    if out is None:
        return np.stack(list(it))
    from pipeline import video_io

    h = stream.header
    return video_io.write_video(out, it, Fraction(h.fps_num, h.fps_den))


# ---- encoding ------------------------------------------------------------------------------------------


@dataclass
class EncodeStats:
    """What `encode_video` wrote: the header, bytes per layer, model cross-entropy per layer."""

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


def progress_bar(total: int, desc: str, enabled: bool):
    """A frame progress bar on stderr (tqdm; `disable` when not enabled): `with progress_bar(...) as b: b.update(n)`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def encode_video(
    src: str | Path,
    out_pgv: str | Path,
    codec: CodecFamily | None = None,
    scales: int | None = None,
    max_gop: int = 16,
    gops: list[GopEntry] | None = None,
    progress: bool = True,
    mode: str = "plain",
    frame_scales: int | None = None,
    generation: str = "auto",
    fidelity: float | None = None,
    effort: str | None = None,
) -> EncodeStats:
    """Encode every frame of `src` (anything PyAV reads) into `out_pgv` with K = scales (default all) layers,
    by `codec` (default: the registry's default model) with `fidelity`/`effort` (`encoder_for`; None: as
    `codec` has them). The header records the encoder's settings (`encoder_settings`).

    mode="keyframe": each GOP's keyframe keeps K layers, the other frames `frame_scales` (1..K);
    `generation` "auto": the encoder picks per GOP how many frames get generated detail, "all": every one.
    """
    from pipeline import video_io
    from pipeline.registry import default_codec

    codec = encoder_for(codec if codec is not None else default_codec(), fidelity, effort)
    n_layers = codec.n_layers if scales is None else max(1, min(scales, codec.n_layers))
    frame_scales = check_mode(mode, frame_scales, scales or codec.n_layers)
    info = video_io.probe(src)
    t0 = time.time()
    gops = gops if gops is not None else plan(src, info.frame_count, max_gop)
    chunks: list[list[bytes]] = []
    ce = [0.0] * n_layers
    frames = video_io.iter_frames(src)
    n_done = 0
    real_gops: list[GopEntry] = []
    with progress_bar(info.frame_count, f"encode {Path(src).name}", progress) as bar:
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
    fps = Fraction(info.fps).limit_denominator(1001 * 1000)
    header = build_header(codec, info.width, info.height, real_gops, fps, frame_scales, mode,
                          encoder_settings(codec))
    total = write_pgv(out_pgv, header, chunks)
    layer_bytes = [sum(len(c[k]) for c in chunks) for k in range(n_layers)]
    return EncodeStats(header, str(out_pgv), total, layer_bytes, ce, time.time() - t0,
                       [[len(x) for x in c] for c in chunks])
