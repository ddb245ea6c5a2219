"""Rate-distortion points for one clip: ProGVC at every scale count K and reference-codec CRF sweeps.

Families with encoder settings (the latent family, the default model): `fidelity_points` sweeps
`cfg.fidelities` at `cfg.effort`; ONE encode per (clip, fidelity) serves every K (decoded from its first K
chunks, K = 1..N). The main curve (mode "plain", param "fidelity") is the K = N points over fidelities; the
K < N points are the layer ladder (`ladder: true`, kept out of the curves; the summary tables them).
Keyframe mode is not evaluated for such families (the latent family has none yet).

A point is a plain dict (JSON-ready): clip, codec, preset, param_name, param, frames, width, height,
gop, bits, bpp, encode_s, decode_s, metrics {name: clip mean}, per_frame {name: [values]}.
`bpp` = bits / (frames x width x height) of the original (unpadded) frames.

ProGVC: the frames are cut into GOPs of `gop` frames (the last one may be shorter); each GOP is
encoded once (`Codec.encode_gop`, all N scales) and decoded from its first K chunks for K = 1..N
(`Codec.decode_gop`, the untransmitted scales predicted as chosen by `predict`). bits(K) = 8 x the
bytes of chunks 1..K of every GOP (each chunk's small length/checksum header included; the stream
header, like a container, is not). encode_s is the time of that one encode, shared by every K.
Keyframe mode (points with mode "keyframe", preset "keyframe/<predict>"): see `keyframe_points`.
Per-frame values that are undefined (tfd at frame 0) are stored as null.

Reference codecs: a CRF sweep (see `sweep_crf`) that extends until it brackets the bpp range to
cover (ProGVC's range when it was evaluated, else `default_bpp_range`), then fills gaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline import metrics as M
from pipeline.codec_api import DEFAULT_PREDICT
from pipeline.errors import ProGVCError
from pipeline.evaluate import refcodecs
from pipeline.evaluate.cache import EvalCache, frames_hash, key_of, pack_chunks, unpack_chunks

Point = dict
ProgressFn = Callable[[str], None]

START_CRF = {"x264": 32, "x265": 32, "av1": 45}
CRF_STEP = 6  # x264/x265 rates roughly halve every 6 CRF
MAX_GAP_RATIO = 1.6  # fill the sweep until neighbouring points differ by less than this in bpp
MAX_POINTS = 12  # per codec/preset and clip
MODES = ("plain", "keyframe")


@dataclass
class EvalConfig:
    """What `progvc eval` measures (see pipeline/evaluate/cli.py for the flags)."""

    codecs: tuple[str, ...] = ("progvc", "x264", "x265", "av1")
    presets: tuple[str, ...] = ("medium", "slow")  # x264 / x265 presets
    av1_preset: str = "8"  # SVT-AV1 preset (0 slowest .. 13 fastest)
    frames: int = 16
    gop: int = 16
    metrics: tuple[str, ...] = M.METRICS
    weights: str | None = None  # None: the registry's default model (latent-v1)
    predict: str = DEFAULT_PREDICT
    scales: tuple[int, ...] | None = None  # ProGVC K values; None = all 1..N (keyframe mode: 1..N-1)
    modes: tuple[str, ...] = ("plain", "keyframe")  # ProGVC modes (see progvc_points / keyframe_points)
    plain_predicts: tuple[str, ...] = ()  # extra plain-mode curves decoded with these predict modes
    default_bpp_range: tuple[float, float] = (0.02, 0.1)  # sweep target when ProGVC is not evaluated
    fidelities: tuple[float, ...] = (30, 38, 46, 54, 62, 70)  # latent family: the rate sweep (--fidelities)
    effort: str | None = None  # latent family: encoder effort (None = pipeline.encoder_options.DEFAULT_EFFORT)
    cache_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


#: bump when a change in pipeline/metrics.py or refcodecs.py changes results (invalidates cached points)
EVAL_VERSION = 1
_CODEC_TRAINING_ONLY = {"train.py", "data.py", "cli.py"}
_STREAM_SOURCES = ("codec_api.py", "pgv.py", "stream.py")  # under pipeline/


def codec_code_hash(codec=None) -> str:
    """Hash of the inference sources of `codec`'s family package (None: the VQ family, `pipeline/codec`) and
    of the stream layer: cached ProGVC points are recomputed when the codec changes."""
    import hashlib
    import sys

    import pipeline.codec as vq

    pkg_dir = Path(vq.__file__).parent
    if codec is not None:
        mod = sys.modules.get(type(codec).__module__)
        if mod is not None and getattr(mod, "__file__", None):
            pkg_dir = Path(mod.__file__).parent
    h = hashlib.sha256()
    for f in sorted(pkg_dir.glob("*.py")):
        if f.name not in _CODEC_TRAINING_ONLY:
            h.update(f.name.encode() + f.read_bytes())
    for f in _STREAM_SOURCES:  # the decode loop, chunk checks and seeds live outside the family package
        h.update(f.encode() + (Path(vq.__file__).parent.parent / f).read_bytes())
    return h.hexdigest()[:16]


def has_encoder_settings(codec) -> bool:
    """Whether `codec`'s family takes --fidelity/--effort (then eval sweeps fidelities: `fidelity_points`)."""
    from pipeline.registry import encoder_hook

    return codec is not None and encoder_hook(codec.family) is not None


