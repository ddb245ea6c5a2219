"""pipeline.video_io on real files written and read back with PyAV."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.errors import VideoError
from pipeline.video_io import iter_frames, packet_index, probe, read_frames, write_video

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _ramp(t: int, h: int, w: int) -> np.ndarray:
    """(T, H, W, 3) frames with smooth moving gradients (compress well, easy to compare)."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [
        np.stack([(x * 3 + i * 5) % 256, (y * 2 + i * 3) % 256, ((x + y) + i * 7) % 256], -1)
        for i in range(t)
    ]
    return np.asarray(frames, dtype=np.uint8)


def test_probe_sample_clip():
    info = probe(SAMPLES / "sam2_dog.mp4")
    assert (info.width, info.height, info.frame_count) == (448, 256, 24)
    assert info.fps == Fraction(30000, 1001)
    assert info.codec == "h264"


@pytest.mark.parametrize("suffix", [".mp4", ".y4m", ".mkv"])
@pytest.mark.parametrize("size", [(64, 48), (177, 99)])
def test_write_read_round_trip(tmp_path, suffix, size):
    w, h = size
    frames = _ramp(6, h, w)
    out = tmp_path / f"clip{suffix}"
    assert write_video(out, frames, Fraction(25)) == 6
    info = probe(out)
    pw, ph = (w, h) if suffix == ".y4m" else (w + w % 2, h + h % 2)  # H.264: odd sides padded (below)
    assert (info.width, info.height, info.frame_count) == (pw, ph, 6)
    back = read_frames(out)
    assert back.shape == (6, ph, pw, 3)
    err = np.abs(back[:, :h, :w].astype(np.float64) - frames).mean()
    assert err < 6.0, f"mean abs error {err:.2f} after {suffix} round trip"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_odd_size_h264_is_padded_420(tmp_path, suffix):
    """Issue 16.9b: an odd-size video is written as browser-playable H.264 4:2:0 (was 4:4:4), padded by one
    edge-copied column/row; the picture itself is unchanged at the top left."""
    frames = _ramp(5, 49, 65)
    out = tmp_path / f"odd{suffix}"
    write_video(out, frames, Fraction(25))
    with av.open(str(out)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.width, ctx.height, str(ctx.pix_fmt)) == (66, 50, "yuv420p")
        assert ctx.profile in ("High", "Main", "Constrained Baseline", "Baseline"), ctx.profile  # not High 4:4:4
    back = read_frames(out).astype(np.float64)
    assert np.abs(back[:, :49, :65] - frames).mean() < 6.0
    assert np.abs(back[:, :49, 65] - frames[:, :, 64]).mean() < 8.0  # the copied last column
    assert np.abs(back[:, 49, :65] - frames[:, 48, :]).mean() < 8.0  # the copied last row
    y4m = tmp_path / "odd.y4m"  # raw 4:2:0 keeps the exact size
    write_video(y4m, frames, Fraction(25))
    assert (probe(y4m).width, probe(y4m).height) == (65, 49)


def test_seek_matches_sequential_read(tmp_path):
    frames = _ramp(30, 64, 96)
    out = tmp_path / "gop.mp4"
    write_video(out, frames, 30)
    whole = read_frames(out)
    assert len(packet_index(out).keyframe_pts) >= 1
    for start, count in [(0, 3), (13, 4), (27, 3)]:
        part = read_frames(out, start, count)
        assert np.array_equal(part, whole[start : start + count])
    assert len(list(iter_frames(out, 25))) == 5


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable video"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_bad_inputs_raise_video_error(tmp_path, make, message):
    bad = tmp_path / "bad.mp4"
    make(bad)
    with pytest.raises(VideoError, match=message):
        probe(bad)


