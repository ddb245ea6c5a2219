"""The `.pgv` byte format (torch-free): stream header, GOP table, and length-prefixed checksummed chunks.

Layout (all integers little-endian):

    header  = b"PGV1" | u32 format_version | u32 body_len | body (UTF-8 JSON) | u32 crc32(body)
    chunk   = b"PGC1" | u32 payload_len | u32 token_count | u16 scale (1-based) | u16 gop_tag
              | u32 crc32(token indices, LE uint16) | u32 crc32(payload) | payload
    layer k = chunk(GOP 0, k) + chunk(GOP 1, k) + ...
    .pgv    = header + layer 1 + layer 2 + ... + layer K   (K <= N; a cut at any layer end is valid)

`header.bin` in the archive is exactly `StreamHeader.to_bytes()`; `layer-<k>.bin` is layer k.

gop_tag = GOP index mod 65536 (format 2): a `.pgv` reader refuses a chunk in another GOP's place, even
when the two GOPs have the same frame count. Format 1 streams (tag 0 everywhere) are still read.

`parse_chunk` is the one chunk checker (magic, length, payload CRC32, and the expected scale and GOP tag
when the caller knows them); `.pgv` reading, layer splitting, archive retrieval and decoding all use it.
This module imports neither torch nor any codec family (`pipeline.codec.container` re-exports it).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ModelMismatchError, StreamError

MAGIC = b"PGV1"
CHUNK_MAGIC = b"PGC1"
FORMAT_VERSION = 2  # 2: chunks carry their GOP tag
READABLE_VERSIONS = (1, 2)
_HEAD = struct.Struct("<4sII")
_CHUNK = struct.Struct("<4sIIHHII")
CHUNK_HEADER_BYTES = _CHUNK.size
MAX_HEADER_BODY = 64 << 20  # a GOP table for millions of GOPs still fits
MAX_PAYLOAD = 1 << 30
MAX_TOKENS = 1 << 31
MAX_SIDE = 1 << 16  # header width/height at most (pixels)
MAX_FRAME_PIXELS = 8192 * 8192  # = pipeline.video_io.MAX_PIXELS: nothing larger is ever encoded
MAX_SCALES = 64
MAX_SCALE_SIDE = 4096  # scale schedule entries and tile size at most
MODES = ("plain", "keyframe")  # keyframe: non-keyframes carry only scales 1..frame_scales


@dataclass(frozen=True)
class GopEntry:
    """One GOP: frames [first_frame, first_frame + frame_count); frame 0 of it is its keyframe.
    `generate` (keyframe mode): frames 1..generate of the GOP get generated fine scales, chosen by the
    encoder; None = every frame."""

    first_frame: int
    frame_count: int
    keyframe: bool = True
    generate: int | None = None


@dataclass
class StreamHeader:
    """Everything a decoder needs besides the layers (DESIGN §3)."""

    model_id: str
    width: int
    height: int
    fps_num: int
    fps_den: int
    frame_count: int
    scales: tuple[int, ...]
    tile: int
    gops: list[GopEntry] = field(default_factory=list)
    mode: str = "plain"  # "plain" | "keyframe" (MODES)
    frame_scales: int | None = None  # keyframe mode: scales coded for non-keyframes (the keyframe has all)
    format_version: int = FORMAT_VERSION
    encoder: dict | None = None  # encoder settings, e.g. {"fidelity": 60, "effort": "medium"}; informative only

    @property
    def n_scales(self) -> int:
        return len(self.scales)

    def coded_frames(self, gop: int, scale: int) -> int:
        """Frames of GOP `gop` whose tokens the chunk of `scale` (1-based) holds: all of them, or only the
        keyframe for scales above `frame_scales` in keyframe mode."""
        n = self.gops[gop].frame_count
        return n if self.frame_scales is None or scale <= self.frame_scales else 1

    def chunk_gop(self, gop: int) -> int | None:
        """The GOP whose tag chunks in GOP `gop`'s place must carry (`parse_chunk(gop=...)`): `gop`, or
        None for format 1 streams (tag 0 everywhere, not checked)."""
        return gop if self.format_version >= 2 else None

    def to_bytes(self) -> bytes:
        body = json.dumps(
            {
                "model_id": self.model_id,
                "width": self.width,
                "height": self.height,
                "fps": [self.fps_num, self.fps_den],
                "frame_count": self.frame_count,
                "scales": list(self.scales),
                "tile": self.tile,
                "mode": self.mode,
                **({"frame_scales": self.frame_scales} if self.frame_scales is not None else {}),
                **({"encoder": self.encoder} if self.encoder is not None else {}),
                "gops": [[g.first_frame, g.frame_count, int(g.keyframe)] + ([] if g.generate is None else [g.generate])
                         for g in self.gops],
            },
            separators=(",", ":"),
        ).encode()
        return _HEAD.pack(MAGIC, self.format_version, len(body)) + body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def parse(cls, data: bytes | memoryview, source: str = "stream") -> tuple[StreamHeader, int]:
        """Header at the start of `data` → (header, bytes consumed). StreamError if damaged."""
        if len(data) < _HEAD.size:
            raise StreamError(f"{source}: too short for a ProGVC header ({len(data)} bytes); not a .pgv stream?")
        magic, version, n = _HEAD.unpack_from(data, 0)
        if magic != MAGIC:
            raise StreamError(f"{source}: not a ProGVC stream (magic {bytes(magic)!r}, expected {MAGIC!r})")
        if version not in READABLE_VERSIONS:
            raise StreamError(
                f"{source}: format version {version} is not supported (this build reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade progvc"
            )
        end = _HEAD.size + n + 4
        if n > MAX_HEADER_BODY or end > len(data):
            raise StreamError(f"{source}: header length {n} is damaged or the stream is truncated in its header")
        body = bytes(data[_HEAD.size : _HEAD.size + n])
        (crc,) = struct.unpack_from("<I", data, _HEAD.size + n)
        if zlib.crc32(body) != crc:
            raise StreamError(f"{source}: header checksum mismatch: the stream header is damaged")
        try:
            d = json.loads(body)
            hdr = cls(
                model_id=str(d["model_id"]),
                width=int(d["width"]),
                height=int(d["height"]),
                fps_num=int(d["fps"][0]),
                fps_den=int(d["fps"][1]),
                frame_count=int(d["frame_count"]),
                scales=tuple(int(s) for s in d["scales"]),
                tile=int(d["tile"]),
                mode=str(d.get("mode", "plain")),
                frame_scales=None if d.get("frame_scales") is None else int(d["frame_scales"]),
                gops=[GopEntry(int(g[0]), int(g[1]), bool(g[2]), int(g[3]) if len(g) > 3 else None)
                      for g in d["gops"]],
                format_version=version,
                encoder=_encoder_field(d.get("encoder")),
            )
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise StreamError(f"{source}: header fields are invalid ({exc})") from exc
        hdr._check_fields(source)
        return hdr, end

    def _check_fields(self, source: str) -> None:
        """StreamError unless every field is in range and the GOP table tiles [0, frame_count) — a header
        with a valid CRC may still be hostile, and decoders size their work from these fields."""
        bad = None
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE
                and self.width * self.height <= MAX_FRAME_PIXELS):
            bad = f"frame size {self.width}x{self.height} (limit {MAX_SIDE} per side, {MAX_FRAME_PIXELS} pixels)"
        elif self.fps_num < 1 or self.fps_den < 1:
            bad = f"frame rate {self.fps_num}/{self.fps_den}"
        elif not 1 <= len(self.scales) <= MAX_SCALES or any(not 1 <= s <= MAX_SCALE_SIDE for s in self.scales):
            bad = f"scale schedule {list(self.scales)[:8]}"
        elif not 1 <= self.tile <= MAX_SCALE_SIDE:
            bad = f"tile {self.tile}"
        elif self.mode not in MODES:
            bad = f"mode {self.mode!r} (this build knows {', '.join(MODES)}; a newer progvc may read it)"
        elif (self.mode == "keyframe") != (self.frame_scales is not None) or (
            self.frame_scales is not None and not 1 <= self.frame_scales <= len(self.scales)
        ):
            bad = f"mode {self.mode} with frame_scales {self.frame_scales}"
        else:
            nxt = 0
            for i, g in enumerate(self.gops):
                if g.first_frame != nxt or g.frame_count < 1:
                    bad = f"GOP {i} (first frame {g.first_frame}, {g.frame_count} frames; expected first frame {nxt})"
                    break
                if g.generate is not None and (self.mode != "keyframe" or not 0 <= g.generate < g.frame_count):
                    bad = f"GOP {i} generated prefix {g.generate} ({g.frame_count} frames, mode {self.mode})"
                    break
                nxt += g.frame_count
            if bad is None and nxt != self.frame_count:
                bad = f"frame count {self.frame_count} (the GOP table covers {nxt} frames)"
        if bad:
            raise StreamError(f"{source}: header field out of range: {bad}; the stream is damaged or not ours")

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, source: str = "stream") -> StreamHeader:
        return cls.parse(data, source)[0]

    def check_model(self, model_id: str, source: str = "stream") -> None:
        """ModelMismatchError unless this stream was made by `model_id`."""
        if self.model_id != model_id:
            raise ModelMismatchError(
                f"{source} was encoded by model {self.model_id}, but the loaded model is {model_id}; "
                f"decode it with model {self.model_id} (leave out --weights: it is looked up by that id, "
                f"in models/{self.model_id}.pt or PROGVC_MODELS_DIR)"
            )


MAX_ENCODER_FIELDS = 16


def _encoder_field(value) -> dict | None:
    """The header's optional `encoder` object (settings the encoder was run with; written only when set, so
    streams without it keep their bytes): flat, at most MAX_ENCODER_FIELDS short names with numbers or short
    strings. ValueError otherwise (a damaged or hostile header)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_ENCODER_FIELDS:
        raise ValueError("encoder: expected an object of at most 16 settings")
    for k, v in value.items():
        ok = isinstance(v, (int, float, str)) and not isinstance(v, bool)
        if not (isinstance(k, str) and 1 <= len(k) <= 64 and ok and (not isinstance(v, str) or len(v) <= 256)):
            raise ValueError(f"encoder setting {str(k)[:64]!r} is not a short name with a number or short string")
    return dict(value)


