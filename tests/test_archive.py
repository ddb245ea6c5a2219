"""Archive commit protocol, partial retrieval, prune, concurrency and crash recovery — on a local dir and on
SeaweedFS (same tests, `store_uri` fixture)."""

from __future__ import annotations

import threading
import zlib

import pyarrow.compute as pc
import pytest

from pipeline import manifest as mf
from pipeline.archive import ArchiveWriter, header_key, layer_key, prune, video_id_of
from pipeline.errors import ManifestError, StoreError
from pipeline.retrieval import fetch, plan_retrieval
from pipeline.savings import savings, stored_totals
from pipeline.store import S3Store, StoreConfig, open_store
from tests.fixtures_store import aws_env, synthetic_video


def expected_chunk(video, gop_index, scale):
    vid, header, gops, _ = video
    return header if scale == 0 else gops[gop_index].chunks[scale - 1]


def assert_rows_point_at_right_bytes(store, rows, videos_by_id):
    """Every manifest row's range holds exactly the chunk it describes; every object is whole."""
    sizes = {}
    for r in rows.to_pylist():
        video = videos_by_id[r["video_id"]]
        want = expected_chunk(video, r["gop_index"], r["scale"])
        assert r["byte_length"] == len(want)
        assert store.get_range(r["layer_key"], r["byte_offset"], r["byte_length"]) == want
        sizes[r["layer_key"]] = max(sizes.get(r["layer_key"], 0), r["byte_offset"] + r["byte_length"])
    for key, size in sizes.items():
        assert store.head(key).size == size, key


def test_write_commit_round_trip(any_store):
    video = synthetic_video(1, n_gops=3, n_scales=4)
    vid, header, gops, source = video
    w = ArchiveWriter(any_store, "job-1")
    rows = w.write_video(vid, header, gops, source, "model0123456789ab", quality={2: {"psnr": 30.5}})
    assert rows.num_rows == 1 + 3 * 4
    assert set(rows.column_names) >= {"job_id", "video_id", "source_uri", "source_bytes", "width", "height",
                                      "fps", "gop_index", "first_frame", "frame_count", "keyframe", "scale",
                                      "layer_key", "byte_offset", "byte_length", "token_count", "checksum",
                                      "model_id", "created_at", "psnr", "ms_ssim", "vmaf"}
    part = w.commit(rows)
    assert part.startswith("manifests/job-1/part-") and part.endswith(".parquet")
    got = mf.read_manifest(any_store)
    assert got.num_rows == 13 and set(got.column("job_id").to_pylist()) == {"job-1"}
    assert_rows_point_at_right_bytes(any_store, got, {vid: video})
    layer2 = got.filter(pc.equal(got.column("scale"), 2))
    assert layer2.column("psnr").to_pylist() == [30.5] * 3
    assert any_store.get(layer_key(vid, 2)) == b"".join(g.chunks[1] for g in gops)
    assert any_store.get(header_key(vid)) == header
    assert w.is_committed(vid) and vid in mf.committed_video_ids(any_store)
    with pytest.raises(ManifestError, match="already archived"):
        w.write_video(vid, header, gops, source, "model0123456789ab")


def test_reader_never_sees_uncommitted(any_store):
    video = synthetic_video(2)
    vid, header, gops, source = video
    w = ArchiveWriter(any_store, "job-a")
    rows = w.write_video(vid, header, gops, source, "m")
    # layers are stored and verified, but nothing is committed: readers see nothing
    assert any_store.head(layer_key(vid, 1)) is not None
    assert mf.read_manifest(any_store).num_rows == 0
    assert vid not in mf.committed_video_ids(any_store)
    assert not ArchiveWriter(any_store, "job-b").is_committed(vid)
    with pytest.raises(ManifestError, match=f"video {vid} has no committed manifest rows"):
        plan_retrieval(mf.read_manifest(any_store), vid, scales=2)
    # a stray non-part object in manifests/ (e.g. a half-written upload under another name) is ignored
    any_store.put("manifests/job-a/.part-x.parquet.tmp", b"garbage")
    any_store.put("manifests/job-a/notes.txt", b"garbage")
    assert mf.read_manifest(any_store).num_rows == 0
    w.commit(rows)
    assert mf.read_manifest(any_store).num_rows == rows.num_rows


