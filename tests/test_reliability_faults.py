"""Fault injection at job level: the faults really happen (a SeaweedFS server SIGKILLed and restarted, a Ray
actor process SIGKILLed mid-GOP, the `progvc compress` process SIGKILLed, writes refused by the filesystem
or a file-size limit, a TCP proxy that slows or stalls S3 traffic). After each, every source is committed
exactly once with verified objects or recorded as failed with its reason, and the manifest is consistent
(`tests.corpus.verify_archive`).

Actor-level kill/restart is covered in tests/test_workers.py and store-level S3 kill in tests/test_archive.py;
here the same faults hit whole jobs (flow, actors, commit protocol together).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import video_io
from pipeline.errors import StoreError
from tests.corpus import record, verify_archive
from tests.fixtures_cluster import TINY_MODEL
from tests.fixtures_store import aws_env, new_bucket, synthetic_video

REPO = Path(__file__).resolve().parent.parent


def _clip(seed: int, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.clip(base + ((xx + 2 * t + seed * 7) % w)[..., None] * 0.5 + rng.normal(0, 3, (h, w, 3)),
                             0, 255).astype(np.uint8) for t in range(n)])


def make_sources(d: Path, n: int, frames: int = 16) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"src{i}.mp4"
        video_io.write_video(p, _clip(100 + i, frames), fps=25)
        out.append(str(p))
    return out


def _outcomes(rep: dict) -> dict[str, str]:
    return {v["source"]: v["status"] for v in rep["videos"]}


# ------------------------------------------------------------------------------- S3 server killed


@pytest.mark.timeout(600)
def test_s3_server_killed_and_restarted_mid_job(fresh_s3_server, monkeypatch, tmp_path, ray_session,
                                                 prefect_harness):
    """SIGKILL the S3 server while the job uploads layer 2 of its first video; restart it 3 s later.
    botocore + Prefect task retries ride it out, or the video is recorded failed; a re-run commits the rest."""
    from flows import archive_ops
    from flows.compress import compress
    from pipeline import manifest

    server = fresh_s3_server
    aws_env(monkeypatch, server)
    dest = f"s3://{new_bucket(server)}/archive"
    sources = make_sources(tmp_path / "src", 3)
    from pipeline.store import S3Store

    events: dict[str, float] = {}
    restarted = threading.Event()
    real_put = S3Store.put

    def restart_later():
        time.sleep(3)
        server.start()
        events["restarted"] = time.monotonic()
        restarted.set()

    inject = threading.Lock()  # uploads run in several threads: exactly one of them kills the server

    def put_then_crash(self, key, data):  # picks the moment only; the server really dies
        if key.endswith("layer-2.bin"):
            with inject:
                if "killed" not in events:
                    server.kill()
                    events["killed"] = time.monotonic()
                    threading.Thread(target=restart_later, daemon=True).start()
        return real_put(self, key, data)

    monkeypatch.setattr(S3Store, "put", put_then_crash)
    rep = compress(sources=sources, dest=dest, job="s3kill-1", actors=1, weights=TINY_MODEL, max_gop=8)
    monkeypatch.setattr(S3Store, "put", real_put)
    assert "killed" in events, "the fault was never injected"
    assert restarted.wait(120)
    first = _outcomes(rep)
    assert set(first) == set(sources) and set(first.values()) <= {"committed", "failed"}
    for v in rep["failed"]:
        assert server.endpoint in v["reason"] or "S3" in v["reason"], v["reason"]
    rep2 = compress(sources=sources, dest=dest, job="s3kill-2", actors=1, weights=TINY_MODEL, max_gop=8)
    second = _outcomes(rep2)
    assert all(second[s] == ("skipped" if first[s] == "committed" else "committed") for s in sources), second
    store = archive_ops.store_for(dest, None)
    owners = verify_archive(store)
    assert len(owners) == 3
    failures = manifest.read_failures(store).to_pylist()
    assert sorted(f["source_uri"] for f in failures) == sorted(v["source"] for v in rep["failed"])
    record("faults", {"fault": "S3 server SIGKILLed during a layer upload, restarted 3 s later",
                      "first_run": sorted(first.values()), "rerun": sorted(second.values()),
                      "outage_s": round(events["restarted"] - events["killed"], 1),
                      "result": f"{len(owners)}/3 committed once, manifest verified"})


# ------------------------------------------------------------------------------- Ray actor killed


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow  # CI covers actor kill + retry at actor level (tests/test_workers.py)
@pytest.mark.timeout(600)
def test_actor_killed_mid_gop_job_still_commits_identical_bytes(tmp_path, ray_session, prefect_harness):
    """SIGKILL the codec actor process while it runs `encode_unit` (Ray sets that as its process title):
    Ray restarts the actor and retries the call; the job commits every video, byte-identical to an
    in-process encode of the same GOPs."""
    from flows.compress import compress
    from pipeline import manifest
    from pipeline.codec import Codec, CodecConfig
    from pipeline.store import open_store

    sources = make_sources(tmp_path / "src", 2, frames=40)
    killed: list[str] = []
    stop = threading.Event()

    def hunter():
        while not stop.is_set() and not killed:
            for pid in _descendants(os.getpid()):  # only our own Ray's workers
                cmd = _cmdline(pid)
                if "CodecActor.encode_unit" in cmd:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(cmd.strip())
                    return
            time.sleep(0.02)

    t = threading.Thread(target=hunter, daemon=True)
    t.start()
    dest = tmp_path / "archive"
    try:
        rep = compress(sources=sources, dest=str(dest), job="actorkill-1", actors=1, weights=TINY_MODEL, max_gop=8)
    finally:
        stop.set()
        t.join(5)
    assert killed, "no actor was caught mid-encode"
    assert all(v["status"] == "committed" for v in rep["videos"]), rep["videos"]
    store = open_store(str(dest))
    assert len(verify_archive(store)) == 2
    ref = Codec.random(CodecConfig.tiny(), seed=0)
    rows = manifest.read_manifest(store).to_pylist()
    checked = 0
    for v in rep["videos"]:
        frames = video_io.read_frames(v["source"])
        for r in (r for r in rows if r["video_id"] == v["video_id"] and r["scale"] > 0):
            enc = ref.encode_gop(frames[r["first_frame"] : r["first_frame"] + r["frame_count"]],
                                 scales=r["scale"], gop_index=r["gop_index"])
            assert store.get_range(r["layer_key"], r["byte_offset"], r["byte_length"]) == enc.chunks[-1]
            checked += 1
    assert checked > 0
    record("faults", {"fault": "Ray codec actor SIGKILLed inside encode_unit (mid-GOP)",
                      "first_run": sorted(_outcomes(rep).values()),
                      "result": f"actor restarted, call retried; {checked} chunks byte-identical to a "
                                f"fresh in-process encode"})


# ------------------------------------------------------------------------------- flow process killed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_process_killed_mid_job_then_rerun(tmp_path, ray_session, prefect_harness):
    """`progvc compress` in a subprocess (its own Prefect + Ray), SIGKILLed (whole process group) right after
    its first video commits; the re-run commits the others and skips the committed one: each source is
    committed exactly once, nothing half-written is trusted."""
    from flows.compress import compress
    from pipeline import manifest
    from pipeline.store import open_store

    src_dir = tmp_path / "src"
    make_sources(src_dir, 4, frames=40)
    dest = tmp_path / "archive"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_ADDRESS"))}
    cmd = [sys.executable, "-m", "flows", "compress", str(src_dir), "--dest", str(dest), "--weights", TINY_MODEL,
           "--actors", "1", "--gop", "8", "--job", "cli-kill-1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < 600:
            if list((dest / "manifests").glob("*/part-*.parquet")) if (dest / "manifests").exists() else []:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    store = open_store(str(dest))
    before = verify_archive(store)
    assert 1 <= len(before) < 4, f"{len(before)} committed at kill time"
    rep = compress(sources=[str(src_dir)], dest=str(dest), job="cli-kill-2", actors=1, weights=TINY_MODEL,
                   max_gop=8)
    st = _outcomes(rep)
    assert sorted(st.values()) == sorted(["skipped"] * len(before) + ["committed"] * (4 - len(before)))
    owners = verify_archive(store)
    assert len(owners) == 4 and set(before.items()) <= set(owners.items())
    assert not manifest.read_failures(store).num_rows
    record("faults", {"fault": "progvc compress (CLI process group) SIGKILLed after its first commit",
                      "first_run": f"{len(before)}/4 committed when killed", "rerun": sorted(st.values()),
                      "result": "each source committed exactly once, manifest verified"})


# ------------------------------------------------------------------------------- writes refused


@pytest.mark.timeout(600)
def test_archive_dir_refusing_writes_fails_videos_cleanly(tmp_path, ray_session, prefect_harness):
    """`<dest>/videos` is a file, so no layer can be written (root ignores chmod; this fails for root too):
    every video is recorded failed with a reason naming the object, the manifest stays empty."""
    from flows.compress import compress
    from pipeline import manifest
    from pipeline.store import open_store

    sources = make_sources(tmp_path / "src", 2, frames=8)
    dest = tmp_path / "archive"
    dest.mkdir()
    (dest / "videos").write_bytes(b"not a directory")
    rep = compress(sources=sources, dest=str(dest), job="rofs-1", actors=1, weights=TINY_MODEL, max_gop=8)
    assert [v["status"] for v in rep["videos"]] == ["failed", "failed"]
    for v in rep["failed"]:
        assert ("cannot write" in v["reason"] or "cannot stat" in v["reason"]) and "videos/" in v["reason"], v["reason"]
    store = open_store(str(dest))
    assert verify_archive(store) == {}
    assert manifest.read_failures(store, "rofs-1").num_rows == 2
    record("faults", {"fault": "archive directory refusing writes (a file where videos/ must be)",
                      "first_run": sorted(_outcomes(rep).values()),
                      "result": "each video failed with: " + rep["failed"][0]["reason"][:120]})


_QUOTA_SCRIPT = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from tests.fixtures_store import synthetic_video
from pipeline.archive import ArchiveWriter
from pipeline.errors import StoreError
from pipeline.store import open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # EFBIG instead of a kill, like a full quota
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # no file may grow past 20 kB
store = open_store(sys.argv[1])
w = ArchiveWriter(store, "quota-1")
small = synthetic_video(1, n_gops=2, n_scales=3, chunk_base=64)
w.archive_video(*small[:4], "m" * 16)                  # fits
big = synthetic_video(2, n_gops=8, n_scales=3, chunk_base=1200)
try:
    w.archive_video(*big[:4], "m" * 16)
    print("NO ERROR")
except StoreError as e:
    print("STOREERROR", e)
"""


