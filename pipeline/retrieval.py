"""Partial retrieval: read only the (GOP, scale) chunks needed to re-serve a video at K scales.

    rows = read_manifest(store, video_ids=[vid])
    plan = plan_retrieval(rows, vid, scales=K, frames=(start, stop))   # list[RangeRead], adjacent merged
    got = fetch(store, plan)        # got.header, got.chunks[(gop_index, scale)], got.layer_bytes_read

The plan has one read for the header (scale 0) and, per scale k <= K, one read per run of consecutive
selected GOPs in `layer-<k>.bin` (one read per layer when the frame range is contiguous), so the layer
bytes read equal the bytes of the selected chunks exactly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.errors import ManifestError, StreamError
from pipeline.store import Store


@dataclass(frozen=True)
class ChunkRef:
    """Chunk (gop_index, scale) at `offset` (bytes, relative to the start of its RangeRead), `length` bytes.
    gop_index = -1 and scale = 0 mark the stream header; `checksum` is the manifest's."""

    gop_index: int
    scale: int
    offset: int
    length: int
    checksum: int


@dataclass(frozen=True)
class RangeRead:
    """One ranged GET: `length` bytes of object `key` from byte `offset`, covering `parts`."""

    key: str
    offset: int
    length: int
    parts: tuple[ChunkRef, ...]


@dataclass
class Retrieved:
    """Result of `fetch`: header bytes, chunk bytes per (gop_index, scale), and bytes read (header apart)."""

    header: bytes | None
    chunks: dict[tuple[int, int], bytes] = field(default_factory=dict)
    header_bytes_read: int = 0
    layer_bytes_read: int = 0
    requests: int = 0

    def gop_chunks(self) -> list[list[bytes]]:
        """Per selected GOP (in order), its chunks for scales 1..K (`pipeline.stream.gop_runs` takes them)."""
        gops = sorted({g for g, s in self.chunks if s > 0})
        scales = sorted({s for _, s in self.chunks if s > 0})
        return [[self.chunks[(g, s)] for s in scales] for g in gops]


def _pruned_error(rows: pa.Table, video_id: str, scales: int) -> ManifestError:
    lost = rows.filter(pc.is_valid(rows.column("pruned_at")))
    first = min(lost.column("scale").to_pylist())
    when = min(lost.column("pruned_at").to_pylist())
    return ManifestError(f"scales {first}.. of video {video_id} were pruned on {when:%Y-%m-%d %H:%M} UTC; "
                         f"re-serve with --scales <= {first - 1}")


