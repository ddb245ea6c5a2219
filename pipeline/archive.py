"""Archive layout and commit protocol: write a video's layers, verify them, commit its manifest rows; prune.

Layout under the archive root (DESIGN §3):

    videos/<video_id>/header.bin      the stream header (`StreamHeader.to_bytes()`)
    videos/<video_id>/layer-<k>.bin   chunk(g, k) of every GOP g, in GOP order (k = 1..N)
    manifests/<job_id>/part-*.parquet manifest rows (pipeline.manifest)

`video_id` = first 24 hex digits of the SHA-256 of the source's bytes (`video_id_of`, streamed).

Commit protocol (`ArchiveWriter`):
1. write header and layers; an object that already holds the same bytes (left by a crashed run or written
   by a concurrent job) is kept, anything else is overwritten — same content gives the same bytes, so this
   is idempotent;
2. verify every object: size, and the CRC32 the server computed against ours (whole-object or S3 composite);
   without a server checksum (local dirs, servers without checksums) the object is re-read and CRC-checked;
3. write the manifest part last (`commit`), in one atomic step.
A crash before step 3 leaves objects that no reader trusts; a re-run rewrites/keeps them and commits.
Two jobs archiving the same video at once write identical objects and each commits its own part; readers
keep the earliest commit (pipeline.manifest.effective_rows).

Prune (`prune`): writes tombstone rows first, then deletes `layer-<k>.bin` for k > K. A crash in between
leaves unreferenced objects that the next prune deletes.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.errors import ManifestError, StoreError
from pipeline.store import Store, composite_crc32_b64, crc32_b64, open_store, split_uri

VIDEO_ID_HEX = 24


def header_key(video_id: str) -> str:
    return f"videos/{video_id}/header.bin"


def layer_key(video_id: str, scale: int) -> str:
    return f"videos/{video_id}/layer-{scale}.bin"


def video_id_from_chunks(chunks: Iterable[bytes]) -> str:
    """video_id of a byte stream: sha256 hex digest, first 24 digits."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:VIDEO_ID_HEX]


def video_id_of(source: str | Path, s3_endpoint: str | None = None, store: Store | None = None) -> str:
    """video_id of a source file (local path, file:// or s3:// URI), hashed as a stream (flat memory).
    `store`: an already open store to read `source` as a key from (skips opening one)."""
    if store is not None:
        return video_id_from_chunks(store.iter_bytes(str(source)))
    parent, name = split_uri(str(source))
    return video_id_from_chunks(open_store(parent, s3_endpoint=s3_endpoint).iter_bytes(name))


@dataclass(frozen=True)
class SourceInfo:
    """The source video: its URI, size in bytes, frame size in pixels, frames per second, and the bytes of
    its video stream's packets (None: not measured; manifest `video_stream_bytes`)."""

    uri: str
    size_bytes: int
    width: int
    height: int
    fps: float
    video_bytes: int | None = None


@dataclass
class GopData:
    """One encoded GOP: its frames and, per scale k = 1..N, the chunk bytes, token count and checksum
    (the codec's CRC32 of the token indices), as `EncodedGop` gives them. `frames_coded[k-1]`: frames
    whose tokens chunk k holds (keyframe mode: 1 above `frame_scales`); None = all `frame_count` (plain)."""

    first_frame: int
    frame_count: int
    keyframe: bool
    chunks: Sequence[bytes]
    token_counts: Sequence[int]
    checksums: Sequence[int]
    frames_coded: Sequence[int] | None = None


@dataclass
class WriteStats:
    """What `write_video` did: objects uploaded vs kept (already identical), bytes uploaded."""

    uploaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


def _matches(store: Store, key: str, data: bytes, info) -> bool:
    """Does object `info` (from head) hold exactly `data`? Uses the server's CRC32 when it has one, else
    re-reads the object."""
    if info is None or info.size != len(data):
        return False
    if info.checksum:
        if "-" in info.checksum:
            part = getattr(getattr(store, "config", None), "multipart_chunksize", None)
            if part and info.checksum == composite_crc32_b64(data, part):
                return True
        elif info.checksum == crc32_b64(data):
            return True
        else:
            return False
    return zlib.crc32(store.get(key)) == zlib.crc32(data)


