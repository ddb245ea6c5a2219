"""Storage savings from the manifest: by video, job or overall, for every scale count K.

    rows = read_manifest(store)                # effective rows (pipeline.manifest)
    per_video = savings(rows, by="video")      # one row per (job_id, video_id, scales)
    per_job = savings(rows, by="job")          # one row per (job_id, scales)
    overall = savings(rows, by="scale")        # one row per scales
    per_mode = savings(rows, by="mode")        # one row per (mode, scales): plain vs keyframe videos
    print_table(per_job); export(per_job, "s.csv" | "s.parquet"); plot(per_video, "s.png")

Definitions (bytes, per video, K = number of scales kept, 1..N):
- `header_bytes`: size of `header.bin` (needed at every K, counted in `archived_bytes`);
- `archived_bytes` = header_bytes + Σ chunk bytes of scales 1..K over all GOPs (what re-serving at K reads
  and what an archive pruned to K stores);
- `ratio` = source_bytes / archived_bytes (compression factor, > 1 is a saving). `source_bytes` is the whole
  source file, so it depends on what the file is: a raw y4m shows thousands, an H.264 MP4 single digits, and
  a file's audio counts as saved. Two stated references do not (issue 16.8):
- `video_stream_bytes`: the bytes of the source's video stream (its packets, measured at compress time;
  manifest column of the same name), `ratio_video_stream` = video_stream_bytes / archived_bytes: against
  what the source's own codec spent on the same frames. Null for videos archived before the column existed
  (shown "–"; a job/overall row is null unless every video in it has the value);
- `raw420_bytes` = frames · (W·H + 2·⌈W/2⌉·⌈H/2⌉) (= frames · W · H · 1.5 for even sizes: 8-bit 4:2:0, what
  a y4m of the frames holds), `ratio_raw420` = raw420_bytes / archived_bytes: against uncompressed video;
- `bpp` = 8 · archived_bytes / (width · height · frames), header included;
- `psnr`, `ms_ssim`, `vmaf`: quality of the video decoded at K scales where the job recorded it (job and
  overall rows: mean over the videos that have it);
- `stored`: true when scales 1..K are all still stored (false once pruned below K);
- `stored_bytes`: bytes the video occupies now (header + layers not pruned), the same on each of its rows.
Job/overall rows sum bytes and pixels over videos (ratio and bpp are then byte-weighted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import manifest as mf
from pipeline.errors import ManifestError

_Q = list(mf.QUALITY_COLUMNS)


def _video_attrs(rows: pa.Table) -> pa.Table:
    hdr = rows.filter(pc.equal(rows.column("scale"), mf.HEADER_SCALE))
    hdr = hdr.select(["video_id", "job_id", "source_uri", "source_bytes", "video_stream_bytes", "width", "height",
                      "fps", "frame_count", "byte_length", "model_id", "created_at", "mode"])
    return hdr.rename_columns(["video_id", "job_id", "source_uri", "source_bytes", "video_stream_bytes", "width",
                               "height", "fps", "frames", "header_bytes", "model_id", "created_at", "mode"])


def raw420_bytes(width: np.ndarray, height: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Bytes of the frames as raw 8-bit 4:2:0 (a y4m's frame data): W·H luma + 2 chroma planes of ⌈W/2⌉·⌈H/2⌉."""
    w, h = np.asarray(width, np.int64), np.asarray(height, np.int64)
    return np.asarray(frames, np.int64) * (w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2))


def _ratio(num: pa.Array | pa.ChunkedArray, den: np.ndarray) -> pa.Array:
    """num / den as float64, null where num is null."""
    n = pc.cast(num, pa.float64())
    return pc.divide(n, pa.array(den.astype(np.float64)))