def test_crashed_run_leftovers_are_overwritten_or_kept(any_store):
    video = synthetic_video(3, n_scales=3)
    vid, header, gops, source = video
    # a crashed run left layer 1 complete (same bytes) and layer 2 with other bytes (e.g. another model)
    any_store.put(layer_key(vid, 1), b"".join(g.chunks[0] for g in gops))
    any_store.put(layer_key(vid, 2), b"stale bytes of another encoding")
    w = ArchiveWriter(any_store, "rerun")
    rows = w.write_video(vid, header, gops, source, "m")
    assert layer_key(vid, 1) in w.last_stats.kept
    assert layer_key(vid, 2) in w.last_stats.uploaded
    w.commit(rows)
    assert_rows_point_at_right_bytes(any_store, mf.read_manifest(any_store), {vid: video})


def test_reordered_chunks_in_a_layer_object_are_refused(any_store):
    """Two equal-length GOP chunks swapped inside `layer-1.bin` keep every byte range and payload CRC valid,
    so only the manifest can tell: fetch compares each chunk's header with its manifest row."""
    from pipeline.codec.container import pack_chunk, parse_chunk
    from pipeline.errors import StreamError

    vid, header, gops, source = synthetic_video(5, n_gops=2, n_scales=2, chunk_base=100)
    a, _ = parse_chunk(gops[0].chunks[0])
    b, _ = parse_chunk(gops[1].chunks[0])
    # make GOP 1's first chunk exactly as long as GOP 0's, so the swap keeps every offset
    payload = b.payload[: len(a.payload)].ljust(len(a.payload), b"x")
    gops[1].chunks[0] = pack_chunk(1, b.token_count, b.token_crc, payload)
    ArchiveWriter(any_store, "job-swap").archive_video(vid, header, gops, source, "m")
    rows = mf.read_manifest(any_store)
    assert len(fetch(any_store, plan_retrieval(rows, vid, scales=2)).chunks) == 4
    any_store.put(layer_key(vid, 1), gops[1].chunks[0] + gops[0].chunks[0])
    with pytest.raises(StreamError, match="GOP 0 scale 1: the chunk does not match its manifest row"):
        fetch(any_store, plan_retrieval(rows, vid, scales=2))


def test_partial_retrieval_reads_only_k_layers(any_store):
    """Bytes the server sent for K scales ÷ bytes of those K layers <= 1.01 (here exactly 1); header and
    manifest bytes are reported apart."""
    videos = [synthetic_video(s, n_gops=6, n_scales=6, chunk_base=400) for s in (10, 11)]
    w = ArchiveWriter(any_store, "job-r")
    for vid, header, gops, source in videos:
        w.archive_video(vid, header, gops, source, "m")
    vid, header, gops, _ = videos[0]
    sent = []  # Content-Length of every GET answer, counted at the HTTP layer (S3 only)
    if isinstance(any_store, S3Store):
        def count(http_response, **_):
            sent.append(int(http_response.headers["content-length"]))
        any_store.client.meta.events.register("after-call.s3.GetObject", count)
    any_store.reset_counters()
    read = mf.read_parts(any_store)
    rows = mf.effective_rows(read.table)
    manifest_bytes = any_store.bytes_read
    assert read.bytes_read == manifest_bytes > 0 and read.parts == 2
    for k in range(1, 7):
        sent.clear()
        any_store.reset_counters()
        plan = plan_retrieval(rows, vid, scales=k)
        assert len(plan) == 1 + k  # header + one merged read per layer
        got = fetch(any_store, plan)
        layers_bytes = sum(len(g.chunks[s]) for g in gops for s in range(k))
        assert got.header == header and got.header_bytes_read == len(header)
        assert got.layer_bytes_read == layers_bytes
        assert got.gop_chunks() == [list(g.chunks[:k]) for g in gops]
        server_bytes = any_store.bytes_read - len(header)
        assert server_bytes / layers_bytes <= 1.01
        if isinstance(any_store, S3Store):
            assert sum(sent) == any_store.bytes_read == layers_bytes + len(header)
            assert len(sent) == len(plan)


