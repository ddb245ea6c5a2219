"""Reference codecs through PyAV: x264 (libx264), x265 (libx265), AV1 (libsvtav1, decoded by dav1d).

Every reference encode follows the same rules so the comparison with ProGVC is like for like:
- input: the same RGB uint8 frames ProGVC gets, converted to BT.601 (BT.709 from 720 lines up)
  limited-range yuv420p exactly as `pipeline.video_io.write_video` does; reconstructions are converted
  back with the same matrix, so metrics compare RGB with RGB for every codec;
- odd sizes: 4:2:0 needs even width/height, so frames are padded on the right/bottom by repeating the
  edge pixels, encoded, decoded and cropped back; bits still count against the original W x H (the
  padding costs the reference codec a little, never ProGVC). Tiny frames are padded to 16 px a side
  (x264, AV1) or 64 px (x265: this libx265 build corrupts its heap and aborts the process on some small
  sizes, e.g. 40x24, 48x24, 40x16; no size of 64 px or more a side crashed in our probes);
- fixed keyframe interval `gop` (ProGVC's GOP length), no scene-cut keyframes, closed GOPs;
- one quality knob per codec: CRF (x264/x265 0..51, SVT-AV1 1..63);
- bits = 8 x the sum of the encoder's packet sizes (raw elementary stream: parameter sets are in-band,
  no container). The encoders' informational "who made me" SEI (x264's option string, ~700 bytes;
  x265's is switched off with `info=0`) is dropped from the packets before they are counted and
  decoded: it carries no picture data, and counting it would charge x264 ~0.003 bpp on a 16-frame CIF
  clip that has nothing to do with compression.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from pipeline.errors import ProGVCError

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner at info level otherwise

MIN_SIDE = {"x264": 16, "x265": 64, "av1": 16}  # smallest padded side per codec (see module doc)


@dataclass(frozen=True)
class RefCodec:
    """One reference codec: PyAV encoder/decoder names and its CRF range."""

    name: str
    encoder: str
    decoder: str
    crf_min: int
    crf_max: int
    presets: tuple[str, ...]  # presets understood by the encoder (x26x names, SVT-AV1 numbers)


CODECS: dict[str, RefCodec] = {
    "x264": RefCodec("x264", "libx264", "h264", 0, 51, ("ultrafast", "fast", "medium", "slow", "veryslow")),
    "x265": RefCodec("x265", "libx265", "hevc", 0, 51, ("ultrafast", "fast", "medium", "slow", "veryslow")),
    "av1": RefCodec("av1", "libsvtav1", "libdav1d", 1, 63, tuple(str(p) for p in range(14))),
}

_X264_INFO = b"x264 - core"


@dataclass(frozen=True)
class RefEncoding:
    """Packets of one reference encode (decode order) and what they cost."""

    codec: str
    preset: str
    crf: int
    gop: int
    packets: tuple[bytes, ...]
    keyframes: tuple[int, ...]  # packet indices flagged as keyframes
    encode_s: float  # wall time of the encoder calls (colour conversion excluded)
    stripped_bytes: int  # bytes of informational SEI removed before counting

    @property
    def bits(self) -> int:
        return 8 * sum(len(p) for p in self.packets)


def colorspace_for(height: int) -> str:
    """Matrix `video_io` uses for a source without colour tags: BT.709 from 720 lines, else BT.601."""
    return "ITU709" if height >= 720 else "ITU601"


def padded_size(width: int, height: int, codec: str = "x264") -> tuple[int, int]:
    """Encoded size for `codec`: even and at least MIN_SIDE[codec] on each side."""
    m = MIN_SIDE[codec]
    return max(m, width + width % 2), max(m, height + height % 2)


def pad_frames(frames_THWC: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pad (T, H, W, 3) on the right/bottom by edge replication to (T, height, width, 3)."""
    T, H, W, _ = frames_THWC.shape
    if (W, H) == (width, height):
        return frames_THWC
    return np.pad(frames_THWC, ((0, 0), (0, height - H), (0, width - W), (0, 0)), mode="edge")


