"""`progvc` archive sub-commands: compress, savings, reserve, prune, verify, schedule.

Heavy modules (Ray, Prefect, torch) are imported inside the command functions, after
`pipeline.settings.apply_environment` has set the environment they read at import time.

Queries and single-video work run as plain library calls, with neither a Prefect server nor Ray (issue 16.6:
those cost 20-80 s of start-up): `savings`, `ls`, `prune`, and `reserve` unless `--actors`/`--ray-address`
ask for Ray codec actors. `compress` and `schedule` run Prefect flows on Ray. Every video id argument takes a
unique prefix (`pipeline.catalog.resolve_video_id`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from flows.cli import UsageError, quiet_console_tracebacks
from pipeline.codec_api import DEFAULT_PREDICT, PREDICT_MODES


def _int_at_least(lo: int, what: str = ""):
    """An argparse type: an integer >= `lo` (a bad value is a one-line usage error, exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use an integer >= {lo}{what}")
        return value

    return parse


def _float_at_least(lo: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= lo:  # NaN too
            raise argparse.ArgumentTypeError(f"{value} is out of range: use a number >= {lo}")
        return value

    return parse


SCALES_OR_ALL = _int_at_least(0, " (0 = all)")
AT_LEAST_1 = _int_at_least(1)
ACTORS = _int_at_least(0, " (0 = one per GPU, else one per CPU)")


def _check_weights(spec: str | None, ray_address: str | None, origin: str) -> None:
    """UsageError when `spec` names a weights file (a path or `*.pt`) that does not exist here, or a model id
    the registry does not have. Skipped when actors run on a Ray cluster named by an address: the file or
    model may exist only there."""
    if not spec or ray_address:
        return
    if os.sep in spec or spec.endswith(".pt") or os.path.exists(spec):
        if not os.path.isfile(spec):
            what = "a directory, not a weights file" if os.path.isdir(spec) else "no such file"
            raise UsageError(f"{origin} {spec}: {what}; pass an existing weights file or a model id "
                             f"(`progvc models` lists them)")
        return
    try:
        from pipeline import registry

        models = registry.list_models()
    except Exception:  # noqa: BLE001 - the registry itself will say what is wrong where the model loads
        return
    for m in models:
        if m.model_id == spec and m.installed:
            return
        if m.model_id.endswith(":<seed>") and spec.startswith(m.model_id[: -len("<seed>")]):
            return
    raise UsageError(f"{origin} {spec}: {registry.missing_model_error(spec)}")


def check_cron(cron: str) -> str:
    """UsageError unless `cron` is a cron string Prefect accepts (checked with Prefect's own validator, after
    `apply_environment`: importing Prefect reads the environment)."""
    from prefect._internal.schemas.validators import validate_cron_string

    try:
        return validate_cron_string(cron)
    except (ValueError, TypeError, KeyError) as exc:
        why = "" if str(exc).startswith("Invalid cron string") else f" ({exc})"
        raise UsageError(f"--cron {cron!r}: not a valid cron schedule{why}; use five fields, e.g. "
                         f"'0 2 * * *' (02:00 daily)") from None


def check_timezone(name: str) -> str:
    """UsageError unless `name` is an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone {name!r}: not a known time zone; use an IANA name such as UTC, "
                         f"Europe/Berlin or America/New_York") from None
    return name


def _settings(args: argparse.Namespace):
    from pipeline.settings import Settings, apply_environment

    flags = {
        "s3_endpoint": getattr(args, "s3_endpoint", None),
        "ray_address": getattr(args, "ray_address", None),
        "weights": getattr(args, "weights", None),
        "device": getattr(args, "device", None),
        "actors": getattr(args, "actors", None),
        "max_gop": getattr(args, "gop", None),
    }
    try:
        s = Settings.from_env().override(**flags)
    except ValueError as exc:  # a bad PROGVC_* environment variable
        raise UsageError(str(exc)) from None
    if getattr(args, "weights", None):
        _check_weights(args.weights, s.ray_address, "--weights")
    elif getattr(args, "command", None) in ("compress", "schedule") and s.weights:  # reserve ignores it
        _check_weights(s.weights, s.ray_address, "PROGVC_WEIGHTS")
    if s.weights and os.path.exists(s.weights):  # actors may run elsewhere: hand them an absolute path
        s = s.override(weights=os.path.abspath(s.weights))
    s = apply_environment(s)
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's console handlers (every archive command runs a flow next) ...
    quiet_console_tracebacks()  # ... print no tracebacks unless --verbose
    return s


def _plain_settings(args: argparse.Namespace):
    """Settings for a command that runs as plain library calls (no Prefect, no Ray): env + the flags given.
    Nothing is started and `apply_environment` is not needed."""
    from pipeline.settings import Settings

    flags = {k: getattr(args, k, None) for k in ("s3_endpoint", "weights", "device")}
    try:
        s = Settings.from_env().override(**flags)
    except ValueError as exc:  # a bad PROGVC_* environment variable
        raise UsageError(str(exc)) from None
    if getattr(args, "weights", None):
        _check_weights(args.weights, None, "--weights")
    return s


def _manifest(dest: str, s3_endpoint: str | None):
    """(store, effective manifest rows) of archive `dest`."""
    from pipeline import manifest
    from pipeline.store import open_store

    store = open_store(dest, s3_endpoint=s3_endpoint)
    return store, manifest.read_manifest(store)


def _add_common(p: argparse.ArgumentParser, model: bool = False, weights_help: str | None = None) -> None:
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS settings / PROGVC_S3_ENDPOINT)")
    if model:
        p.add_argument("--weights", help=weights_help or "codec model: a weights file or a model id (default: "
                       "PROGVC_WEIGHTS, else the registry's default model; `progvc models`)")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="codec device (default: auto)")
        p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def _check_encoder(args: argparse.Namespace, s) -> None:
    """UsageError unless `--fidelity`/`--effort` (when given) and `--mode` apply to the model that will encode:
    `s.weights` (--weights / PROGVC_WEIGHTS) or the default model. A model only a Ray cluster has is checked
    there."""
    fidelity, effort = getattr(args, "fidelity", None), getattr(args, "effort", None)
    mode = getattr(args, "mode", None) or "plain"
    if fidelity is None and effort is None and mode == "plain":
        return
    from pipeline.errors import ProGVCError
    from pipeline.registry import check_encoder_options, check_mode_supported

    try:
        check_encoder_options(s.weights, fidelity, effort)
        check_mode_supported(s.weights, mode)
    except ProGVCError as exc:
        raise UsageError(str(exc)) from None


def cmd_compress(args: argparse.Namespace) -> int:
    s = _settings(args)
    _check_encoder(args, s)
    from flows.compress import check_mode, compress, print_report

    scales = args.scales if args.scales is not None else s.scales
    check_mode(args.mode, args.frame_scales, scales)  # a usage error: before any flow run starts
    report = compress(
        sources=args.sources,
        dest=args.dest,
        scales=scales,
        job=args.job,
        actors=s.actors,
        max_gop=s.max_gop,
        weights=s.weights,
        s3_endpoint=s.s3_endpoint,
        device=s.device,
        threshold=args.threshold,
        quality=args.quality,
        mode=args.mode,
        frame_scales=args.frame_scales,
        fidelity=args.fidelity,
        effort=args.effort,
    )
    print_report(report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    return 1 if report["failed"] else 0


def cmd_savings(args: argparse.Namespace) -> int:
    s = _plain_settings(args)
    from flows.savings import savings

    savings(
        dest=args.dest,
        by=args.by,
        csv=args.csv,
        parquet=args.parquet,
        plot=args.plot,
        s3_endpoint=s.s3_endpoint,
        show=True,
        videos=args.video,
    )
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    s = _plain_settings(args)
    from pipeline import catalog

    _, rows = _manifest(args.dest, s.s3_endpoint)
    videos = catalog.list_videos(rows)
    if args.json:
        print(json.dumps(videos.to_pylist(), indent=2, default=str))
    else:
        catalog.print_videos(videos, title=f"{videos.num_rows} video(s) in {args.dest}")
    return 0


def cmd_reserve(args: argparse.Namespace) -> int:
    # the model is the one the archived header names; only an explicit --weights overrides it (PROGVC_WEIGHTS
    # is the default for encoding, not for decoding old archives)
    weights = os.path.abspath(args.weights) if args.weights and os.path.exists(args.weights) else args.weights
    if args.actors is None and not args.ray_address:  # one process: no Ray, no Prefect server (issue 16.6)
        s = _plain_settings(args)
        from pipeline.reserve import reserve_video
        from pipeline.store import open_store

        out = reserve_video(open_store(args.dest, s3_endpoint=s.s3_endpoint), args.video_id, args.scales,
                            args.output, predict=args.predict, weights=weights, device=s.device, seed=args.seed,
                            where=args.dest, threads=args.threads)
    else:  # Ray codec actors under the `reserve` flow
        s = _settings(args)
        from flows.reserve import reserve

        out = reserve(
            dest=args.dest,
            video_id=args.video_id,
            scales=args.scales,
            output=args.output,
            predict=args.predict,
            weights=weights,
            s3_endpoint=s.s3_endpoint,
            device=s.device,
            actors=args.actors or 0,
            seed=args.seed,
        )
    print(f"re-served {out['video_id']} at {out['scales']} of {out['n_scales']} scales (model {out['model_id']}): "
          f"{out['output']}")
    print(
        f"  {out['frames']} frames {out['width']}x{out['height']}, read {out['bytes_read']} bytes "
        f"(layers 1..{out['scales']}: {out['layer_bytes']} bytes)"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    s = _plain_settings(args)  # a manifest write and deletes: no flow needed (the `prune` flow is for Python)
    from pipeline import archive, catalog

    store, rows = _manifest(args.dest, s.s3_endpoint)
    ids = catalog.resolve_video_ids(rows, args.video, args.dest) if args.video else None
    rep = archive.prune(store, args.keep_scales, ids)
    print(f"pruned {len(rep.video_ids)} video(s) to {args.keep_scales} scales, freed {rep.freed_bytes} bytes")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every stored object against the manifest (sizes, CRC32s; no decoding, no Ray, no Prefect): one
    line per bad object on stdout and exit code 1, exit code 0 when clean; the summary on stderr."""
    from pipeline.settings import Settings, apply_environment

    try:
        s = Settings.from_env().override(s3_endpoint=args.s3_endpoint)
    except ValueError as exc:  # a bad PROGVC_* environment variable
        raise UsageError(str(exc)) from None
    apply_environment(s)
    from pipeline.store import open_store
    from pipeline.verify import verify_archive

    store = open_store(args.dest, s3_endpoint=s.s3_endpoint)
    ids = None
    if args.video:  # ids or unique prefixes
        from pipeline.catalog import resolve_video_ids
        from pipeline.manifest import committed_video_ids

        ids = resolve_video_ids(committed_video_ids(store), args.video, args.dest)
    report = verify_archive(store, video_ids=ids)
    for line in report.problems:
        print(line)
    print(f"verified {report.objects} object(s) of {report.videos} video(s) ({report.chunks} chunks, "
          f"{report.bytes_checked} bytes read): " + (f"{len(report.problems)} bad" if report.problems else "clean"),
          file=sys.stderr)
    return 1 if report.problems else 0


def cmd_schedule(args: argparse.Namespace) -> int:
    check_timezone(args.timezone)
    s = _settings(args)
    _check_encoder(args, s)
    check_cron(args.cron)
    from flows.deploy import serve_compress

    serve_compress(
        name=args.name,
        cron=args.cron,
        timezone=args.timezone,
        sources=args.sources,
        dest=args.dest,
        scales=args.scales or 0,
        actors=s.actors,
        weights=s.weights,
        s3_endpoint=s.s3_endpoint,
        mode=args.mode if args.mode != "plain" else None,  # None: the flow's default (not in the parameters)
        frame_scales=args.frame_scales,
        fidelity=args.fidelity,
        effort=args.effort,
        run_once=args.run_once,
    )
    return 0


def _add_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["plain", "keyframe"], default="plain",
                   help="plain: every frame at every kept scale (default); keyframe: each GOP's keyframe at every "
                        "kept scale, the other frames at scales 1..--frame-scales only (finer ones predicted when "
                        "re-served). A video already archived (same content, either mode) is skipped")
    p.add_argument("--frame-scales", type=AT_LEAST_1, metavar="K",
                   help="keyframe mode: scales coded for the frames after each GOP's keyframe (1..scales kept)")
    from pipeline import encoder_options

    encoder_options.add_arguments(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="compress videos (files, folders, s3:// prefixes) into an archive")
    p.add_argument("sources", nargs="+", metavar="SRC", help="video file, folder or s3://bucket/prefix")
    p.add_argument("--dest", required=True, help="archive root: local folder or s3://bucket/prefix")
    p.add_argument("--scales", type=SCALES_OR_ALL, help="store only the first K scale layers (default: all)")
    p.add_argument("--job", help="job name (default: job-<UTC time>)")
    p.add_argument("--actors", type=ACTORS, help="codec actors (default: one per GPU, else per CPU)")
    p.add_argument("--gop", type=AT_LEAST_1, help="maximum GOP length in frames (default 16)")
    p.add_argument("--threshold", type=_float_at_least(0.0), default=None,
                   help="keyframe colour distance, mean ΔE (default 10)")
    p.add_argument("--quality", action="store_true",
                   help="also measure PSNR-Y/MS-SSIM at every scale count (slower; shown by `savings`)")
    _add_mode(p)
    p.add_argument("--json", action="store_true", help="also print the job report as JSON")
    _add_common(p, model=True)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("savings", help="storage savings of an archive: table, CSV/Parquet, plot")
    p.add_argument("dest", help="archive root")
    p.add_argument("--by", choices=["job", "video", "scale", "mode"], default="video",
                   help="one row per scale count K for each video | job | mode (plain/keyframe), or overall (scale)")
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument("--parquet", help="write the table as Parquet")
    p.add_argument("--plot", help="write a PNG plot")
    p.add_argument("--video", action="append", metavar="ID",
                   help="only this video (an id or a unique prefix of one; repeatable; default: every video)")
    _add_common(p)
    p.set_defaults(func=cmd_savings)

    p = sub.add_parser("ls", help="list the archived videos: id, source file, frames, stored layers K, bytes")
    p.add_argument("dest", help="archive root")
    p.add_argument("--json", action="store_true", help="every field of every video as JSON (exact bytes)")
    _add_common(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("reserve", help="re-serve a video from its first K scale layers to MP4/Y4M")
    p.add_argument("dest", help="archive root")
    p.add_argument("video_id", help="the video's id or a unique prefix of it (`progvc ls` lists them)")
    p.add_argument("--scales", type=AT_LEAST_1, required=True, help="number of scale layers to read (K)")
    p.add_argument("-o", "--output", required=True, help="output .mp4/.mkv/.y4m")
    p.add_argument("--predict", choices=PREDICT_MODES, default=DEFAULT_PREDICT,
                   help="how the untransmitted fine scales are filled: none (decode from the K layers alone, the "
                   "default: measured best), argmax (context-model prediction), sample")
    p.add_argument("--seed", type=int, default=0, help="seed for --predict sample (GOP g uses seed + g, as "
                   "`progvc decode` does)")
    p.add_argument("--actors", type=ACTORS, help="decode on N Ray codec actors under a Prefect flow (0 = up to 2; "
                   "default: decode in this process, no Ray/Prefect start-up)")
    p.add_argument("--threads", type=AT_LEAST_1, default=1,
                   help="torch CPU threads when decoding in this process (default 1, as `progvc decode`)")
    _add_common(p, model=True, weights_help="force a weights file or model id (default: the model the archived "
                "stream names, found by its id in models/ or PROGVC_MODELS_DIR)")
    p.set_defaults(func=cmd_reserve)

    p = sub.add_parser("prune", help="delete fine scale layers, keeping the first K")
    p.add_argument("dest", help="archive root")
    p.add_argument("--keep-scales", type=AT_LEAST_1, required=True)
    p.add_argument("--video", action="append", metavar="ID",
                   help="only this video (an id or a unique prefix; repeatable; default: every video)")
    _add_common(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("verify", help="check every stored object of an archive against its manifest (sizes, "
                       "CRC32s; no decoding): one line per bad object, exit code 1 if any")
    p.add_argument("dest", help="archive root")
    p.add_argument("--video", action="append", metavar="ID",
                   help="only this video (an id or a unique prefix; repeatable; default: all)")
    _add_common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("schedule", help="serve a Prefect deployment that runs `compress` on a cron schedule")
    p.add_argument("sources", nargs="+", metavar="SRC")
    p.add_argument("--dest", required=True)
    p.add_argument("--cron", default="0 2 * * *", help="cron schedule (default: nightly at 02:00)")
    p.add_argument("--timezone", default="UTC", help="IANA time zone the cron fields are read in, e.g. "
                   "Europe/Berlin (default: UTC)")
    p.add_argument("--name", default="nightly-compress", help="deployment name")
    p.add_argument("--scales", type=SCALES_OR_ALL)
    p.add_argument("--actors", type=ACTORS)
    p.add_argument("--run-once", action="store_true", help="register, trigger one run, serve until it finishes")
    _add_mode(p)
    _add_common(p, model=True)
    p.set_defaults(func=cmd_schedule)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: progvc <command>")