def _lib_version() -> str:
    v = av.library_versions.get("libavcodec", ())
    return f"av{av.__version__}-lavc{'.'.join(str(x) for x in v)}"


def _point(
    clip: str,
    codec: str,
    preset: str,
    param_name: str,
    param: int,
    ref: np.ndarray,
    dist: np.ndarray,
    bits: int,
    encode_s: float,
    decode_s: float,
    metric_names: Iterable[str],
    **extra,
) -> Point:
    T, H, W, _ = ref.shape
    per_frame = M.compute_metrics(ref, dist, metric_names)
    return {
        "clip": clip,
        "codec": codec,
        "preset": preset,
        "param_name": param_name,
        "param": param,
        "frames": T,
        "width": W,
        "height": H,
        "bits": int(bits),
        "bpp": bits / (T * W * H),
        "encode_s": round(encode_s, 4),
        "decode_s": round(decode_s, 4),
        "metrics": M.clip_means(per_frame),
        "per_frame": {k: [None if np.isnan(x) else round(float(x), 5) for x in v] for k, v in per_frame.items()},
        **extra,
    }


def _cached_point(cache: EvalCache, key: str, metric_names: Iterable[str]) -> Point | None:
    p = cache.get("points", key)
    if p is not None and all(m in p["metrics"] for m in metric_names):
        return p
    return None


def gop_spans(n_frames: int, gop: int) -> list[tuple[int, int]]:
    """(first_frame, frame_count) of fixed-length GOPs covering n_frames."""
    return [(s, min(gop, n_frames - s)) for s in range(0, n_frames, gop)]


def conversion_ceiling(frames_THWC: np.ndarray) -> dict[str, float]:
    """PSNR of the RGB -> yuv420p -> RGB round trip alone (what any 4:2:0 reference codec loses)."""
    T, H, W, _ = frames_THWC.shape
    pw, ph = refcodecs.padded_size(W, H)
    cs = refcodecs.colorspace_for(H)
    out = []
    for rgb in refcodecs.pad_frames(frames_THWC, pw, ph):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        f = f.reformat(format="yuv420p", dst_colorspace=cs, src_color_range="JPEG", dst_color_range="MPEG")
        back = f.reformat(
            format="rgb24", src_colorspace=cs, src_color_range="MPEG", dst_color_range="JPEG", interpolation="BICUBIC"
        )
        out.append(back.to_ndarray()[:H, :W])
    rt = np.stack(out)
    return {"psnr_y": float(M.psnr_y(frames_THWC, rt).mean()), "psnr_rgb": float(M.psnr_rgb(frames_THWC, rt).mean())}


# ---- ProGVC -----------------------------------------------------------------------------------


