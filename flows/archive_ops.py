"""What the flows ask of the archive, in terms of `pipeline.archive` / `pipeline.manifest`.

Thin: it opens stores and hands a video's GOP results from the actors to the archive's commit protocol
(`pipeline.archive.ArchiveWriter`: layer k = chunk k of every GOP in GOP order, write -> verify -> manifest
part last).
"""

from __future__ import annotations

import os
from functools import lru_cache

from pipeline import manifest
from pipeline.errors import StoreError
from pipeline.store import Store, open_store


def only_store_faults(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry store faults (outage, timeout, throttling), never bad input."""
    try:
        state.result()
    except StoreError:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


def store_for(dest: str, s3_endpoint: str | None = None) -> Store:
    """One store object per (dest, endpoint, AWS settings in the environment) per process; boto3 clients
    are reusable across threads, and a change of endpoint or credentials gets a new one."""
    env = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION"))
    return _store(dest, s3_endpoint, env)


@lru_cache(maxsize=16)
def _store(dest: str, s3_endpoint: str | None, _env: tuple) -> Store:
    return open_store(dest, s3_endpoint=s3_endpoint)


def committed_video_ids(dest: str, s3_endpoint: str | None = None) -> set[str]:
    """Video ids the archive has committed (a re-run skips them)."""
    return manifest.committed_video_ids(store_for(dest, s3_endpoint))


def record_failure(dest: str, s3_endpoint: str | None, job_id: str, source: str, video_id: str | None,
                   reason: str) -> None:
    """Record that `job_id` could not archive `source`, with the reason (one failures part)."""
    text = reason if video_id is None else f"{reason} (video {video_id})"
    manifest.record_failures(store_for(dest, s3_endpoint), job_id, [(source, text)])


def commit_video(dest: str, s3_endpoint: str | None, job_id: str, plan, results: list, n_keep: int,
                 model_id: str, scales: list[int], tile: int, mode: str = "plain",
                 frame_scales: int | None = None) -> int:
    """Write header + layers 1..n_keep of one video, verify them, commit its manifest rows.

    `plan`: the actor's `SourcePlan`; `results`: its `GopResult`s in GOP order; `mode`/`frame_scales`:
    how they were encoded (recorded in the header and the manifest), as are the encoder settings the actors
    report (`GopResult.encoder`: header `encoder` field, manifest `fidelity`/`effort`). Returns the archived
    bytes (header + kept layers)."""
    from fractions import Fraction

    from pipeline.archive import ArchiveWriter, GopData, SourceInfo
    from pipeline.codec_api import CodecInfo
    from pipeline.errors import ProGVCError
    from pipeline.pgv import GopEntry
    from pipeline.stream import build_header

    encoders = [getattr(r, "encoder", None) for r in results]
    if any(e != encoders[0] for e in encoders):
        raise ProGVCError(f"{plan.source}: its GOPs were encoded with different encoder settings "
                          f"({encoders[0]} vs {next(e for e in encoders if e != encoders[0])}); re-run the job")
    header = build_header(CodecInfo(model_id, "", tuple(scales), tile), plan.width, plan.height,
                          [GopEntry(r.first_frame, r.frame_count, True, r.generate) for r in results],
                          Fraction(plan.fps_num, plan.fps_den), frame_scales, mode, encoders[0])
    gops = [
        GopData(first_frame=r.first_frame, frame_count=r.frame_count, keyframe=True,
                chunks=r.chunks[:n_keep], token_counts=r.token_counts[:n_keep], checksums=r.checksums[:n_keep],
                frames_coded=[header.coded_frames(g, k) for k in range(1, n_keep + 1)])
        for g, r in enumerate(results)
    ]
    source = SourceInfo(uri=plan.source, size_bytes=plan.size_bytes, width=plan.width, height=plan.height,
                        fps=plan.fps_num / plan.fps_den, video_bytes=getattr(plan, "video_bytes", None) or None)
    # The flow read the committed set once at job start and skipped those videos; re-reading the whole
    # manifest here for every video would make a job quadratic in its size. A video committed meanwhile by
    # another job is harmless: readers keep one commit per video (pipeline.manifest.effective_rows).
    writer = ArchiveWriter(store_for(dest, s3_endpoint), job_id, committed=set())
    rows = writer.archive_video(plan.video_id, header.to_bytes(), gops, source, model_id,
                                quality=video_quality(results), mode=mode, encoder=encoders[0])
    return int(sum(rows.column("byte_length").to_pylist()))


def video_quality(results: list) -> dict[int, dict[str, float]] | None:
    """Per scale count K, the mean over all frames of the video of PSNR-Y and MS-SSIM (from the actors'
    per-GOP sums when the job measured quality), in the form `ArchiveWriter` takes; None otherwise."""
    if not results or not all(r.extra.get("psnr_sum") for r in results):
        return None
    frames = sum(r.frame_count for r in results)
    n = min(len(r.extra["psnr_sum"]) for r in results)
    return {
        k + 1: {
            "psnr": sum(r.extra["psnr_sum"][k] for r in results) / frames,
            "ms_ssim": sum(r.extra["ms_ssim_sum"][k] for r in results) / frames,
        }
        for k in range(n)
    }
