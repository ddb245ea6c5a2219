"""The `savings` flow: storage savings from the committed manifests (table, CSV/Parquet, PNG)."""

from __future__ import annotations

from pipeline.settings import apply_environment

apply_environment()

from prefect import flow  # noqa: E402

from flows.archive_ops import store_for  # noqa: E402


@flow(name="savings")
def savings(
    dest: str,
    by: str = "video",
    csv: str | None = None,
    parquet: str | None = None,
    plot: str | None = None,
    s3_endpoint: str | None = None,
    show: bool = False,
) -> dict:
    """Savings of archive `dest` grouped `by` video | job | scale | mode (one row per scale count K).
    Writes the table to `csv`/`parquet` and a plot to `plot` (PNG) when given; prints it when `show`.
    Returns {"rows": [...], "totals": {videos, source_bytes, stored_bytes}, "files": [...]}."""
    from pipeline import manifest
    from pipeline import savings as sv

    store = store_for(dest, s3_endpoint)
    rows = manifest.read_manifest(store)
    table = sv.savings(rows, by=by)
    files = []
    if show:
        sv.print_table(table, title=f"Storage savings of {dest} by {by}")
    for path in (csv, parquet):
        if path:
            files.append(str(sv.export(table, path)))
    if plot:
        files.append(str(sv.plot(table, plot)))
    totals = sv.stored_totals(rows)
    if show:
        print(f"{totals['videos']} video(s): {totals['source_bytes']} source bytes, "
              f"{totals['stored_bytes']} bytes stored"
              + (f" ({totals['source_bytes'] / totals['stored_bytes']:.1f}x smaller)" if totals["stored_bytes"]
                 else ""))
        for f in files:
            print(f"wrote {f}")
    return {"rows": table.to_pylist(), "totals": totals, "files": files}