def test_missing_file_and_range(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    out = tmp_path / "short.y4m"
    write_video(out, _ramp(3, 16, 16), 25)
    with pytest.raises(VideoError, match="has 3 frames"):
        read_frames(out, 5, 1)


def test_training_reader_sees_what_encoding_sees(tmp_path):
    """pipeline.codec.data.read_video (the training reader) gives the frames video_io gives the encoder
    (same colour conversion), every `step`-th, and fits `max_side` with even sides."""
    from pipeline.codec.data import read_video

    out = tmp_path / "train.mp4"
    write_video(out, _ramp(10, 90, 160), 25)
    whole = read_frames(out)
    assert np.array_equal(read_video(out, 48), whole)
    assert np.array_equal(read_video(out, 3, step=4), whole[[0, 4, 8]])
    small = read_video(out, 2, max_side=101)
    assert small.shape == (2, 56, 100, 3)
    assert np.abs(small.astype(np.float64).mean() - whole[:2].mean()) < 2.0


def _mux(path: Path, fmt: str, frames: np.ndarray, gop: int = 10, options: dict | None = None,
         audio_s: float = 0.0, codec: str = "libx264") -> Path:
    """Write `frames` with PyAV's `fmt` muxer (H.264 with B-frames, a keyframe every `gop` frames), plus
    `audio_s` seconds of AAC silence when asked."""
    h, w = frames.shape[1:3]
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            v.options = {"g": str(gop), "keyint_min": str(gop), "bf": "2"}
        a = None
        if audio_s:
            a = out.add_stream("aac", rate=48000)
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


@pytest.mark.parametrize("name, options", [("clip.ts", {}), ("clip.m2ts", {"mpegts_m2ts_mode": "1"}),
                                           ("clip.mts", {"mpegts_m2ts_mode": "1"})])
def test_mpeg_ts_whole_and_middle_reads(tmp_path, name, options):
    """MPEG-TS / BDAV M2TS (issue 16.1): every frame from frame 0 (no seek: a seek to the first pts gave no
    frames), and reads from the middle (a seek by pts landed on the *next* keyframe: 0 frames) equal the
    sequential decode."""
    frames = _ramp(40, 64, 96)
    src = _mux(tmp_path / name, "mpegts", frames, gop=10, options=options)
    info = probe(src)
    assert (info.width, info.height, info.frame_count) == (96, 64, 40)
    whole = read_frames(src)
    assert whole.shape == frames.shape
    assert np.abs(whole.astype(np.float64) - frames).mean() < 6.0
    idx = packet_index(src)
    assert len(idx.keyframe_pts) == 4 and idx.pts[0] > 0  # TS timestamps do not start at 0
    for start, count in [(13, 4), (10, 3), (20, 10), (27, 13), (39, 1), (1, 2)]:
        part = read_frames(src, start, count)
        assert np.array_equal(part, whole[start:start + count]), (start, count)
    assert len(list(iter_frames(src, 35))) == 5


def test_middle_read_seeks_near_the_frame(tmp_path, monkeypatch):
    """Reads from the middle of a TS still seek (to the keyframe's dts) instead of decoding from the start."""
    from pipeline import video_io

    src = _mux(tmp_path / "seek.ts", "mpegts", _ramp(40, 32, 48), gop=10)
    decoded = []
    real = video_io._to_rgb
    monkeypatch.setattr(video_io, "_to_rgb", lambda f: decoded.append(f.pts) or real(f))
    read_frames(src, 33, 2)
    idx = packet_index(src)
    assert decoded == list(idx.pts[33:35])
    seen = []
    real_numbered = video_io._numbered
    monkeypatch.setattr(video_io, "_numbered", lambda frames, pos, last=-1: (
        (seen.append(i) or (i, f)) for i, f in real_numbered(frames, pos, last)))
    read_frames(src, 33, 2)
    assert min(seen) >= 20  # decoding began near the keyframe of frame 30, not at frame 0


@pytest.mark.parametrize("suffix, fmt, options", [(".mkv", "matroska", {}), (".webm", "webm", {}),
                                                  (".mp4", "mp4", {"movflags": "faststart"}), (".y4m", None, {})])
@pytest.mark.parametrize("keep", [0.6, 0.95])
def test_truncated_source_is_refused(tmp_path, suffix, fmt, options, keep):
    """A cut-off copy is refused with 'truncated' instead of being read as a shorter video (issue 16.4)."""
    frames = _ramp(40, 64, 96)
    full = tmp_path / f"full{suffix}"
    if fmt is None:
        write_video(full, frames, 25)
    elif fmt == "webm":
        _mux(full, fmt, frames, codec="libvpx-vp9")
    else:
        _mux(full, fmt, frames, options=options)
    assert probe(full).frame_count == 40
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoError, match="truncated"):
        probe(cut)


def test_complete_files_with_longer_audio_are_not_truncated(tmp_path):
    """Audio running on after the video (segment duration > video duration) is not a truncation."""
    for suffix, fmt in ((".mkv", "matroska"), (".mp4", "mp4"), (".ts", "mpegts")):
        src = _mux(tmp_path / f"av{suffix}", fmt, _ramp(20, 32, 48), audio_s=2.0)
        assert probe(src).frame_count == 20
        assert len(read_frames(src)) == 20


def _mkv_with_pts(path: Path, frames: np.ndarray, pts_ms: list[int]) -> Path:
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for rgb, p in zip(frames, pts_ms):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = p, Fraction(1, 1000)
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_variable_frame_rate_is_reported(tmp_path):
    """Issue 16.9c: a VFR source (timestamps 10..160 ms apart) is told from a constant-rate one."""
    from pipeline.video_io import variable_timing

    frames = _ramp(8, 32, 48)
    vfr = probe(_mkv_with_pts(tmp_path / "vfr.mkv", frames, [0, 40, 50, 130, 140, 300, 310, 320]))
    cfr = probe(_mkv_with_pts(tmp_path / "cfr.mkv", frames, [40 * i for i in range(8)]))
    assert vfr.frame_intervals_s == pytest.approx((0.010, 0.160))
    warning = variable_timing(vfr)
    assert warning and warning.startswith("variable frame rate: frame intervals 10-160 ms")
    assert variable_timing(cfr) is None and variable_timing(probe(SAMPLES / "sam2_dog.mp4")) is None


def test_video_stream_bytes(tmp_path):
    """`VideoInfo.video_bytes`: the video packets' bytes only: for y4m exactly the raw 4:2:0 frames, for a file
    with audio less than the file minus the audio packets."""
    frames = _ramp(6, 48, 64)
    y4m = tmp_path / "raw.y4m"
    write_video(y4m, frames, Fraction(25))
    info = probe(y4m)
    assert info.video_bytes == 6 * 64 * 48 * 3 // 2 < info.size_bytes
    mkv = tmp_path / "av.mkv"
    with av.open(str(mkv), "w", format="matroska") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        for rgb in frames:
            for pkt in v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in v.encode():
            out.mux(pkt)
        for k in range(12):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, k * 1024
            for pkt in a.encode(af):
                out.mux(pkt)
        for pkt in a.encode():
            out.mux(pkt)
    with av.open(str(mkv)) as c:
        audio = sum(p.size for p in c.demux(c.streams.audio[0]))
    got = probe(mkv)
    assert 0 < got.video_bytes <= got.size_bytes - audio
