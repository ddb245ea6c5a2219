"""One real compress run (real Ray, Prefect's test harness, PyAV-made sources, tiny random codec) for issue 16
items 8, 9c and 9e: the source's video-stream bytes are measured at compress time into the manifest (savings
against it and against raw 4:2:0), a variable-frame-rate source is committed with a warning, and every run
logs a one-line summary and creates a Markdown artifact in Prefect."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.compute as pc
import pytest

from pipeline import video_io
from tests.fixtures_cluster import TINY_MODEL


def _frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(40, 200, 3)
    return np.stack([np.clip(base + ((xx + 2 * t) % w)[..., None] * 0.8 + rng.normal(0, 3, (h, w, 3)), 0, 255)
                     for t in range(n)]).astype(np.uint8)


def _mkv(path: Path, frames: np.ndarray, pts_ms: list[int] | None = None, audio: bool = False) -> Path:
    """H.264 in Matroska at 1 ms timestamps (`pts_ms`: each frame's, default 40 ms apart), AAC silence if asked."""
    pts_ms = pts_ms or [40 * i for i in range(len(frames))]
    with av.open(str(path), "w", format="matroska") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        a = out.add_stream("aac", rate=48000) if audio else None
        if a is not None:
            a.layout = "mono"
        for rgb, p in zip(frames, pts_ms):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = p, Fraction(1, 1000)
            for pkt in v.encode(f):
                out.mux(pkt)
        for pkt in v.encode():
            out.mux(pkt)
        if a is not None:
            for k in range(12):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, k * 1024
                for pkt in a.encode(af):
                    out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return path


def _video_packet_bytes(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(p.size for p in c.demux(c.streams.video[0]))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("extras-src")
    _mkv(d / "vfr.mkv", _frames(8, seed=1), pts_ms=[0, 40, 50, 130, 140, 300, 310, 320])
    _mkv(d / "talk.mkv", _frames(12, seed=2), audio=True)
    video_io.write_video(d / "raw.y4m", _frames(10, seed=3), 25)
    return d


@pytest.mark.timeout(600)
def test_compress_measures_video_stream_warns_vfr_and_reports_to_prefect(sources, tmp_path, ray_session,
                                                                         prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

    from flows.compress import artifact_key, compress
    from pipeline import manifest
    from pipeline.savings import savings
    from pipeline.store import open_store

    dest = tmp_path / "archive"
    rep = compress(sources=[str(sources)], dest=str(dest), job="Extras_1", actors=2, weights=TINY_MODEL,
                   max_gop=8)
    by = {Path(v["source"]).name: v for v in rep["videos"]}
    assert {k: v["status"] for k, v in by.items()} == {"vfr.mkv": "committed", "talk.mkv": "committed",
                                                      "raw.y4m": "committed"}

    # 9c: the VFR source is archived with every frame and a warning; constant-rate ones get none
    assert by["vfr.mkv"]["frames"] == 8
    vfr = [w for w in by["vfr.mkv"]["warnings"] if w.startswith("variable frame rate")]
    assert len(vfr) == 1 and "10-160 ms" in vfr[0] and "not kept" in vfr[0], by["vfr.mkv"]["warnings"]
    assert not any("variable frame rate" in w for n in ("talk.mkv", "raw.y4m") for w in by[n]["warnings"])

    # 8: the video stream's bytes are in the manifest (every row of the video), measured at compress time
    rows = manifest.read_manifest(open_store(str(dest)))
    want = {"vfr.mkv": _video_packet_bytes(sources / "vfr.mkv"), "talk.mkv": _video_packet_bytes(sources / "talk.mkv"),
            "raw.y4m": 10 * 48 * 32 * 3 // 2}
    assert want["talk.mkv"] < (sources / "talk.mkv").stat().st_size  # audio and container are not counted
    for name, v in by.items():
        vrows = rows.filter(pc.equal(rows.column("video_id"), v["video_id"]))
        assert set(vrows.column("video_stream_bytes").to_pylist()) == {want[name]}, name
    per_video = savings(rows, by="video")
    for r in per_video.to_pylist():
        name = Path(r["source_uri"]).name
        assert r["video_stream_bytes"] == want[name]
        assert r["ratio_video_stream"] == pytest.approx(want[name] / r["archived_bytes"])
        frames = by[name]["frames"]
        assert r["raw420_bytes"] == frames * 48 * 32 * 3 // 2
        assert r["ratio_raw420"] == pytest.approx(r["raw420_bytes"] / r["archived_bytes"])
    raw = per_video.filter(pc.equal(per_video.column("source_uri"), str(sources / "raw.y4m"))).to_pylist()[0]
    assert raw["ratio_video_stream"] == pytest.approx(raw["ratio_raw420"])  # y4m: its stream is raw 4:2:0
    overall = savings(rows, by="scale").to_pylist()[-1]
    assert overall["video_stream_bytes"] == sum(want.values())

    # 9e: a Markdown artifact with the report and a one-line summary in the run's logs
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            artifact_key("Extras_1")])))
        assert artifact_key("Extras_1") == "compress-extras-1" and len(arts) == 1, arts
        art = arts[0]
        assert art.type == "markdown" and art.flow_run_id is not None
        md = art.data
        assert "3 committed, 0 skipped, 0 failed" in md and "vfr.mkv" in md and "variable frame rate" in md
        assert by["talk.mkv"]["video_id"] in md and "audio not archived" in md
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[art.flow_run_id])))
    summary = [lg.message for lg in logs if lg.message.startswith("job Extras_1 -> ")]
    assert len(summary) == 1, [lg.message for lg in logs]
    assert f"3 committed, 0 skipped, 0 failed, 0 ignored, {len(rep['warned'])} with warnings" in summary[0]