def plan_retrieval(rows: pa.Table, video_id: str, scales: int, frames: tuple[int, int] | None = None,
                   header: bool = True) -> list[RangeRead]:
    """Ranged reads for `video_id` at `scales` (= K) scales, optionally only GOPs overlapping frames
    [start, stop). `rows`: effective manifest rows (pipeline.manifest.read_manifest). Adjacent chunks of one
    object are merged into one read. Raises ManifestError for unknown videos, K out of range, empty frame
    ranges, or scales that were pruned."""
    vrows = mf.require_rows(rows, video_id, "the manifest")
    n_scales = pc.max(vrows.column("scale")).as_py()
    if not 1 <= scales <= n_scales:
        raise ManifestError(f"video {video_id} has scales 1..{n_scales}; cannot re-serve with --scales {scales}")
    want = vrows.filter(pc.less_equal(vrows.column("scale"), scales))
    if "pruned_at" in want.column_names and want.column("pruned_at").null_count < want.num_rows:
        raise _pruned_error(want, video_id, scales)
    layers = want.filter(pc.greater(want.column("scale"), mf.HEADER_SCALE))
    if frames is not None:
        start, stop = frames
        ff = layers.column("first_frame")
        overlap = pc.and_(pc.less(ff, stop), pc.greater(pc.add(ff, layers.column("frame_count")), start))
        layers = layers.filter(overlap)
        if layers.num_rows == 0:
            raise ManifestError(f"frames [{start}, {stop}) of video {video_id} select no GOP; the video has "
                                f"{vrows.filter(pc.equal(vrows.column('scale'), 0)).column('frame_count')[0]}"
                                f" frames")
    layers = layers.sort_by([("scale", "ascending"), ("gop_index", "ascending")])
    items = layers.select(["layer_key", "byte_offset", "byte_length", "gop_index", "scale", "checksum"])
    cols = [items.column(c).to_pylist() for c in items.column_names]
    plan: list[RangeRead] = []
    if header:
        hrow = want.filter(pc.equal(want.column("scale"), mf.HEADER_SCALE))
        if hrow.num_rows:
            h = {c: hrow.column(c)[0].as_py() for c in ("layer_key", "byte_offset", "byte_length", "checksum")}
            plan.append(RangeRead(h["layer_key"], h["byte_offset"], h["byte_length"],
                                  (ChunkRef(-1, 0, 0, h["byte_length"], h["checksum"]),)))
    cur = None
    for key, off, n, g, s, crc in zip(*cols):
        if cur is not None and cur[0] == key and cur[1] + cur[2] == off:
            cur[3].append(ChunkRef(g, s, cur[2], n, crc))
            cur[2] += n
            continue
        if cur is not None:
            plan.append(RangeRead(cur[0], cur[1], cur[2], tuple(cur[3])))
        cur = [key, off, n, [ChunkRef(g, s, 0, n, crc)]]
    if cur is not None:
        plan.append(RangeRead(cur[0], cur[1], cur[2], tuple(cur[3])))
    return plan


def fetch(store: Store, plan: list[RangeRead], max_workers: int = 8) -> Retrieved:
    """Execute `plan` (parallel ranged reads) and split the bytes into chunks. The header is checked
    against its CRC32, every chunk's header against its manifest row (scale, token CRC32)."""
    import zlib

    def read(r: RangeRead) -> bytes:
        return store.get_range(r.key, r.offset, r.length)

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(plan)))) as pool:
        blobs = list(pool.map(read, plan))
    out = Retrieved(header=None, requests=len(plan))
    for r, blob in zip(plan, blobs):
        for p in r.parts:
            data = blob[p.offset : p.offset + p.length]
            if p.scale == mf.HEADER_SCALE:
                if zlib.crc32(data) != p.checksum:
                    raise StreamError(f"header {store.url(r.key)} fails its CRC32 check (manifest {p.checksum:#x}"
                                      f", object {zlib.crc32(data):#x}); the object was changed or damaged")
                out.header = data
                out.header_bytes_read += len(data)
            else:
                _check_chunk(data, p, store.url(r.key))
                out.chunks[(p.gop_index, p.scale)] = data
                out.layer_bytes_read += len(data)
    return out


def _check_chunk(data: bytes, ref: ChunkRef, url: str) -> None:
    """The container's chunk checker (`pipeline.pgv.parse_chunk`: marker, length, CRC, scale), then the
    chunk's token CRC32 against its manifest row: a chunk moved, swapped or replaced inside a layer object
    becomes a clear StreamError here instead of a wrong picture later. (The GOP tag is checked when the
    chunk is decoded, against the stream header: `pipeline.stream.decode_gop_frames`.)"""
    from pipeline.pgv import parse_chunk

    where = f"{url} GOP {ref.gop_index} scale {ref.scale}"
    ch, _ = parse_chunk(data, 0, where, scale=ref.scale)
    if (ch.token_crc & 0xFFFFFFFF) != (ref.checksum & 0xFFFFFFFF):
        raise StreamError(f"{where}: the chunk does not match its manifest row (token CRC32 {ch.token_crc:#x} vs "
                          f"{ref.checksum:#x}); the layer object was changed or its chunks reordered: re-archive "
                          "the source")
