"""`progvc ls`, video ids by unique prefix, tables that fit 80 columns (issue 16.7), and queries / single-video
reserve as plain library calls without Ray or a Prefect server (issue 16.6).

The archives hold the golden VQ stream (tests/golden/vq_plain.pgv, decodable by the shipped model) stored as a
real archive (header.bin + layer objects + manifest, `ArchiveWriter`) on a local folder and on SeaweedFS S3,
once under its real content id and twice under ids that share a prefix.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from pipeline.archive import ArchiveWriter, GopData, SourceInfo
from pipeline.catalog import list_videos, resolve_video_id, unique_prefixes
from pipeline.errors import ManifestError
from pipeline.pgv import parse_chunk, read_pgv
from pipeline.store import open_store

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "vq_plain.pgv"
TWIN_A = "abcdef0123456789abcdef01"
TWIN_B = "abcdef0123456789abcdef02"
LONG_NAME = "a_rather_long_source_file_name_from_the_camera.mp4"


def store_golden(store, job: str, video_id: str, uri: str) -> None:
    """The golden stream committed as archived video `video_id` (what the actors report for each GOP)."""
    stream = read_pgv(GOLDEN)
    h = stream.header
    gops = []
    for g, e in enumerate(h.gops):
        chunks = stream.gop_chunks(g)
        parsed = [parse_chunk(c)[0] for c in chunks]
        gops.append(GopData(e.first_frame, e.frame_count, True, chunks, [c.token_count for c in parsed],
                            [c.token_crc for c in parsed], [h.coded_frames(g, k) for k in range(1, len(chunks) + 1)]))
    ArchiveWriter(store, job).archive_video(
        video_id, h.to_bytes(), gops, SourceInfo(uri=uri, size_bytes=GOLDEN.stat().st_size, width=h.width,
                                                 height=h.height, fps=25.0), h.model_id, mode=h.mode)


@pytest.fixture
def archive(store_uri):
    """(archive URI, real id of the golden stream): three videos, two of them with ids sharing 23 digits."""
    store = open_store(store_uri)
    vid = hashlib.sha256(GOLDEN.read_bytes()).hexdigest()[:24]
    store_golden(store, "job-a", vid, str(GOLDEN))
    store_golden(store, "job-a", TWIN_A, f"/data/cameras/{LONG_NAME}")
    store_golden(store, "job-b", TWIN_B, "s3://raw/2026/b.mkv")
    return store_uri, vid


def test_resolve_video_id_prefixes():
    ids = [TWIN_A, TWIN_B, "0123456789abcdef01234567", *(f"ff{i:022x}" for i in range(6))]
    assert resolve_video_id(ids, TWIN_A) == TWIN_A  # a full id
    assert resolve_video_id(ids, "0123") == "0123456789abcdef01234567"  # a unique prefix
    assert resolve_video_id(ids, "ABCDEF0123456789ABCDEF02") == TWIN_B  # ids are hex: case does not matter
    with pytest.raises(ManifestError, match=rf"prefix 'abc' is ambiguous in arch: 2 videos match \({TWIN_A}, "
                                            rf"{TWIN_B}\); give more digits"):
        resolve_video_id(ids, "abc", "arch")
    with pytest.raises(ManifestError, match=r"6 videos match \(ff0+, ff0+1, ff0+2, ff0+3 and 2 more\)"):
        resolve_video_id(ids, "ff")
    with pytest.raises(ManifestError, match=r"no video id in the archive starts with '9' \(9 videos archived; "
                                            r"`progvc ls` lists them\)"):
        resolve_video_id(ids, "9")
    short = unique_prefixes(ids)
    assert short[TWIN_A] == TWIN_A and short["0123456789abcdef01234567"] == "0123456789ab"
    assert all(resolve_video_id(ids, p) == v for v, p in short.items())


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_tables_fit_80_columns_without_cutting_ids_or_numbers(archive, monkeypatch, capsys):
    """At 80 columns the savings table, `ls` and the compress report drop columns instead of cutting or wrapping
    ids and numbers; the savings table shows source file names and ids that `reserve` accepts."""
    from flows.compress import print_report
    from pipeline import manifest
    from pipeline.catalog import print_videos
    from pipeline.savings import print_table, savings

    uri, vid = archive
    rows = manifest.read_manifest(open_store(uri))
    ids = sorted({vid, TWIN_A, TWIN_B})

    buf = io.StringIO()
    dropped = print_table(savings(rows, by="video"), console=Console(file=buf, width=80))
    text = buf.getvalue()
    assert max(len(line) for line in _lines(text)) <= 80, text
    assert "vq_plain.pgv" in text and "b.mkv" in text  # file names
    assert set(dropped) >= {"job_id", "bpp"} and "columns left out at 80 characters" in text
    # whole ids or unique prefixes (>= 12 digits), on one line, each one `reserve` resolves to its video
    shown = {line.split("│")[1].strip() for line in _lines(text) if line.startswith("│")} - {""}
    assert all(len(s) >= 12 for s in shown) and {resolve_video_id(ids, s) for s in shown} == set(ids), text
    for r in savings(rows, by="video").to_pylist():  # every ratio printed whole
        assert (f"{r['ratio']:.1f}×" if r["ratio"] < 100 else f"{r['ratio']:.0f}×") in text
    wide = io.StringIO()
    assert print_table(savings(rows, by="video"), console=Console(file=wide, width=200)) == []

    buf = io.StringIO()
    print_videos(list_videos(rows), console=Console(file=buf, width=80))
    text = buf.getvalue()
    assert max(len(line) for line in _lines(text)) <= 80, text
    assert all(any(v in line for line in _lines(text)) for v in ids), text  # full ids, never wrapped
    assert all("10/10" in line for line in _lines(text) if any(v in line for v in ids))

    monkeypatch.setenv("COLUMNS", "80")
    report = {"job_id": "job-20261203T162255Z", "dest": "s3://archive/long/prefix", "frames": 12, "seconds": 3.0,
              "fps": 4.0, "actors": 2, "startup_s": 1.0, "committed": [1], "skipped": [], "failed": [1],
              "ignored": [],
              "videos": [{"source": f"/data/cameras/{LONG_NAME}", "status": "committed", "video_id": TWIN_A,
                          "frames": 6, "source_bytes": 123456789, "archived_bytes": 2345678, "reason": None,
                          "warnings": ["audio not archived: 1 audio stream(s) (aac) dropped"]},
                         {"source": "/data/b.mkv", "status": "failed", "video_id": TWIN_B, "frames": None,
                          "source_bytes": 99, "archived_bytes": None, "reason": "truncated: 3 of 9 frames",
                          "warnings": []}]}
    capsys.readouterr()
    print_report(report)
    text = capsys.readouterr().out
    table = text[: text.index("1 committed")]
    assert max(len(line) for line in _lines(table)) <= 80, table
    assert TWIN_A in table and TWIN_B in table, table  # ids on one line each


SCRIPT = """
import json, sys
from flows.cli import main
dest, vid, out = sys.argv[1:4]
rc = [main(["ls", dest]), main(["ls", dest, "--json"]), main(["savings", dest, "--video", vid[:6]]),
      main(["reserve", dest, vid[:7], "--scales", "2", "-o", out, "--predict", "sample", "--seed", "3"]),
      main(["prune", dest, "--keep-scales", "5", "--video", "abcdef0123456789abcdef01"]),
      main(["ls", dest, "--json"])]
