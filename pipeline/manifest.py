"""Archive manifest: Parquet parts that make archived videos visible, prune tombstones, failure records.

Layout under the archive root (see DESIGN §3):

    manifests/<job_id>/part-<UTC time>-<random>.parquet   rows committed by one job (one part per commit)
    failures/<job_id>/part-<UTC time>-<random>.parquet    (source_uri, reason) of videos a job failed on

Schema (`SCHEMA`), one row per (video, GOP, scale): the DESIGN §3 columns `job_id, video_id, source_uri,
source_bytes, width, height, fps, gop_index, first_frame, frame_count, keyframe, scale, layer_key,
byte_offset, byte_length, token_count, checksum, model_id, created_at`, then the nullable quality
columns `psnr, ms_ssim, vmaf` (quality of the whole video decoded at `scale` scales, repeated on every GOP
row of that scale), `status`, then the keyframe-mode columns (issue 8) `frames_coded` (frames whose tokens
the chunk holds: `frame_count` in plain mode, 1 = the GOP's keyframe alone for scales above the stream's
`frame_scales` in keyframe mode, 0 on the header row) and `mode` ("plain" | "keyframe", every row).
`keyframe` is true on every GOP row (each GOP's first frame is its keyframe). Then the encoder-settings
columns `effort` ("fast" | "medium" | "slow") and `fidelity` (0..100), every row of a video encoded by a
family that has them (the latent family; the stream header's `encoder` field), null otherwise. Then
`video_stream_bytes` (issue 16.8): the bytes of the source's first video stream (the sum of its packets'
sizes, measured when the job probed the source: the file without container overhead, audio, subtitles),
every row of the video; the savings reference for "what the video itself cost".

Schema evolution: parts written before a column existed read with nulls in it (`conform`, and the
dataset reader on local stores); the effective view (`effective_rows`) fills the keyframe-mode columns of
such rows with what they meant then: `mode = "plain"`, `frames_coded = frame_count` (0 on header rows).
`effort`/`fidelity` stay null on such rows (nothing older had them), and so does `video_stream_bytes` (not
measured then: `pipeline.savings` shows its ratio as null, "–" in tables, for those videos).

- Scale 0 is the stream header: one row per video with `gop_index = -1`, `layer_key =
  videos/<id>/header.bin`, `byte_length` = header size, `checksum` = CRC32 of the header bytes,
  `token_count = 0`, `first_frame = 0`, `frame_count` = the video's total frames, `keyframe = false`.
  Scales 1..N are the layers; `checksum` there is the codec's CRC32 of the chunk's token indices and
  (`byte_offset`, `byte_length`) locate chunk (g, k) inside `layer-<k>.bin`.
- `created_at` (UTC, µs) is the commit time, identical for all rows of one commit.
- `status = "committed"`: rows written by a compress job. `status = "pruned"`: a tombstone written by a
  prune before it deletes objects; it repeats the pruned row with `job_id` = the prune's id and
  `created_at` = the prune time. From then on that (video, scale) reads as pruned (`pruned_at` set).

Commit protocol: a part is written only after the objects it points at were written and verified; it
lands in one atomic step (local rename / single PUT), so readers see all of a commit or none of it.
Jobs commit one part per video or batch; `compact` (automatic in `ArchiveWriter.commit` every 64
parts) merges a job's parts so reads stay fast. Readers list `manifests/*/part-*.parquet` (temp files
and other names are ignored) and build the effective view (`effective_rows`): committed rows, one
commit per video (the earliest `created_at`, then the smallest `job_id`; a second job that archived the
same video concurrently wrote identical objects and its duplicate rows are ignored), each (video, scale,
GOP) once, with a derived `pruned_at` column (null while the chunk is stored).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import ManifestError, NotFoundError
from pipeline.store import Store

HEADER_SCALE = 0
STATUS_COMMITTED = "committed"
STATUS_PRUNED = "pruned"
MANIFEST_PREFIX = "manifests/"
FAILURES_PREFIX = "failures/"
QUALITY_COLUMNS = ("psnr", "ms_ssim", "vmaf")

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("job_id", pa.string()),
    ("video_id", pa.string()),
    ("source_uri", pa.string()),
    ("source_bytes", pa.int64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("fps", pa.float64()),
    ("gop_index", pa.int32()),
    ("first_frame", pa.int64()),
    ("frame_count", pa.int32()),
    ("keyframe", pa.bool_()),
    ("scale", pa.int16()),
    ("layer_key", pa.string()),
    ("byte_offset", pa.int64()),
    ("byte_length", pa.int64()),
    ("token_count", pa.int64()),
    ("checksum", pa.int64()),  # CRC32 (unsigned 32-bit value)
    ("model_id", pa.string()),
    ("created_at", TS),
    ("psnr", pa.float64()),
    ("ms_ssim", pa.float64()),
    ("vmaf", pa.float64()),
    ("status", pa.string()),
    ("frames_coded", pa.int32()),  # frames whose tokens the chunk holds (keyframe mode: 1 above frame_scales)
    ("mode", pa.string()),  # "plain" | "keyframe" (the stream header's mode)
    ("effort", pa.string()),  # encoder effort (latent family), null for families without it and older parts
    ("fidelity", pa.float64()),  # encoder fidelity 0..100 (latent family), null likewise
    ("video_stream_bytes", pa.int64()),  # bytes of the source's video packets (issue 16.8), null in older parts
])
FAILURE_SCHEMA = pa.schema([("job_id", pa.string()), ("source_uri", pa.string()), ("reason", pa.string()),
                            ("failed_at", TS)])

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PART = re.compile(r"^(manifests|failures)/([^/]+)/part-[^/]+\.parquet$")


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ManifestError(f"invalid job id {job_id!r}: use 1-128 letters, digits, '.', '_' or '-', starting "
                            f"with a letter or digit")
    return job_id


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """`table` with exactly `schema`'s columns in order (missing nullable columns filled with nulls)."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _part_key(prefix: str, job_id: str, when: datetime) -> str:
    return f"{prefix}{check_job_id(job_id)}/part-{when.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"


