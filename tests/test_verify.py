"""`progvc verify` (issue 16.9a): every stored object checked against the manifest's sizes and CRC32s without
decoding, on a local directory and on a real SeaweedFS; one line per bad object and exit code 1, exit code
0 when clean; pruned scales are not faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.archive import ArchiveWriter, header_key, layer_key, prune
from pipeline.verify import verify_archive
from tests.fixtures_store import aws_env, new_bucket, synthetic_video

ROOT = Path(__file__).resolve().parent.parent
PROGVC = str(Path(sys.executable).parent / "progvc")


def _archive(store, n_scales: int = 4):
    videos = [synthetic_video(s, n_gops=3, n_scales=n_scales) for s in (11, 12)]
    w = ArchiveWriter(store, "job-v")
    for vid, header, gops, source in videos:
        w.archive_video(vid, header, gops, source, "m")
    return [v[0] for v in videos]


def _rewrite(store, key: str, change) -> None:
    store.put(key, change(bytearray(store.get(key))))


def test_verify_finds_each_bad_object(any_store):
    a, b = _archive(any_store)
    clean = verify_archive(any_store)
    assert clean.ok and clean.videos == 2 and clean.objects == 2 * (1 + 4) and clean.chunks == 2 * 3 * 4
    assert clean.bytes_checked == sum(o.size for o in any_store.list("videos/"))

    rows = mf.read_manifest(any_store, video_ids=[a])
    chunk = rows.filter(pc.and_(pc.equal(rows.column("scale"), 2), pc.equal(rows.column("gop_index"), 1)))
    off, n = chunk.column("byte_offset")[0].as_py(), chunk.column("byte_length")[0].as_py()

    def flip(buf: bytearray) -> bytes:  # one bit inside GOP 1's payload of layer 2
        buf[off + n - 3] ^= 0x10
        return bytes(buf)

    _rewrite(any_store, layer_key(a, 2), flip)
    _rewrite(any_store, header_key(b), lambda buf: bytes(buf[:-1]) + bytes([buf[-1] ^ 1]))  # same size
    _rewrite(any_store, layer_key(b, 3), lambda buf: bytes(buf[:-5]))  # truncated
    any_store.delete(layer_key(a, 4))
    bad = verify_archive(any_store, max_read=200)  # small reads: runs of chunks, a chunk alone when larger
    assert not bad.ok and bad.objects == clean.objects
    assert len(bad.problems) == 4, bad.problems
    lines = {k: v for k, v in ((p.split(": ", 1)[0], p) for p in bad.problems)}
    assert set(lines) == {any_store.url(k) for k in (layer_key(a, 2), header_key(b), layer_key(b, 3),
                                                     layer_key(a, 4))}, bad.problems
    assert "GOP 1 scale 2" in lines[any_store.url(layer_key(a, 2))]
    assert "checksum mismatch" in lines[any_store.url(layer_key(a, 2))]
    assert "CRC32" in lines[any_store.url(header_key(b))]
    assert "size" in lines[any_store.url(layer_key(b, 3))]
    assert "missing" in lines[any_store.url(layer_key(a, 4))]
    # one video only; then a prune to 3 scales: the deleted layer 4 is no longer a fault
    assert len(verify_archive(any_store, video_ids=[b]).problems) == 2
    prune(any_store, 3, [a])
    assert {p.split(": ", 1)[0] for p in verify_archive(any_store, video_ids=[a]).problems} == {
        any_store.url(layer_key(a, 2))}


def test_verify_detects_a_replaced_chunk(tmp_path):
    """A chunk replaced by a well-formed one (right marker, length, payload CRC32, scale) that holds other
    tokens: its token CRC32 differs from the manifest row's."""
    from pipeline.pgv import pack_chunk, parse_chunk
    from pipeline.store import LocalStore

    store = LocalStore(tmp_path / "arch")
    vid = _archive(store, n_scales=2)[0]
    rows = mf.read_manifest(store, video_ids=[vid])
    r = rows.filter(pc.and_(pc.equal(rows.column("scale"), 1), pc.equal(rows.column("gop_index"), 1))).to_pylist()[0]
    data = store.get(layer_key(vid, 1))
    ch, _ = parse_chunk(data, r["byte_offset"], scale=1)
    other = pack_chunk(1, ch.token_count, ch.token_crc ^ 0x5A5A, ch.payload, ch.gop_tag)
    assert len(other) == r["byte_length"]
    store.put(layer_key(vid, 1), data[: r["byte_offset"]] + other + data[r["byte_offset"] + r["byte_length"]:])
    (line,) = verify_archive(store).problems
    assert line.startswith(store.url(layer_key(vid, 1))) and "GOP 1 scale 1: token CRC32" in line


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([PROGVC, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_verify_exit_codes_on_s3(s3_server, monkeypatch, tmp_path):
    """The command on a real S3 server: exit 0 when clean; one stored object corrupted -> exit 1 and one line
    on stdout naming it. Neither Prefect nor Ray is started (no Prefect home is created)."""
    from pipeline.store import open_store

    aws_env(monkeypatch, s3_server)
    dest = f"s3://{new_bucket(s3_server)}/archive"
    store = open_store(dest)
    a, _ = _archive(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT))
    ok = _cli(["verify", dest], env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "" and "10 object(s) of 2 video(s)" in ok.stderr and "clean" in ok.stderr
    _rewrite(store, layer_key(a, 3), lambda buf: bytes(buf[:40]) + bytes([buf[40] ^ 0xFF]) + bytes(buf[41:]))
    bad = _cli(["verify", dest], env)
    assert bad.returncode == 1, bad.stderr
    assert len(bad.stdout.splitlines()) == 1
    assert bad.stdout.startswith(f"{dest}/videos/{a}/layer-3.bin: ") and "1 bad" in bad.stderr
    unknown = _cli(["verify", dest, "--video", "0" * 24], env)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert f"no video id in {dest} starts with '{'0' * 24}'" in unknown.stderr
    assert not (tmp_path / "prefect-home").exists()