print("RESULT", json.dumps({"rc": rc, "loaded": sorted({m.split(".")[0] for m in sys.modules} & {"ray", "prefect"})}))
"""


def test_queries_and_reserve_run_without_ray_or_prefect(archive, tmp_path):
    """`ls`, `savings`, `reserve` (one video, id prefix) and `prune` are plain library calls: in a fresh process
    neither Ray nor Prefect is imported (so no cluster, no server, no Prefect database, no Ray session dir), and
    the re-served pixels equal a reference decode of the same layers through the stream API."""
    from pipeline import video_io
    from pipeline.stream import iter_decoded

    uri, vid = archive
    out = tmp_path / "k2.y4m"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), RAY_TMPDIR=str(tmp_path / "ray-tmp"),
               PYTHONPATH=str(ROOT), COLUMNS="80")
    res = subprocess.run([sys.executable, "-c", SCRIPT, uri, vid, str(out)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout[res.stdout.index("RESULT ") + 7:].splitlines()[0])
    assert result == {"rc": [0] * 6, "loaded": []}, res.stdout + res.stderr
    assert not (tmp_path / "prefect-home").exists() and not (tmp_path / "ray-tmp").exists()
    assert f"re-served {vid} at 2 of 10 scales" in res.stdout
    assert "vq_plain.pgv" in res.stdout and LONG_NAME[:10] in res.stdout  # `ls` and savings name the files

    listings = [json.loads(chunk) for chunk in _json_arrays(res.stdout)]
    assert len(listings) == 2
    before, after = ({v["video_id"]: v for v in listing} for listing in listings)
    assert set(before) == {vid, TWIN_A, TWIN_B}
    assert before[vid]["name"] == "vq_plain.pgv" and before[vid]["frames"] == 6
    assert before[TWIN_A]["stored_scales"] == before[TWIN_A]["n_scales"] == 10
    assert after[TWIN_A]["stored_scales"] == 5 and after[TWIN_A]["stored_bytes"] < before[TWIN_A]["stored_bytes"]
    assert after[TWIN_B]["stored_scales"] == 10  # prune --video touched only that video

    # the reference decodes with 1 torch thread, as `reserve` (default --threads 1), `progvc decode` and the codec
    # actors do: sampled pixels can differ by one level with another thread count
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref_frames = list(iter_decoded(read_pgv(GOLDEN), None, scales=2, predict="sample", seed=3))
    finally:
        torch.set_num_threads(threads)
    ref = tmp_path / "ref.y4m"
    video_io.write_video(ref, ref_frames, 25)
    assert np.array_equal(video_io.read_frames(out), video_io.read_frames(ref))


def _json_arrays(text: str) -> list[str]:
    """The JSON arrays `ls --json` printed (each starts with a line "[" and ends with a line "]")."""
    lines, out, cur = text.splitlines(), [], None
    for line in lines:
        if line == "[":
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line == "]":
                out.append("\n".join(cur))
                cur = None
    return out


def test_ambiguous_or_unknown_prefix_is_one_line(archive, tmp_path, capsys):
    from flows.cli import main

    uri, vid = archive
    for args in (["reserve", uri, "abcdef", "--scales", "1", "-o", str(tmp_path / "x.mp4")],
                 ["prune", uri, "--keep-scales", "1", "--video", "abcdef"],
                 ["savings", uri, "--video", "abcdef"],
                 ["verify", uri, "--video", "abcdef"]):
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"progvc {args[0]}: error: video id prefix 'abcdef' is ambiguous in {uri}: 2 videos match "
                       f"({TWIN_A}, {TWIN_B}); give more digits"], err
    assert main(["reserve", uri, "77", "--scales", "1", "-o", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no video id in" in err[0] and "starts with '77'" in err[0]
    assert not (tmp_path / "x.mp4").exists()
    assert len(list(open_store(uri).list("videos/abcdef0123456789abcdef01/"))) == 11  # nothing pruned
    assert main(["verify", uri, "--video", vid[:8]]) == 0  # a unique prefix
    assert "of 1 video(s)" in capsys.readouterr().err
