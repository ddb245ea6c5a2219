"""Generator of the bad / unusual video input corpus (made here with PyAV and numpy, never downloaded).

    cases = build_corpus(tmp_dir)        # list[Case], every file written under tmp_dir
    for c in cases: c.name, c.path, c.expect ("error" | "ok"), c.display ((W, H) for "ok")

`expect="error"`: the input is not a usable video; every reader must raise `VideoError` naming the file.
`expect="ok"`: valid but unusual; it must encode, and decode to `display` = (width, height) after rotation.
Unreadable paths: we run as root (chmod does not stop root), so the corpus uses a dangling symlink and a
FIFO (named pipe) instead of a mode-000 file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline import video_io


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    expect: str  # "error" | "ok"
    display: tuple[int, int] | None = None  # (W, H) the decoded frames must have, for "ok"
    frames: int | None = None  # frames in the source, for "ok"
    note: str = ""


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        base = np.stack([(xx * 4 + t * 9) % 256, (yy * 5) % 256, (xx + yy + t * 3) % 256], -1)
        out.append(np.clip(base + rng.integers(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    return np.stack(out)


def _encode(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fmt: str | None = None,
            pts: list[int] | None = None, time_base: Fraction | None = None) -> None:
    """Write `frames` (T, H, W, 3) with an explicit codec / pixel format (what write_video never makes)."""
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if time_base is not None:
            s.time_base = time_base
            s.codec_context.time_base = time_base
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            if pts is not None:
                f.pts = pts[i]
                f.time_base = time_base
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _rotated_mp4(path: Path, frames: np.ndarray, degrees: int) -> None:
    """H.264 MP4 whose display matrix says: rotate by `degrees` for display."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.set_display_rotation(degrees)
        for rgb in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=44100)
        t = np.arange(44100 // 2) / 44100.0
        pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for i in range(0, pcm.shape[1] - 1024, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i : i + 1024]), format="fltp",
                                            layout="mono")
            fr.sample_rate = 44100
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _still(path: Path, codec: str, pix_fmt: str, h: int, w: int) -> None:
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream(codec, rate=1)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for p in s.encode(av.VideoFrame.from_ndarray(_frames(1, h, w)[0], format="rgb24").reformat(format=pix_fmt)):
            out.mux(p)
        for p in s.encode():
            out.mux(p)


def _y4m_header(w: int, h: int) -> bytes:
    return f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode()