@dataclass(frozen=True)
class Chunk:
    """One parsed (GOP, scale) chunk; `data` is the whole chunk (header + payload)."""

    scale: int  # 1-based
    token_count: int
    gop_tag: int  # GOP index mod 65536 (0 in format-1 streams)
    token_crc: int
    payload: bytes
    data: bytes


def gop_tag(gop_index: int) -> int:
    return gop_index & 0xFFFF


def pack_chunk(scale: int, token_count: int, token_crc: int, payload: bytes, gop_index: int = 0) -> bytes:
    """One chunk: header + payload (scale 1-based; the GOP's index is stored mod 65536)."""
    head = _CHUNK.pack(CHUNK_MAGIC, len(payload), token_count, scale, gop_tag(gop_index), token_crc,
                       zlib.crc32(payload))
    return head + payload


def parse_chunk(
    data: bytes | memoryview, offset: int = 0, where: str = "chunk", *, scale: int | None = None,
    gop: int | None = None,
) -> tuple[Chunk, int]:
    """The chunk checker: chunk at `offset` -> (chunk, offset after it). StreamError (naming `where`)
    unless its marker, length and payload CRC32 are right and, when given, it holds `scale` (1-based)
    and carries GOP `gop`'s tag (pass `gop` only for format >= 2 streams: `StreamHeader.chunk_gop`)."""
    hint = "the stream is damaged; re-fetch it, or decode fewer layers with --scales"
    if offset + _CHUNK.size > len(data):
        raise StreamError(f"{where}: truncated chunk header ({len(data) - offset} bytes left); {hint}")
    magic, n, count, k, tag, tcrc, pcrc = _CHUNK.unpack_from(data, offset)
    if magic != CHUNK_MAGIC:
        raise StreamError(f"{where}: bad chunk marker {bytes(magic)!r}; {hint}")
    end = offset + _CHUNK.size + n
    if n > MAX_PAYLOAD or count > MAX_TOKENS or end > len(data):
        raise StreamError(f"{where}: chunk length {n} runs past the end of the data (truncated?); {hint}")
    payload = bytes(data[offset + _CHUNK.size : end])
    if zlib.crc32(payload) != pcrc:
        raise StreamError(f"{where}: payload checksum mismatch; {hint}")
    if scale is not None and k != scale:
        raise StreamError(f"{where}: chunk holds scale {k} where scale {scale} was expected; chunks are out of "
                          "order or the stream is damaged")
    if gop is not None and tag != gop_tag(gop):
        raise StreamError(f"{where}: chunk belongs to GOP {tag} (mod 65536); chunks are out of order, the stream "
                          "is damaged")
    return Chunk(k, count, tag, tcrc, payload, bytes(data[offset:end])), end


