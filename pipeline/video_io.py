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
from typing import BinaryIO

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
    video_bytes: int = 0  # bytes of the video stream's packets (the file without container, audio, ...)
    frame_intervals_s: tuple[float, float] | None = None  # shortest, longest gap between frames' timestamps


#: Frame timing is called variable when the longest and the shortest interval between consecutive
#: presentation timestamps differ by more than this fraction of the nominal frame interval (timestamps are
#: rounded to the stream's time base, e.g. 1 ms in Matroska: 40 vs 41 ms is still constant).
VFR_TOLERANCE = 0.25


def variable_timing(info: VideoInfo) -> str | None:
    """A one-line warning when `info`'s frames are not evenly spaced in time (variable frame rate), else None.
    The archive keeps the frames and one nominal rate (`info.fps`), not the per-frame timestamps."""
    if info.frame_intervals_s is None or not info.fps:
        return None
    lo, hi = info.frame_intervals_s
    nominal = 1.0 / float(info.fps)
    if hi - lo <= VFR_TOLERANCE * nominal:
        return None
    return (f"variable frame rate: frame intervals {lo * 1000:.0f}-{hi * 1000:.0f} ms; archived with a constant "
            f"{float(info.fps):.3f} fps (per-frame timing not kept), so a re-served copy runs "
            f"{info.frame_count * nominal:.2f} s instead of the source's timing")


@dataclass(frozen=True)
class PacketIndex:
    """Presentation-ordered timestamps of every video packet and which of them are keyframes."""

    pts: tuple[int, ...]  # sorted presentation timestamps, one per frame
    keyframe_pts: tuple[int, ...]  # sorted pts of keyframes (seek points)
    # the timestamp to seek to for each keyframe (same order): its dts where known. Demuxers that seek by
    # dts (MPEG-TS) land *after* a keyframe whose pts they are given when B-frames delay its pts.
    keyframe_seek_ts: tuple[int, ...] = ()
    end_ts: int | None = None  # largest pts + duration (stream time base): where the packets end
    data_end: int | None = None  # largest byte position + size of a packet: where the video data ends
    packet_count: int = 0  # every video packet the file holds, empty ones (AVI's dropped frames) included
    video_bytes: int = 0  # sum of the video packets' sizes: the source's video-stream bytes (no container)


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
    keys: list[tuple[int, int]] = []
    end_ts: int | None = None
    data_end: int | None = None
    count = size = 0
    try:
        for packet in container.demux(stream):
            if packet.size > 0 or (packet.pos is not None and packet.pos >= 0):  # not the demuxer's flush packet
                count += 1
            size += packet.size
            if packet.size == 0 or packet.pts is None:
                continue
            p = int(packet.pts)
            pts.append(p)
            if packet.is_keyframe:
                keys.append((p, int(packet.dts) if packet.dts is not None else p))
            end = p + int(packet.duration or 0)
            end_ts = end if end_ts is None else max(end_ts, end)
            if packet.pos is not None and packet.pos >= 0:
                data_end = max(data_end or 0, int(packet.pos) + packet.size)
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: demuxing failed ({exc}); the file is damaged or truncated") from exc
    pts.sort()
    keys.sort()
    return PacketIndex(tuple(pts), tuple(k for k, _ in keys), tuple(min(k, d) for k, d in keys), end_ts, data_end,
                       count, size)