def test_partial_retrieval_frame_range(any_store):
    video = synthetic_video(12, n_gops=6, n_scales=3, gop_len=10)
    vid, header, gops, source = video
    ArchiveWriter(any_store, "j").archive_video(vid, header, gops, source, "m")
    rows = mf.read_manifest(any_store)
    plan = plan_retrieval(rows, vid, scales=2, frames=(15, 31), header=False)  # GOPs 1, 2, 3
    assert len(plan) == 2 and all(len(r.parts) == 3 for r in plan)
    assert [p.gop_index for p in plan[0].parts] == [1, 2, 3]
    got = fetch(any_store, plan)
    assert got.header is None
    assert sorted(got.chunks) == [(g, s) for g in (1, 2, 3) for s in (1, 2)]
    assert all(got.chunks[(g, s)] == gops[g].chunks[s - 1] for g, s in got.chunks)
    with pytest.raises(ManifestError, match="select no GOP"):
        plan_retrieval(rows, vid, scales=1, frames=(60, 70))
    with pytest.raises(ManifestError, match="scales 1..3"):
        plan_retrieval(rows, vid, scales=4)


def test_prune(any_store):
    videos = {v[0]: v for v in (synthetic_video(s, n_gops=3, n_scales=5) for s in (20, 21, 22))}
    w = ArchiveWriter(any_store, "job-p")
    for vid, header, gops, source in videos.values():
        w.archive_video(vid, header, gops, source, "m")
    ids = sorted(videos)
    before = stored_totals(mf.read_manifest(any_store))
    report = prune(any_store, keep_scales=3, video_ids=ids[:2])
    assert sorted(report.video_ids) == ids[:2]
    assert sorted(report.deleted_keys) == sorted(layer_key(v, k) for v in ids[:2] for k in (4, 5))
    assert all(any_store.head(k) is None for k in report.deleted_keys)
    rows = mf.read_manifest(any_store)
    after = stored_totals(rows)
    assert before["stored_bytes"] - after["stored_bytes"] == report.freed_bytes > 0
    # re-serving above K says clearly what happened; at K it works
    with pytest.raises(ManifestError, match=rf"scales 4\.\. of video {ids[0]} were pruned on .*--scales <= 3"):
        plan_retrieval(rows, ids[0], scales=5)
    got = fetch(any_store, plan_retrieval(rows, ids[0], scales=3))
    assert got.gop_chunks() == [list(g.chunks[:3]) for g in videos[ids[0]][2]]
    assert len(fetch(any_store, plan_retrieval(rows, ids[2], scales=5)).chunks) == 15  # untouched video
    # savings reflect it
    per_video = savings(rows, by="video")
    v0 = per_video.filter(pc.equal(per_video.column("video_id"), ids[0]))
    assert v0.column("stored").to_pylist() == [True, True, True, False, False]
    assert v0.column("stored_bytes")[0].as_py() == v0.column("archived_bytes")[2].as_py()
    # pruning again is a no-op; all remaining videos to 2
    again = prune(any_store, keep_scales=3, video_ids=ids[:2])
    assert again.part_key is None and again.deleted_keys == []
    prune(any_store, keep_scales=2)
    assert {o.key for o in any_store.list("videos/")} == {header_key(v) for v in ids} | {
        layer_key(v, k) for v in ids for k in (1, 2)}
    with pytest.raises(ManifestError, match="not in the archive"):
        prune(any_store, keep_scales=1, video_ids=["nope"])


