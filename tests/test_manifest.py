"""Manifest schema, parts, effective view (dedup by earliest commit, tombstones), damaged parts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import manifest as mf
from pipeline.archive import ArchiveWriter
from pipeline.errors import ManifestError
from pipeline.store import LocalStore
from tests.fixtures_store import synthetic_video

DESIGN_COLUMNS = ["job_id", "video_id", "source_uri", "source_bytes", "width", "height", "fps", "gop_index",
                  "first_frame", "frame_count", "keyframe", "scale", "layer_key", "byte_offset", "byte_length",
                  "token_count", "checksum", "model_id", "created_at"]


def test_schema_has_design_columns_then_quality_and_status():
    assert mf.SCHEMA.names == DESIGN_COLUMNS + ["psnr", "ms_ssim", "vmaf", "status", "frames_coded", "mode",
                                                "effort", "fidelity", "video_stream_bytes"]
    assert mf.SCHEMA.field("video_stream_bytes").type == pa.int64() and mf.SCHEMA.field("video_stream_bytes").nullable
    assert mf.SCHEMA.field("effort").type == pa.string() and mf.SCHEMA.field("effort").nullable
    assert mf.SCHEMA.field("fidelity").type == pa.float64() and mf.SCHEMA.field("fidelity").nullable
    assert mf.SCHEMA.field("frames_coded").type == pa.int32() and mf.SCHEMA.field("frames_coded").nullable
    assert mf.SCHEMA.field("mode").type == pa.string() and mf.SCHEMA.field("mode").nullable
    for q in ("psnr", "ms_ssim", "vmaf"):
        assert mf.SCHEMA.field(q).nullable and mf.SCHEMA.field(q).type == pa.float64()
    assert mf.SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")


def test_effective_rows_keep_earliest_commit():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def rows(job, vid, when, n=3):
        return mf.conform(pa.table({
            "job_id": [job] * n, "video_id": [vid] * n, "scale": list(range(n)), "gop_index": [-1, 0, 0][:n],
            "byte_length": [10] * n, "created_at": pa.array([when] * n, mf.TS), "status": ["committed"] * n,
            "layer_key": [f"videos/{vid}/x"] * n,
        }))

    raw = pa.concat_tables([
        rows("job-b", "v1", t0 + timedelta(seconds=5)),
        rows("job-a", "v1", t0 + timedelta(seconds=9)),  # later duplicate commit of v1
        rows("job-a", "v2", t0),
        rows("job-c", "v2", t0),  # same instant: smallest job id wins
    ])
    eff = mf.effective_rows(raw)
    assert eff.num_rows == 6
    got = {(r["video_id"], r["job_id"]) for r in eff.to_pylist()}
    assert got == {("v1", "job-b"), ("v2", "job-a")}
    assert eff.column("pruned_at").null_count == 6
    # a tombstone for (v1, scale 2) hides nothing but marks it pruned, whichever job it came from
    tomb = mf.tombstones(eff.filter(pc.and_(pc.equal(eff.column("video_id"), "v1"),
                                            pc.equal(eff.column("scale"), 2))), "prune-1",
                         t0 + timedelta(days=1))
    eff2 = mf.effective_rows(pa.concat_tables([raw, tomb]))
    pruned = eff2.filter(pc.is_valid(eff2.column("pruned_at")))
    assert [(r["video_id"], r["scale"]) for r in pruned.to_pylist()] == [("v1", 2)]
    assert mf.stored_rows(eff2).num_rows == 5


def test_write_part_and_job_listing(tmp_path):
    store = LocalStore(tmp_path)
    vid, header, gops, source = synthetic_video(5)
    w = ArchiveWriter(store, "nightly-2026-01-01")
    w.archive_video(vid, header, gops, source, "m")
    assert mf.list_jobs(store) == ["nightly-2026-01-01"]
    parts = mf.list_parts(store, "nightly-2026-01-01")
    assert len(parts) == 1
    raw = mf.read_parts(store)
    assert raw.parts == 1 and raw.bytes_read == parts[0].size
    assert set(raw.table.column("status").to_pylist()) == {"committed"}
    assert raw.table.column("created_at").null_count == 0
    assert len(set(raw.table.column("created_at").to_pylist())) == 1  # one commit time
    with pytest.raises(ManifestError, match="nothing to commit"):
        mf.write_part(store, "j", mf.SCHEMA.empty_table())


@pytest.mark.parametrize("job", ["", "../x", "a/b", "-x", "a b", "x" * 200])
def test_bad_job_ids_refused(tmp_path, job):
    with pytest.raises(ManifestError, match="invalid job id"):
        ArchiveWriter(LocalStore(tmp_path), job)


def test_damaged_part_is_a_clear_error(any_store):
    vid, header, gops, source = synthetic_video(6)
    ArchiveWriter(any_store, "j").archive_video(vid, header, gops, source, "m")
    any_store.put("manifests/j/part-zzz-broken.parquet", b"PAR1 not really parquet")
    with pytest.raises(ManifestError, match="damaged|cannot read manifest parts"):
        mf.read_manifest(any_store)


def test_write_video_rejects_inconsistent_gops(tmp_path):
    vid, header, gops, source = synthetic_video(7, n_scales=3)
    gops[1].checksums = gops[1].checksums[:2]
    with pytest.raises(ManifestError, match="GOP 1 of video"):
        ArchiveWriter(LocalStore(tmp_path), "j").write_video(vid, header, gops, source, "m")


def test_compact_merges_parts_and_readers_stay_correct(any_store):
    videos = [synthetic_video(s, n_gops=2, n_scales=3) for s in (70, 71, 72)]
    w = ArchiveWriter(any_store, "job-c")
    for vid, header, gops, source in videos:
        w.archive_video(vid, header, gops, source, "m")
    before = mf.read_manifest(any_store)
    parts = mf.list_parts(any_store, "job-c")
    assert len(parts) == 3
    # the moment between writing the merged part and deleting the old ones: every row twice on disk
    merged = mf.read_parts(any_store, "job-c").table
    mf.write_part(any_store, "job-c", merged)  # same rows, same created_at (as compact writes them)
    assert mf.read_parts(any_store).table.num_rows == 2 * before.num_rows
    assert mf.read_manifest(any_store).equals(before)
    key = mf.compact(any_store, "job-c")
    assert [o.key for o in mf.list_parts(any_store, "job-c")] == [key]
    assert mf.read_manifest(any_store).equals(before)
    assert mf.compact(any_store, "job-c") is None  # one part left: nothing to do


def test_readers_during_compaction_never_fail_or_see_duplicates(any_store):
    import threading

    videos = [synthetic_video(s, n_gops=1, n_scales=2) for s in range(80, 92)]
    w = ArchiveWriter(any_store, "job-r")
    for vid, header, gops, source in videos:
        w.archive_video(vid, header, gops, source, "m")
    expected = mf.read_manifest(any_store)
    stop, seen, errors = threading.Event(), [], []

    def reader():
        try:
            while not stop.is_set():
                seen.append(mf.read_manifest(any_store).num_rows)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert mf.compact(any_store, "job-r") is not None
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert seen and set(seen) == {expected.num_rows}
    assert mf.read_manifest(any_store).equals(expected)


def test_writer_compacts_its_job_automatically(any_store):
    videos = [synthetic_video(s, n_gops=1, n_scales=2) for s in range(100, 107)]
    w = ArchiveWriter(any_store, "job-auto", compact_at=3)
    for i, (vid, header, gops, source) in enumerate(videos):
        w.archive_video(vid, header, gops, source, "m")
        assert len(mf.list_parts(any_store, "job-auto")) < 3
        assert mf.read_manifest(any_store).num_rows == (i + 1) * 3
    assert sorted(pc.unique(mf.read_manifest(any_store).column("video_id")).to_pylist()) == sorted(
        v[0] for v in videos)


def _keyframe_video(seed: int, frame_scales: int = 2, n_scales: int = 4):
    """A synthetic video marked as keyframe-mode: chunks above `frame_scales` hold the keyframe alone."""
    vid, header, gops, source = synthetic_video(seed, n_gops=2, n_scales=n_scales)
    for g in gops:
        g.frames_coded = [g.frame_count if k <= frame_scales else 1 for k in range(1, n_scales + 1)]
    return vid, header, gops, source


def test_write_video_records_frames_coded_and_mode(tmp_path):
    store = LocalStore(tmp_path)
    w = ArchiveWriter(store, "j")
    vid, header, gops, source = _keyframe_video(8)
    w.archive_video(vid, header, gops, source, "m", mode="keyframe")
    pvid, pheader, pgops, psource = synthetic_video(9, n_gops=2, n_scales=4)
    w.archive_video(pvid, pheader, pgops, psource, "m")  # plain (default)
    rows = {(r["video_id"], r["scale"], r["gop_index"]): r for r in mf.read_manifest(store).to_pylist()}
    assert rows[(vid, 0, -1)]["frames_coded"] == 0 and rows[(vid, 0, -1)]["mode"] == "keyframe"
    assert [rows[(vid, k, 1)]["frames_coded"] for k in (1, 2, 3, 4)] == [8, 8, 1, 1]
    assert all(rows[(vid, k, g)]["keyframe"] for k in (1, 2, 3, 4) for g in (0, 1))
    assert {r["mode"] for key, r in rows.items() if key[0] == pvid} == {"plain"}
    assert [rows[(pvid, k, 0)]["frames_coded"] for k in (1, 2, 3, 4)] == [8, 8, 8, 8]
    bad_vid, bh, bgops, bsrc = _keyframe_video(10)
    bgops[0].frames_coded = [8, 1]
    with pytest.raises(ManifestError, match="frames-coded counts"):
        w.write_video(bad_vid, bh, bgops, bsrc, "m", mode="keyframe")


def test_parts_written_before_keyframe_mode_still_read(any_store):
    """A part without the `frames_coded`/`mode` columns (as jobs wrote them before issue 8) reads with
    nulls in the raw union and as plain mode in the effective view, beside a part that has them."""
    import pyarrow.parquet as pq

    old_vid, header, gops, source = synthetic_video(11, n_gops=2, n_scales=3)
    old = ArchiveWriter(any_store, "old-job").write_video(old_vid, header, gops, source, "m")
    old = mf.conform(old).drop_columns(["frames_coded", "mode"])
    old = old.set_column(old.schema.get_field_index("job_id"), "job_id", pa.array(["old-job"] * old.num_rows))
    old = old.set_column(old.schema.get_field_index("status"), "status", pa.array(["committed"] * old.num_rows))
    old = old.set_column(old.schema.get_field_index("created_at"), "created_at",
                         pa.array([mf.utcnow()] * old.num_rows, mf.TS))
    sink = pa.BufferOutputStream()
    pq.write_table(old, sink)
    any_store.put("manifests/old-job/part-20250101T000000000000Z-00000000.parquet", sink.getvalue().to_pybytes())
    new_vid, nheader, ngops, nsource = _keyframe_video(12, frame_scales=1, n_scales=3)
    ArchiveWriter(any_store, "new-job").archive_video(new_vid, nheader, ngops, nsource, "m", mode="keyframe")

    raw = mf.read_parts(any_store).table
    assert raw.schema.names == mf.SCHEMA.names
    old_raw = raw.filter(pc.equal(raw.column("video_id"), old_vid))
    assert old_raw.column("frames_coded").null_count == old_raw.num_rows == 1 + 2 * 3
    assert old_raw.column("mode").null_count == old_raw.num_rows
    eff = mf.read_manifest(any_store)
    assert mf.committed_video_ids(any_store) == {old_vid, new_vid}
    by = {(r["video_id"], r["scale"], r["gop_index"]): r for r in eff.to_pylist()}
    assert {r["mode"] for k, r in by.items() if k[0] == old_vid} == {"plain"}
    assert by[(old_vid, 0, -1)]["frames_coded"] == 0
    assert [by[(old_vid, k, 0)]["frames_coded"] for k in (1, 2, 3)] == [8, 8, 8]
    assert {r["mode"] for k, r in by.items() if k[0] == new_vid} == {"keyframe"}
    assert [by[(new_vid, k, 1)]["frames_coded"] for k in (1, 2, 3)] == [8, 1, 1]
    from pipeline.archive import prune

    rep = prune(any_store, 2, [old_vid])  # tombstones of old rows carry the filled-in columns
    assert rep.video_ids == [old_vid]
    eff = mf.read_manifest(any_store)
    pruned = eff.filter(pc.is_valid(eff.column("pruned_at")))
    assert set(pruned.column("scale").to_pylist()) == {3} and set(pruned.column("mode").to_pylist()) == {"plain"}


def test_encoder_settings_columns_and_older_parts(any_store):
    """`effort`/`fidelity` are on every row of a video written with encoder settings (the latent family's header
    field), null for one without (VQ) and for parts written before the columns existed."""
    import pyarrow.parquet as pq

    old_vid, header, gops, source = synthetic_video(21, n_gops=2, n_scales=3)
    old = ArchiveWriter(any_store, "old-job").write_video(old_vid, header, gops, source, "m")
    old = mf.conform(old).drop_columns(["effort", "fidelity"])
    old = old.set_column(old.schema.get_field_index("job_id"), "job_id", pa.array(["old-job"] * old.num_rows))
    old = old.set_column(old.schema.get_field_index("status"), "status", pa.array(["committed"] * old.num_rows))
    old = old.set_column(old.schema.get_field_index("created_at"), "created_at",
                         pa.array([mf.utcnow()] * old.num_rows, mf.TS))
    sink = pa.BufferOutputStream()
    pq.write_table(old, sink)
    any_store.put("manifests/old-job/part-20250101T000000000000Z-00000000.parquet", sink.getvalue().to_pybytes())
    w = ArchiveWriter(any_store, "new-job")
    lat_vid, lh, lgops, lsrc = synthetic_video(22, n_gops=2, n_scales=3)
    w.archive_video(lat_vid, lh, lgops, lsrc, "latent-v1", encoder={"fidelity": 55, "effort": "fast"})
    vq_vid, vh, vgops, vsrc = synthetic_video(23, n_gops=1, n_scales=3)
    w.archive_video(vq_vid, vh, vgops, vsrc, "m")
    eff = mf.read_manifest(any_store)
    assert eff.schema.field("fidelity").type == pa.float64()
    by: dict[str, set] = {}
    for r in eff.to_pylist():
        by.setdefault(r["video_id"], set()).add((r["effort"], r["fidelity"]))
    assert by == {lat_vid: {("fast", 55.0)}, vq_vid: {(None, None)}, old_vid: {(None, None)}}
