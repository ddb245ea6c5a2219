"""What a compress job report says about loss (issue 16.4), on real files made by PyAV, through the real
`compress` flow (real Ray, Prefect's test harness, tiny random codec): cut-off sources fail instead of being
committed shorter, empty files fail, audio is reported as not archived, files of a folder that are not
taken as video are listed as ignored, an archive larger than its source is flagged; MPEG-TS/M2TS sources
(issue 16.1) are committed with every frame."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import video_io
from tests.fixtures_cluster import TINY_MODEL
from tests.fixtures_store import aws_env, new_bucket


def _frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(40, 200, 3)
    return np.stack([np.clip(base + ((xx + 2 * t) % w)[..., None] * 0.8 + rng.normal(0, 3, (h, w, 3)), 0, 255)
                     for t in range(n)]).astype(np.uint8)


def _mux(path: Path, fmt: str, frames: np.ndarray, audio_s: float = 0.0, options: dict | None = None) -> Path:
    """H.264 (keyframe every 8 frames, B-frames) in `fmt`, plus `audio_s` s of AAC silence if asked."""
    h, w = frames.shape[1:3]
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"g": "8", "keyint_min": "8", "bf": "2"}
        a = out.add_stream("aac", rate=48000) if audio_s else None
        if a is not None:
            a.layout = "mono"
        for rgb in frames:
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts = None
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            for k in range(int(audio_s * 48000 / 1024)):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, k * 1024
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report-src")
    _mux(d / "with_audio.mkv", "matroska", _frames(12, seed=1), audio_s=0.6)
    _mux(d / "broadcast.ts", "mpegts", _frames(20, seed=2))
    _mux(d / "bluray.m2ts", "mpegts", _frames(18, seed=3), options={"mpegts_m2ts_mode": "1"})
    full = _mux(d / "full.mkv", "matroska", _frames(24, seed=4))
    (d / "cut.mkv").write_bytes(full.read_bytes()[: full.stat().st_size * 80 // 100])
    full.unlink()
    video_io.write_video(d / "whole.y4m", _frames(10, seed=5), 25)
    y4m = (d / "whole.y4m").read_bytes()
    (d / "cut.y4m").write_bytes(y4m[: len(y4m) - 500])  # the last frame incomplete
    video_io.write_video(d / "dot.y4m", np.full((1, 2, 2, 3), 100, np.uint8), 25)  # 66 bytes: archive is bigger
    (d / "empty.y4m").write_bytes(b"")
    (d / "empty.mp4").write_bytes(b"")
    (d / "still.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (d / "camera.mxf").write_bytes(bytes(256))
    (d / "notes.txt").write_text("not a video")
    return d


@pytest.mark.timeout(600)
def test_job_report_lists_loss(mixed_folder, tmp_path, ray_session, prefect_harness, capsys):
    from flows.cli import main
    from flows.compress import compress, print_report
    from pipeline import manifest
    from pipeline.store import open_store

    dest = tmp_path / "archive"
    rep = compress(sources=[str(mixed_folder)], dest=str(dest), job="report-1", actors=2, weights=TINY_MODEL,
                   max_gop=8)
    by = {Path(v["source"]).name: v for v in rep["videos"]}
    assert set(by) == {"with_audio.mkv", "broadcast.ts", "bluray.m2ts", "cut.mkv", "whole.y4m", "cut.y4m",
                       "dot.y4m", "empty.y4m", "empty.mp4"}

    # MPEG-TS / M2TS: committed with every frame
    assert (by["broadcast.ts"]["status"], by["broadcast.ts"]["frames"]) == ("committed", 20), by["broadcast.ts"]
    assert (by["bluray.m2ts"]["status"], by["bluray.m2ts"]["frames"]) == ("committed", 18), by["bluray.m2ts"]
    assert (by["whole.y4m"]["status"], by["whole.y4m"]["frames"]) == ("committed", 10)
    # cut-off copies fail, naming the file and the truncation: nothing shorter is committed
    for name in ("cut.mkv", "cut.y4m"):
        assert by[name]["status"] == "failed" and "truncated:" in by[name]["reason"], by[name]
        assert name in by[name]["reason"]
    # empty files fail as empty (not "skipped: same content" as each other)
    for name in ("empty.y4m", "empty.mp4"):
        assert by[name]["status"] == "failed" and "empty file (0 bytes)" in by[name]["reason"], by[name]
    # audio is not archived: said per video
    assert by["with_audio.mkv"]["status"] == "committed"
    assert any("audio not archived" in w and "aac" in w for w in by["with_audio.mkv"]["warnings"])
    assert not any("audio" in w for w in by["broadcast.ts"]["warnings"])
    # an archive larger than its source is flagged
    assert by["dot.y4m"]["status"] == "committed"
    assert by["dot.y4m"]["archived_bytes"] > by["dot.y4m"]["source_bytes"] == 66
    assert any("archive larger than the source" in w for w in by["dot.y4m"]["warnings"]), by["dot.y4m"]
    for v in rep["committed"]:
        assert (v["archived_bytes"] > v["source_bytes"]) == any("larger than the source" in w for w in v["warnings"])
    assert {Path(v["source"]).name for v in rep["warned"]} >= {"with_audio.mkv", "dot.y4m"}
    # every other file of the folder is listed as ignored, with the reason
    ignored = {Path(x["source"]).name: x["reason"] for x in rep["ignored"]}
    assert set(ignored) == {"still.png", "camera.mxf", "notes.txt"}
    assert "'.mxf'" in ignored["camera.mxf"] and "not a video file type" in ignored["still.png"]
    # the failures are recorded in the archive, the manifest has only the committed ones
    store = open_store(str(dest))
    assert {Path(f["source_uri"]).name for f in manifest.read_failures(store, "report-1").to_pylist()} == {
        "cut.mkv", "cut.y4m", "empty.y4m", "empty.mp4"}
    assert manifest.committed_video_ids(store) == {v["video_id"] for v in rep["committed"]}

    # the terminal report says it loudly
    capsys.readouterr()
    print_report(rep)
    out = capsys.readouterr().out
    assert "WARNING" in out and "audio not archived" in out and "3 ignored" in out
    assert "ignored" in out and "camera.mxf" in out and "truncated" in out

    # the CLI: exit 1 (failures), and --json carries warnings and ignored files
    rc = main(["compress", str(mixed_folder), "--dest", str(dest), "--weights", TINY_MODEL, "--actors", "2",
               "--gop", "8", "--job", "report-2", "--json"])
    assert rc == 1
    out = capsys.readouterr().out
    again = json.loads(out[out.index("\n{") + 1:])
    assert {Path(x["source"]).name for x in again["ignored"]} == {"still.png", "camera.mxf", "notes.txt"}
    assert {Path(v["source"]).name for v in again["skipped"]} == {"with_audio.mkv", "broadcast.ts", "bluray.m2ts",
                                                                  "whole.y4m", "dot.y4m"}


def test_s3_sources_ignored_listing_and_audio_check_by_ranges(s3_server, monkeypatch, tmp_path):
    """On S3: non-video objects of a prefix are listed as ignored, and a source's audio is seen from its
    headers through ranged reads."""
    import boto3

    from flows.compress import source_warnings
    from flows.sources import open_source, scan_sources
    from pipeline.video_io import stream_summary

    aws_env(monkeypatch, s3_server)
    bucket = new_bucket(s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.access_key,
                      aws_secret_access_key=s3_server.secret_key, region_name="us-east-1")
    clip = _mux(tmp_path / "talk.mp4", "mp4", _frames(60, 64, 96), audio_s=2.4)
    s3.upload_file(str(clip), bucket, "raw/talk.mp4")
    s3.put_object(Bucket=bucket, Key="raw/cover.png", Body=b"\x89PNG")
    s3.put_object(Bucket=bucket, Key="raw/sub/", Body=b"")  # a folder marker: neither source nor ignored
    found, ignored = scan_sources([f"s3://{bucket}/raw/"])
    assert found == [f"s3://{bucket}/raw/talk.mp4"]
    assert [x[0] for x in ignored] == [f"s3://{bucket}/raw/cover.png"]

    f = open_source(found[0])
    try:
        streams = stream_summary(f)
    finally:
        f.close()
    assert streams.video == ("h264",) and streams.audio == ("aac",)
    ws = source_warnings(found[0], None, clip.stat().st_size, 10)
    assert len(ws) == 1 and ws[0].startswith("audio not archived: 1 audio stream(s) (aac)")
    ws = source_warnings(f"s3://{bucket}/raw/missing.mp4", None, 100, 200)
    assert "could not check" in ws[0] and "larger than the source" in ws[1]