def test_savings_equal_stored_object_sizes(any_store):
    videos = [synthetic_video(s, n_gops=4, n_scales=4) for s in (30, 31, 32)]
    w = ArchiveWriter(any_store, "job-s")
    for vid, header, gops, source in videos:
        w.archive_video(vid, header, gops, source, "m")
    rows = mf.read_manifest(any_store)
    objects = sum(o.size for o in any_store.list("videos/"))
    per_video = savings(rows, by="video")
    full = per_video.filter(pc.equal(per_video.column("scales"), 4))
    assert sum(full.column("archived_bytes").to_pylist()) == objects == stored_totals(rows)["stored_bytes"]
    per_job = savings(rows, by="job")
    assert per_job.column("archived_bytes").to_pylist()[-1] == objects


def test_two_writers_same_destination(store_uri):
    """Two jobs (threads, own store objects) archive overlapping videos at once: the archive stays
    consistent — every video visible exactly once, every row points at the right bytes."""
    videos = {v[0]: v for v in (synthetic_video(s, n_gops=3, n_scales=4, chunk_base=300) for s in range(40, 48))}
    ids = sorted(videos)
    jobs = {"job-x": ids[:6], "job-y": ids[2:]}  # 4 videos in common
    errors = []
    barrier = threading.Barrier(2)

    def run(job_id, vids):
        try:
            store = open_store(store_uri)
            w = ArchiveWriter(store, job_id)
            w.committed()  # both see an empty archive, as if they started at the same time
            barrier.wait()
            for v in vids:
                if w.is_committed(v):
                    continue
                vid, header, gops, source = videos[v]
                w.commit(w.write_video(vid, header, gops, source, "m"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = open_store(store_uri)
    raw = mf.read_parts(store).table
    commits = raw.group_by(["video_id", "job_id"]).aggregate([("scale", "count")])
    assert commits.num_rows == 12  # the 4 shared videos were committed by both jobs ...
    rows = mf.read_manifest(store)  # ... and readers see each video once
    assert sorted(pc.unique(rows.column("video_id")).to_pylist()) == ids
    per_video = rows.group_by(["video_id"]).aggregate([("job_id", "count_distinct"), ("scale", "count")])
    assert per_video.column("job_id_count_distinct").to_pylist() == [1] * 8
    assert per_video.column("scale_count").to_pylist() == [1 + 3 * 4] * 8
    assert_rows_point_at_right_bytes(store, rows, videos)
    objects = sum(o.size for o in store.list("videos/"))
    assert stored_totals(rows)["stored_bytes"] == objects


def test_failures_record(any_store):
    w = ArchiveWriter(any_store, "job-f")
    assert w.record_failures([]) is None
    w.record_failures([("s3://raw/a.mp4", "VideoError: not a video"), ("/x/b.mp4", "decode failed")])
    mf.record_failures(any_store, "job-g", [("/x/c.mp4", "boom")])
    got = mf.read_failures(any_store, "job-f")
    assert got.column("source_uri").to_pylist() == ["s3://raw/a.mp4", "/x/b.mp4"]
    assert got.column("reason").to_pylist()[0] == "VideoError: not a video"
    assert mf.read_failures(any_store).num_rows == 3
    # once b.mp4 is archived by a later run, it is no longer an unresolved failure
    vid, header, gops, source = synthetic_video(50)
    source = type(source)("/x/b.mp4", source.size_bytes, source.width, source.height, source.fps)
    w.archive_video(vid, header, gops, source, "m")
    assert mf.read_failures(any_store, unresolved_only=True).column("source_uri").to_pylist() == [
        "s3://raw/a.mp4", "/x/c.mp4"]
    assert mf.read_manifest(any_store).num_rows == 1 + 4 * 5  # failures do not leak into the manifest


def test_video_id_streams_local_and_s3(any_store, tmp_path):
    data = bytes(range(256)) * 5000
    any_store.put("src/clip.mp4", data)
    (tmp_path / "clip.mp4").write_bytes(data)
    vid = video_id_of(tmp_path / "clip.mp4")
    assert len(vid) == 24 and int(vid, 16) >= 0
    assert video_id_of(any_store.url("src/clip.mp4")) == vid
    assert video_id_of("src/clip.mp4", store=any_store) == vid
    (tmp_path / "other.mp4").write_bytes(data + b"x")
    assert video_id_of(tmp_path / "other.mp4") != vid


# -------------------------------------------------------------------------------------------- fault test


def run_job(store, job_id, videos):
    """What a compress job does per video: skip committed, write + verify layers, commit."""
    w = ArchiveWriter(store, job_id)
    for vid, header, gops, source in videos:
        if not w.is_committed(vid):
            w.commit(w.write_video(vid, header, gops, source, "m"))


@pytest.mark.parametrize("kill_at", ["layer", "manifest"])
def test_server_killed_mid_write_then_rerun(fresh_s3_server, monkeypatch, kill_at):
    """SIGKILL the S3 server in the middle of a video's layer uploads (or right at its manifest PUT),
    restart it, re-run the job: every video committed exactly once, no row points at a missing or
    different object."""
    server = fresh_s3_server
    aws_env(monkeypatch, server)
    bucket = server.make_bucket("fault")
    uri = f"s3://{bucket}/arch"
    videos = [synthetic_video(s, n_gops=4, n_scales=5, chunk_base=200) for s in range(60, 64)]
    cfg = StoreConfig(max_attempts=2, connect_timeout=1, read_timeout=5)
    store = open_store(uri, config=cfg)
    puts = {"n": 0}

    def killer(params, **_):
        key = params.get("Key", "") if isinstance(params, dict) else ""
        puts["n"] += 1
        # video 0: header + 5 layers + manifest = 7 PUTs; kill during video 1 (3rd layer) or its manifest
        hit = ("layer-3.bin" in key and puts["n"] > 7) if kill_at == "layer" else (
            "manifests/" in key and puts["n"] > 7)
        if hit and server.proc is not None:
            server.kill()

    store.client.meta.events.register("before-parameter-build.s3.PutObject", killer)
    with pytest.raises(StoreError, match="cannot reach the S3 endpoint"):
        run_job(store, "job-1", videos)
    server.start()
    first = mf.read_manifest(open_store(uri))
    assert set(first.column("video_id").to_pylist()) == {videos[0][0]}  # only the video that finished
    run_job(open_store(uri), "job-1", videos)  # the re-run
    final = open_store(uri)
    raw = mf.read_parts(final).table
    counts = raw.group_by("video_id").aggregate([("created_at", "count_distinct")])
    assert sorted(counts.column("video_id").to_pylist()) == sorted(v[0] for v in videos)
    assert counts.column("created_at_count_distinct").to_pylist() == [1] * 4  # committed exactly once
    assert raw.num_rows == 4 * (1 + 4 * 5)
    assert_rows_point_at_right_bytes(final, mf.effective_rows(raw), {v[0]: v for v in videos})
    for r in raw.to_pylist():
        if r["scale"] == 0:
            assert zlib.crc32(final.get(r["layer_key"])) == r["checksum"]


def test_multipart_layers_verified_by_composite_checksum(any_store):
    """A layer above the multipart threshold (5 MiB here) is verified from the server's composite CRC32 on
    S3 — no re-read — and a re-run keeps it instead of uploading it again."""
    video = synthetic_video(90, n_gops=2, n_scales=2, chunk_base=1_600_000)
    vid, header, gops, source = video
    big = sum(len(g.chunks[1]) for g in gops)
    assert big > 5 * 1024 * 1024
    any_store.reset_counters()
    rows = ArchiveWriter(any_store, "job-m").write_video(vid, header, gops, source, "m")
    if isinstance(any_store, S3Store):
        assert any_store.head(layer_key(vid, 2)).multipart_parts == 2
        assert any_store.bytes_read == 0  # verified by checksums, nothing re-read
    w2 = ArchiveWriter(any_store, "job-m2")  # e.g. the re-run after a crash before the commit
    w2.commit(w2.write_video(vid, header, gops, source, "m"))
    assert layer_key(vid, 2) in w2.last_stats.kept and w2.last_stats.bytes_uploaded == 0
    assert rows.num_rows == 1 + 2 * 2
    assert_rows_point_at_right_bytes(any_store, mf.read_manifest(any_store), {vid: video})