def _to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_part(store: Store, job_id: str, rows: pa.Table | Sequence[pa.Table]) -> str:
    """Commit `rows` (manifest rows of one job) as one new part, in one atomic write. Returns its key.

    Rows get this `job_id` and one common `created_at` (now, UTC) unless they are tombstones that carry
    their own. Call only after every object the rows point at was written and verified."""
    table = pa.concat_tables([conform(t) for t in rows]) if isinstance(rows, Sequence) else conform(rows)
    if table.num_rows == 0:
        raise ManifestError(f"nothing to commit for job {job_id!r}: no manifest rows")
    now = utcnow()
    table = table.set_column(table.schema.get_field_index("job_id"), "job_id",
                             pa.array([check_job_id(job_id)] * table.num_rows, pa.string()))
    created = table.column("created_at")
    if created.null_count:
        table = table.set_column(table.schema.get_field_index("created_at"), "created_at",
                                 pc.fill_null(created, pa.scalar(now, TS)))
    status = table.column("status")
    if status.null_count:
        table = table.set_column(table.schema.get_field_index("status"), "status",
                                 pc.fill_null(status, STATUS_COMMITTED))
    key = _part_key(MANIFEST_PREFIX, job_id, now)
    store.put(key, _to_parquet(table))
    return key


@dataclass(frozen=True)
class PartRead:
    """The raw union of manifest parts, and how many parts/bytes were read to get it."""

    table: pa.Table
    parts: int
    bytes_read: int


def list_parts(store: Store, job_id: str | None = None, prefix: str = MANIFEST_PREFIX) -> list:
    """Committed part objects (ObjectInfo) of one job or all jobs, in key order."""
    base = prefix + (f"{check_job_id(job_id)}/" if job_id else "")
    return [o for o in store.list(base) if _PART.match(o.key) and o.key.startswith(prefix)]


def list_jobs(store: Store) -> list[str]:
    """Job ids that committed at least one manifest part (prune ids included)."""
    return sorted({o.key.split("/")[1] for o in list_parts(store)})


def _read_tables(store: Store, objs: list, schema: pa.Schema, columns: list[str] | None = None) -> PartRead:
    """Read the listed parts as one table. NotFoundError when a listed part vanished meanwhile (a
    concurrent `compact`): callers re-list (`_read_listed`)."""
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if not objs:
        return PartRead(schema.empty_table(), 0, 0)
    local = store.local_path(objs[0].key)
    if local is not None:
        import pyarrow.dataset as ds

        paths = [str(store.local_path(o.key)) for o in objs]
        try:
            table = ds.dataset(paths, format="parquet", schema=schema).to_table(columns=columns)
        except (OSError, pa.ArrowInvalid) as e:
            gone = [o.key for o in objs if store.head(o.key) is None]
            if gone:
                raise NotFoundError(f"manifest part {store.url(gone[0])} vanished while reading") from e
            raise ManifestError(f"cannot read manifest parts under {store.uri}: {e}; a part is damaged — move "
                                f"it away and re-run the job that wrote it") from e
        total = sum(o.size for o in objs)
        store.count_read(total)  # counted as whole parts: pyarrow reads small parts (nearly) whole
        return PartRead(table, len(objs), total)

    def one(o) -> tuple[pa.Table, int]:
        data = store.get(o.key)
        try:
            return conform(pq.read_table(pa.BufferReader(data), columns=columns), schema), len(data)
        except (OSError, pa.ArrowInvalid) as e:
            raise ManifestError(f"manifest part {store.url(o.key)} is damaged ({e}); move it away and re-run "
                                f"the job that wrote it") from e

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(one, objs))
    return PartRead(pa.concat_tables([t for t, _ in got]), len(objs), sum(n for _, n in got))


