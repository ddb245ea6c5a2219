"""`savings`: storage savings from the committed manifests (table, CSV/Parquet, PNG).

A plain function, not a Prefect flow (issue 16.6): it reads one manifest, and an ephemeral Prefect server
cost 20-60 s of start-up for 0.5 s of work. It imports neither Prefect nor Ray.
"""

from __future__ import annotations

from flows.archive_ops import store_for


def savings(
    dest: str,
    by: str = "video",
    csv: str | None = None,
    parquet: str | None = None,
    plot: str | None = None,
    s3_endpoint: str | None = None,
    show: bool = False,
    videos: list[str] | None = None,
) -> dict:
    """Savings of archive `dest` grouped `by` video | job | scale | mode (one row per scale count K).
    Writes the table to `csv`/`parquet` and a plot to `plot` (PNG) when given; prints it when `show`.
    `videos`: only these videos (ids or unique prefixes, `pipeline.catalog.resolve_video_id`).
    Returns {"rows": [...], "totals": {videos, source_bytes, stored_bytes}, "files": [...]}."""
    from pipeline import manifest
    from pipeline import savings as sv

    store = store_for(dest, s3_endpoint)
    rows = manifest.read_manifest(store)
    all_ids = rows.column("video_id").unique().to_pylist()
    if videos:
        import pyarrow as pa
        import pyarrow.compute as pc

        from pipeline.catalog import resolve_video_ids

        keep = pa.array(resolve_video_ids(rows, videos, dest), pa.string())
        rows = rows.filter(pc.is_in(rows.column("video_id"), keep))
    table = sv.savings(rows, by=by)
    files = []
    if show:
        sv.print_table(table, title=f"Storage savings of {dest} by {by}", all_ids=all_ids)
    for path in (csv, parquet):
        if path:
            files.append(str(sv.export(table, path)))
    if plot:
        files.append(str(sv.plot(table, plot)))
    totals = sv.stored_totals(rows)
    if show:
        src, stored = totals["source_bytes"], totals["stored_bytes"]
        print(f"{totals['videos']} video(s): {src} source bytes, {stored} bytes stored{ratio_text(src, stored)}")
        for f in files:
            print(f"wrote {f}")
    return {"rows": table.to_pylist(), "totals": totals, "files": files}


def ratio_text(source_bytes: int, stored_bytes: int) -> str:
    """' (3.2x smaller)', or ' (1.5x LARGER than the sources)' when the archive outgrew them (low-bitrate
    sources re-coded at a higher fidelity), '' when either is 0."""
    if not source_bytes or not stored_bytes:
        return ""
    if source_bytes >= stored_bytes:
        return f" ({source_bytes / stored_bytes:.1f}x smaller)"
    return f" ({stored_bytes / source_bytes:.1f}x LARGER than the sources)"
