"""Re-serving an archived video from its first K scale layers, as plain library calls (no Ray, no Prefect).

    store = open_store(dest)
    rep = reserve_video(store, "3f9a2c", scales=2, output="out.mp4")   # a unique id prefix is enough

manifest -> ranged reads of exactly the K layers' chunks + header (`pipeline.retrieval`) -> the stream
API's one decode loop (`pipeline.stream.decode_run`, GOP g seeded with `seed + g`; untransmitted fine
scales predicted) in this process -> MP4/H.264 (or MKV/Y4M) via PyAV. `progvc reserve` runs this by
default (issue 16.6: a single video does not need a Ray cluster or a Prefect server); the `reserve` flow
(`flows.reserve`, Ray codec actors) shares `fetch_layers`, `stream_header` and `report` with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.codec_api import DEFAULT_PREDICT
from pipeline.errors import StreamError
from pipeline.pgv import StreamHeader
from pipeline.retrieval import Retrieved, fetch, plan_retrieval
from pipeline.store import Store

UNIT_FRAMES = 64  # frames decoded per unit of work (bounds memory per call; an actor call in the flow)


def fetch_layers(store: Store, video_id: str, scales: int, rows: pa.Table | None = None) -> tuple[Retrieved, int]:
    """Ranged reads of the header and the chunks of scales 1..K of `video_id` (a full id; `rows`: effective
    manifest rows when already read). Returns (Retrieved, bytes of those layers in the manifest)."""
    rows = rows if rows is not None else mf.read_manifest(store, video_ids=[video_id])
    rows = rows.filter(pc.equal(rows.column("video_id"), video_id))
    plan = plan_retrieval(rows, video_id, scales)
    layers = rows.filter(pc.and_(pc.greater(rows.column("scale"), mf.HEADER_SCALE),
                                 pc.less_equal(rows.column("scale"), scales)))
    return fetch(store, plan), int(pc.sum(layers.column("byte_length")).as_py() or 0)


def stream_header(got: Retrieved, where: str, video_id: str) -> tuple[StreamHeader, list[list[bytes]]]:
    """The stream header of fetched layers and their chunks per GOP; StreamError when the manifest and the
    header disagree (a damaged archive)."""
    if got.header is None:
        raise StreamError(f"video {video_id} in {where}: the manifest has no header row; the archive is damaged")
    header = StreamHeader.from_bytes(got.header, source=f"{where}/videos/{video_id}/header.bin")
    gop_chunks = got.gop_chunks()
    if len(gop_chunks) != len(header.gops):
        raise StreamError(f"video {video_id}: header lists {len(header.gops)} GOPs, the manifest {len(gop_chunks)}")
    return header, gop_chunks


def report(video_id: str, header: StreamHeader, got: Retrieved, layer_bytes: int, output: str | Path, scales: int,
           frames: int, t0: float) -> dict:
    """What `progvc reserve` prints and the flow returns."""
    return {
        "video_id": video_id,
        "model_id": header.model_id,
        "output": str(Path(output).resolve()),
        "scales": scales,
        "n_scales": header.n_scales,
        "mode": header.mode,
        "frame_scales": header.frame_scales,
        "frames": frames,
        "width": header.width,
        "height": header.height,
        "bytes_read": got.header_bytes_read + got.layer_bytes_read,
        "layer_bytes_read": got.layer_bytes_read,
        "layer_bytes": layer_bytes,
        "requests": got.requests,
        "seconds": time.perf_counter() - t0,
    }


def local_device(device: str = "auto") -> str:
    """`auto` -> cuda when this process sees a GPU, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def iter_frames(codec, header: StreamHeader, gop_chunks: list[list[bytes]], predict: str = DEFAULT_PREDICT,
                seed: int = 0,
                context: str = "stream") -> Iterator[np.ndarray]:
    """Every frame in order, decoded in this process run by run (`pipeline.stream.gop_runs`/`decode_run`:
    the decode loop every decoder uses)."""
    from pipeline.stream import decode_run, gop_runs

    for run in gop_runs(header, gop_chunks, UNIT_FRAMES):
        yield from decode_run(codec, run, predict, seed, context)


def reserve_video(store: Store, video_id: str, scales: int, output: str | Path, predict: str = DEFAULT_PREDICT,
                  weights: str | None = None, device: str = "auto", seed: int = 0, rows: pa.Table | None = None,
                  progress: bool = True, where: str | None = None, threads: int | None = 1) -> dict:
    """Decode video `video_id` (a full id or a unique prefix) of `store` from its first `scales` layers into
    `output` (.mp4/.mkv H.264, or .y4m), in this process. The model is the one the stored header names,
    unless `weights` forces one (it must be that model). `where`: the archive as errors name it (default: the
    store's URI). `threads`: torch CPU threads (1, as `progvc decode` and the codec actors: the work per op is
    small, and more threads than free cores make a shared machine much slower; None leaves torch's setting;
    the pixels do not depend on it). Returns `report(...)`."""
    from fractions import Fraction

    from pipeline import video_io
    from pipeline.catalog import resolve_video_id
    from pipeline.stream import open_for_stream, progress_bar

    t0 = time.perf_counter()
    rows = rows if rows is not None else mf.read_manifest(store)
    where = where or store.uri
    video_id = resolve_video_id(rows, video_id, where)
    got, layer_bytes = fetch_layers(store, video_id, scales, rows)
    header, gop_chunks = stream_header(got, where, video_id)
    if threads:
        import torch

        torch.set_num_threads(max(1, threads))
    codec = open_for_stream(header, weights, local_device(device), source=f"video {video_id}")
    frames = iter_frames(codec, header, gop_chunks, predict, seed, f"video {video_id}")
    with progress_bar(header.frame_count, f"decoding video {video_id}", progress) as bar:
        def counted():
            for f in frames:
                yield f
                bar.update(1)

        n = video_io.write_video(output, counted(), Fraction(header.fps_num, header.fps_den))
    return report(video_id, header, got, layer_bytes, output, scales, n, t0)