def _read_listed(store: Store, job_id: str | None, prefix: str, schema: pa.Schema,
                 columns: list[str] | None = None, attempts: int = 5) -> PartRead:
    """List then read parts; re-list when a part vanished in between (a concurrent compaction)."""
    for attempt in range(attempts):
        try:
            return _read_tables(store, list_parts(store, job_id, prefix), schema, columns)
        except NotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def read_parts(store: Store, job_id: str | None = None) -> PartRead:
    """Every row of every committed part (tombstones and duplicates included), as one table."""
    return _read_listed(store, job_id, MANIFEST_PREFIX, SCHEMA)


def _keep_first(table: pa.Table, keys: list[str]) -> pa.Table:
    """First row of each distinct `keys` combination (table order)."""
    idx = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = idx.group_by(keys).aggregate([("_i", "min")]).column("_i_min")
    return table.take(first)


def effective_rows(raw: pa.Table) -> pa.Table:
    """What readers trust: one commit per video (earliest `created_at`, then smallest `job_id`), each
    (video, scale, GOP) once, plus a `pruned_at` column (null while the chunk is stored). Sorted by
    (video_id, scale, gop_index)."""
    raw = raw.combine_chunks()  # one chunk per part otherwise: every kernel below would pay per chunk
    status = raw.column("status")
    committed = raw.filter(pc.equal(status, STATUS_COMMITTED))
    tomb = raw.filter(pc.equal(status, STATUS_PRUNED))
    if committed.num_rows:
        commits = committed.group_by("video_id").aggregate([("created_at", "count_distinct"),
                                                            ("job_id", "count_distinct")])
        if (pc.max(commits.column("created_at_count_distinct")).as_py() > 1
                or pc.max(commits.column("job_id_count_distinct")).as_py() > 1):
            first = committed.group_by("video_id").aggregate([("created_at", "min")])
            first = first.rename_columns(["video_id", "_first"])
            committed = committed.join(first, "video_id")
            committed = committed.filter(pc.equal(committed.column("created_at"), committed.column("_first")))
            job = committed.group_by("video_id").aggregate([("job_id", "min")]).rename_columns(["video_id", "_job"])
            committed = committed.join(job, "video_id")
            committed = committed.filter(pc.equal(committed.column("job_id"), committed.column("_job")))
            committed = committed.drop_columns(["_first", "_job"]).combine_chunks()
        keys = ["video_id", "scale", "gop_index"]
        if committed.group_by(keys).aggregate([]).num_rows != committed.num_rows:
            committed = _keep_first(committed, keys)  # the same commit read twice (mid-compaction)
    if tomb.num_rows:
        pruned = tomb.group_by(["video_id", "scale"]).aggregate([("created_at", "min")])
        pruned = pruned.rename_columns(["video_id", "scale", "pruned_at"])
        committed = committed.join(pruned, ["video_id", "scale"], join_type="left outer")
    else:
        committed = committed.append_column("pruned_at", pa.nulls(committed.num_rows, TS))
    committed = _fill_mode_columns(committed.select([*SCHEMA.names, "pruned_at"]).combine_chunks())
    return committed.sort_by([("video_id", "ascending"), ("scale", "ascending"), ("gop_index", "ascending")])


def _fill_mode_columns(table: pa.Table) -> pa.Table:
    """Rows from parts written before keyframe mode: `mode` null -> "plain", `frames_coded` null ->
    `frame_count` (0 on header rows); rows that have them are unchanged."""
    mode = table.column("mode")
    if mode.null_count:
        table = table.set_column(table.schema.get_field_index("mode"), "mode", pc.fill_null(mode, "plain"))
    coded = table.column("frames_coded")
    if coded.null_count:
        plain = pc.if_else(pc.equal(table.column("scale"), HEADER_SCALE), pa.scalar(0, pa.int32()),
                           pc.cast(table.column("frame_count"), pa.int32()))
        table = table.set_column(table.schema.get_field_index("frames_coded"), "frames_coded",
                                 pc.coalesce(coded, plain))
    return table


