"""Video files in and out with PyAV: probe, read frames as RGB uint8, write MP4/MKV/Y4M.

Frames are `numpy.uint8` arrays of shape (H, W, 3), RGB, in display orientation (rotation metadata is
applied). YUV sources are converted with their own matrix; where a source does not say, BT.709 is used
from 720 lines up and BT.601 below (FFmpeg's convention), limited range unless the source says full.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import VideoError

#: FFmpeg muxer for each output suffix.
_CONTAINER_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".y4m": "yuv4mpegpipe"}

#: Largest frame area accepted (pixels); a header claiming more is refused before decoding.
MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class VideoInfo:
    """What a source is. `width`/`height` are display dimensions (after rotation)."""

    path: str
    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration_s: float
    codec: str
    pix_fmt: str
    size_bytes: int
    rotation: int  # degrees, counter-clockwise, as the stream's display matrix says


@dataclass(frozen=True)
class PacketIndex:
    """Presentation-ordered timestamps of every video packet and which of them are keyframes."""

    pts: tuple[int, ...]  # sorted presentation timestamps, one per frame
    keyframe_pts: tuple[int, ...]  # sorted pts of keyframes (seek points)


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if p.is_dir():
        raise VideoError(f"{p}: is a directory, not a video file; pass the files inside it")
    if not p.exists():
        raise VideoError(f"{p}: no such file; check the path")
    if not os.access(p, os.R_OK):
        raise VideoError(f"{p}: not readable (permissions); fix its mode or run as its owner")
    if not p.is_file():
        raise VideoError(f"{p}: not a regular file (a FIFO, socket or device); pass a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes); re-copy or re-export the source")
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{p}: not a readable video container ({exc}); is it corrupt or not a video?") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: has no video stream (audio-only or not a video); skip it or pass a video")
    return container


def _rotation(stream: av.video.stream.VideoStream, first_frame: av.VideoFrame | None) -> int:
    rot = 0
    if first_frame is not None:
        rot = int(getattr(first_frame, "rotation", 0) or 0)
    if not rot:
        try:
            rot = int(float(stream.metadata.get("rotate", 0)))
        except ValueError:
            rot = 0
    return rot % 360


def _packet_index(container: av.container.InputContainer, path: str | os.PathLike) -> PacketIndex:
    stream = container.streams.video[0]
    pts: list[int] = []
    keys: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                keys.append(int(packet.pts))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: demuxing failed ({exc}); the file is damaged or truncated") from exc
    pts.sort()
    keys.sort()
    return PacketIndex(tuple(pts), tuple(keys))


def packet_index(path: str | os.PathLike) -> PacketIndex:
    """Demux (no decoding) and return the frames' presentation timestamps and keyframe seek points."""
    with _open(path) as container:
        return _packet_index(container, path)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a source's size, frame rate, frame count (by demuxing), codec; reject what is not video."""
    with _open(path) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: video stream declares no frame size; the file is damaged")
        if width * height > MAX_PIXELS:
            raise VideoError(
                f"{path}: declared frame size {width}x{height} exceeds the {MAX_PIXELS} pixel limit; "
                "downscale the source first"
            )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate) if rate else Fraction(25, 1)
        index = _packet_index(container, path)
        if not index.pts:
            raise VideoError(f"{path}: video stream holds no frames; the file is empty or truncated")
        first = None
        try:
            container.seek(0)
            first = next(container.decode(stream), None)
        except (av.FFmpegError, StopIteration):
            first = None
        if first is None:
            raise VideoError(f"{path}: no frame could be decoded; the file is damaged or truncated")
        rotation = _rotation(stream, first)
        if rotation in (90, 270):
            width, height = height, width
        n = len(index.pts)
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            frame_count=n,
            duration_s=float(n / fps) if fps else 0.0,
            codec=ctx.name,
            pix_fmt=str(ctx.pix_fmt),
            size_bytes=Path(path).stat().st_size,
            rotation=rotation,
        )


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame → (H, W, 3) uint8 RGB with the source's matrix (see module docstring)."""
    src_cs = None
    if int(frame.colorspace) in (0, 2):  # RGB/unspecified: choose by size like FFmpeg does
        src_cs = "ITU709" if frame.height >= 720 else "ITU601"
    src_range = None if int(frame.color_range) in (1, 2) else "MPEG"
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=src_cs,
        src_color_range=src_range,
        dst_color_range="JPEG",
        interpolation="BICUBIC",
    ).to_ndarray()
    rot = int(getattr(frame, "rotation", 0) or 0) % 360
    if rot:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
    return rgb


