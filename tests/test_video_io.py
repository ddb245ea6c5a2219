"""pipeline.video_io on real files written and read back with PyAV."""

from fractions import Fraction
from pathlib import Path

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
    assert (info.width, info.height, info.frame_count) == (w, h, 6)
    back = read_frames(out)
    assert back.shape == frames.shape
    err = np.abs(back.astype(np.float64) - frames).mean()
    assert err < 6.0, f"mean abs error {err:.2f} after {suffix} round trip"


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
