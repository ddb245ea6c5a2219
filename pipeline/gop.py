"""GOP planning with CGVC's colour-distance-guided keyframe selection.

A frame opens a new GOP (becomes a keyframe) when its colours have drifted too far from the current
GOP's keyframe, or when the GOP reached `max_gop` frames. Colours are compared at low resolution: each
frame is scaled to `analysis_size` pixels wide, converted to CIE Lab, averaged over a `grid`×`grid`
block layout, and the distance is the mean CIE76 ΔE over the blocks (perceptual units: ≈ 2.3 is a
just-noticeable difference, a hard scene cut is typically ≥ 15).

The source's own keyframes (`packet.is_keyframe`, found by demuxing only) are reported by
`source_keyframes`, and `group_gops` packs consecutive GOPs into read units that each start at one
source keyframe, so a worker seeks once per unit and decodes forward instead of seeking per GOP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline import video_io
from pipeline.errors import VideoError
from pipeline.pgv import GopEntry

DEFAULT_THRESHOLD = 10.0  # mean block ΔE (CIE76) that opens a new GOP
DEFAULT_ANALYSIS_SIZE = 64  # analysis width in pixels
DEFAULT_GRID = 4  # blocks per side for the mean-Lab signature

_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)


def rgb_to_lab(rgb_HWC: np.ndarray) -> np.ndarray:
    """sRGB uint8 (H, W, 3) -> CIE Lab float64 (H, W, 3), D65 white (L in 0..100)."""
    c = rgb_HWC.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def color_signature(rgb_HWC: np.ndarray, grid: int = DEFAULT_GRID) -> np.ndarray:
    """Mean Lab colour per block of a `grid`×`grid` layout: (grid, grid, 3) float64 (fewer blocks on a
    side shorter than `grid` pixels)."""
    lab = rgb_to_lab(rgb_HWC)
    H, W = lab.shape[:2]
    ys = np.linspace(0, H, min(grid, H) + 1).astype(int)
    xs = np.linspace(0, W, min(grid, W) + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(lab, ys[:-1], axis=0), xs[:-1], axis=1)
    area = np.outer(np.diff(ys), np.diff(xs))[..., None]
    return sums / area


def color_distance(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Mean CIE76 ΔE between two block signatures of the same shape."""
    return float(np.sqrt(((sig_a - sig_b) ** 2).sum(axis=-1)).mean())


def source_keyframes(path: str | Path) -> list[int]:
    """Frame indices (presentation order, from 0) of the source's own keyframes, by demuxing only."""
    index = video_io.packet_index(path)
    pos = {p: i for i, p in enumerate(index.pts)}
    keys = sorted(pos[p] for p in index.keyframe_pts if p in pos)
    return keys if keys and keys[0] == 0 else [0, *keys]


@dataclass(frozen=True)
class FrameScan:
    """What one decoding pass over a source found: frame count and per-frame colour distances."""

    frame_count: int
    keyframes: list[int]  # chosen GOP starts (frame indices)
    distances: list[float]  # distance of each frame to its GOP's keyframe (0 at keyframes)


def scan_keyframes(
    path: str | Path,
    max_gop: int = 16,
    threshold: float = DEFAULT_THRESHOLD,
    analysis_size: int = DEFAULT_ANALYSIS_SIZE,
    grid: int = DEFAULT_GRID,
) -> FrameScan:
    """Decode the source once at low resolution and choose keyframes by colour distance."""
    if max_gop < 1:
        raise ValueError(f"max_gop must be >= 1, got {max_gop}")
    info = video_io.probe(path)  # VideoError for what is not video, with the reason
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    keyframes: list[int] = []
    distances: list[float] = []
    key_sig: np.ndarray | None = None
    n = 0
    try:
        for frame in container.decode(stream):
            w = max(1, min(analysis_size, frame.width))
            h = max(1, round(frame.height * w / frame.width))
            small = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
            sig = color_signature(small, grid)
            d = 0.0 if key_sig is None else color_distance(sig, key_sig)
            if key_sig is None or d > threshold or n - keyframes[-1] >= max_gop:
                keyframes.append(n)
                key_sig, d = sig, 0.0
            distances.append(d)
            n += 1
    except av.FFmpegError as exc:
        raise VideoError(
            f"{path}: decoding failed at frame {n} ({exc}); the file is damaged or truncated"
        ) from exc
    finally:
        container.close()
    # readers (video_io.iter_frames) address frames by packet timestamps: plan only frames both agree on
    n = min(n, info.frame_count)
    if n == 0:
        raise VideoError(f"{path}: the video stream has no frames; nothing to archive")
    return FrameScan(frame_count=n, keyframes=[k for k in keyframes if k < n], distances=distances[:n])


def plan_gops(
    path: str | Path,
    max_gop: int = 16,
    threshold: float = DEFAULT_THRESHOLD,
    analysis_size: int = DEFAULT_ANALYSIS_SIZE,
) -> list[GopEntry]:
    """Split a source into GOPs; the first starts at frame 0 and they cover every decodable frame.

    `threshold`: mean block ΔE to the GOP's keyframe that starts a new GOP; `analysis_size`: width
    in pixels the frames are scaled to for the comparison. Raises VideoError for non-video input.
    """
    scan = scan_keyframes(path, max_gop=max_gop, threshold=threshold, analysis_size=analysis_size)
    ends = [*scan.keyframes[1:], scan.frame_count]
    return [GopEntry(first_frame=s, frame_count=e - s, keyframe=True) for s, e in zip(scan.keyframes, ends)]


def group_gops(gops: list[GopEntry], seek_points: list[int], max_frames: int = 64) -> list[list[int]]:
    """Pack consecutive GOP indices into read units of at most `max_frames` frames (a GOP longer than
    that is a unit of its own). Once a unit is half full, it is cut where a GOP starts exactly at a
    source keyframe in `seek_points`, so the next unit's read needs no decoding before its start.
    """
    seeks = set(seek_points)
    units: list[list[int]] = []
    cur: list[int] = []
    cur_frames = 0
    for i, g in enumerate(gops):
        if cur and (
            cur_frames + g.frame_count > max_frames
            or (g.first_frame in seeks and 2 * cur_frames >= max_frames)
        ):
            units.append(cur)
            cur, cur_frames = [], 0
        cur.append(i)
        cur_frames += g.frame_count
    if cur:
        units.append(cur)
    return units