class ArchiveWriter:
    """Writes videos into the archive at `store` for job `job_id` (commit protocol in the module doc)."""

    def __init__(self, store: Store, job_id: str, committed: set[str] | None = None,
                 compact_at: int | None = 64):
        """`committed`: video ids already committed, if the caller has them (e.g. read once at job start
        with `pipeline.manifest.committed_video_ids`); otherwise read from the manifest on first use.
        `compact_at`: after a commit, merge this job's parts once it has this many (None: never), so a job
        that commits video by video keeps its manifest at < `compact_at` parts (fast savings queries)."""
        self.store = store
        self.job_id = mf.check_job_id(job_id)
        self.compact_at = compact_at
        self._committed: set[str] | None = set(committed) if committed is not None else None
        self.last_stats = WriteStats()

    def committed(self, refresh: bool = False) -> set[str]:
        """Video ids already committed by any job (read once, cached; `refresh=True` re-reads)."""
        if self._committed is None or refresh:
            self._committed = mf.committed_video_ids(self.store)
        return self._committed

    def is_committed(self, video_id: str) -> bool:
        return video_id in self.committed()

    def _put_verified(self, key: str, data: bytes, stats: WriteStats) -> None:
        existing = self.store.head(key)
        if _matches(self.store, key, data, existing):
            stats.kept.append(key)
            return
        self.store.put(key, data)
        stats.uploaded.append(key)
        stats.bytes_uploaded += len(data)
        if not _matches(self.store, key, data, self.store.head(key)):
            raise StoreError(f"verification failed for {self.store.url(key)}: the stored object differs from "
                             f"what was written ({len(data)} bytes); check the server's health and re-run")

    def write_video(self, video_id: str, header: bytes, gops: Sequence[GopData], source: SourceInfo,
                    model_id: str, quality: Mapping[int, Mapping[str, float]] | None = None,
                    mode: str = "plain", encoder: Mapping[str, object] | None = None) -> pa.Table:
        """Write and verify `header.bin` and `layer-<k>.bin` of one video; return its manifest rows
        (not yet visible: pass them to `commit`). `quality[K]` = {"psnr"|"ms_ssim"|"vmaf": value} of the
        video decoded at K scales; `mode`: the stream's coding mode ("plain" | "keyframe"), on every row;
        `encoder`: the header's encoder settings ({"fidelity", "effort"}), the `fidelity`/`effort` columns
        of every row (null when absent). Raises ManifestError if the video is already committed."""
        if self.is_committed(video_id):
            raise ManifestError(f"video {video_id} ({source.uri}) is already archived in {self.store.uri}; "
                                f"skip it (re-runs skip committed videos)")
        if not gops:
            raise ManifestError(f"video {video_id} ({source.uri}) has no GOPs to archive")
        n_scales = len(gops[0].chunks)
        for g, gop in enumerate(gops):
            n_coded = n_scales if gop.frames_coded is None else len(gop.frames_coded)
            if not (len(gop.chunks) == len(gop.token_counts) == len(gop.checksums) == n_coded == n_scales):
                raise ManifestError(f"GOP {g} of video {video_id}: {len(gop.chunks)} chunks, "
                                    f"{len(gop.token_counts)} token counts, {len(gop.checksums)} checksums, "
                                    f"{n_coded} frames-coded counts; expected {n_scales} of each (one per scale)")
        stats = WriteStats()
        cols: dict[str, list] = {name: [] for name in mf.SCHEMA.names}
        enc = dict(encoder or {})
        effort = None if enc.get("effort") is None else str(enc["effort"])
        fidelity = None if enc.get("fidelity") is None else float(enc["fidelity"])

        def row(gop_index, gop, scale, key, offset, length, tokens, checksum):
            q = (quality or {}).get(scale, {}) if scale > 0 else {}
            vals = dict(job_id=self.job_id, video_id=video_id, source_uri=source.uri,
                        source_bytes=source.size_bytes, video_stream_bytes=source.video_bytes,
                        width=source.width, height=source.height,
                        fps=float(source.fps), gop_index=gop_index,
                        first_frame=gop.first_frame if gop else 0,
                        frame_count=gop.frame_count if gop else sum(x.frame_count for x in gops),
                        keyframe=bool(gop.keyframe) if gop else False, scale=scale, layer_key=key,
                        byte_offset=offset, byte_length=length, token_count=tokens, checksum=checksum,
                        model_id=model_id, created_at=None, psnr=q.get("psnr"), ms_ssim=q.get("ms_ssim"),
                        vmaf=q.get("vmaf"), status=None, mode=mode, effort=effort, fidelity=fidelity,
                        frames_coded=0 if gop is None else gop.frame_count if gop.frames_coded is None
                        else int(gop.frames_coded[scale - 1]))
            for name, v in vals.items():
                cols[name].append(v)

        hk = header_key(video_id)
        self._put_verified(hk, bytes(header), stats)
        row(-1, None, mf.HEADER_SCALE, hk, 0, len(header), 0, zlib.crc32(header))
        for k in range(1, n_scales + 1):
            key = layer_key(video_id, k)
            offset = 0
            for g, gop in enumerate(gops):
                n = len(gop.chunks[k - 1])
                row(g, gop, k, key, offset, n, int(gop.token_counts[k - 1]), int(gop.checksums[k - 1]) & 0xFFFFFFFF)
                offset += n
            self._put_verified(key, b"".join(bytes(gop.chunks[k - 1]) for gop in gops), stats)
        self.last_stats = stats
        return pa.Table.from_pydict(cols, schema=mf.SCHEMA)

    def commit(self, rows: pa.Table | Sequence[pa.Table]) -> str:
        """Make `rows` visible: write them as one manifest part of this job (atomic). Returns the part key."""
        key = mf.write_part(self.store, self.job_id, rows)
        if self._committed is not None:
            tables = rows if isinstance(rows, Sequence) else [rows]
            for t in tables:
                self._committed.update(pc.unique(t.column("video_id")).to_pylist())
        if self.compact_at and len(mf.list_parts(self.store, self.job_id)) >= self.compact_at:
            key = mf.compact(self.store, self.job_id) or key
        return key

    def archive_video(self, video_id: str, header: bytes, gops: Sequence[GopData], source: SourceInfo,
                      model_id: str, quality: Mapping[int, Mapping[str, float]] | None = None,
                      mode: str = "plain", encoder: Mapping[str, object] | None = None) -> pa.Table:
        """`write_video` then `commit` for one video; returns the committed rows."""
        rows = self.write_video(video_id, header, gops, source, model_id, quality, mode, encoder)
        self.commit(rows)
        return rows

    def record_failures(self, failures: Iterable[tuple[str, str]]) -> str | None:
        """Record (source_uri, reason) pairs this job failed on (pipeline.manifest.record_failures)."""
        return mf.record_failures(self.store, self.job_id, failures)