def iter_frames(path: str | os.PathLike, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames `start .. start+count-1` (presentation order) as (H, W, 3) uint8 RGB.

    Seeks to the last keyframe at or before `start`, so reading a GOP in the middle of a long video
    decodes only from its nearest source keyframe.
    """
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"start={start}, count={count}: must be >= 0")
    if count == 0:
        return
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = _packet_index(container, path)
        if start >= len(index.pts):
            raise VideoError(f"{path}: frame {start} requested but the video has {len(index.pts)} frames")
        target_pts = index.pts[start]
        pos = {p: i for i, p in enumerate(index.pts)}
        k = bisect.bisect_right(index.keyframe_pts, target_pts) - 1
        try:
            if k >= 0 and start > 0:
                container.seek(index.keyframe_pts[k], stream=stream, backward=True, any_frame=False)
            else:
                container.seek(index.pts[0], stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            container.seek(0)
        end = len(index.pts) if count is None else min(len(index.pts), start + count)
        produced = 0
        seq = None  # fallback frame counter when a decoder gives no pts
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts in pos:
                    i = pos[frame.pts]
                else:
                    seq = (seq + 1) if seq is not None else 0
                    i = seq
                if i < start:
                    continue
                if i >= end:
                    break
                yield _to_rgb(frame)
                produced += 1
                if start + produced >= end:
                    break
        except av.FFmpegError as exc:
            raise VideoError(
                f"{path}: decoding failed after {produced} of {end - start} frames from frame {start} ({exc}); "
                "the file is damaged or truncated"
            ) from exc
        if produced < end - start:
            raise VideoError(
                f"{path}: only {produced} of {end - start} frames from frame {start} could be decoded; "
                "the file is damaged or truncated"
            )


def read_frames(path: str | os.PathLike, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames `start .. start+count-1` as one (T, H, W, 3) uint8 RGB array."""
    frames = list(iter_frames(path, start, count))
    if not frames:
        raise VideoError(f"{path}: no frames in range start={start}, count={count}")
    return np.stack(frames)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: Fraction | float | int,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Write (H, W, 3) uint8 RGB frames; returns the number written.

    `.mp4`/`.mkv`/`.mov`: H.264 (libx264) at `crf`, yuv420p (yuv444p when a side is odd, which 4:2:0
    cannot carry). `.y4m`: raw YUV 4:2:0 in a YUV4MPEG2 stream.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CONTAINER_FORMATS:
        raise VideoError(f"{path}: unsupported output type {suffix!r}; use .mp4, .mkv, .mov or .y4m")
    rate = Fraction(fps).limit_denominator(1001 * 1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    n = 0
    try:
        with av.open(str(tmp), mode="w", format=_CONTAINER_FORMATS[suffix]) as out:
            stream = None
            for rgb in frames:
                rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
                if rgb.ndim != 3 or rgb.shape[2] != 3:
                    raise VideoError(f"{path}: frame {n} has shape {rgb.shape}, expected (H, W, 3)")
                h, w = rgb.shape[:2]
                if stream is None:
                    if suffix == ".y4m":
                        stream = out.add_stream("rawvideo", rate=rate)
                        stream.pix_fmt = "yuv420p"
                    else:
                        stream = out.add_stream("libx264", rate=rate)
                        stream.pix_fmt = "yuv444p" if (w % 2 or h % 2) else "yuv420p"
                        stream.options = {"crf": str(crf), "preset": preset}
                    stream.width, stream.height = w, h
                    cs = "ITU709" if h >= 720 else "ITU601"
                elif (w, h) != (stream.width, stream.height):
                    raise VideoError(
                        f"{path}: frame {n} is {w}x{h}, earlier frames were {stream.width}x{stream.height}"
                    )
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(
                    format=stream.pix_fmt, dst_colorspace=cs, src_color_range="JPEG", dst_color_range="MPEG"
                )
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
                n += 1
            if stream is not None:
                for packet in stream.encode():
                    out.mux(packet)
        if n == 0:
            raise VideoError(f"{path}: no frames to write")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
