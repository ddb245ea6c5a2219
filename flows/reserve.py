"""The `reserve` flow: re-serve an archived video from its first K scale layers on Ray codec actors.

manifest -> ranged reads of exactly the K layers' chunks (+ header) -> codec actors decode GOP runs
(untransmitted fine scales predicted by the context model) -> MP4/H.264 (or MKV/Y4M) via PyAV.

`progvc reserve` decodes in its own process by default (`pipeline.reserve.reserve_video`: no Ray, no
Prefect server); it runs this flow only with `--actors N` or `--ray-address` (long videos, a GPU cluster).
Both share `pipeline.reserve`'s fetch, header checks and report.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.settings import apply_environment

apply_environment()

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.archive_ops import only_store_faults, store_for  # noqa: E402
from pipeline.codec_api import DEFAULT_PREDICT  # noqa: E402
from pipeline.reserve import UNIT_FRAMES  # noqa: E402  (frames decoded per actor call)


@task(name="fetch-layers", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=only_store_faults,
      cache_policy=NO_CACHE)
def fetch_layers_task(dest: str, s3_endpoint: str | None, video_id: str, scales: int):
    """Ranged reads of the header and the chunks of scales 1..K; returns (Retrieved, layer bytes in manifest)."""
    from pipeline.reserve import fetch_layers

    return fetch_layers(store_for(dest, s3_endpoint), video_id, scales)


@task(name="decode-video", cache_policy=NO_CACHE)
def decode_video_task(pool, header, gop_chunks: list[list[bytes]], output: str, predict: str, seed: int = 0,
                      context: str = "") -> int:
    """Decode every GOP on the actors (runs of <= UNIT_FRAMES frames, bounded in flight; each decoded by
    `pipeline.stream.decode_run`, as any decoder does) and stream the frames in order into `output`.
    Returns frames written."""
    from fractions import Fraction

    from pipeline import video_io
    from pipeline.errors import StreamError
    from pipeline.stream import gop_runs
    from workers.requests import DecodeRequest

    calls = [(u, DecodeRequest(run, predict, seed, context))
             for u, run in enumerate(gop_runs(header, gop_chunks, UNIT_FRAMES))]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), refresh_per_second=4)
    bar = progress.add_task(f"decoding {context or 'video'} frames", total=header.frame_count)

    def ordered():
        buffered, nxt = {}, 0
        for u, frames, err in pool.map(calls):
            if err is not None:
                raise err if isinstance(err, StreamError) else StreamError(f"{context}: decoding failed: {err}")
            buffered[u] = frames
            while nxt in buffered:
                part = buffered.pop(nxt)
                yield from part
                progress.advance(bar, len(part))
                nxt += 1

    with progress:
        return video_io.write_video(output, ordered(), Fraction(header.fps_num, header.fps_den))


@flow(name="reserve")
def reserve(
    dest: str,
    video_id: str,
    scales: int,
    output: str,
    predict: str = DEFAULT_PREDICT,
    weights: str | None = None,
    s3_endpoint: str | None = None,
    device: str = "auto",
    actors: int = 0,
    seed: int = 0,
) -> dict:
    """Decode video `video_id` of archive `dest` from its first `scales` layers into `output`
    (.mp4/.mkv H.264, or .y4m). `predict`: how scales K+1..N are filled (argmax | sample | none; `seed`:
    GOP g samples with seed + g, as `progvc decode` does). The model is the one the stored header names
    (`pipeline.registry`), unless `weights` forces one (it must be that model); the coding mode (plain |
    keyframe with its `frame_scales`) is read from the header too: any K works for either mode. Returns a
    report: output path, model, mode, frames, size, bytes read vs the K layers' bytes."""
    from pipeline.catalog import resolve_video_id
    from pipeline.manifest import committed_video_ids
    from pipeline.reserve import report, stream_header
    from workers.pool import CodecPool

    t0 = time.perf_counter()
    video_id = resolve_video_id(committed_video_ids(store_for(dest, s3_endpoint)), video_id, dest)
    got, layer_bytes = fetch_layers_task(dest, s3_endpoint, video_id, scales)
    header, gop_chunks = stream_header(got, dest, video_id)
    pool = CodecPool(weights or header.model_id, n_actors=actors or min(2, len(header.gops)), device=device,
                     expect_model=header.model_id)
    try:
        out = Path(output)
        frames = decode_video_task(pool, header, gop_chunks, str(out), predict, seed, f"video {video_id}")
    finally:
        pool.close()
    return report(video_id, header, got, layer_bytes, out, scales, frames, t0)
