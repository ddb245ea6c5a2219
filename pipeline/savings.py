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
- `ratio` = source_bytes / archived_bytes (compression factor, > 1 is a saving);
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
    hdr = hdr.select(["video_id", "job_id", "source_uri", "source_bytes", "width", "height", "fps",
                      "frame_count", "byte_length", "model_id", "created_at", "mode"])
    return hdr.rename_columns(["video_id", "job_id", "source_uri", "source_bytes", "width", "height", "fps",
                               "frames", "header_bytes", "model_id", "created_at", "mode"])


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
    if by == "video":
        return pa.table({
            "job_id": t.column("job_id"), "video_id": t.column("video_id"), "source_uri": t.column("source_uri"),
            "scales": t.column("scales"), "mode": t.column("mode"), "source_bytes": t.column("source_bytes"),
            "header_bytes": t.column("header_bytes"), "archived_bytes": pa.array(archived, pa.int64()),
            "ratio": pa.array(src / archived), "bpp": pa.array(8.0 * archived / pixels),
            **{q: t.column(q) for q in _Q},
            "stored": t.column("stored"),
            "stored_bytes": pa.array(header + t.column("stored_layer_bytes").to_numpy(), pa.int64()),
            "width": t.column("width"), "height": t.column("height"), "frames": t.column("frames"),
        })
    keys = {"job": ["job_id", "scales"], "mode": ["mode", "scales"]}.get(by, ["scales"])
    g = pa.table({
        "job_id": t.column("job_id"), "mode": t.column("mode"), "scales": t.column("scales"),
        "video_id": t.column("video_id"),
        "source_bytes": t.column("source_bytes"), "archived_bytes": pa.array(archived, pa.int64()),
        "pixels": pa.array(pixels), "stored": pc.cast(t.column("stored"), pa.int64()),
        "stored_bytes": pa.array(header + t.column("stored_layer_bytes").to_numpy(), pa.int64()),
        **{q: t.column(q) for q in _Q},
    })
    agg = g.group_by(keys).aggregate(
        [("video_id", "count"), ("source_bytes", "sum"), ("archived_bytes", "sum"), ("pixels", "sum"),
         ("stored", "min"), ("stored_bytes", "sum")] + [(q, "mean") for q in _Q])
    agg = agg.rename_columns([c.removesuffix("_sum").removesuffix("_mean").removesuffix("_min")
                              .replace("video_id_count", "videos") for c in agg.column_names])
    agg = agg.sort_by([(k, "ascending") for k in keys])
    s = agg.column("source_bytes").to_numpy().astype(np.float64)
    a = agg.column("archived_bytes").to_numpy().astype(np.float64)
    out = {k: agg.column(k) for k in keys}
    out.update(videos=agg.column("videos"), source_bytes=agg.column("source_bytes"),
               archived_bytes=agg.column("archived_bytes"), ratio=pa.array(s / a),
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


def print_table(table: pa.Table, title: str = "Storage savings", console=None, max_rows: int = 200) -> None:
    """Render a `savings` table on the terminal with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    cols = [c for c in ("job_id", "video_id", "mode", "scales", "videos", "source_bytes", "archived_bytes", "ratio",
                        "bpp", *_Q, "stored") if c in table.column_names]
    cols = [c for c in cols if c not in _Q or table.column(c).null_count < table.num_rows]
    rt = Table(title=title + (f" (first {max_rows} of {table.num_rows} rows)" if table.num_rows > max_rows
                              else ""))
    headers = {"source_bytes": "source", "archived_bytes": "archived", "video_id": "video", "job_id": "job",
               "scales": "K"}
    for c in cols:
        rt.add_column(headers.get(c, c), justify="left" if c in ("job_id", "video_id") else "right",
                      no_wrap=True)
    data = {c: table.column(c).to_pylist()[:max_rows] for c in cols}
    for i in range(min(table.num_rows, max_rows)):
        cells = []
        for c in cols:
            v = data[c][i]
            if v is None:
                cells.append("–")
            elif c.endswith("_bytes"):
                cells.append(_fmt_bytes(v))
            elif c == "ratio":
                cells.append(f"{v:.0f}×" if v >= 100 else f"{v:.1f}×")
            elif c == "bpp":
                cells.append(f"{v:.4f}")
            elif c in _Q:
                cells.append(f"{v:.3f}" if c == "ms_ssim" else f"{v:.2f}")
            elif c == "video_id":
                cells.append(str(v)[:12])  # a unique prefix in practice; full ids are in CSV/Parquet
            elif c == "stored":
                cells.append("yes" if v else "pruned")
            else:
                cells.append(str(v))
        rt.add_row(*cells)
    console.print(rt)


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


def plot(table: pa.Table, path: str | Path, max_lines: int = 12) -> Path:
    """PNG: compression ratio vs scale count (left) and quality (PSNR, else MS-SSIM) vs bpp where recorded
    (right; bpp vs scale count otherwise). One line per video/job (first `max_lines`) for a `by="video"`/
    `by="job"`/`by="mode"` table, one line for `by="scale"`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_col = next((c for c in ("video_id", "job_id", "mode") if c in table.column_names), None)
    labels = pc.unique(table.column(label_col)).to_pylist()[:max_lines] if label_col else ["all"]
    q = next((c for c in ("psnr", "ms_ssim", "vmaf") if table.column(c).null_count < table.num_rows), None)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lab in labels:
        sub = table.filter(pc.equal(table.column(label_col), lab)) if label_col else table
        k = sub.column("scales").to_numpy()
        ax1.plot(k, sub.column("ratio").to_numpy(), marker="o", label=str(lab)[:12])
        if q:
            ax2.plot(sub.column("bpp").to_numpy(), sub.column(q).to_numpy(zero_copy_only=False), marker="o")
        else:
            ax2.plot(k, sub.column("bpp").to_numpy(), marker="o")
    ax1.set(xlabel="scales kept (K)", ylabel="compression ratio (source / archived)", yscale="log",
            title="Savings by scale count")
    if q:
        ax2.set(xlabel="bits per pixel (header included)", ylabel=q, title=f"{q} vs bpp")
    else:
        ax2.set(xlabel="scales kept (K)", ylabel="bits per pixel (header included)", title="bpp by scale count")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    if len(labels) > 1:
        ax1.legend(fontsize=7, title=label_col)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
