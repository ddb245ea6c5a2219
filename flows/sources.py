"""Listing the sources of a job: local files/folders and `s3://bucket/prefix` URIs."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".y4m", ".mpg", ".mpeg", ".flv")


def _is_video_name(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def list_local(src: str) -> list[str]:
    """A file as given (any name), or the video files under a folder (recursive, sorted).

    A path that does not exist (a typo, a dangling symlink) is returned as given: the job records it as
    one failed source with the reason ("no such file") and goes on with the others."""
    p = Path(src).expanduser()
    if p.is_dir():
        return sorted(str(f.resolve()) for f in p.rglob("*") if f.is_file() and _is_video_name(f.name))
    return [str(p.resolve()) if p.exists() else str(p)]


def list_s3(src: str, s3_endpoint: str | None = None) -> list[str]:
    """`s3://bucket/key` of one object, or every video object under `s3://bucket/prefix`."""
    from pipeline.store import open_store, split_uri

    if src.rstrip("/").count("/") > 2 and not src.endswith("/"):  # may name one object
        parent, key = split_uri(src)
        if open_store(parent, s3_endpoint=s3_endpoint).head(key) is not None:
            return [src]
    store = open_store(src.rstrip("/"), s3_endpoint=s3_endpoint)
    return sorted(store.url(o.key) for o in store.list("") if _is_video_name(o.key))


def list_sources(sources: list[str], s3_endpoint: str | None = None) -> list[str]:
    """Every source of a job, each once, in the order given (folders/prefixes expanded, sorted)."""
    out: list[str] = []
    seen: set[str] = set()
    for src in sources:
        found = list_s3(src, s3_endpoint) if src.startswith("s3://") else list_local(src)
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out