def _split_annexb(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit payload (after its start code) in an Annex-B byte string."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    spans = []
    for i, s in enumerate(starts):
        e = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        while i + 1 < len(starts) and e > s and data[e - 1] == 0:  # zero_byte of a 4-byte start code
            e -= 1
        spans.append((s, e))
    return spans


def strip_info_sei(codec: str, packet: bytes) -> bytes:
    """Drop x264's informational user-data SEI (its version/options string) from an H.264 packet."""
    if codec != "x264" or _X264_INFO not in packet:
        return packet
    out = bytearray()
    for s, e in _split_annexb(packet):
        nal = packet[s:e]
        if (nal[0] & 0x1F) == 6 and _X264_INFO in nal:
            continue
        out += b"\x00\x00\x00\x01" + nal
    return bytes(out)


def _encoder_options(codec: RefCodec, preset: str, crf: int, gop: int) -> dict[str, str]:
    if codec.name == "x264":
        return {"crf": str(crf), "preset": preset, "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    if codec.name == "x265":
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:info=0:log-level=error"
        return {"crf": str(crf), "preset": preset, "x265-params": params}
    # SVT-AV1: gop_size sets the keyframe interval; closed-GOP key frames and no scene-change
    # detection are its defaults (checked in tests/test_evaluate.py through the keyframe flags)
    return {"crf": str(crf), "preset": preset}


def encode(
    frames_THWC: np.ndarray,
    codec: str,
    preset: str,
    crf: int,
    gop: int = 16,
    fps: Fraction = Fraction(25),
) -> RefEncoding:
    """Encode RGB uint8 frames (T, H, W, 3) with one reference codec at one CRF."""
    if codec not in CODECS:
        raise ProGVCError(f"unknown reference codec {codec!r}; choose from {', '.join(CODECS)}")
    rc = CODECS[codec]
    if preset not in rc.presets:
        raise ProGVCError(f"{codec}: unknown preset {preset!r}; choose from {', '.join(rc.presets)}")
    if not rc.crf_min <= crf <= rc.crf_max:
        raise ProGVCError(f"{codec}: CRF {crf} outside {rc.crf_min}..{rc.crf_max}")
    T, H, W, _ = frames_THWC.shape
    pw, ph = padded_size(W, H, codec)
    cs = colorspace_for(H)
    yuv = []
    for i, rgb in enumerate(pad_frames(frames_THWC, pw, ph)):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf = vf.reformat(format="yuv420p", dst_colorspace=cs, src_color_range="JPEG", dst_color_range="MPEG")
        vf.pts = i
        vf.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose frame types
        yuv.append(vf)
    try:
        cc = av.CodecContext.create(rc.encoder, "w")
        cc.width, cc.height, cc.pix_fmt = pw, ph, "yuv420p"
        rate = Fraction(fps).limit_denominator(1001 * 1000)
        cc.time_base = 1 / rate
        cc.framerate = rate
        cc.gop_size = gop
        cc.options = _encoder_options(rc, preset, crf, gop)
        t0 = time.perf_counter()
        packets = []
        for vf in yuv:
            packets += cc.encode(vf)
        packets += cc.encode(None)
        encode_s = time.perf_counter() - t0
    except av.FFmpegError as exc:
        raise ProGVCError(f"{rc.encoder} ({preset}, crf {crf}) failed on {W}x{H} frames: {exc}") from exc
    payload, keys, stripped = [], [], 0
    for i, p in enumerate(packets):
        raw = bytes(p)
        kept = strip_info_sei(codec, raw)
        stripped += len(raw) - len(kept)
        payload.append(kept)
        if p.is_keyframe:
            keys.append(i)
    return RefEncoding(codec, preset, crf, gop, tuple(payload), tuple(keys), encode_s, stripped)


def decode(enc: RefEncoding, width: int, height: int) -> np.ndarray:
    """Decode a reference encoding's packets to RGB uint8 (T, height, width, 3), cropped from padding."""
    rc = CODECS[enc.codec]
    cs = colorspace_for(height)
    dc = av.CodecContext.create(rc.decoder, "r")
    frames = []

    def take(decoded: list[av.VideoFrame]) -> None:
        for f in decoded:
            rgb = f.reformat(
                format="rgb24",
                src_colorspace=cs,
                src_color_range="MPEG",
                dst_color_range="JPEG",
                interpolation="BICUBIC",
            ).to_ndarray()
            frames.append(rgb[:height, :width])

    try:
        for data in enc.packets:
            take(dc.decode(av.Packet(data)))
        take(dc.decode(None))
    except av.FFmpegError as exc:
        raise ProGVCError(f"{rc.decoder}: decoding the {enc.codec} stream (crf {enc.crf}) failed: {exc}") from exc
    if not frames:
        raise ProGVCError(f"{rc.decoder}: the {enc.codec} stream (crf {enc.crf}) decoded to no frames")
    return np.ascontiguousarray(np.stack(frames))