def savings(rows: pa.Table, by: str = "video") -> pa.Table:
    """Savings table (see module doc) from effective manifest rows; `by` = "video" | "job" | "scale" |
    "mode" (the coding mode, plain | keyframe; `by="video"` rows carry it too)."""
    if by not in ("video", "job", "scale", "mode"):
        raise ManifestError(f"unknown savings grouping {by!r}: use video, job, scale or mode")
    if rows.num_rows == 0:
        raise ManifestError("no committed manifest rows: the archive is empty (run a compress job first)")
    layers = rows.filter(pc.greater(rows.column("scale"), mf.HEADER_SCALE))
    layers = layers.append_column("_pruned", pc.cast(pc.is_valid(layers.column("pruned_at")), pa.int64()))
    per = layers.group_by(["video_id", "scale"]).aggregate(
        [("byte_length", "sum"), ("token_count", "sum"), ("_pruned", "max")] + [(q, "mean") for q in _Q])
    per = per.rename_columns(["video_id", "scales", "layer_bytes", "tokens", "pruned", *_Q])
    per = per.sort_by([("video_id", "ascending"), ("scales", "ascending")])
    vid = per.column("video_id")
    lb = per.column("layer_bytes").to_numpy()
    pruned = per.column("pruned").to_numpy().astype(bool)
    # cumulative sums within each video (rows are sorted by video, then scale)
    starts = np.flatnonzero(np.r_[True, pc.not_equal(vid[1:], vid[:-1]).to_numpy(zero_copy_only=False)]) \
        if per.num_rows > 1 else np.array([0])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, per.num_rows]))
    cum = np.cumsum(lb)
    cum_layers = cum - (cum[starts] - lb[starts])[group]
    any_pruned_upto = np.maximum.accumulate(pruned.astype(np.int64) + group * 2) - group * 2  # per-video running
    stored_layers = np.bincount(group, weights=lb * ~pruned, minlength=len(starts))[group]
    per = per.append_column("cum_layer_bytes", pa.array(cum_layers, pa.int64()))
    per = per.append_column("stored", pa.array(any_pruned_upto == 0))
    per = per.append_column("stored_layer_bytes", pa.array(stored_layers.astype(np.int64), pa.int64()))
    t = per.join(_video_attrs(rows), "video_id").sort_by([("job_id", "ascending"), ("video_id", "ascending"),
                                                         ("scales", "ascending")])
    header = t.column("header_bytes").to_numpy().astype(np.int64)
    archived = header + t.column("cum_layer_bytes").to_numpy()
    pixels = (t.column("width").to_numpy().astype(np.float64) * t.column("height").to_numpy()
              * t.column("frames").to_numpy())
    src = t.column("source_bytes").to_numpy().astype(np.float64)
    raw = raw420_bytes(t.column("width").to_numpy(), t.column("height").to_numpy(), t.column("frames").to_numpy())
    if by == "video":
        return pa.table({
            "job_id": t.column("job_id"), "video_id": t.column("video_id"), "source_uri": t.column("source_uri"),
            "scales": t.column("scales"), "mode": t.column("mode"), "source_bytes": t.column("source_bytes"),
            "video_stream_bytes": t.column("video_stream_bytes"), "raw420_bytes": pa.array(raw, pa.int64()),
            "header_bytes": t.column("header_bytes"), "archived_bytes": pa.array(archived, pa.int64()),
            "ratio": pa.array(src / archived),
            "ratio_video_stream": _ratio(t.column("video_stream_bytes"), archived),
            "ratio_raw420": pa.array(raw / archived), "bpp": pa.array(8.0 * archived / pixels),
            **{q: t.column(q) for q in _Q},
            "stored": t.column("stored"),
            "stored_bytes": pa.array(header + t.column("stored_layer_bytes").to_numpy(), pa.int64()),
            "width": t.column("width"), "height": t.column("height"), "frames": t.column("frames"),
        })
    keys = {"job": ["job_id", "scales"], "mode": ["mode", "scales"]}.get(by, ["scales"])
    g = pa.table({
        "job_id": t.column("job_id"), "mode": t.column("mode"), "scales": t.column("scales"),
        "video_id": t.column("video_id"),
        "source_bytes": t.column("source_bytes"), "video_stream_bytes": t.column("video_stream_bytes"),
        "raw420_bytes": pa.array(raw, pa.int64()), "archived_bytes": pa.array(archived, pa.int64()),
        "pixels": pa.array(pixels), "stored": pc.cast(t.column("stored"), pa.int64()),
        "stored_bytes": pa.array(header + t.column("stored_layer_bytes").to_numpy(), pa.int64()),
        **{q: t.column(q) for q in _Q},
    })
    agg = g.group_by(keys).aggregate(
        [("video_id", "count"), ("source_bytes", "sum"), ("video_stream_bytes", "sum"),
         ("video_stream_bytes", "count"), ("raw420_bytes", "sum"), ("archived_bytes", "sum"), ("pixels", "sum"),
         ("stored", "min"), ("stored_bytes", "sum")] + [(q, "mean") for q in _Q])
    agg = agg.rename_columns([c.removesuffix("_sum").removesuffix("_mean").removesuffix("_min")
                              .replace("video_id_count", "videos") for c in agg.column_names])
    agg = agg.sort_by([(k, "ascending") for k in keys])
    # a group's video-stream total only when every video in it has one (else its ratio would mislead)
    vs = pc.if_else(pc.equal(agg.column("video_stream_bytes_count"), agg.column("videos")),
                    agg.column("video_stream_bytes"), pa.scalar(None, pa.int64()))
    s = agg.column("source_bytes").to_numpy().astype(np.float64)
    a = agg.column("archived_bytes").to_numpy().astype(np.float64)
    out = {k: agg.column(k) for k in keys}
    raw_sum = agg.column("raw420_bytes").to_numpy().astype(np.float64)
    out.update(videos=agg.column("videos"), source_bytes=agg.column("source_bytes"), video_stream_bytes=vs,
               raw420_bytes=agg.column("raw420_bytes"), archived_bytes=agg.column("archived_bytes"),
               ratio=pa.array(s / a), ratio_video_stream=_ratio(vs, a), ratio_raw420=pa.array(raw_sum / a),
               bpp=pa.array(8.0 * a / agg.column("pixels").to_numpy()),
               **{q: agg.column(q) for q in _Q}, stored=pc.equal(agg.column("stored"), 1),
               stored_bytes=agg.column("stored_bytes"))
    return pa.table(out)


