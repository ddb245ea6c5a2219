"""The `prune` flow: keep only the first K scale layers (the progressive format makes this free)."""

from __future__ import annotations

from pipeline.settings import apply_environment

apply_environment()

from prefect import flow  # noqa: E402

from flows.archive_ops import store_for  # noqa: E402


@flow(name="prune")
def prune(dest: str, keep_scales: int, video: str | None = None, s3_endpoint: str | None = None) -> dict:
    """Delete layers K+1..N of one video (`video`: an id or a unique prefix) or of every archived video;
    tombstones first. Returns {"videos", "video_ids", "deleted", "bytes_freed", "part_key"}.
    (`progvc prune` calls `pipeline.archive.prune` directly, without a flow.)"""
    from pipeline import archive, manifest
    from pipeline.catalog import resolve_video_id

    store = store_for(dest, s3_endpoint)
    if video:
        video = resolve_video_id(manifest.committed_video_ids(store), video, dest)
    rep = archive.prune(store, keep_scales, [video] if video else None)
    return {"videos": len(rep.video_ids), "video_ids": rep.video_ids, "deleted": rep.deleted_keys,
            "bytes_freed": rep.freed_bytes, "part_key": rep.part_key}
