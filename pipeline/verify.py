"""Check every stored object of an archive against its manifest, without decoding (`progvc verify`).

    report = verify_archive(store)                 # or video_ids=[...]
    report.problems -> ["s3://b/a/videos/<id>/layer-3.bin: GOP 2 scale 3: payload checksum mismatch; ...", ...]

What is checked, per object the effective manifest says is stored (pruned scales are skipped):
- `header.bin`: it exists, its size is the manifest's `byte_length`, and its CRC32 is the row's `checksum`;
- `layer-<k>.bin`: it exists, its size is the sum of its chunks' `byte_length`s, and each chunk at its
  manifest offset passes the container's chunk checker (`pipeline.pgv.parse_chunk`: marker, length,
  payload CRC32, scale) and carries the token CRC32 of its manifest row (`checksum`).
Objects are read in ranges of at most `max_read` bytes (whole chunks each), several objects at a time, through
`pipeline.store`; nothing is decoded, no model is loaded. One problem line per bad object (its first fault).
Objects that no stored row names (leftovers of a crashed job or prune; readers ignore them) are not faults.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.errors import ProGVCError, StreamError
from pipeline.store import Store

MAX_READ = 32 * 1024 * 1024  # bytes per ranged read (a chunk larger than this is read alone)


@dataclass
class VerifyReport:
    """Outcome of `verify_archive`: what was checked and one line per bad object."""

    videos: int = 0
    objects: int = 0
    chunks: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_header(store: Store, key: str, length: int, crc: int) -> tuple[str | None, int]:
    info = store.head(key)
    if info is None:
        return "missing (the manifest lists it as stored)", 0
    if info.size != length:
        return f"size {info.size} bytes, the manifest says {length}", 0
    data = store.get_range(key, 0, length)
    got = zlib.crc32(data)
    if got != (crc & 0xFFFFFFFF):
        return (f"CRC32 {got:#010x}, the manifest says {crc & 0xFFFFFFFF:#010x} (the header was changed or "
                f"damaged)"), len(data)
    return None, len(data)


def _check_layer(store: Store, key: str, scale: int, chunks: list[tuple[int, int, int, int]],
                 max_read: int) -> tuple[str | None, int]:
    """`chunks`: (gop_index, byte_offset, byte_length, token crc) in offset order."""
    from pipeline.pgv import parse_chunk

    expected = sum(n for _, _, n, _ in chunks)
    info = store.head(key)
    if info is None:
        return "missing (the manifest lists it as stored)", 0
    if info.size != expected:
        return f"size {info.size} bytes, the manifest's {len(chunks)} chunk(s) add up to {expected}", 0
    pos = 0
    for g, off, n, _ in chunks:
        if off != pos:
            return f"the manifest places GOP {g} at byte {off}, expected {pos} (the manifest rows are inconsistent)", 0
        pos += n
    read, i = 0, 0
    while i < len(chunks):  # a run of whole chunks of at most max_read bytes (at least one chunk)
        j, start = i + 1, chunks[i][1]
        while j < len(chunks) and chunks[j][1] + chunks[j][2] - start <= max_read:
            j += 1
        end = chunks[j - 1][1] + chunks[j - 1][2]
        blob = store.get_range(key, start, end - start)
        read += len(blob)
        for g, off, n, crc in chunks[i:j]:
            where = f"GOP {g} scale {scale}"
            try:
                ch, after = parse_chunk(blob, off - start, where, scale=scale)
            except StreamError as exc:
                return str(exc), read
            if after != off - start + n:
                return f"{where}: the chunk is {after - (off - start)} bytes, the manifest says {n}", read
            if (ch.token_crc & 0xFFFFFFFF) != (crc & 0xFFFFFFFF):
                return (f"{where}: token CRC32 {ch.token_crc & 0xFFFFFFFF:#010x}, the manifest says "
                        f"{crc & 0xFFFFFFFF:#010x} (chunks replaced or reordered)"), read
        i = j
    return None, read


def verify_archive(store: Store, video_ids: Iterable[str] | None = None, max_read: int = MAX_READ,
                   max_workers: int = 8) -> VerifyReport:
    """Check every stored object of the archive at `store` (or of `video_ids`) against the manifest; see the
    module doc. Raises ManifestError when a requested video is not in the archive."""
    rows = mf.read_manifest(store, video_ids=video_ids)
    if video_ids is not None:
        for v in dict.fromkeys(video_ids):
            mf.require_rows(rows, v, store.uri)
    live = mf.stored_rows(rows).select(["video_id", "layer_key", "scale", "gop_index", "byte_offset",
                                        "byte_length", "checksum"])
    live = live.sort_by([("layer_key", "ascending"), ("byte_offset", "ascending")])
    report = VerifyReport(videos=len(pc.unique(rows.column("video_id"))) if rows.num_rows else 0)
    by_key: dict[str, list[tuple]] = {}
    cols = [live.column(c).to_pylist() for c in ("layer_key", "scale", "gop_index", "byte_offset", "byte_length",
                                                 "checksum")]
    for key, scale, g, off, n, crc in zip(*cols):
        by_key.setdefault(key, []).append((scale, g, off, n, crc))

    def one(item: tuple[str, list[tuple]]) -> tuple[str, str | None, int, int]:
        key, parts = item
        scale = parts[0][0]
        try:
            if scale == mf.HEADER_SCALE:
                why, n = _check_header(store, key, parts[0][3], parts[0][4])
            else:
                why, n = _check_layer(store, key, scale, [(g, off, ln, crc) for _, g, off, ln, crc in parts],
                                      max_read)
        except ProGVCError as exc:  # a read refused or cut short: this object is bad (or unreachable)
            why, n = str(exc), 0
        return key, why, n, len(parts)

    items = sorted(by_key.items())
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items) or 1))) as pool:
        for key, why, n, n_chunks in pool.map(one, items):
            report.objects += 1
            report.chunks += n_chunks if not key.endswith("/header.bin") else 0
            report.bytes_checked += n
            if why is not None:
                report.problems.append(f"{store.url(key)}: {why}")
    return report


__all__ = ["MAX_READ", "VerifyReport", "verify_archive"]