def _progvc_base(codec, frames_THWC: np.ndarray, cfg: EvalConfig) -> dict:
    """Cache-key fields shared by every ProGVC entry of these frames (plain mode's keys use exactly these)."""
    return {
        "clip": frames_hash(frames_THWC),
        "codec": "progvc",
        "model": codec.model_id,
        "gop": cfg.gop,
        "eval": EVAL_VERSION,
        "code": codec_code_hash(codec),
    }


def progvc_cache_key(base: dict, kind: str, mode: str = "plain", **fields) -> str:
    """Key of a ProGVC cache entry. Plain mode keeps its original description (no mode field), so its
    cached points stay valid; keyframe entries add mode="keyframe" and frame_scales."""
    desc = {**base, "kind": kind, **fields}
    if mode != "plain":
        desc["mode"] = mode
    return key_of(desc)


def _encode_gops(
    codec,
    clip: str,
    frames_THWC: np.ndarray,
    spans: list[tuple[int, int]],
    cache: EvalCache,
    key: str,
    frame_scales: int | None,
    progress: ProgressFn | None,
) -> dict:
    """Every GOP encoded once (cached): {"chunks": packed [gop][scale], "ce_bits": [gop][scale], "generate":
    [gop], "encode_s"}."""
    enc = cache.get("progvc", key)
    if enc is None:
        if progress:
            what = "" if frame_scales is None else f" keyframe mode, frame scales {frame_scales}"
            progress(f"{clip}: ProGVC encode{what} ({len(spans)} GOP)")
        t0 = time.perf_counter()
        gops = [codec.encode_gop(frames_THWC[s : s + n], frame_scales=frame_scales, gop_index=i)
                for i, (s, n) in enumerate(spans)]
        enc = {
            "chunks": pack_chunks([g.chunks for g in gops]),
            "ce_bits": [list(map(float, g.ce_bits)) for g in gops],
            "generate": [g.generate for g in gops],  # keyframe mode: the encoder's generated prefix per GOP
            "encode_s": time.perf_counter() - t0,
        }
        cache.put("progvc", key, enc)
    return enc


def _progvc_point(
    codec,
    clip: str,
    frames_THWC: np.ndarray,
    cfg: EvalConfig,
    spans: list[tuple[int, int]],
    enc: dict,
    n_chunks: int,
    frame_scales: int | None,
    preset: str,
    param: int | float,
    predict: str,
    param_name: str = "K",
    **extra,
) -> Point:
    """Decode the first `n_chunks` chunks of every GOP of `enc` (untransmitted scales as `predict` says)
    and measure them."""
    from pipeline.pgv import GopEntry, PgvStream
    from pipeline.stream import build_header, iter_decoded

    T, H, W, _ = frames_THWC.shape
    chunks = unpack_chunks(enc["chunks"])
    generate = enc.get("generate") or [None] * len(chunks)
    header = build_header(codec, W, H, [GopEntry(s, n, True, gen) for (s, n), gen in zip(spans, generate)],
                          frame_scales=frame_scales)
    t0 = time.perf_counter()
    dec = list(iter_decoded(PgvStream.from_gops(header, chunks), codec, n_chunks, predict, source=clip))
    decode_s = time.perf_counter() - t0
    bits = 8 * sum(len(ch) for c in chunks for ch in c[:n_chunks])
    ce = sum(sum(c[:n_chunks]) for c in enc["ce_bits"])
    return _point(
        clip,
        "progvc",
        preset,
        param_name,
        param,
        frames_THWC,
        np.stack(dec),
        bits,
        enc["encode_s"],
        decode_s,
        cfg.metrics,
        model_id=codec.model_id,
        n_scales=codec.n_layers,
        ce_bits=ce,
        **extra,
    )