def stored_totals(rows: pa.Table) -> dict[str, int]:
    """Bytes now stored (header + layers not pruned) and source bytes over all videos in `rows`."""
    live = mf.stored_rows(rows)
    hdr = rows.filter(pc.equal(rows.column("scale"), mf.HEADER_SCALE))
    return {"videos": hdr.num_rows, "source_bytes": int(pc.sum(hdr.column("source_bytes")).as_py() or 0),
            "stored_bytes": int(pc.sum(live.column("byte_length")).as_py() or 0)}


# --------------------------------------------------------------------------------------------- output


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _cell(c: str, v) -> str:
    if v is None:
        return "–"
    if c.endswith("_bytes"):
        return _fmt_bytes(v)
    if c == "ratio" or c.startswith("ratio_"):
        return f"{v:.0f}×" if v >= 100 else f"{v:.1f}×"
    if c == "bpp":
        return f"{v:.4f}"
    if c in _Q:
        return f"{v:.3f}" if c == "ms_ssim" else f"{v:.2f}"
    if c == "stored":
        return "yes" if v else "pruned"
    return str(v)


# columns of the terminal table: (header, justify, priority: higher is dropped later when the terminal is narrow)
_COLUMNS = {
    "job_id": ("job", "left", 1), "video_id": ("video", "left", 10), "name": ("source", "left", 7),
    "mode": ("mode", "left", 2), "scales": ("K", "right", 10), "videos": ("videos", "right", 6),
    "source_bytes": ("source bytes", "right", 5), "archived_bytes": ("archived", "right", 9),
    "ratio": ("ratio", "right", 9), "ratio_video_stream": ("×video", "right", 5),
    "ratio_raw420": ("×raw420", "right", 3), "bpp": ("bpp", "right", 2), "psnr": ("psnr", "right", 4),
    "ms_ssim": ("ms_ssim", "right", 3), "vmaf": ("vmaf", "right", 3), "stored": ("stored", "right", 6),
}


def print_table(table: pa.Table, title: str = "Storage savings", console=None, max_rows: int = 200,
                width: int | None = None, all_ids: list[str] | None = None) -> list[str]:
    """Render a `savings` table on the terminal with rich, fitted to its width (`width`, else the console's):
    low-priority columns are left out (and named under the table) rather than numbers or ids cut. Video ids
    show as their shortest unique prefix of at least 12 digits (`pipeline.catalog.unique_prefixes`: every
    command accepts it; unique among `all_ids` when given, e.g. every id of the archive when `table` covers
    some of its videos), sources as file names. Returns the keys of the columns left out."""
    from pipeline.catalog import source_name, unique_prefixes
    from pipeline.term_table import Column, print_columns

    keys = ["job_id"] if "job_id" in table.column_names and "video_id" not in table.column_names else []
    keys += ["mode"] if "mode" in table.column_names and not {"job_id", "video_id"} & set(table.column_names) else []
    cols = [c for c in ("job_id", "video_id", "name", "mode", "scales", "videos", "source_bytes", "archived_bytes",
                        "ratio", "ratio_video_stream", "ratio_raw420", "bpp", *_Q, "stored")
            if c in table.column_names or (c == "name" and "source_uri" in table.column_names)]
    cols = [c for c in cols if c not in _Q or table.column(c).null_count < table.num_rows]
    n = min(table.num_rows, max_rows)
    data = {c: table.column(c).to_pylist()[:max_rows] for c in cols if c != "name"}
    if "name" in cols:
        data["name"] = [source_name(u) for u in table.column("source_uri").to_pylist()[:max_rows]]
    if "video_id" in cols:
        short = unique_prefixes({*table.column("video_id").to_pylist(), *(all_ids or [])})
        data["video_id"] = [short[v] for v in data["video_id"]]
    columns = []
    for c in cols:
        header, justify, priority = _COLUMNS[c]
        cells = [str(v) if c in ("video_id", "name", "job_id", "mode") and v is not None else _cell(c, v)
                 for v in data[c][:n]]
        columns.append(Column(c, header, cells, justify=justify, priority=priority, flex=c == "name",
                              keep=c in ("video_id", "scales", *keys)))
    title = title + (f" (first {max_rows} of {table.num_rows} rows)" if table.num_rows > max_rows else "")
    return print_columns(columns, title=title, console=console, width=width,
                         dropped_hint="--csv/--parquet have every column")


