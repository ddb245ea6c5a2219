"""`progvc encode | decode | info | models`: the codec's command line (registered by flows/cli.py).

Stream-level: it goes through `pipeline.stream` and `pipeline.registry`, whatever the codec family.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import encoder_options
from pipeline.codec_api import DEFAULT_PREDICT, PREDICT_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    e = subparsers.add_parser("encode", help="encode a video into a progressive .pgv stream")
    e.add_argument("input", help="source video (anything PyAV reads: mp4, mkv, webm, y4m, ...)")
    e.add_argument("-o", "--output", required=True, help="output .pgv")
    e.add_argument("--scales", "--keyframe-scales", dest="scales", type=int, default=None,
                   help="keep only the first K scale layers (in keyframe mode: the keyframes' scales)")
    e.add_argument("--mode", choices=("plain", "keyframe"), default="plain",
                   help="plain: every frame carries the kept scales; keyframe (CGVC): each GOP's keyframe "
                        "carries them, the other frames only --frame-scales and the decoder generates the rest")
    e.add_argument("--frame-scales", type=int, default=None,
                   help="keyframe mode: scales coded for non-keyframes (1..keyframe scales)")
    e.add_argument("--generate", choices=("auto", "all"), default="auto",
                   help="keyframe mode: auto (default) = the encoder picks per GOP how many frames after the "
                        "keyframe get generated detail (about one extra decode); all = every frame")
    e.add_argument("--gop", type=int, default=16, help="maximum GOP length in frames (default 16)")
    encoder_options.add_arguments(e)
    e.add_argument("--weights", default=None,
                   help="model: a weights file or a model id (default: the registry's default, `progvc models`)")
    e.add_argument("--batch-size", type=int, default=None, help="tiles per context-model forward")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the work per op is small)")
    e.set_defaults(func=cmd_encode)

    d = subparsers.add_parser("decode", help="decode a .pgv (any number of layers) to a video file")
    d.add_argument("input", help=".pgv stream (a file cut at a layer end is fine)")
    d.add_argument("-o", "--output", required=True, help="output .mp4, .mkv or .y4m")
    d.add_argument("--scales", type=int, default=None, help="decode from the first K layers only")
    d.add_argument("--predict", choices=PREDICT_MODES, default=DEFAULT_PREDICT,
                   help="how to fill scales K+1..N: none (default, measured best), context-model argmax, "
                        "or seeded sampling")
    d.add_argument("--seed", type=int, default=0, help="seed for --predict sample")
    d.add_argument("--weights", default=None,
                   help="force a weights file or model id (default: the model the stream names, from the registry)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--threads", type=int, default=1, help="torch CPU threads (results do not depend on it)")
    d.set_defaults(func=cmd_decode)

    i = subparsers.add_parser("info", help="show a .pgv stream's header, GOPs and bytes per scale")
    i.add_argument("input", help=".pgv stream")
    i.set_defaults(func=cmd_info)

    m = subparsers.add_parser("models", help="list the models streams can be decoded with (registry)")
    m.add_argument("--check", action="store_true", help="also load each model and check its id")
    m.set_defaults(func=cmd_models)


def _check_scales(k: int | None, threads: int = 1) -> None:
    import torch

    from pipeline.errors import ProGVCError

    if k is not None and k < 1:
        raise ProGVCError(f"--scales {k}: must be at least 1")
    torch.set_num_threads(max(1, threads))


def cmd_encode(a: argparse.Namespace) -> int:
    from pipeline.registry import open_codec
    from pipeline.stream import encode_video

    _check_scales(a.scales, a.threads)
    codec = open_codec(a.weights)
    codec = _encoder(codec, a.fidelity, a.effort, a.mode)
    if a.batch_size is not None and hasattr(codec, "batch_size"):
        codec.batch_size = a.batch_size
    s = encode_video(a.input, a.output, codec=codec, scales=a.scales, max_gop=a.gop, progress=not a.quiet,
                     mode=a.mode, frame_scales=a.frame_scales, generation=a.generate)
    h = s.header
    px = h.width * h.height * h.frame_count
    enc = f" ({encoder_options.describe(h.encoder)})" if h.encoder else ""
    print(f"{a.output}: {h.frame_count} frames {h.width}x{h.height}, {len(h.gops)} GOPs, {len(s.layer_bytes)} "
          f"layers, {s.total_bytes} bytes ({8 * s.total_bytes / px:.4f} bpp), model {h.model_id}{enc}, "
          f"{s.frames_per_s:.2f} frames/s")
    return 0


def _encoder(codec, fidelity: float | None, effort: str | None, mode: str = "plain"):
    """`pipeline.stream.encoder_for`; its refusal (--fidelity/--effort for the VQ family), or a mode the family
    cannot code (keyframe mode in the latent family), is a usage error."""
    from flows.cli import UsageError
    from pipeline.errors import ProGVCError
    from pipeline.registry import check_mode_supported
    from pipeline.stream import encoder_for

    try:
        check_mode_supported(codec.model_id, mode, family=codec.family)
        return encoder_for(codec, fidelity, effort)
    except ProGVCError as exc:
        raise UsageError(str(exc)) from None


def cmd_decode(a: argparse.Namespace) -> int:
    from pipeline.registry import open_codec
    from pipeline.stream import decode_video

    _check_scales(a.scales, a.threads)
    codec = open_codec(a.weights) if a.weights else None  # None: the stream's own model
    n = decode_video(a.input, a.output, scales=a.scales, predict=a.predict, seed=a.seed, codec=codec,
                     progress=not a.quiet)
    print(f"{a.output}: {n} frames")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from pipeline.errors import ProGVCError
    from pipeline.registry import MODELS_DIR_ENV, list_models, models_dirs, open_codec

    out = sys.stdout
    out.write(f"{'':1} {'model id':<20} {'family':<7} file / note\n")
    for m in list_models():
        where = m.file or "(builtin)"
        if not m.installed:
            where += " (MISSING)"
        if a.check and m.file and m.installed:
            try:
                got = open_codec(m.file).model_id
                where += " ok" if got == m.model_id else f" (holds {got}!)"
            except ProGVCError as exc:
                where += f" (cannot load: {exc})"
        note = f"  {m.note}" if m.note else ""
        out.write(f"{'*' if m.default else ' '} {m.model_id:<20} {m.family:<7} {where}{note}\n")
    out.write(f"* = default for encoding; folders searched: {', '.join(map(str, models_dirs()))} "
              f"(set {MODELS_DIR_ENV} to add one; a stream's model is found by its id)\n")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from pipeline.pgv import read_pgv

    s = read_pgv(a.input)
    h = s.header
    px = h.width * h.height * max(h.frame_count, 1)
    out = sys.stdout
    out.write(f"file        {a.input} ({Path(a.input).stat().st_size} bytes)\n")
    out.write(f"model id    {h.model_id}\n")
    kf = f" (keyframes: every layer; other frames: layers 1..{h.frame_scales})" if h.frame_scales else ""
    out.write(f"format      v{h.format_version} mode={h.mode}{kf}\n")
    if h.encoder:
        out.write(f"encoder     {encoder_options.describe(h.encoder)}\n")
    out.write(f"video       {h.width}x{h.height} @ {h.fps_num}/{h.fps_den} fps, {h.frame_count} frames\n")
    out.write(f"scales      {list(h.scales)} (tile {h.tile}); layers present: {s.n_layers}/{h.n_scales}\n")
    gops = [f"{g.first_frame}+{g.frame_count}" + ("" if g.generate is None else f" (gen 1..{g.generate})")
            for g in h.gops[:12]]
    out.write(f"GOPs        {len(h.gops)}: " + ", ".join(gops) + (" ..." if len(h.gops) > 12 else "") + "\n")
    out.write(f"header      {s.header_bytes} bytes\n")
    out.write(f"{'layer':>5} {'bytes':>10} {'bpp':>8} {'cum bytes':>10} {'cum bpp':>8}\n")
    cum = s.header_bytes
    for k, b in enumerate(s.layer_bytes):
        cum += b
        out.write(f"{k + 1:>5} {b:>10} {8 * b / px:>8.4f} {cum:>10} {8 * cum / px:>8.4f}\n")
    return 0
