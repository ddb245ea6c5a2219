"""GOP planning: colour-distance keyframes on real files written with PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline import video_io
from pipeline.errors import VideoError
from pipeline.gop import color_distance, color_signature, group_gops, plan_gops, source_keyframes


def _scene(kind: str, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """`n` frames (n, h, w, 3) uint8 of a slowly moving pattern in one colour family."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        wave = (np.sin((xx + 2 * t) / 6.0) * 0.5 + 0.5) * 60
        if kind == "warm":
            rgb = np.stack([170 + wave, 90 + wave * 0.5, 40 + 0 * xx], -1)
        elif kind == "cool":
            rgb = np.stack([30 + 0 * xx, 80 + wave * 0.5, 160 + wave], -1)
        else:  # static grey ramp
            rgb = np.stack([xx * 3, xx * 3, yy * 4], -1).astype(float)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_keyframe_at_hard_cut(tmp_path):
    path = tmp_path / "joined.mp4"
    frames = np.concatenate([_scene("warm", 11), _scene("cool", 9)])
    video_io.write_video(path, frames, fps=25)
    gops = plan_gops(path, max_gop=16)
    starts = [g.first_frame for g in gops]
    assert starts[0] == 0
    assert 11 in starts, starts  # the cut
    assert starts == [0, 11], starts  # no keyframe inside either scene (both shorter than max_gop)
    assert sum(g.frame_count for g in gops) == 20
    assert all(g.keyframe for g in gops)


def test_static_scene_no_extra_keyframe_and_max_gop(tmp_path):
    path = tmp_path / "static.mp4"
    video_io.write_video(path, _scene("static", 12), fps=25)
    gops = plan_gops(path, max_gop=16)
    assert [(g.first_frame, g.frame_count) for g in gops] == [(0, 12)]
    # the same scene is cut at max_gop when it is longer
    gops5 = plan_gops(path, max_gop=5)
    assert [(g.first_frame, g.frame_count) for g in gops5] == [(0, 5), (5, 5), (10, 2)]


def test_threshold_controls_sensitivity(tmp_path):
    path = tmp_path / "joined.mp4"
    video_io.write_video(path, np.concatenate([_scene("warm", 6), _scene("cool", 6)]), fps=25)
    assert [g.first_frame for g in plan_gops(path, threshold=1e6)] == [0]  # never on colour
    assert len(plan_gops(path, threshold=0.0)) == 12  # every change is a new GOP


def test_non_video_raises_video_error(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is not a video at all" * 40)
    with pytest.raises(VideoError, match="notes.mp4"):
        plan_gops(junk)
    with pytest.raises(VideoError):
        plan_gops(tmp_path / "missing.mp4")


def test_color_distance_units():
    a = np.full((8, 8, 3), 128, np.uint8)
    b = a.copy()
    b[..., 0] = 200
    assert color_distance(color_signature(a), color_signature(a)) == 0.0
    d = color_distance(color_signature(a), color_signature(b))
    assert 20 < d < 60  # a strong red shift is tens of ΔE


def _write_keyint(path, frames: np.ndarray, keyint: int) -> None:
    """H.264 with a source keyframe every `keyint` frames (PyAV directly, to control the encoder)."""
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.options = {"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0", "bf": "2"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pict_type = av.video.frame.PictureType.NONE
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def test_source_keyframes_and_read_units(tmp_path):
    path = tmp_path / "long.mp4"
    _write_keyint(path, _scene("warm", 30), keyint=12)
    keys = source_keyframes(path)
    assert keys == [0, 12, 24], keys
    gops = plan_gops(path, max_gop=4)
    units = group_gops(gops, keys, max_frames=8)
    flat = [i for u in units for i in u]
    assert flat == list(range(len(gops)))  # every GOP once, in order
    assert all(sum(gops[i].frame_count for i in u) <= 8 for u in units)
    assert any(gops[u[0]].first_frame == 12 for u in units)  # a unit starts at the source keyframe
    # a worker reading a unit gets exactly the planned frames
    u = units[1]
    first, n = gops[u[0]].first_frame, sum(gops[i].frame_count for i in u)
    got = video_io.read_frames(path, first, n)
    assert got.shape == (n, 48, 64, 3)