def progvc_points(
    codec, clip: str, frames_THWC: np.ndarray, cfg: EvalConfig, cache: EvalCache, progress: ProgressFn | None = None
) -> list[Point]:
    """Plain mode: ProGVC at every requested scale count K (see module docstring for bits and timing)."""
    base = _progvc_base(codec, frames_THWC, cfg)
    n_scales = codec.n_layers
    ks = [k for k in (cfg.scales or range(1, n_scales + 1)) if 1 <= k <= n_scales]
    spans = gop_spans(frames_THWC.shape[0], cfg.gop)
    enc_key = progvc_cache_key(base, "encode")
    enc: dict | None = None  # one encode shared by every K, read or computed at most once
    points = []
    predicts = [cfg.predict] + [pr for pr in cfg.plain_predicts if pr != cfg.predict]
    for predict in predicts:
        for k in ks:
            key = progvc_cache_key(base, "point", K=k, predict=predict)
            p = _cached_point(cache, key, cfg.metrics)
            if p is None:
                if enc is None:
                    enc = _encode_gops(codec, clip, frames_THWC, spans, cache, enc_key, None, progress)
                if progress:
                    progress(f"{clip}: ProGVC decode K={k}/{n_scales} ({predict})")
                p = _progvc_point(codec, clip, frames_THWC, cfg, spans, enc, k, None, predict, k, predict)
                cache.put("points", key, p)
            p["clip"] = clip
            p["mode"] = "plain"  # points cached before keyframe mode existed lack the field
            p["extra_curve"] = predict != cfg.predict  # a second plain curve (report label "ProGVC (<predict>)")
            points.append(p)
    return points


def fidelity_points(
    codec, clip: str, frames_THWC: np.ndarray, cfg: EvalConfig, cache: EvalCache, progress: ProgressFn | None = None
) -> list[Point]:
    """A family with encoder settings (latent): for each fidelity of `cfg.fidelities`, ONE encode at
    `cfg.effort` (cached; key: clip, model, GOP, code hash, fidelity, effort), decoded from its first K chunks
    for every K (`cfg.scales`, default 1..N; finer layers predicted as `cfg.predict` says). Points: codec
    "progvc", mode "plain", preset = effort, param "fidelity", plus `K`, `fidelity`, `effort`; `ladder`
    true for K < N (kept out of the RD curves, tabled per K in the summary)."""
    from pipeline.encoder_options import DEFAULT_EFFORT
    from pipeline.stream import encoder_for

    effort = cfg.effort or DEFAULT_EFFORT
    base = _progvc_base(codec, frames_THWC, cfg)
    n_scales = codec.n_layers
    ks = [k for k in (cfg.scales or range(1, n_scales + 1)) if 1 <= k <= n_scales]
    spans = gop_spans(frames_THWC.shape[0], cfg.gop)
    points = []
    for f in cfg.fidelities:
        f = float(f)
        fid = int(f) if f.is_integer() else f
        enc_key = progvc_cache_key(base, "encode", fidelity=f, effort=effort)
        enc: dict | None = None
        for k in ks:
            key = progvc_cache_key(base, "point", K=k, predict=cfg.predict, fidelity=f, effort=effort)
            p = _cached_point(cache, key, cfg.metrics)
            if p is None:
                if enc is None:
                    if progress:
                        progress(f"{clip}: ProGVC encode fidelity {fid:g}, effort {effort}")
                    enc = _encode_gops(encoder_for(codec, f, effort), clip, frames_THWC, spans, cache, enc_key, None,
                                       None)
                if progress:
                    progress(f"{clip}: ProGVC fidelity {fid:g} decode K={k}/{n_scales}")
                p = _progvc_point(codec, clip, frames_THWC, cfg, spans, enc, k, None, effort, fid, cfg.predict,
                                  param_name="fidelity", K=k, fidelity=fid, effort=effort, ladder=k < n_scales)
                cache.put("points", key, p)
            p["clip"] = clip
            p["mode"] = "plain"
            p["extra_curve"] = False
            points.append(p)
    return points