# ------------------------------------------------------------------------------------------------ prune


@dataclass(frozen=True)
class PruneReport:
    """Outcome of `prune`: videos touched, objects deleted, bytes freed, the tombstone part written."""

    keep_scales: int
    video_ids: list[str]
    deleted_keys: list[str]
    freed_bytes: int
    part_key: str | None
    pruned_at: datetime | None


def prune(store: Store, keep_scales: int, video_ids: Iterable[str] | None = None,
          prune_id: str | None = None) -> PruneReport:
    """Delete `layer-<k>.bin` for k > keep_scales of the chosen videos (all archived videos by default).

    Tombstones are committed first (readers stop trusting those scales at once), objects deleted after.
    Objects of scales pruned earlier that still exist (a crash mid-prune) are deleted again."""
    if keep_scales < 1:
        raise ManifestError(f"cannot prune to {keep_scales} scales: keep at least 1 (scale 1 is the coarse "
                            f"control prior every frame needs)")
    table = mf.read_manifest(store)
    if video_ids is not None:
        wanted = list(dict.fromkeys(video_ids))
        have = set(pc.unique(table.column("video_id")).to_pylist())
        missing = [v for v in wanted if v not in have]
        if missing:
            raise ManifestError(f"cannot prune videos not in the archive {store.uri}: {', '.join(missing)}")
        table = table.filter(pc.is_in(table.column("video_id"), pa.array(wanted, pa.string())))
    above = table.filter(pc.greater(table.column("scale"), keep_scales))
    fresh = mf.stored_rows(above)
    now = mf.utcnow()
    prune_id = mf.check_job_id(prune_id or f"prune-{now.strftime('%Y%m%dT%H%M%S%fZ')}")
    part = mf.write_part(store, prune_id, mf.tombstones(fresh, prune_id, now)) if fresh.num_rows else None
    keys = sorted(set(above.column("layer_key").to_pylist()))
    freed, deleted = 0, []
    for key in keys:
        info = store.head(key)
        if info is not None:
            store.delete(key)
            freed += info.size
            deleted.append(key)
    return PruneReport(keep_scales, sorted(set(above.column("video_id").to_pylist())), deleted, freed, part,
                       now if part else None)