def _duration_tag_s(value: str | None) -> float | None:
    """Matroska's per-track `DURATION` tag (`HH:MM:SS.nnnnnnnnn`) in seconds; None when absent or odd."""
    try:
        h, m, sec = (value or "").strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _check_complete(container: av.container.InputContainer, index: PacketIndex, path: str | os.PathLike,
                    fps: Fraction) -> None:
    """VideoError when the file says it holds more video than its packets carry (a cut-off copy).

    Checked where the container states it: the frame count of MP4/MOV/AVI headers; the track duration of
    Matroska/WebM (its `DURATION` tag, or the segment duration when video is the only stream), against the
    end of the last packet with a tolerance of two frame intervals (or 1.5 of the longest gap); y4m: bytes
    after the last complete frame. A cut that loses only the last frame of a Matroska file, a y4m cut at an
    exact frame boundary and MPEG-TS (no declared length) cannot be told from a shorter file."""
    stream = container.streams.video[0]
    n = len(index.pts)
    fix = ("re-copy the source; to archive only what is left, remux it first "
           "(`ffmpeg -i IN -c copy OUT` writes a consistent header)")
    declared = int(stream.frames or 0)
    if declared > 0 and index.packet_count < declared:
        raise VideoError(f"{path}: truncated: the container declares {declared} frames but only "
                         f"{index.packet_count} are in the file; {fix}")
    fmt = container.format.name
    if "matroska" in fmt and index.end_ts is not None and stream.time_base and n:
        declared_s = _duration_tag_s(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
        if declared_s is None and len(container.streams) == 1 and container.duration:
            declared_s = (container.duration - (container.start_time or 0)) / 1e6
        if declared_s:
            tb = float(stream.time_base)
            start = stream.start_time if stream.start_time is not None else index.pts[0]
            covered_s = (index.end_ts - start) * tb
            gaps = np.diff(np.asarray(index.pts, dtype=np.float64)) * tb if n > 1 else np.zeros(1)
            tolerance = max(2.0 / float(fps) if fps else 0.0, 1.5 * float(gaps.max()), 0.002)
            if declared_s - covered_s > tolerance:
                raise VideoError(f"{path}: truncated: the container declares {declared_s:.3f} s of video but its "
                                 f"{n} frames end at {covered_s:.3f} s; {fix}")
    if fmt == "yuv4mpegpipe" and index.data_end is not None:
        size = Path(path).stat().st_size
        if size > index.data_end:
            raise VideoError(f"{path}: truncated: {size - index.data_end} bytes after the last of {n} complete "
                             f"frames (an incomplete frame); {fix}")


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
        codec, pix_fmt = ctx.name, str(ctx.pix_fmt)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate) if rate else Fraction(25, 1)
        index = _packet_index(container, path)
        if not index.pts:
            raise VideoError(f"{path}: video stream holds no frames; the file is empty or truncated")
        _check_complete(container, index, path, fps)
    with _open(path) as container:  # reopened rather than seeking back: seeking is unreliable on MPEG-TS
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except (av.FFmpegError, StopIteration):
            first = None
        if first is None:
            raise VideoError(f"{path}: no frame could be decoded; the file is damaged or truncated")
        rotation = _rotation(stream, first)
        if rotation in (90, 270):
            width, height = height, width
        n = len(index.pts)
        intervals = None
        if n > 2 and stream.time_base:
            gaps = np.diff(np.asarray(index.pts, dtype=np.float64)) * float(stream.time_base)
            intervals = (float(gaps.min()), float(gaps.max()))
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            frame_count=n,
            duration_s=float(n / fps) if fps else 0.0,
            codec=codec,
            pix_fmt=pix_fmt,
            size_bytes=Path(path).stat().st_size,
            rotation=rotation,
            video_bytes=index.video_bytes,
            frame_intervals_s=intervals,
        )


@dataclass(frozen=True)
class StreamSummary:
    """The streams of a container by kind (codec names). Only the first video stream is ever archived."""

    video: tuple[str, ...]
    audio: tuple[str, ...]
    subtitle: tuple[str, ...]
    other: tuple[str, ...]  # data, attachments, unknown


def stream_summary(src: str | os.PathLike | BinaryIO) -> StreamSummary:
    """Which streams a source holds, from its headers only (no decoding). `src`: a path or a seekable binary
    file (e.g. an S3 object read by ranges, `flows.sources.open_source`)."""
    if isinstance(src, (str, os.PathLike)):
        container = _open(src)
    else:
        try:
            container = av.open(src, mode="r")
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise VideoError(f"not a readable video container ({exc})") from exc
    with container:
        kinds: dict[str, list[str]] = {"video": [], "audio": [], "subtitle": [], "other": []}
        for st in container.streams:
            name = st.codec_context.name if st.codec_context is not None else (st.type or "unknown")
            kinds[st.type if st.type in kinds else "other"].append(str(name))
        return StreamSummary(*(tuple(kinds[k]) for k in ("video", "audio", "subtitle", "other")))


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


#: Keyframes tried, from the nearest one before the wanted frame backwards, before decoding from the start.
SEEK_TRIES = 3