def keyframe_points(
    codec, clip: str, frames_THWC: np.ndarray, cfg: EvalConfig, cache: EvalCache, progress: ProgressFn | None = None
) -> list[Point]:
    """Keyframe mode: for each K in 1..N-1 (those of `cfg.scales` below N), every GOP is encoded with
    frame 0 at all N scales and frames 1.. at scales 1..K (`frame_scales=K`), and decoded from all N
    chunks: the non-keyframes' scales K+1..N are predicted by the context model conditioned on the
    keyframe (as `cfg.predict` says). One encode per K, since the chunk contents differ; bits = every
    chunk of that encode; param "K" = frame scales. K = N would be plain mode at K = N."""
    base = _progvc_base(codec, frames_THWC, cfg)
    n_scales = codec.n_layers
    ks = [k for k in (cfg.scales or range(1, n_scales)) if 1 <= k < n_scales]
    spans = gop_spans(frames_THWC.shape[0], cfg.gop)
    points = []
    for k in ks:
        key = progvc_cache_key(base, "point", "keyframe", frame_scales=k, predict=cfg.predict)
        p = _cached_point(cache, key, cfg.metrics)
        if p is None:
            enc_key = progvc_cache_key(base, "encode", "keyframe", frame_scales=k)
            enc = _encode_gops(codec, clip, frames_THWC, spans, cache, enc_key, k, progress)
            if progress:
                progress(f"{clip}: ProGVC keyframe mode decode, frame scales {k}/{n_scales}")
            p = _progvc_point(
                codec, clip, frames_THWC, cfg, spans, enc, n_scales, k, f"keyframe/{cfg.predict}", k, cfg.predict,
                mode="keyframe", keyframe_scales=n_scales,
            )
            cache.put("points", key, p)
        p["clip"] = clip
        points.append(p)
    return points


# ---- reference codecs -------------------------------------------------------------------------


