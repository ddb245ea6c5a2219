"""End to end: real Ray (2 actors), Prefect's test harness, SeaweedFS on loopback, tiny random codec.

Sources live on S3 (the actors download their own input), the archive too. One of the three sources is
a truncated MP4: it must be recorded as failed with a clear reason while the other two are committed.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline import video_io
from tests.fixtures_cluster import TINY_MODEL
from tests.fixtures_store import aws_env, new_bucket


def _clip(kind: int, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(kind)
    base = [[200, 90, 40], [30, 80, 200], [60, 170, 60]][kind % 3]
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        ramp = ((xx + 3 * t) % w)[..., None] * 0.6
        frames.append(np.clip(base + ramp + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def s3_sources(tmp_path_factory, s3_server):
    """Three sources uploaded under s3://<bucket>/raw/: two clips (one with a cut) and a truncated MP4."""
    import boto3

    d = tmp_path_factory.mktemp("e2e-src")
    a, b, bad = d / "a_cut.mp4", d / "b_plain.mp4", d / "c_corrupt.mp4"
    video_io.write_video(a, np.concatenate([_clip(0, 10), _clip(1, 8)]), fps=25)
    video_io.write_video(b, _clip(2, 12, h=40, w=56), fps=24)
    bad.write_bytes(a.read_bytes()[: a.stat().st_size // 2])  # moov atom lost: not decodable
    bucket = new_bucket(s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.access_key,
                      aws_secret_access_key=s3_server.secret_key, region_name="us-east-1")
    for f in (a, b, bad):
        s3.upload_file(str(f), bucket, f"raw/{f.name}")
    return {"bucket": bucket, "files": {f.name: f for f in (a, b, bad)}}


def test_compress_rerun_reserve_savings(s3_server, s3_sources, ray_session, prefect_harness, monkeypatch, tmp_path):
    aws_env(monkeypatch, s3_server)
    from flows.compress import compress
    from flows.reserve import reserve
    from flows.savings import savings
    from pipeline.archive import video_id_of
    from pipeline.store import open_store

    bucket = s3_sources["bucket"]
    dest = f"s3://{bucket}/archive"
    src = f"s3://{bucket}/raw/"
    rep = compress(sources=[src], dest=dest, job="e2e-1", actors=2, weights=TINY_MODEL, max_gop=8)

    assert rep["actors"] == 2
    status = {v["source"].rsplit("/", 1)[-1]: v for v in rep["videos"]}
    assert {k: v["status"] for k, v in status.items()} == {
        "a_cut.mp4": "committed", "b_plain.mp4": "committed", "c_corrupt.mp4": "failed"}
    reason = status["c_corrupt.mp4"]["reason"]
    assert "c_corrupt.mp4" in reason and ("damaged" in reason or "not a readable video" in reason), reason
    a = status["a_cut.mp4"]
    assert a["video_id"] == video_id_of(s3_sources["files"]["a_cut.mp4"])
    assert a["frames"] == 18 and a["gops"] >= 3  # cut at 10, max_gop 8 -> [0,8) [8,10) [10,18)

    store = open_store(dest)
    from pipeline import manifest

    fails = manifest.read_failures(store).to_pylist()
    assert len(fails) == 1 and fails[0]["source_uri"].endswith("c_corrupt.mp4") and fails[0]["job_id"] == "e2e-1"
    rows = manifest.read_manifest(store)
    assert set(rows.column("video_id").to_pylist()) == {a["video_id"], status["b_plain.mp4"]["video_id"]}

    # re-run: nothing re-encoded, nothing new written to videos/
    before = {o.key: (o.size, o.checksum) for o in store.list("videos/")}
    rep2 = compress(sources=[src], dest=dest, job="e2e-2", actors=2, weights=TINY_MODEL, max_gop=8)
    st2 = {v["source"].rsplit("/", 1)[-1]: v["status"] for v in rep2["videos"]}
    assert st2 == {"a_cut.mp4": "skipped", "b_plain.mp4": "skipped", "c_corrupt.mp4": "failed"}
    assert rep2["frames"] == 0
    assert {o.key: (o.size, o.checksum) for o in store.list("videos/")} == before
    assert not manifest.list_parts(store, "e2e-2")  # the re-run committed nothing

    # re-serve at K < N from exactly the K layers' bytes
    out = tmp_path / "a_k2.mp4"
    r = reserve(dest=dest, video_id=a["video_id"], scales=2, output=str(out), weights=TINY_MODEL, actors=2)
    assert r["n_scales"] == 4 and r["scales"] == 2
    assert r["layer_bytes_read"] == r["layer_bytes"] > 0
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert (s.codec_context.width, s.codec_context.height) == (64, 48)
    assert n == 18
    info = video_io.probe(out)
    assert info.frame_count == 18 and (info.width, info.height) == (64, 48)

    # savings: stored bytes equal the objects actually stored
    sv = savings(dest=dest, by="video")
    stored = sum(o.size for o in store.list("videos/"))
    assert sv["totals"]["stored_bytes"] == stored
    assert sv["totals"]["videos"] == 2
    full = {row["video_id"]: row["archived_bytes"] for row in sv["rows"] if row["scales"] == 4}
    assert sum(full.values()) == stored