def _numbered(frames: Iterator[av.VideoFrame], pos: dict[int, int], last: int = -1
              ) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame index, frame): by pts, or the one after the previous frame when a decoder gives no pts."""
    for frame in frames:
        i = pos.get(frame.pts) if frame.pts is not None else None
        last = last + 1 if i is None else i
        yield last, frame


def _after_seek(container: av.container.InputContainer, stream, index: PacketIndex, pos: dict[int, int],
                start: int) -> Iterator[tuple[int, av.VideoFrame]] | None:
    """Numbered frames from a keyframe at or before frame `start`, or None when no seek lands there.

    A seek is trusted only once its first decoded frame is known (by pts) to be at or before `start`:
    MPEG-TS seeks by dts and may land on the *next* keyframe, some demuxers seek nowhere useful. Seeks go
    to the keyframe's dts, then to earlier keyframes (`SEEK_TRIES` in all)."""
    k = bisect.bisect_right(index.keyframe_pts, index.pts[start]) - 1
    seek_ts = index.keyframe_seek_ts or index.keyframe_pts
    for j in range(k, max(k - SEEK_TRIES, -1), -1):
        try:
            container.seek(seek_ts[j], stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
            first = next(frames, None)
        except av.FFmpegError:
            continue
        if first is None or first.pts is None or first.pts not in pos or pos[first.pts] > start:
            continue

        def chained(first=first, frames=frames):
            yield first
            yield from frames

        return _numbered(chained(), pos, pos[first.pts] - 1)
    return None


def iter_frames(path: str | os.PathLike, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames `start .. start+count-1` (presentation order) as (H, W, 3) uint8 RGB.

    From frame 0 it decodes from the beginning of the file (no seek). From a later frame it seeks to the
    nearest source keyframe before it and checks where the seek landed (see `_after_seek`); when no seek
    lands at or before the frame, it decodes from the beginning and skips to it. So reading a GOP in the
    middle of a long video decodes only from its nearest keyframe wherever the container seeks correctly.
    """
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"start={start}, count={count}: must be >= 0")
    if count == 0:
        return
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = _packet_index(container, path)
        if start >= len(index.pts):
            raise VideoError(f"{path}: frame {start} requested but the video has {len(index.pts)} frames")
        pos = {p: i for i, p in enumerate(index.pts)}
        end = len(index.pts) if count is None else min(len(index.pts), start + count)
        produced = 0
        try:
            numbered = _after_seek(container, stream, index, pos, start) if start > 0 else None
            if numbered is None:  # from the beginning: a fresh demuxer, not a seek back
                container.close()
                container = _open(path)
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                numbered = _numbered(container.decode(stream), pos)
            for i, frame in numbered:
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
    finally:
        container.close()


def read_frames(path: str | os.PathLike, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames `start .. start+count-1` as one (T, H, W, 3) uint8 RGB array."""
    frames = list(iter_frames(path, start, count))
    if not frames:
        raise VideoError(f"{path}: no frames in range start={start}, count={count}")
    return np.stack(frames)


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> even H and W, an odd side extended by a copy of its last row/column (edge padding)."""
    h, w = rgb.shape[:2]
    if not (h % 2 or w % 2):
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: Fraction | float | int,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Write (H, W, 3) uint8 RGB frames; returns the number written.

    `.mp4`/`.mkv`/`.mov`: H.264 (libx264) at `crf`, yuv420p, the format every browser and player decodes.
    4:2:0 H.264 cannot carry an odd width or height, so an odd side is padded by one column/row copied from
    the last one (`pad_even`): a 65x49 video is written 66x50 (the pixels of the 65x49 picture unchanged
    at the top left). Cropping instead would drop a real row/column; 4:4:4 (the only exact odd-size H.264)
    does not play in browsers. `.y4m`: raw YUV 4:2:0 at the exact size (chroma rounded up), as FFmpeg does.
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
                if suffix != ".y4m":
                    rgb = pad_even(rgb)
                h, w = rgb.shape[:2]
                if stream is None:
                    if suffix == ".y4m":
                        stream = out.add_stream("rawvideo", rate=rate)
                        stream.pix_fmt = "yuv420p"
                    else:
                        stream = out.add_stream("libx264", rate=rate)
                        stream.pix_fmt = "yuv420p"
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