def test_file_size_limit_like_a_full_quota(tmp_path):
    """A process whose writes hit RLIMIT_FSIZE (EFBIG, what a full quota looks like): the big video fails
    with StoreError naming the object, leaves no temp file, and the archive still verifies."""
    from pipeline.store import open_store

    dest = tmp_path / "archive"
    out = subprocess.run([sys.executable, "-c", _QUOTA_SCRIPT, str(dest), str(REPO)], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("STOREERROR"), out.stdout + out.stderr[-1000:]
    assert "layer-" in out.stdout and "too large" in out.stdout.lower(), out.stdout
    assert not [p for p in dest.rglob("*") if p.name.endswith(".progvc-tmp")]
    owners = verify_archive(open_store(str(dest)), synthetic=True)
    assert len(owners) == 1  # the small video only
    record("faults", {"fault": "file size limit (RLIMIT_FSIZE, like a full quota)",
                      "result": out.stdout.strip()[:160]})


# ------------------------------------------------------------------------------- slow network


class SlowProxy:
    """A TCP proxy on 127.0.0.1 that forwards to `upstream` in chunks of `chunk` bytes, sleeping `delay`
    seconds before each (set `delay` at run time: small = slow link, large = stalled link)."""

    def __init__(self, upstream: tuple[str, int], delay: float = 0.0, chunk: int = 4096):
        self.upstream, self.delay, self.chunk = upstream, delay, chunk
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while not self.closed:
                data = src.recv(self.chunk)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.mark.timeout(300)
def test_slow_and_stalled_network_to_s3(s3_server, monkeypatch):
    """Through a delaying proxy: a slow link still archives correctly; a stalled one fails with a clear
    StoreError within the configured timeouts (never hangs); the manifest stays consistent."""
    from pipeline.archive import ArchiveWriter
    from pipeline.store import StoreConfig, open_store

    aws_env(monkeypatch, s3_server)
    bucket = new_bucket(s3_server)
    host, port = s3_server.endpoint.rsplit("//", 1)[1].split(":")
    proxy = SlowProxy((host, int(port)))
    cfg = StoreConfig(max_attempts=2, connect_timeout=1, read_timeout=1.5)
    try:
        store = open_store(f"s3://{bucket}/archive", s3_endpoint=proxy.endpoint, config=cfg)
        w = ArchiveWriter(store, "slow-1", compact_at=None)
        proxy.delay = 0.02  # every 4 kB waits 20 ms each way
        t0 = time.monotonic()
        vid, header, gops, src = synthetic_video(3, n_gops=4, n_scales=4, chunk_base=2000)
        w.archive_video(vid, header, gops, src, "m" * 16)
        slow_s = time.monotonic() - t0
        proxy.delay = 30.0  # stalled: nothing arrives within read_timeout
        t0 = time.monotonic()
        vid2, header2, gops2, src2 = synthetic_video(4, n_gops=2, n_scales=2)
        with pytest.raises(StoreError) as e:
            w.archive_video(vid2, header2, gops2, src2, "m" * 16)
        stall_s = time.monotonic() - t0
        msg = str(e.value)
        assert proxy.endpoint in msg and "attempts" in msg, msg
        # bound: 2 attempts x (connect 1 s + read 1.5 s) + botocore backoff, far below any hang
        assert stall_s < 20, stall_s
    finally:
        proxy.delay = 0.0
        proxy.close()
    direct = open_store(f"s3://{bucket}/archive", config=cfg)
    owners = verify_archive(direct, synthetic=True)
    assert set(owners) == {vid}  # the stalled video was never committed
    record("faults", {"fault": "S3 link through a delaying proxy: slow (20 ms per 4 kB) then stalled",
                      "result": f"slow: committed in {slow_s:.1f} s; stalled: StoreError after {stall_s:.1f} s "
                                f"(read_timeout 1.5 s, 2 attempts); manifest verified"})