def split_layer(data: bytes | memoryview, n_gops: int, scale: int, source: str = "layer",
                format_version: int = FORMAT_VERSION) -> list[bytes]:
    """A layer's bytes (all GOPs of scale `scale`, 1-based) -> one chunk per GOP (each checked by
    `parse_chunk`, GOP tags too unless the stream is format 1)."""
    out, off = [], 0
    for g in range(n_gops):
        ch, off = parse_chunk(data, off, f"{source}: GOP {g} scale {scale}", scale=scale,
                              gop=g if format_version >= 2 else None)
        out.append(ch.data)
    if off != len(data):
        raise StreamError(f"{source}: {len(data) - off} unexpected bytes after the last GOP of scale {scale}")
    return out


def write_pgv(path: str | Path, header: StreamHeader, gop_chunks: list[list[bytes]], scales: int | None = None) -> int:
    """Write a `.pgv`: header then layers 1..K scale-major (gop_chunks[g][k]). Returns bytes written."""
    k_max = min(len(c) for c in gop_chunks) if gop_chunks else 0
    k_max = k_max if scales is None else min(k_max, scales)
    n = 0
    with open(path, "wb") as f:
        n += f.write(header.to_bytes())
        for k in range(k_max):
            for chunks in gop_chunks:
                n += f.write(chunks[k])
    return n


