"""The `compress` flow: sources -> GOP plans -> codec actors -> layers -> verified archive -> manifest.

Ray is driven from inside Prefect tasks (one task per video, all sharing one bounded actor pool);
each GOP is *not* a Prefect task (that orchestration would cost more than the encoding). One video's
failure is recorded with its reason and the job goes on; store writes are retried on transient faults;
a re-run skips the videos already committed (by content hash).

Modes (issue 8): "plain" codes every frame at the kept scales; "keyframe" codes each GOP's first frame
(its keyframe) at all kept scales and the other frames at scales 1..`frame_scales` only (the decoder
predicts the rest). The `video_id` is the hash of the source bytes whatever the mode, so a video already
archived in one mode is skipped by a later job in the other ("already archived"); to change a video's
mode, archive it into another `dest`.

What the job report says about loss (issue 16.4): a source that is cut off (fewer frames than its container
declares, `video_io.probe`) or empty *fails* with the reason, so nothing shorter than the source is committed
silently; a committed video carries warnings when its source has audio or subtitles (not archived: only the
first video stream is) or when its archive is larger than the source; files of a source folder/prefix that
are not taken as video are listed as `ignored` with the reason. A source with variable frame timing (issue
16.9c) is committed with every frame and a warning: the archive keeps one nominal rate, not per-frame
timestamps (`pipeline.video_io.variable_timing`). Every run ends by logging a one-line summary and creating a
Markdown artifact with the report (`publish_report`, key `compress-<job id>`), for the Prefect UI (16.9e).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from pipeline.settings import apply_environment

apply_environment()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows import archive_ops  # noqa: E402
from flows.progress import JobProgress  # noqa: E402
from pipeline.errors import ProGVCError  # noqa: E402
from pipeline.gop import DEFAULT_THRESHOLD  # noqa: E402

MODES = ("plain", "keyframe")  # = pipeline.pgv.MODES
VIDEOS_IN_FLIGHT = 16  # videos worked on at once (threads; the actor pool bounds the actual work)
UNIT_FRAMES = 32  # frames per actor call: small enough to balance actors, big enough to amortise a seek


@dataclass
class VideoOutcome:
    """How one source ended in a job."""

    source: str
    status: str  # "committed" | "skipped" | "failed"
    video_id: str | None = None
    reason: str | None = None
    frames: int = 0
    gops: int = 0
    source_bytes: int = 0
    archived_bytes: int = 0
    actor_busy_s: float = 0.0  # actor time spent on this video: planning + reading + encoding
    plan_s: float = 0.0  # of which GOP planning (decode at low resolution + colour distances)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what of the source is not in the archive, size notes


@dataclass
class JobReport:
    job_id: str
    dest: str
    videos: list[VideoOutcome] = field(default_factory=list)
    actors: int = 0
    seconds: float = 0.0  # whole job, wall clock
    startup_s: float = 0.0  # starting the actors (processes + model load), included in `seconds`
    ignored: list[dict] = field(default_factory=list)  # {"source", "reason"}: files of a folder/prefix not taken

    def to_dict(self) -> dict:
        d = asdict(self)
        by = {s: [v for v in d["videos"] if v["status"] == s] for s in ("committed", "skipped", "failed")}
        frames = sum(v["frames"] for v in by["committed"])
        busy = sum(v["actor_busy_s"] for v in by["committed"])
        d.update(
            committed=by["committed"],
            skipped=by["skipped"],
            failed=by["failed"],
            warned=[v for v in d["videos"] if v["warnings"]],
            frames=frames,
            fps=frames / self.seconds if self.seconds > 0 else 0.0,
            actor_fps=frames * max(1, self.actors) / busy if busy > 0 else 0.0,
        )
        return d


def check_mode(mode: str, frame_scales: int | None, scales: int | None = None) -> None:
    """ProGVCError unless (`mode`, `frame_scales`) is a valid coding mode for keeping `scales` scales
    (0/None: all of the model's, checked once the model is loaded)."""
    if mode not in MODES:
        raise ProGVCError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "plain":
        if frame_scales is not None:
            raise ProGVCError(f"--frame-scales {frame_scales} needs --mode keyframe (plain mode codes every "
                              f"frame at every kept scale)")
        return
    if frame_scales is None or isinstance(frame_scales, bool) or not isinstance(frame_scales, int):
        raise ProGVCError(f"--mode keyframe needs --frame-scales K (an integer, the scales coded for the frames "
                          f"after each GOP's keyframe), got {frame_scales!r}")
    if frame_scales < 1:
        raise ProGVCError(f"--frame-scales {frame_scales}: use 1..(scales kept); every frame needs scale 1")
    if scales and frame_scales > scales:
        raise ProGVCError(f"--frame-scales {frame_scales} is more than the {scales} scales kept; use "
                          f"1..{scales} (the keyframe carries every kept scale, the other frames at most that)")


def check_encoder_values(fidelity: float | None, effort: str | None) -> None:
    """ProGVCError unless `fidelity` (0..100) and `effort` (fast|medium|slow) are valid or None (whether they
    apply to the model is checked once it is known: `pipeline.registry.check_encoder_options`)."""
    from pipeline.encoder_options import check

    check(fidelity, effort)


def new_job_id(name: str | None = None) -> str:
    """`name` if given (checked to be a safe key part), else `job-<UTC time>-<4 hex>`."""
    if name:
        from pipeline.manifest import check_job_id

        return check_job_id(name)
    return datetime.now(timezone.utc).strftime("job-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:4]


@task(name="list-sources", retries=2, retry_delay_seconds=2, retry_condition_fn=archive_ops.only_store_faults,
      cache_policy=NO_CACHE)
def list_sources_task(sources: list[str], s3_endpoint: str | None) -> tuple[list[str], list[tuple[str, str]]]:
    """(sources, ignored files with the reason) of a job: `flows.sources.scan_sources`."""
    from flows.sources import scan_sources

    return scan_sources(sources, s3_endpoint)


def source_warnings(source: str, s3_endpoint: str | None, source_bytes: int, archived_bytes: int) -> list[str]:
    """What a committed video's archive lacks or costs compared with its source, one sentence each: audio,
    subtitle and extra video streams (only the first video stream is archived), an archive larger than the
    source. Reads only the source's headers (ranged reads on S3)."""
    from flows.sources import open_source
    from pipeline.video_io import stream_summary

    out = []
    try:
        src = open_source(source, s3_endpoint)
        try:
            streams = stream_summary(src)
        finally:
            if hasattr(src, "close"):
                src.close()
    except Exception as exc:  # noqa: BLE001 - the video is committed; say what could not be checked
        out.append(f"could not check the source for audio/subtitle streams ({_reason(exc)})")
    else:
        if streams.audio:
            out.append(f"audio not archived: {len(streams.audio)} audio stream(s) ({', '.join(streams.audio)}) "
                       "dropped; keep the source if the sound matters (its bytes count as saved)")
        if streams.subtitle:
            out.append(f"subtitles not archived: {len(streams.subtitle)} subtitle stream(s) dropped")
        if len(streams.video) > 1:
            out.append(f"only the first of {len(streams.video)} video streams archived")
    if source_bytes and archived_bytes > source_bytes:
        out.append(f"archive larger than the source: {archived_bytes} > {source_bytes} bytes "
                   f"(x{archived_bytes / source_bytes:.2f}); keeping the source is cheaper")
    return out


@task(name="committed-videos", retries=2, retry_delay_seconds=2, retry_condition_fn=archive_ops.only_store_faults,
      cache_policy=NO_CACHE)
def committed_ids_task(dest: str, s3_endpoint: str | None) -> set[str]:
    return archive_ops.committed_video_ids(dest, s3_endpoint)


@task(name="commit-video", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=archive_ops.only_store_faults,
      cache_policy=NO_CACHE)
def commit_video_task(dest: str, s3_endpoint: str | None, job_id: str, plan, results, n_keep: int,
                      model_id: str, scales: list[int], tile: int, mode: str = "plain",
                      frame_scales: int | None = None) -> int:
    """Write the layers and header, verify them, commit the manifest rows; returns archived bytes."""
    return archive_ops.commit_video(dest, s3_endpoint, job_id, plan, results, n_keep, model_id, scales, tile,
                                    mode, frame_scales)


@task(name="compress-video", cache_policy=NO_CACHE)
def compress_video_task(pool, ident, dest: str, s3_endpoint: str | None, job_id: str, n_keep: int,
                        max_gop: int, threshold: float, progress: JobProgress | None,
                        quality: bool = False, mode: str = "plain", frame_scales: int | None = None,
                        fidelity: float | None = None, effort: str | None = None) -> VideoOutcome:
    """Plan one source's GOPs on an actor, encode them on the pool, then commit them."""
    from pipeline.gop import group_gops
    from pipeline.pgv import GopEntry
    from workers.requests import EncodeRequest, PlanRequest

    t0 = time.perf_counter()
    plan = pool.call(PlanRequest(ident.source, ident.video_id, max_gop, threshold))
    gops = [GopEntry(first_frame=f, frame_count=n, keyframe=k) for f, n, k in plan.gops]
    units = group_gops(gops, plan.seek_points, max_frames=max(UNIT_FRAMES, max_gop))
    if progress:
        progress.add_video(ident.video_id, plan.frame_count)
    calls = [(ui, EncodeRequest(ident.source, [(i, gops[i].first_frame, gops[i].frame_count) for i in unit],
                                n_keep, quality, frame_scales, fidelity, effort))
             for ui, unit in enumerate(units)]
    results = [None] * len(gops)
    for _, res, err in pool.map(calls):
        if err is not None:
            raise err if isinstance(err, ProGVCError) else ProGVCError(f"{ident.source}: encoding failed: {err}")
        for r in res:
            results[r.gop_index] = r
            if progress:
                progress.advance(ident.video_id, r.frame_count)
    archived = commit_video_task(dest, s3_endpoint, job_id, plan, results, n_keep, pool.model_id, pool.scales,
                                 pool.tile, mode, frame_scales)
    warnings = source_warnings(ident.source, s3_endpoint, ident.size_bytes, archived)
    if getattr(plan, "timing_warning", None):  # VFR: frames kept, per-frame timestamps not (issue 16.9c)
        warnings.insert(0, plan.timing_warning)
    return VideoOutcome(
        source=ident.source,
        status="committed",
        video_id=ident.video_id,
        frames=plan.frame_count,
        gops=len(gops),
        source_bytes=ident.size_bytes,
        archived_bytes=archived,
        actor_busy_s=plan.plan_s + sum(r.busy_s for r in results),
        plan_s=plan.plan_s,
        seconds=time.perf_counter() - t0,
        warnings=warnings,
    )


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ProGVCError) else f"{type(exc).__name__}: {exc}"


def _record_failure(logger, dest: str, s3_endpoint: str | None, job_id: str, source: str, video_id: str | None,
                    reason: str) -> None:
    """Record a failed source in the archive; if the store refuses even that, say so and go on (the job
    report still lists it)."""
    try:
        archive_ops.record_failure(dest, s3_endpoint, job_id, source, video_id, reason)
    except ProGVCError as exc:
        logger.warning("could not record the failure of %s in %s: %s", source, dest, exc)


@flow(name="compress", task_runner=ThreadPoolTaskRunner(max_workers=VIDEOS_IN_FLIGHT), log_prints=True)
def compress(
    sources: list[str],
    dest: str,
    scales: int = 0,
    job: str | None = None,
    actors: int = 0,
    max_gop: int = 16,
    weights: str | None = None,
    s3_endpoint: str | None = None,
    device: str = "auto",
    threshold: float | None = None,
    quality: bool = False,
    mode: str = "plain",
    frame_scales: int | None = None,
    fidelity: float | None = None,
    effort: str | None = None,
) -> dict:
    """Compress every video under `sources` (files, folders, `s3://` prefixes) into the archive `dest`.

    scales: keep the first K scale layers (0 = all); job: job name (default `job-<UTC time>`);
    actors: codec actors (0 = one per GPU, else per CPU); max_gop: frames per GOP at most;
    weights: codec weights path (or `random:tiny:<seed>` for tests); threshold: keyframe colour
    distance (mean ΔE); quality: also measure PSNR-Y and MS-SSIM of every video at every scale count
    (decodes each GOP K times; shown by `savings`); mode: "plain" | "keyframe" (each GOP's keyframe at
    every kept scale, its other frames at scales 1..`frame_scales`, 1 <= frame_scales <= scales kept);
    fidelity (0..100, the rate knob) and effort ("fast" | "medium" | "slow"): the latent family's encoder
    settings (None = 60 / "medium"; a family without them, VQ, refuses them), recorded in each stream header
    and the manifest. Videos already archived (same content hash, in either mode) are skipped. Returns the job report
    (`JobReport.to_dict()`).
    """
    from pipeline.settings import Settings
    from workers.pool import CodecPool
    from workers.requests import IdentifyRequest

    check_mode(mode, frame_scales, scales)  # bad input fails before anything starts
    check_encoder_values(fidelity, effort)
    env = Settings.from_env()  # deployments: RAY_ADDRESS, S3 endpoint, weights from the worker's environment
    weights = weights or env.weights
    s3_endpoint = s3_endpoint or env.s3_endpoint
    logger = get_run_logger()
    t0 = time.perf_counter()
    job_id = new_job_id(job)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    files, ignored = list_sources_task(sources, s3_endpoint)
    report = JobReport(job_id=job_id, dest=dest, ignored=[{"source": f, "reason": r} for f, r in ignored])
    for f, r in ignored:
        logger.warning("ignored %s: %s", f, r)
    if not files:
        logger.warning("no video sources found under %s", sources)
        report.seconds = time.perf_counter() - t0
        return publish_report(report.to_dict(), logger)
    committed = committed_ids_task(dest, s3_endpoint)  # before starting actors: a bad dest fails fast
    t_pool = time.perf_counter()
    pool = CodecPool(weights, n_actors=actors, device=device, s3_endpoint=s3_endpoint)
    report.startup_s = time.perf_counter() - t_pool
    report.actors = pool.size
    try:
        n_keep = len(pool.scales) if scales in (0, None) else int(scales)
        if not 1 <= n_keep <= len(pool.scales):
            raise ProGVCError(f"--scales {scales}: the model has {len(pool.scales)} scales; use 1..{len(pool.scales)}")
        check_mode(mode, frame_scales, n_keep)
        from pipeline.registry import check_encoder_options, check_mode_supported

        check_encoder_options(weights, fidelity, effort, family=pool.codec.family)
        check_mode_supported(weights, mode, family=pool.codec.family)
        todo, seen = [], set()
        for src, ident, err in pool.map([(f, IdentifyRequest(f)) for f in files]):
            if err is None and ident.size_bytes == 0:  # would share one content hash with every empty file
                err = ProGVCError(f"{src}: empty file (0 bytes); re-copy or re-export the source")
            if err is not None:
                report.videos.append(VideoOutcome(source=src, status="failed", reason=_reason(err)))
                _record_failure(logger, dest, s3_endpoint, job_id, src, None, _reason(err))
            elif ident.video_id in committed or ident.video_id in seen:
                report.videos.append(VideoOutcome(source=src, status="skipped", video_id=ident.video_id,
                                                  source_bytes=ident.size_bytes,
                                                  reason="already archived" if ident.video_id in committed
                                                  else "same content as another source of this job"))
            else:
                seen.add(ident.video_id)
                todo.append(ident)
        with JobProgress(job_id, len(todo)) as progress:
            futures = [
                (ident, compress_video_task.submit(pool, ident, dest, s3_endpoint, job_id, n_keep, max_gop,
                                                   threshold, progress, quality, mode, frame_scales, fidelity,
                                                   effort))
                for ident in todo
            ]
            for ident, fut in futures:
                try:
                    outcome = fut.result()
                    report.videos.append(outcome)
                    for w in outcome.warnings:
                        logger.warning("%s: %s", ident.source, w)
                except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the job
                    reason = _reason(exc)
                    logger.error("%s failed: %s", ident.source, reason)
                    report.videos.append(VideoOutcome(source=ident.source, status="failed",
                                                      video_id=ident.video_id, reason=reason,
                                                      source_bytes=ident.size_bytes))
                    _record_failure(logger, dest, s3_endpoint, job_id, ident.source, ident.video_id, reason)
                progress.video_done(ident.video_id)
    finally:
        pool.close()
    report.seconds = time.perf_counter() - t0
    return publish_report(report.to_dict(), logger)


def summary_line(report: dict) -> str:
    """The job report in one line (logged at the end of every run: the Prefect UI's log of the run shows it)."""
    committed = report["committed"]
    return (f"job {report['job_id']} -> {report['dest']}: {len(committed)} committed, {len(report['skipped'])} "
            f"skipped, {len(report['failed'])} failed, {len(report.get('ignored', []))} ignored, "
            f"{len(report['warned'])} with warnings; {report['frames']} frames in {report['seconds']:.1f} s; "
            f"{sum(v['source_bytes'] for v in committed)} source bytes -> "
            f"{sum(v['archived_bytes'] for v in committed)} archived bytes")


def _md(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict) -> str:
    """The job report as Markdown (the run's Prefect artifact): the summary, then one table row per source and
    one line per ignored file."""
    lines = [f"# compress job `{report['job_id']}`", "", _md(summary_line(report)), "",
             "| source | status | video_id | frames | bytes in -> out | note |", "|---|---|---|---:|---|---|"]
    for v in report["videos"]:
        note = "; ".join([*([v["reason"]] if v["reason"] else []), *v.get("warnings", [])])
        sizes = f"{v['source_bytes']} -> {v['archived_bytes']}" if v["archived_bytes"] else str(v["source_bytes"] or "")
        lines.append(f"| {_md(v['source'])} | {v['status']}{' (!)' if v.get('warnings') else ''} | "
                     f"{v['video_id'] or ''} | {v['frames'] or ''} | {sizes} | {_md(note)} |")
    if report.get("ignored"):
        lines += ["", "Ignored files:", ""] + [f"- {_md(x['source'])}: {_md(x['reason'])}" for x in report["ignored"]]
    return "\n".join(lines) + "\n"


def artifact_key(job_id: str) -> str:
    """The Prefect artifact key of a job's report: `compress-<job id>` in the lowercase letters, digits and dashes
    Prefect allows."""
    return "compress-" + (re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-") or "job")


def _info_to_api(logger, message: str) -> None:
    """Log `message` at INFO to the run's Prefect log (what the UI shows) even where the `prefect` loggers are
    at WARNING (`pipeline.settings.apply_environment`'s default, which keeps the `progvc` terminal quiet): then
    the record goes to the run logger's own handlers (the API's) only, not to the console."""
    import logging

    if logger.isEnabledFor(logging.INFO):
        logger.info(message)
        return
    base = getattr(logger, "logger", logger)
    record = base.makeRecord(base.name, logging.INFO, __file__, 0, message, None, None,
                             extra=getattr(logger, "extra", None))
    for handler in base.handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


def publish_report(report: dict, logger) -> dict:
    """Log the one-line summary and create the run's Markdown artifact (key `artifact_key(job_id)`), so a
    scheduled run shows its counts in the Prefect UI (issue 16.9e). An API that refuses the artifact is a
    warning, not a failed job. Returns `report`."""
    _info_to_api(logger, summary_line(report))
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(report_markdown(report), key=artifact_key(report["job_id"]),
                                 description=summary_line(report))
    except Exception as exc:  # noqa: BLE001 - the job's work is done; only its UI summary is missing
        logger.warning("could not create the job report artifact: %s", exc)
    return report


def print_report(report: dict) -> None:
    """The job report as a Rich table on the terminal, then its warnings and the ignored files, loudly."""
    from rich.console import Console
    from rich.markup import escape

    from pipeline.term_table import Column, print_columns

    rows = report["videos"]
    notes = ["; ".join([*([v["reason"]] if v["reason"] else []), *v.get("warnings", [])]) for v in rows]
    # ids are never wrapped or cut: at a narrow terminal the frames and byte columns are left out instead
    cols = [
        Column("source", "source", [v["source"].rstrip("/").rsplit("/", 1)[-1] for v in rows], keep=True, flex=True),
        Column("status", "status", [v["status"] + (" (!)" if v.get("warnings") else "") for v in rows], keep=True),
        Column("video_id", "video_id", [v["video_id"] or "" for v in rows], keep=True),
        Column("frames", "frames", [str(v["frames"] or "") for v in rows], justify="right", priority=1),
        Column("bytes", "bytes in -> out", [f"{v['source_bytes']} -> {v['archived_bytes']}" if v["archived_bytes"]
                                            else str(v["source_bytes"] or "") for v in rows], priority=2),
    ]
    if any(notes):
        cols.append(Column("note", "note", notes, keep=True, flex=True))
    console = Console()
    print_columns(cols, title=f"job {report['job_id']} -> {report['dest']}", console=console,
                  dropped_hint="--json has every field")
    console.print(
        f"{len(report['committed'])} committed, {len(report['skipped'])} skipped, {len(report['failed'])} failed"
        f"{', ' + str(len(report.get('ignored', []))) + ' ignored' if report.get('ignored') else ''}; "
        f"{report['frames']} frames in {report['seconds']:.1f} s ({report['fps']:.1f} frames/s, "
        f"{report['actors']} actor(s), {report['startup_s']:.1f} s of it starting them)"
    )
    for v in report["videos"]:
        for w in v.get("warnings", []):
            console.print(f"[bold yellow]WARNING[/] {escape(v['source'])}: {escape(w)}", soft_wrap=True)
    for x in report.get("ignored", []):
        console.print(f"[yellow]ignored[/] {escape(x['source'])}: {escape(x['reason'])}", soft_wrap=True)