def export(table: pa.Table, path: str | Path) -> Path:
    """Write `table` as CSV (.csv) or Parquet (.parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        raise ManifestError(f"cannot export savings to {path}: use a .csv or .parquet file name")
    return path


#: ratio columns a plot can show, with the reference each states
REFERENCES = {
    "video_stream": ("ratio_video_stream", "source video stream / archived"),
    "raw420": ("ratio_raw420", "raw 4:2:0 frames / archived"),
    "file": ("ratio", "source file / archived"),
}


def _line_labels(table: pa.Table, max_lines: int) -> tuple[str | None, str, list[tuple[object, str]]]:
    """(column that splits the lines, what one line is, [(value, legend label)]) for a savings table: source
    file names for a per-video table (an id prefix added where two sources share a name), job ids, modes, or
    one line for all videos."""
    from pathlib import PurePosixPath

    if "video_id" in table.column_names:
        firsts = table.group_by("video_id", use_threads=False).aggregate([("source_uri", "first")])
        names = {v: PurePosixPath(str(u or "").rstrip("/")).name or v
                 for v, u in zip(firsts.column("video_id").to_pylist(), firsts.column("source_uri_first").to_pylist())}
        order = list(dict.fromkeys(table.column("video_id").to_pylist()))[:max_lines]
        dup = {n for n in names.values() if list(names.values()).count(n) > 1}
        return "video_id", "video (source file)", [(v, f"{names[v]} ({v[:8]})" if names[v] in dup else names[v])
                                                   for v in order]
    for col, what in (("job_id", "job"), ("mode", "coding mode")):
        if col in table.column_names:
            vals = list(dict.fromkeys(table.column(col).to_pylist()))[:max_lines]
            return col, what, [(v, str(v)) for v in vals]
    return None, "all videos", [(None, "all videos")]


def plot(table: pa.Table, path: str | Path, max_lines: int = 12, reference: str = "auto",
         title: str | None = None) -> Path:
    """PNG (or SVG, by the suffix): compression ratio vs scale count (left) and quality (PSNR, else MS-SSIM)
    vs bpp where recorded (right; bpp vs scale count otherwise). One line per video (labelled with its source
    file name), job or mode (first `max_lines`) for a `by="video"`/`"job"`/`"mode"` table, one line for
    `by="scale"`; the titles say the grouping. `reference`: what the ratio is against ("video_stream",
    "raw420", "file"; "auto" = the source's video stream where every row has it, else raw 4:2:0), named on
    the axis. `title`: a heading above both plots (e.g. the archive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if reference == "auto":
        has_vs = "ratio_video_stream" in table.column_names and table.column("ratio_video_stream").null_count == 0
        reference = "video_stream" if has_vs else "raw420"
    if reference not in REFERENCES:
        raise ManifestError(f"unknown savings reference {reference!r}: use {', '.join(REFERENCES)} or auto")
    ratio_col, ratio_label = REFERENCES[reference]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_col, what, lines = _line_labels(table, max_lines)
    q = next((c for c in ("psnr", "ms_ssim", "vmaf") if table.column(c).null_count < table.num_rows), None)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    for value, label in lines:
        sub = table.filter(pc.equal(table.column(label_col), value)) if label_col else table
        k = sub.column("scales").to_numpy()
        ax1.plot(k, sub.column(ratio_col).to_numpy(zero_copy_only=False), marker="o", label=label)
        if q:
            ax2.plot(sub.column("bpp").to_numpy(), sub.column(q).to_numpy(zero_copy_only=False), marker="o",
                     label=label)
        else:
            ax2.plot(k, sub.column("bpp").to_numpy(), marker="o", label=label)
    shown = (f"one line per {what}" + (f", first {len(lines)}" if len(lines) == max_lines else "")
             if label_col else "all videos summed")
    ax1.set(xlabel="scales kept (K)", ylabel=f"compression ratio ({ratio_label})", yscale="log",
            title=f"Savings by scale count ({shown})")
    if q:
        ax2.set(xlabel="bits per pixel (header included)", ylabel=q, title=f"{q} vs bpp ({shown})")
    else:
        ax2.set(xlabel="scales kept (K)", ylabel="bits per pixel (header included)",
                title=f"bpp by scale count ({shown})")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.title.set_fontsize(9)
    ax1.legend(fontsize=7, title=what, title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG keeps its text as text (searchable)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