def compact(store: Store, job_id: str, min_parts: int = 2) -> str | None:
    """Merge the manifest parts of `job_id` into one part (rows unchanged), then delete the old parts.

    Readers stay correct throughout: while both exist, the duplicated rows are dropped by
    `effective_rows`; a crash between the write and the deletes leaves harmless duplicates that the next
    compaction removes. Call it when a job finishes (jobs commit one part per video). Returns the new
    part's key, or None when the job has fewer than `min_parts` parts."""
    parts = list_parts(store, job_id)
    if len(parts) < max(2, min_parts):
        return None
    try:
        table = _read_tables(store, parts, SCHEMA).table.combine_chunks()
    except NotFoundError:  # another compaction of this job got there first
        return None
    key = _part_key(MANIFEST_PREFIX, job_id, utcnow())
    store.put(key, _to_parquet(table))
    for o in parts:
        store.delete(o.key)
    return key


def read_manifest(store: Store, job_id: str | None = None, video_ids: Iterable[str] | None = None) -> pa.Table:
    """Effective manifest rows (see `effective_rows`) of all jobs, or of the videos that `job_id` owns."""
    table = effective_rows(read_parts(store).table)
    if job_id is not None:
        table = table.filter(pc.equal(table.column("job_id"), check_job_id(job_id)))
    if video_ids is not None:
        table = table.filter(pc.is_in(table.column("video_id"), pa.array(list(video_ids), pa.string())))
    return table


def stored_rows(table: pa.Table) -> pa.Table:
    """Rows of an effective table whose chunk is still stored (not pruned)."""
    return table.filter(pc.is_null(table.column("pruned_at")))


def committed_video_ids(store: Store) -> set[str]:
    """Video ids with committed rows (what a re-run skips). Decodes only two columns of each part."""
    raw = _read_listed(store, None, MANIFEST_PREFIX, SCHEMA, columns=["video_id", "status"]).table
    committed = raw.filter(pc.equal(raw.column("status"), STATUS_COMMITTED))
    return set(pc.unique(committed.column("video_id")).to_pylist())


def tombstones(rows: pa.Table, prune_id: str, when: datetime | None = None) -> pa.Table:
    """Tombstone copies of effective `rows` (their chunks are about to be deleted)."""
    n = rows.num_rows
    t = conform(rows.select(SCHEMA.names))
    t = t.set_column(t.schema.get_field_index("status"), "status", pa.array([STATUS_PRUNED] * n, pa.string()))
    t = t.set_column(t.schema.get_field_index("created_at"), "created_at",
                     pa.array([when or utcnow()] * n, TS))
    return t.set_column(t.schema.get_field_index("job_id"), "job_id", pa.array([check_job_id(prune_id)] * n))


# ------------------------------------------------------------------------------------------- failures


def record_failures(store: Store, job_id: str, failures: Iterable[tuple[str, str]]) -> str | None:
    """Record (source_uri, reason) of videos `job_id` could not archive, as one new part. Returns its key
    (None when `failures` is empty)."""
    items = list(failures)
    if not items:
        return None
    now = utcnow()
    table = pa.table({
        "job_id": pa.array([check_job_id(job_id)] * len(items), pa.string()),
        "source_uri": pa.array([str(s) for s, _ in items], pa.string()),
        "reason": pa.array([str(r) for _, r in items], pa.string()),
        "failed_at": pa.array([now] * len(items), TS),
    }, schema=FAILURE_SCHEMA)
    key = _part_key(FAILURES_PREFIX, job_id, now)
    store.put(key, _to_parquet(table))
    return key


def read_failures(store: Store, job_id: str | None = None, unresolved_only: bool = False) -> pa.Table:
    """Failure records (job_id, source_uri, reason, failed_at), oldest first. `unresolved_only` drops
    sources that some job has committed since."""
    table = _read_listed(store, job_id, FAILURES_PREFIX, FAILURE_SCHEMA).table
    if unresolved_only and table.num_rows:
        raw = read_parts(store).table
        done = raw.filter(pc.equal(raw.column("status"), STATUS_COMMITTED)).column("source_uri")
        table = table.filter(pc.invert(pc.is_in(table.column("source_uri"), pc.unique(done))))
    return table.sort_by([("failed_at", "ascending")])


def require_rows(table: pa.Table, video_id: str, where: str) -> pa.Table:
    """Rows of `video_id`, or ManifestError when the archive has no committed rows for it."""
    rows = table.filter(pc.equal(table.column("video_id"), video_id))
    if rows.num_rows == 0:
        raise ManifestError(f"video {video_id} has no committed manifest rows in {where}; archive it first or "
                            f"check the video id (`progvc savings` lists archived videos)")
    return rows


__all__ = [
    "SCHEMA", "FAILURE_SCHEMA", "HEADER_SCALE", "STATUS_COMMITTED", "STATUS_PRUNED", "QUALITY_COLUMNS",
    "PartRead", "check_job_id", "conform", "write_part", "list_parts", "list_jobs", "read_parts",
    "effective_rows", "compact", "read_manifest", "stored_rows", "committed_video_ids", "tombstones",
    "record_failures", "read_failures", "require_rows",
]