@dataclass
class PgvStream:
    header: StreamHeader
    layers: list[list[bytes]]  # layers[k][g]: chunk bytes of GOP g at scale k+1
    layer_bytes: list[int]  # bytes per layer
    header_bytes: int

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def gop_chunks(self, g: int, scales: int | None = None) -> list[bytes]:
        k = self.n_layers if scales is None else min(scales, self.n_layers)
        return [self.layers[i][g] for i in range(k)]

    @classmethod
    def from_gops(cls, header: StreamHeader, gop_chunks: list[list[bytes]]) -> PgvStream:
        """A stream held in memory: `gop_chunks[g]` = GOP g's chunks of layers 1..K (the same K for every
        GOP; extra chunks of longer GOPs are dropped). Chunks are checked when decoded."""
        k = min((len(c) for c in gop_chunks), default=0)
        layers = [[c[i] for c in gop_chunks] for i in range(k)]
        return cls(header, layers, [sum(map(len, layer)) for layer in layers], len(header.to_bytes()))


def read_pgv(src: str | Path | bytes, scales: int | None = None) -> PgvStream:
    """Parse a `.pgv` (path or bytes). A cut at a layer end is a valid stream with fewer layers;
    a cut inside a layer or any damage raises StreamError naming the GOP and scale.

    With `scales=K` only the header and the first K layers are read from a file.
    """
    import io

    if isinstance(src, (bytes, bytearray)):
        name, fh = "stream", io.BytesIO(bytes(src))
    else:
        name = str(src)
        try:
            fh = open(src, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StreamError(f"{src}: cannot read the stream ({exc.strerror}); check the path") from exc
    with fh:
        head = fh.read(_HEAD.size)
        if len(head) == _HEAD.size and head[:4] == MAGIC:
            (n,) = struct.unpack_from("<I", head, 8)
            head += fh.read(min(n, MAX_HEADER_BODY + 1) + 4)
        hdr, _ = StreamHeader.parse(head, name)
        layers, sizes = [], []
        n_g = len(hdr.gops)
        k_max = hdr.n_scales if scales is None else min(scales, hdr.n_scales)
        while n_g and len(layers) < k_max:
            k = len(layers) + 1
            chunks: list[bytes] = []
            for g in range(n_g):
                where = f"{name}: GOP {g} scale {k}"
                ch_head = fh.read(_CHUNK.size)
                if not ch_head and g == 0:
                    break  # the stream ends at a layer boundary
                if len(ch_head) < _CHUNK.size:
                    raise StreamError(
                        f"{where}: the stream ends inside layer {k}; use --scales {k - 1} to decode the "
                        "complete layers"
                    )
                (n,) = struct.unpack_from("<I", ch_head, 4)
                body = fh.read(n) if ch_head[:4] == CHUNK_MAGIC and n <= MAX_PAYLOAD else b""
                try:
                    ch, _ = parse_chunk(ch_head + body, 0, where, scale=k, gop=hdr.chunk_gop(g))
                except StreamError as exc:
                    raise StreamError(f"{exc} (the first {k - 1} layers are intact: --scales {k - 1})") from exc
                chunks.append(ch.data)
            if len(chunks) < n_g:
                break
            layers.append(chunks)
            sizes.append(sum(len(c) for c in chunks))
        if scales is None and fh.read(1):
            raise StreamError(f"{name}: unexpected bytes after layer {len(layers)}; the stream is damaged")
    return PgvStream(hdr, layers, sizes, len(hdr.to_bytes()))