def sweep_crf(
    evaluate: Callable[[int], Point], crf_min: int, crf_max: int, start: int, bpp_lo: float, bpp_hi: float
) -> list[Point]:
    """CRF points bracketing [bpp_lo, bpp_hi] (as far as the CRF range allows), gaps filled.

    Steps up from `start` by CRF_STEP until a point is at or below bpp_lo (or crf_max), down until one
    is at or above bpp_hi (or crf_min), then bisects CRF intervals whose bpp ratio exceeds
    MAX_GAP_RATIO, at most MAX_POINTS points.
    """
    done: dict[int, Point] = {}

    def bpp(c: int) -> float:
        if c not in done:
            done[c] = evaluate(c)
        return done[c]["bpp"]

    c = min(max(start, crf_min), crf_max)
    while bpp(c) > bpp_lo and c < crf_max:
        c = min(crf_max, c + CRF_STEP)
    c = min(max(start, crf_min), crf_max)
    while bpp(c) < bpp_hi and c > crf_min:
        c = max(crf_min, c - CRF_STEP)
    while len(done) < MAX_POINTS:
        crfs = sorted(done)
        gaps = [
            (done[a]["bpp"] / max(done[b]["bpp"], 1e-12), a, b)
            for a, b in zip(crfs, crfs[1:])
            if b - a > 1
            and min(done[a]["bpp"], done[b]["bpp"]) < bpp_hi
            and max(done[a]["bpp"], done[b]["bpp"]) > bpp_lo
        ]
        gaps = [g for g in gaps if g[0] > MAX_GAP_RATIO]
        if not gaps:
            break
        _, a, b = max(gaps)
        bpp((a + b) // 2)
    return [done[c] for c in sorted(done)]


def reference_points(
    codec: str,
    preset: str,
    clip: str,
    frames_THWC: np.ndarray,
    cfg: EvalConfig,
    cache: EvalCache,
    bpp_range: tuple[float, float],
    fps: Fraction = Fraction(25),
    progress: ProgressFn | None = None,
) -> list[Point]:
    """One reference codec/preset swept over CRF to cover `bpp_range` on these frames."""
    rc = refcodecs.CODECS[codec]
    T, H, W, _ = frames_THWC.shape
    base = {
        "clip": frames_hash(frames_THWC),
        "codec": codec,
        "preset": preset,
        "gop": cfg.gop,
        "fps": str(fps),
        "lib": _lib_version(),
        "bits": "payload-minus-info-sei-v1",
        "eval": EVAL_VERSION,
    }

    def evaluate(crf: int) -> Point:
        key = key_of({**base, "crf": crf})
        p = _cached_point(cache, key, cfg.metrics)
        if p is None:
            if progress:
                progress(f"{clip}: {codec} {preset} crf {crf}")
            enc = refcodecs.encode(frames_THWC, codec, preset, crf, gop=cfg.gop, fps=fps)
            t0 = time.perf_counter()
            dec = refcodecs.decode(enc, W, H)
            decode_s = time.perf_counter() - t0
            if dec.shape != frames_THWC.shape:
                raise ProGVCError(f"{clip}: {codec} crf {crf} decoded {dec.shape}, expected {frames_THWC.shape}")
            p = _point(
                clip,
                codec,
                preset,
                "crf",
                crf,
                frames_THWC,
                dec,
                enc.bits,
                enc.encode_s,
                decode_s,
                cfg.metrics,
                keyframes=list(enc.keyframes),
                packets=len(enc.packets),
                info_sei_bytes_removed=enc.stripped_bytes,
            )
            cache.put("points", key, p)
        p["clip"] = clip
        return p

    lo, hi = bpp_range
    return sweep_crf(evaluate, rc.crf_min, rc.crf_max, START_CRF[codec], lo, hi)


def _source_motion(frames_THWC: np.ndarray) -> float | None:
    """tfd of a decode frozen on frame 0 = the source's mean absolute luma change per frame; None if T = 1."""
    v = M.clip_means({"tfd": M.tfd(frames_THWC, np.repeat(frames_THWC[:1], len(frames_THWC), axis=0))})["tfd"]
    return None if np.isnan(v) else round(v, 4)


def evaluate_clip(
    path: str | Path, cfg: EvalConfig, cache: EvalCache, codec=None, progress: ProgressFn | None = None
) -> tuple[list[Point], dict]:
    """All RD points of one clip, and facts about it (size, frames, fps, conversion ceiling)."""
    from pipeline import video_io

    info = video_io.probe(path)
    n = min(cfg.frames, info.frame_count) if cfg.frames else info.frame_count
    frames = video_io.read_frames(path, 0, n)
    clip = Path(path).stem
    facts = {
        "clip": clip,
        "path": str(path),
        "width": info.width,
        "height": info.height,
        "fps": str(info.fps),
        "frames": int(frames.shape[0]),
        "source_frames": info.frame_count,
        "frames_sha256": frames_hash(frames),
        "yuv420_roundtrip": conversion_ceiling(frames),
        # tfd of a decode that freezes on frame 0 = the source's mean absolute luma change per frame
        "source_motion": _source_motion(frames),
    }
    points: list[Point] = []
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    if "progvc" in cfg.codecs and has_encoder_settings(codec):
        if "plain" in cfg.modes:  # keyframe mode: not for these families (yet); the CLI says so in the notes
            points += fidelity_points(codec, clip, frames, cfg, cache, progress)
            wall["progvc"] = time.perf_counter() - t0
    elif "progvc" in cfg.codecs and codec is not None:
        if "plain" in cfg.modes:
            points += progvc_points(codec, clip, frames, cfg, cache, progress)
            wall["progvc"] = time.perf_counter() - t0
        if "keyframe" in cfg.modes:
            t0 = time.perf_counter()
            points += keyframe_points(codec, clip, frames, cfg, cache, progress)
            wall["progvc keyframe"] = time.perf_counter() - t0
    pv = [p["bpp"] for p in points if p["codec"] == "progvc" and not p.get("ladder")]
    bpp_range = (min(pv), max(pv)) if pv else cfg.default_bpp_range
    facts["sweep_bpp_target"] = list(bpp_range)
    for name in ("x264", "x265", "av1"):
        if name not in cfg.codecs:
            continue
        presets = [cfg.av1_preset] if name == "av1" else list(cfg.presets)
        t0 = time.perf_counter()
        for preset in presets:
            points += reference_points(name, preset, clip, frames, cfg, cache, bpp_range, info.fps, progress)
        wall[name] = time.perf_counter() - t0
    facts["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    return points, facts
