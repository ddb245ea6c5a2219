"""What an archive holds, video by video (`progvc ls`), and video ids by unique prefix (issue 16.7).

    rows = read_manifest(store)
    vid = resolve_video_id(rows, "3f9a2c")           # the one id starting so, else ManifestError (one line)
    videos = list_videos(rows)                       # id, source, frames, stored K of N, bytes, ...
    print_videos(videos)                             # a table that fits the terminal (pipeline.term_table)
    short = unique_prefixes(ids)                     # shortest unique prefix (>= 12 digits) of each id

Every command that takes a video id (`reserve`, `prune --video`, `savings --video`) accepts any unique
prefix of it, as git does for commits: the savings table shows such prefixes, `ls` the full ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.errors import ManifestError

SHORT_ID = 12  # digits the savings table shows at least
MAX_CANDIDATES = 4  # candidates an ambiguous-prefix error names


def _ids(rows_or_ids: pa.Table | Iterable[str]) -> list[str]:
    if isinstance(rows_or_ids, pa.Table):
        return pc.unique(rows_or_ids.column("video_id")).to_pylist()
    return list(dict.fromkeys(rows_or_ids))


def resolve_video_id(rows_or_ids: pa.Table | Iterable[str], prefix: str, where: str = "the archive") -> str:
    """The archived video id that equals or starts with `prefix` (case-insensitive). ManifestError (one line)
    when no id or several ids start so, naming at most `MAX_CANDIDATES` of them."""
    ids = _ids(rows_or_ids)
    want = str(prefix).strip().lower()
    if not want:
        raise ManifestError("empty video id: give an id or a unique prefix of one (`progvc ls` lists them)")
    if want in ids:
        return want
    hits = sorted(i for i in ids if i.startswith(want))
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ManifestError(f"no video id in {where} starts with {prefix!r} ({len(ids)} videos archived; "
                            f"`progvc ls` lists them)")
    shown = ", ".join(hits[:MAX_CANDIDATES]) + (f" and {len(hits) - MAX_CANDIDATES} more"
                                                if len(hits) > MAX_CANDIDATES else "")
    raise ManifestError(f"video id prefix {prefix!r} is ambiguous in {where}: {len(hits)} videos match "
                        f"({shown}); give more digits")


def resolve_video_ids(rows_or_ids: pa.Table | Iterable[str], prefixes: Iterable[str],
                      where: str = "the archive") -> list[str]:
    """`resolve_video_id` of each prefix, in order, without repeats."""
    ids = _ids(rows_or_ids)
    return list(dict.fromkeys(resolve_video_id(ids, p, where) for p in prefixes))


def unique_prefixes(ids: Iterable[str], min_len: int = SHORT_ID) -> dict[str, str]:
    """Each id's shortest prefix of at least `min_len` characters that no other id in `ids` starts with."""
    ordered = sorted(set(ids))
    out = {}
    for i, vid in enumerate(ordered):
        common = 0
        for other in (ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None):
            if other is not None:
                n = 0
                while n < min(len(vid), len(other)) and vid[n] == other[n]:
                    n += 1
                common = max(common, n)
        out[vid] = vid[: max(min_len, common + 1)]
    return out


def source_name(uri: str | None) -> str:
    """The file name of a source URI (local path, file:// or s3:// key)."""
    if not uri:
        return ""
    return PurePosixPath(str(uri).rstrip("/")).name or str(uri)


def list_videos(rows: pa.Table) -> pa.Table:
    """One row per archived video of the effective manifest `rows`: video_id, name (source file name),
    source_uri, frames, width, height, mode, model_id, job_id, created_at, n_scales (layers committed),
    stored_scales (K: layers 1..K are all still stored), stored_bytes (header + layers not pruned now),
    source_bytes. Oldest commit first, then by name."""
    hdr = rows.filter(pc.equal(rows.column("scale"), mf.HEADER_SCALE))
    live = mf.stored_rows(rows)
    layers = rows.filter(pc.greater(rows.column("scale"), mf.HEADER_SCALE))
    n_scales: dict[str, int] = {}
    if layers.num_rows:
        agg = layers.group_by("video_id").aggregate([("scale", "max")])
        n_scales = dict(zip(agg.column("video_id").to_pylist(), agg.column("scale_max").to_pylist()))
    stored_bytes: dict[str, int] = {}
    if live.num_rows:
        agg = live.group_by("video_id").aggregate([("byte_length", "sum")])
        stored_bytes = dict(zip(agg.column("video_id").to_pylist(), agg.column("byte_length_sum").to_pylist()))
    # K = the largest k with every layer 1..k unpruned = (first pruned scale) - 1, else all layers
    pruned = layers.filter(pc.is_valid(layers.column("pruned_at")))
    first_pruned: dict[str, int] = {}
    if pruned.num_rows:
        agg = pruned.group_by("video_id").aggregate([("scale", "min")])
        first_pruned = dict(zip(agg.column("video_id").to_pylist(), agg.column("scale_min").to_pylist()))
    ids = hdr.column("video_id").to_pylist()
    table = pa.table({
        "video_id": hdr.column("video_id"),
        "name": pa.array([source_name(u) for u in hdr.column("source_uri").to_pylist()], pa.string()),
        "source_uri": hdr.column("source_uri"),
        "frames": hdr.column("frame_count"),
        "width": hdr.column("width"),
        "height": hdr.column("height"),
        "mode": hdr.column("mode"),
        "model_id": hdr.column("model_id"),
        "job_id": hdr.column("job_id"),
        "created_at": hdr.column("created_at"),
        "n_scales": pa.array([int(n_scales.get(v, 0)) for v in ids], pa.int32()),
        "stored_scales": pa.array([int(first_pruned[v]) - 1 if v in first_pruned else int(n_scales.get(v, 0))
                                   for v in ids], pa.int32()),
        "stored_bytes": pa.array([int(stored_bytes.get(v, 0)) for v in ids], pa.int64()),
        "source_bytes": hdr.column("source_bytes"),
    })
    return table.sort_by([("created_at", "ascending"), ("name", "ascending"), ("video_id", "ascending")])


def print_videos(videos: pa.Table, title: str | None = None, console=None, width: int | None = None) -> list[str]:
    """`list_videos` as a terminal table: full ids, file names, frames, stored K of N, stored bytes (then
    frame size, mode, job, source bytes while they fit). Returns the keys of the columns left out."""
    from pipeline.savings import _fmt_bytes
    from pipeline.term_table import Column, print_columns

    d = videos.to_pydict()
    n = videos.num_rows
    cols = [
        Column("video_id", "video", d["video_id"], keep=True),
        Column("name", "source", d["name"], keep=True, flex=True),
        Column("frames", "frames", [str(x) for x in d["frames"]], justify="right", priority=5),
        Column("stored_scales", "K", [f"{k}/{m}" for k, m in zip(d["stored_scales"], d["n_scales"])],
               justify="right", keep=True),
        Column("stored_bytes", "stored", [_fmt_bytes(b) for b in d["stored_bytes"]], justify="right", priority=6),
        Column("size", "size", [f"{w}x{h}" for w, h in zip(d["width"], d["height"])], justify="right", priority=3),
        Column("mode", "mode", [str(m) for m in d["mode"]], priority=2),
        Column("source_bytes", "source bytes", [_fmt_bytes(b) for b in d["source_bytes"]], justify="right",
               priority=4),
        Column("job_id", "job", [str(j) for j in d["job_id"]], priority=1),
    ]
    return print_columns(cols, title=title or f"{n} archived video(s)", console=console, width=width,
                         dropped_hint="`ls --json` has every field")
