"""`progvc eval CLIP... --out DIR`: rate-distortion of ProGVC vs x264 / x265 / AV1 on the same frames.

The default model (latent family): a sweep of `--fidelities` at `--effort`, one encode per (clip, fidelity)
decoded at every K; curve 'ProGVC' = all layers over the fidelities, the per-K layer ladder of one fidelity
tabled in summary.md. Keyframe mode is skipped for it (not supported by the latent family yet).
A VQ model (`--weights models/progvc.pt`): plain mode (every frame at K scales) and keyframe mode (frame 0
of each GOP at all N scales, the others at K; `--modes`); summary.md compares the two at matched bpp, with
the temporal frame-difference error `tfd` beside PSNR-Y, MS-SSIM and VMAF.

Writes DIR/results.json (every point), DIR/summary.md (BD-rate and per-clip tables) and
DIR/rd_<metric>.png. Encodes are cached by content hash (default ~/.cache/progvc-eval, or
$PROGVC_EVAL_CACHE, or --cache), so a re-run only computes what changed.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pipeline.codec_api import DEFAULT_PREDICT, PREDICT_MODES
from pipeline.encoder_options import DEFAULT_EFFORT, EFFORTS

VIDEO_SUFFIXES = {".y4m", ".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v"}
DEFAULT_FIDELITIES = "30,38,46,54,62,70"
# = pipeline.metrics.METRICS (a test keeps them equal): `progvc --help` does not import numpy for it
METRICS = ("psnr_y", "psnr_rgb", "ms_ssim", "vmaf", "tfd")


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="rate-distortion evaluation vs x264/x265/AV1 (results.json, summary.md, RD plots)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("clips", nargs="+", metavar="CLIP", help="video files, or folders of them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--codecs", default="progvc,x264,x265,av1", help="comma list of progvc,x264,x265,av1")
    p.add_argument("--frames", type=int, default=16, help="frames per clip from the start (default 16; 0 = all)")
    p.add_argument("--gop", type=int, default=16, help="GOP length = keyframe interval for every codec")
    p.add_argument("--weights", default=None,
                   help="ProGVC model: a model id or weights file (default: the registry's default, latent-v1; "
                        "the VQ model: --weights models/progvc.pt)")
    p.add_argument("--fidelities", default=None,
                   help=f"latent family: fidelities to sweep, comma list of 0..100 (default {DEFAULT_FIDELITIES}); "
                        "one encode each, decoded at every K")
    p.add_argument("--effort", default=None, choices=EFFORTS,
                   help=f"latent family: encoder effort of the sweep (default {DEFAULT_EFFORT})")
    p.add_argument("--presets", default="medium,slow", help="x264/x265 presets (default medium,slow)")
    p.add_argument("--av1-preset", default="8", help="SVT-AV1 preset 0..13 (default 8)")
    p.add_argument("--scales", default=None, help="ProGVC scale counts K to evaluate, e.g. 4,6,8 (default all)")
    p.add_argument(
        "--predict",
        default=DEFAULT_PREDICT,
        choices=PREDICT_MODES,
        help=f"how ProGVC fills untransmitted scales (default {DEFAULT_PREDICT})",
    )
    p.add_argument(
        "--plain-predict",
        default="",
        help="extra plain-mode curves decoded with these predict modes, e.g. none (comma list; label "
        "'ProGVC (none)'; keyframe mode is compared with every plain curve)",
    )
    p.add_argument(
        "--modes",
        default="plain,keyframe",
        help="ProGVC modes, comma list of plain,keyframe (default both; keyframe: frame 0 of each GOP at all "
        "N scales, the others at K = 1..N-1 scales, one encode per K)",
    )
    p.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma list of metrics (default {','.join(METRICS)}; tfd = temporal frame-difference error)",
    )
    p.add_argument(
        "--bpp-range",
        default="0.02,0.1",
        help="bpp range the reference sweeps cover when ProGVC is not evaluated (default 0.02,0.1)",
    )
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for ProGVC and the metrics (default 1: the latent encoder's ops are "
                        "small, and 2 threads on a busy 2-core machine made its encodes ~15x slower)")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/progvc-eval)")
    p.add_argument("--no-cache", action="store_true", help="compute everything, store nothing")
    p.add_argument("--regenerate", default=None, help=argparse.SUPPRESS)  # documented command for summary.md
    p.set_defaults(func=run)


def _fidelities(text: str) -> tuple[float, ...]:
    from pipeline.errors import ProGVCError

    try:
        vals = tuple(float(x) for x in _csv(text))
    except ValueError:
        raise ProGVCError(f"--fidelities {text!r}: use a comma list of numbers 0..100, e.g. {DEFAULT_FIDELITIES}") \
            from None
    if not vals or any(not 0 <= v <= 100 for v in vals):
        raise ProGVCError(f"--fidelities {text!r}: use a comma list of numbers 0..100, e.g. {DEFAULT_FIDELITIES}")
    return tuple(sorted(set(vals)))


def _expand(clips: list[str]) -> list[Path]:
    from pipeline.errors import VideoError

    out: list[Path] = []
    for c in clips:
        p = Path(c)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES and q.is_file())
            if not found:
                raise VideoError(f"{p}: folder holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise VideoError(f"{p}: no such file or folder; check the clip path")
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline import metrics as M
    from pipeline.errors import ProGVCError
    from pipeline.evaluate import report
    from pipeline.evaluate.cache import DEFAULT_CACHE_DIR, EvalCache
    from pipeline.evaluate.refcodecs import CODECS
    from pipeline.evaluate.runner import MODES, EvalConfig, evaluate_clip

    console = Console(stderr=True)
    import torch

    torch.set_num_threads(max(1, args.threads))
    codecs = tuple(_csv(args.codecs))
    bad = [c for c in codecs if c != "progvc" and c not in CODECS]
    if bad:
        raise ProGVCError(f"--codecs: unknown {', '.join(bad)}; choose from progvc, {', '.join(CODECS)}")
    metric_names = tuple(_csv(args.metrics))
    unknown = [m for m in metric_names if m not in M.METRICS]
    if unknown:
        raise ProGVCError(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(M.METRICS)}")
    notes: list[str] = []
    if "vmaf" in metric_names and not M.vmaf_available():
        metric_names = tuple(m for m in metric_names if m != "vmaf")
        notes.append("VMAF skipped: imageio-ffmpeg's FFmpeg has no libvmaf filter here.")
    plain_predicts = tuple(_csv(args.plain_predict))
    if any(pr not in ("argmax", "sample", "none") for pr in plain_predicts):
        raise ProGVCError(f"--plain-predict {args.plain_predict!r}: choose from argmax, sample, none")
    modes = tuple(_csv(args.modes))
    if not modes or any(m not in MODES for m in modes):
        raise ProGVCError(f"--modes {args.modes!r}: choose one or more of {', '.join(MODES)}")
    lo, hi = (float(x) for x in _csv(args.bpp_range))
    fidelities = _fidelities(args.fidelities or DEFAULT_FIDELITIES)
    cfg = EvalConfig(
        codecs=codecs,
        presets=tuple(_csv(args.presets)),
        av1_preset=args.av1_preset,
        frames=args.frames,
        gop=args.gop,
        metrics=metric_names,
        weights=args.weights,
        predict=args.predict,
        plain_predicts=plain_predicts,
        scales=tuple(int(k) for k in _csv(args.scales)) if args.scales else None,
        modes=modes,
        default_bpp_range=(lo, hi),
        notes=notes,
        fidelities=fidelities,
        effort=args.effort,
    )
    clips = _expand(args.clips)
    cache = EvalCache(None if args.no_cache else (args.cache or DEFAULT_CACHE_DIR))

    codec = None
    progvc_desc = "not requested (--codecs)"
    if "progvc" in codecs:
        from pipeline.evaluate.runner import has_encoder_settings
        from pipeline.registry import check_encoder_options, open_codec

        try:
            codec = open_codec(args.weights)
        except ProGVCError as exc:
            if args.weights:  # the user asked for these weights: fail loudly
                raise
            progvc_desc = f"MISSING: {exc}"
            notes.append(f"ProGVC points are missing: {exc}")
        src = args.weights or "the default model"
        if codec is not None and has_encoder_settings(codec):
            effort = args.effort or DEFAULT_EFFORT
            n = codec.n_layers
            ks = list(cfg.scales) if cfg.scales else list(range(1, n + 1))
            cfg.modes = modes = tuple(m for m in modes if m != "keyframe")
            progvc_desc = (
                f"model {codec.model_id} ({'`--weights ' + args.weights + '`' if args.weights else 'the default'}; "
                f"family {codec.family}, N = {n} layers, scales {list(codec.scales)}), effort `{effort}`, "
                f"fidelities {', '.join(f'{f:g}' for f in fidelities)}: one encode "
                f"per (clip, fidelity), decoded from its first K layers for K in {ks} (later layers predicted by "
                f"`{cfg.predict}`); curve 'ProGVC' = the K = {n} points over the fidelities (labelled f<fidelity>), "
                "the other K in 'Layer ladder'"
            )
            if "keyframe" in tuple(_csv(args.modes)):
                notes.append(f"Keyframe mode skipped: the {codec.family} family has no keyframe mode yet "
                             "(plain mode only).")
            if cfg.plain_predicts:
                notes.append(f"--plain-predict {','.join(cfg.plain_predicts)} ignored for the {codec.family} family: "
                             f"the 'ProGVC' curve decodes every layer (nothing to predict); the ladder uses "
                             f"`{cfg.predict}`.")
        elif codec is not None:
            try:
                check_encoder_options(codec.model_id, fidelities[0] if args.fidelities else None, args.effort,
                                      family=codec.family)
            except ProGVCError as exc:
                raise ProGVCError(str(exc).replace("--fidelity/", "--fidelities/")) from None
            progvc_desc = (
                f"weights `{src}` (model id {codec.model_id}, family {codec.family}), scales "
                f"{list(codec.scales)} (N = {codec.n_layers}), every K evaluated"
                if cfg.scales is None
                else f"weights `{src}` (model id {codec.model_id}), K in {list(cfg.scales)}"
            )
            progvc_desc += f", untransmitted scales predicted by `{cfg.predict}`"
            for pr in cfg.plain_predicts:
                progvc_desc += f" (curve 'ProGVC ({pr})': the same streams decoded with `{pr}`)"
            if "keyframe" in modes:
                n = codec.n_layers
                progvc_desc += (
                    f"; keyframe mode: frame 0 of each GOP at all {n} scales, frames 1.. at scales 1..K for "
                    f"K in {[k for k in (cfg.scales or range(1, n)) if 1 <= k < n]}, their scales K+1..{n} "
                    f"generated by the context model conditioned on the keyframe (`{cfg.predict}`)"
                )

    t0 = time.perf_counter()
    points: list[dict] = []
    facts: list[dict] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("clips", total=len(clips))
        for clip in clips:
            pts, f = evaluate_clip(clip, cfg, cache, codec, progress=lambda s: bar.update(task, description=s))
            points += pts
            facts.append(f)
            bar.advance(task)
        bar.update(task, description="done")
    wall = time.perf_counter() - t0

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    refs = []
    for name in ("x264", "x265", "av1"):
        if name in codecs:
            presets = [cfg.av1_preset] if name == "av1" else list(cfg.presets)
            refs.append(f"{name} ({CODECS[name].encoder}, presets {', '.join(presets)}, CRF sweep)")
    import av

    meta = {
        "command": "progvc eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "eval"
        else "progvc eval " + " ".join(shlex.quote(str(c)) for c in args.clips),
        "regenerate": args.regenerate,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        "wall_s": wall,
        "computed_points": cache.misses,
        "cached_points": cache.hits,
        "frames": cfg.frames,
        "gop": cfg.gop,
        "metrics": list(metric_names),
        "progvc": progvc_desc,
        "modes": list(modes),
        "model_id": codec.model_id if codec else None,
        "effort": cfg.effort,
        "fidelities": list(fidelities),
        "ladder_fidelity": report.ladder_fidelity(points),
        "references": "; ".join(refs) or "none",
        "bits_definition": report.BITS_DEFINITION,
        "versions": {"av": av.__version__, "libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))},
        "notes": notes,
        "clips": facts,
    }
    report.write_results_json(out / "results.json", points, meta)
    report.write_summary(out / "summary.md", points, facts, meta, list(metric_names))
    pngs = report.plot_rd(out, points, list(metric_names))
    console.print(
        f"progvc eval: {len(points)} points on {len(clips)} clip(s) in {wall:.0f} s "
        f"({cache.hits} cached) -> {out / 'results.json'}, {out / 'summary.md'}, {', '.join(p.name for p in pngs)}"
    )
    for n in notes:
        console.print(f"note: {n}")
    return 0