def build_corpus(root: str | os.PathLike, seed: int = 0) -> list[Case]:
    """Write every corpus input under `root`; return the cases (cheap: well under a second each)."""
    d = Path(root)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cases: list[Case] = []

    def add(name, path, expect, display=None, frames=None, note=""):
        cases.append(Case(name, str(path), expect, display, frames, note))

    # ---- not video at all
    (d / "empty.mp4").write_bytes(b"")
    add("empty file", d / "empty.mp4", "error", note="0 bytes")
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    add("random bytes", d / "random.mp4", "error", note="64 KiB of noise named .mp4")
    good = d / "good.mp4"
    video_io.write_video(good, _frames(12, 48, 64, seed), 25)
    add("plain H.264 (control)", good, "ok", (64, 48), 12)
    data = good.read_bytes()
    moov = data.find(b"moov")
    (d / "truncated.mp4").write_bytes(data[: max(moov - 4, len(data) // 2)] if moov > 0 else data[: len(data) // 2])
    add("truncated MP4 (moov missing)", d / "truncated.mp4", "error", note="cut before the moov atom")
    _audio_only(d / "audio_only.mp4")
    add("audio-only MP4", d / "audio_only.mp4", "error", note="AAC, no video stream")
    _still(d / "still.png", "png", "rgb24", 40, 56)
    add("still image (PNG)", d / "still.png", "ok", (56, 40), 1, note="one frame")
    _still(d / "still.jpg", "mjpeg", "yuvj420p", 40, 56)
    add("still image (JPEG)", d / "still.jpg", "ok", (56, 40), 1, note="full-range yuvj420p")
    # ---- unusual but valid sizes and formats
    _encode(d / "one_by_one.mkv", _frames(3, 1, 1), "ffv1", "yuv444p")
    add("1x1 video", d / "one_by_one.mkv", "ok", (1, 1), 3, note="FFV1 yuv444p")
    _encode(d / "two_by_two.mp4", _frames(3, 2, 2), "libx264", "yuv420p")
    add("2x2 video", d / "two_by_two.mp4", "ok", (2, 2), 3, note="H.264 yuv420p")
    _encode(d / "wide_4097x17.mkv", _frames(2, 17, 4097), "libx264", "yuv444p")  # write_video pads odd sizes
    add("4097x17 video", d / "wide_4097x17.mkv", "ok", (4097, 17), 2, note="H.264 yuv444p (odd sides)")
    _encode(d / "ten_bit.mkv", _frames(4, 32, 48), "ffv1", "yuv420p10le")
    add("10-bit source", d / "ten_bit.mkv", "ok", (48, 32), 4, note="FFV1 yuv420p10le")
    _encode(d / "ten_bit_h264.mp4", _frames(4, 32, 48), "libx264", "yuv420p10le")
    add("10-bit H.264", d / "ten_bit_h264.mp4", "ok", (48, 32), 4, note="High 10 profile")
    _encode(d / "yuv444.mp4", _frames(4, 32, 48), "libx264", "yuv444p")
    add("4:4:4 source", d / "yuv444.mp4", "ok", (48, 32), 4, note="H.264 High 4:4:4")
    vfr_pts = [0, 40, 50, 130, 140, 300, 310, 320]
    _encode(d / "vfr.mkv", _frames(8, 32, 48), "libx264", "yuv420p", pts=vfr_pts, time_base=Fraction(1, 1000))
    add("variable frame rate", d / "vfr.mkv", "ok", (48, 32), 8, note="pts gaps 10..160 ms")
    _rotated_mp4(d / "rotated90.mp4", _frames(4, 32, 48), 90)
    add("rotation metadata (90°)", d / "rotated90.mp4", "ok", (32, 48), 4, note="48x32 coded, display matrix 90°")
    # ---- headers that lie
    frame = bytes(64 * 48 * 3 // 2)
    (d / "lying_header.y4m").write_bytes(_y4m_header(640, 480) + (b"FRAME\n" + frame) * 3)
    add("header lies about size", d / "lying_header.y4m", "error", note="y4m says 640x480, frames are 64x48")
    (d / "huge_declared.y4m").write_bytes(_y4m_header(12000, 12000) + b"FRAME\n" + bytes(4096))
    add("huge declared resolution", d / "huge_declared.y4m", "error", note="y4m says 12000x12000 (144 Mpx)")
    (d / "absurd_declared.y4m").write_bytes(_y4m_header(30000, 30000) + b"FRAME\n" + bytes(4096))
    add("absurd declared resolution", d / "absurd_declared.y4m", "error", note="y4m says 30000x30000")
    # ---- not a file
    (d / "a_directory.mp4").mkdir(exist_ok=True)
    add("a directory", d / "a_directory.mp4", "error", note="directory named .mp4")
    link = d / "dangling.mp4"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(d / "does-not-exist.mp4")
    add("unreadable: dangling symlink", link, "error", note="root ignores chmod, so a dangling link")
    fifo = d / "fifo.mp4"
    if not fifo.exists():
        os.mkfifo(fifo)
    add("unreadable: FIFO", fifo, "error", note="named pipe, nothing writes to it")
    return cases


def record(topic: str, rows: list[dict] | dict) -> None:
    """Append measured outcomes to `$PROGVC_RELIABILITY_OUT/<topic>.json` (docs/reliability.md tables);
    nothing is written when the variable is unset (plain CI runs)."""
    import json

    out = os.environ.get("PROGVC_RELIABILITY_OUT")
    if not out:
        return
    p = Path(out) / f"{topic}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(p.read_text()) if p.exists() else []
    old.extend(rows if isinstance(rows, list) else [rows])
    p.write_text(json.dumps(old, indent=1, default=str))


def verify_archive(store, synthetic: bool = False) -> dict[str, str]:
    """Check an archive the way a reader trusts it; returns {video_id: job_id} of the committed videos.

    Every effective manifest row must point at bytes that exist and match: the header row's CRC32, and for
    every (GOP, scale) row a parseable chunk of that scale whose token count and token checksum equal the
    row's. Every committed video must be whole (header + all GOPs at every scale it lists) and committed by
    exactly one job (one commit). `synthetic`: the video comes from tests.fixtures_store.synthetic_video (real
    chunk frames, but a fake stream header, so the GOP count is taken from the manifest)."""
    import zlib

    import pyarrow.compute as pc

    from pipeline import manifest
    from pipeline.codec.container import StreamHeader, parse_chunk

    raw = manifest.read_parts(store).table
    raw = raw.filter(pc.equal(raw.column("status"), manifest.STATUS_COMMITTED))
    commits: dict[str, set] = {}
    for r in raw.select(["video_id", "job_id", "created_at"]).to_pylist():
        commits.setdefault(r["video_id"], set()).add((r["job_id"], r["created_at"]))
    owners = {}
    for vid, cs in commits.items():
        assert len(cs) == 1, f"video {vid} committed {len(cs)} times: {sorted(cs)}"
        owners[vid] = next(iter(cs))[0]
    rows = manifest.stored_rows(manifest.read_manifest(store)).to_pylist()
    by_vid: dict[str, list[dict]] = {}
    for r in rows:
        by_vid.setdefault(r["video_id"], []).append(r)
    assert set(by_vid) == set(owners)
    for vid, rs in by_vid.items():
        (h,) = [r for r in rs if r["scale"] == 0]
        hb = store.get_range(h["layer_key"], h["byte_offset"], h["byte_length"])
        assert zlib.crc32(hb) == h["checksum"], f"{vid}: header bytes differ from the manifest"
        n_gops = len(StreamHeader.from_bytes(hb).gops) if not synthetic else 1 + max(r["gop_index"] for r in rs)
        scales = sorted({r["scale"] for r in rs if r["scale"] > 0})
        assert scales == list(range(1, len(scales) + 1))
        for k in scales:
            gops = sorted(r["gop_index"] for r in rs if r["scale"] == k)
            assert gops == list(range(n_gops)), f"{vid}: scale {k} lists GOPs {gops}"
        for r in rs:
            if r["scale"] == 0:
                continue
            data = store.get_range(r["layer_key"], r["byte_offset"], r["byte_length"])
            ch, end = parse_chunk(data, 0, r["layer_key"])
            assert end == len(data) and ch.scale == r["scale"]
            assert ch.token_count == r["token_count"] and ch.token_crc == r["checksum"]
    return owners
