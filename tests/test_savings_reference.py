"""Savings against stated references (issue 16.8): the source's video-stream bytes and raw 4:2:0, besides the
source file; old manifests without the video-stream column; plots labelled with source names and the
grouping; effective stored bytes after prune from the manifest Parquet alone (the README's DuckDB query)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from pipeline import manifest as mf
from pipeline.archive import ArchiveWriter, SourceInfo, prune
from pipeline.savings import plot, print_table, savings, stored_totals
from pipeline.store import LocalStore
from tests.fixtures_store import synthetic_video

ROOT = Path(__file__).resolve().parent.parent
FRAMES, W, H = 3 * 8, 64, 48  # synthetic_video(n_gops=3): 3 GOPs of 8 frames, 64x48


def _with(source: SourceInfo, name: str, video_bytes: int | None) -> SourceInfo:
    return SourceInfo(uri=f"s3://raw/{name}", size_bytes=source.size_bytes, width=source.width,
                      height=source.height, fps=source.fps, video_bytes=video_bytes)


@pytest.fixture
def archive(tmp_path):
    """Three videos: two with their video-stream bytes (job-new), one committed by an older version that had
    no such column (its part rewritten without it)."""
    store = LocalStore(tmp_path / "arch")
    vids = []
    w = ArchiveWriter(store, "job-new")
    for seed, name, vb in ((21, "talk.mp4", 90_000), (22, "raw.y4m", FRAMES * W * H * 3 // 2)):
        vid, header, gops, source = synthetic_video(seed, n_gops=3, n_scales=4)
        w.archive_video(vid, header, gops, _with(source, name, vb), "m")
        vids.append(vid)
    vid, header, gops, source = synthetic_video(23, n_gops=3, n_scales=4)
    key = ArchiveWriter(store, "job-old").commit(
        ArchiveWriter(store, "job-old").write_video(vid, header, gops, _with(source, "old.mkv", None), "m"))
    old = pq.read_table(io.BytesIO(store.get(key))).drop_columns(["video_stream_bytes"])
    buf = io.BytesIO()
    pq.write_table(old, buf)
    store.put(key, buf.getvalue())
    vids.append(vid)
    return store, vids


def test_reference_ratios_by_hand(archive):
    store, (talk, raw, old) = archive
    rows = mf.read_manifest(store)
    per_video = {(r["video_id"], r["scales"]): r for r in savings(rows, by="video").to_pylist()}
    raw420 = FRAMES * W * H * 3 // 2
    for k in (1, 2, 3, 4):
        t, y, o = per_video[(talk, k)], per_video[(raw, k)], per_video[(old, k)]
        for r in (t, y, o):
            assert r["raw420_bytes"] == raw420
            assert r["ratio_raw420"] == pytest.approx(raw420 / r["archived_bytes"])
            assert r["ratio"] == pytest.approx(r["source_bytes"] / r["archived_bytes"])
        assert t["video_stream_bytes"] == 90_000
        assert t["ratio_video_stream"] == pytest.approx(90_000 / t["archived_bytes"])
        assert y["ratio_video_stream"] == pytest.approx(y["ratio_raw420"])  # y4m: its stream is the raw frames
        assert o["video_stream_bytes"] is None and o["ratio_video_stream"] is None  # old manifest: not measured
    by_job = {(r["job_id"], r["scales"]): r for r in savings(rows, by="job").to_pylist()}
    new4 = by_job[("job-new", 4)]
    assert new4["video_stream_bytes"] == 90_000 + raw420 and new4["raw420_bytes"] == 2 * raw420
    assert new4["ratio_video_stream"] == pytest.approx((90_000 + raw420) / new4["archived_bytes"])
    assert by_job[("job-old", 4)]["ratio_video_stream"] is None
    overall = savings(rows, by="scale").to_pylist()[-1]
    assert overall["video_stream_bytes"] is None and overall["ratio_video_stream"] is None  # one video lacks it
    assert overall["ratio_raw420"] == pytest.approx(3 * raw420 / overall["archived_bytes"])
    # the terminal table shows the references (null as "–")
    buf = io.StringIO()
    print_table(savings(rows, by="video"), console=Console(file=buf, width=250))
    text = buf.getvalue()
    assert "×video" in text and "×raw420" in text and "–" in text


def test_raw420_rounds_chroma_up_for_odd_sizes():
    import numpy as np

    from pipeline.savings import raw420_bytes

    assert raw420_bytes(np.array([65, 64]), np.array([49, 48]), np.array([2, 2])).tolist() == [
        2 * (65 * 49 + 2 * 33 * 25), 2 * 64 * 48 * 3 // 2]


def _svg_text(path: Path) -> str:
    return re.sub(r"<[^>]+>", " ", path.read_text())


def test_plots_name_sources_grouping_and_reference(archive, tmp_path):
    store, (talk, raw, old) = archive
    rows = mf.read_manifest(store)
    text = _svg_text(plot(savings(rows, by="video"), tmp_path / "v.svg", title="archive A"))
    for s in ("talk.mp4", "raw.y4m", "old.mkv", "one line per video (source file)", "archive A",
              "raw 4:2:0 frames / archived"):  # auto: one video lacks the video-stream bytes -> raw 4:2:0
        assert s in text, s
    assert talk[:8] not in text  # names, not ids, where they are unique
    new = rows.filter(pc.equal(rows.column("job_id"), "job-new"))
    text = _svg_text(plot(savings(new, by="video"), tmp_path / "n.svg"))
    assert "source video stream / archived" in text and "old.mkv" not in text
    text = _svg_text(plot(savings(rows, by="job"), tmp_path / "j.svg", reference="file"))
    assert "job-new" in text and "job-old" in text and "one line per job" in text and "source file / archived" in text
    assert "all videos summed" in _svg_text(plot(savings(rows, by="scale"), tmp_path / "s.svg"))
    png = plot(savings(rows, by="mode"), tmp_path / "m.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _readme_query() -> str:
    text = (ROOT / "README.md").read_text()
    (sql,) = [b for b in re.findall(r"```sql\n(.*?)```", text, flags=re.S) if "stored_bytes" in b]
    return sql


def test_readme_query_gives_effective_stored_bytes_after_prune(archive):
    """The README's DuckDB query over the manifest Parquet parts alone (no progvc) gives each video's stored
    bytes after prunes (tombstones), with a duplicate commit of one video by a second job and a compaction
    duplicate present, equal to what `savings` reports and to the objects actually stored."""
    duckdb = pytest.importorskip("duckdb")
    store, (talk, raw, old) = archive
    vid, header, gops, source = synthetic_video(21, n_gops=3, n_scales=4)  # talk again, by another job
    ArchiveWriter(store, "job-dup", committed=set()).archive_video(vid, header, gops, _with(source, "t2.mp4", 1), "m")
    prune(store, 2, [talk])
    prune(store, 3)
    parts = mf.list_parts(store, "job-new")
    store.put(parts[0].key.replace("part-", "part-zcopy-"), store.get(parts[0].key))  # a compaction's duplicate
    sql = _readme_query().replace("'archive/manifests/", f"'{store.root}/manifests/")
    got = dict(duckdb.sql(sql).fetchall())
    rows = mf.read_manifest(store)
    want = {r["video_id"]: r["stored_bytes"] for r in savings(rows, by="video").to_pylist()}
    assert got == want
    assert sum(got.values()) == stored_totals(rows)["stored_bytes"] == sum(o.size for o in store.list("videos/"))
