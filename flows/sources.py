"""Listing the sources of a job: local files/folders and `s3://bucket/prefix` URIs.

Inside a folder or prefix only names with a video suffix (`VIDEO_SUFFIXES`) are sources; every other file is
*ignored* and the job report lists it with the reason (a file named on the command line is always a source,
whatever its name). `open_source` gives the flow read access to one source (a local path, or an S3 object
read by ranged GETs) to look at its streams without downloading it whole.
"""

from __future__ import annotations

import io
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".y4m", ".mpg", ".mpeg",
                  ".flv")


def _is_video_name(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def _ignored_reason(name: str) -> str:
    suffix = Path(name).suffix.lower()
    kind = f"'{suffix}'" if suffix else "no suffix"
    return f"not a video file type ({kind}); name it as a source to try it anyway"


def scan_local(src: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(sources, ignored): a file as given (any name), or the video files under a folder (recursive, sorted)
    and the folder's other entries with the reason they were ignored.

    A path that does not exist (a typo, a dangling symlink) is returned as given: the job records it as one
    failed source with the reason ("no such file") and goes on with the others."""
    p = Path(src).expanduser()
    if not p.is_dir():
        return [str(p.resolve()) if p.exists() else str(p)], []
    found, ignored = [], []
    for f in sorted(p.rglob("*")):
        if f.is_dir():
            continue
        if not f.is_file():  # a dangling symlink, FIFO, socket or device
            what = "a dangling symlink" if f.is_symlink() and not f.exists() else "not a regular file"
            ignored.append((str(f), f"{what}; nothing to read"))
        elif _is_video_name(f.name):
            found.append(str(f.resolve()))
        else:
            ignored.append((str(f.resolve()), _ignored_reason(f.name)))
    return sorted(found), ignored


def list_local(src: str) -> list[str]:
    """The sources of `scan_local` (without the ignored files)."""
    return scan_local(src)[0]


def scan_s3(src: str, s3_endpoint: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(sources, ignored): `s3://bucket/key` of one object, or every video object under `s3://bucket/prefix`
    and the prefix's other objects with the reason they were ignored."""
    from pipeline.store import open_store, split_uri

    if src.rstrip("/").count("/") > 2 and not src.endswith("/"):  # may name one object
        parent, key = split_uri(src)
        if open_store(parent, s3_endpoint=s3_endpoint).head(key) is not None:
            return [src], []
    store = open_store(src.rstrip("/"), s3_endpoint=s3_endpoint)
    found, ignored = [], []
    for o in store.list(""):
        if o.key.endswith("/"):  # a "folder" marker object
            continue
        if _is_video_name(o.key):
            found.append(store.url(o.key))
        else:
            ignored.append((store.url(o.key), _ignored_reason(o.key)))
    return sorted(found), sorted(ignored)


def list_s3(src: str, s3_endpoint: str | None = None) -> list[str]:
    """The sources of `scan_s3` (without the ignored objects)."""
    return scan_s3(src, s3_endpoint)[0]


def scan_sources(sources: list[str], s3_endpoint: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(sources, ignored) of a job: every source once, in the order given (folders/prefixes expanded, sorted),
    and every file of those folders/prefixes that is not taken as a source, with the reason."""
    out: list[str] = []
    ignored: list[tuple[str, str]] = []
    seen: set[str] = set()
    for src in sources:
        found, skipped = scan_s3(src, s3_endpoint) if src.startswith("s3://") else scan_local(src)
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
        ignored.extend(x for x in skipped if x[0] not in seen)
    unique = list(dict.fromkeys(ignored))
    return out, [x for x in unique if x[0] not in seen]


def list_sources(sources: list[str], s3_endpoint: str | None = None) -> list[str]:
    """Every source of a job, each once, in the order given (folders/prefixes expanded, sorted)."""
    return scan_sources(sources, s3_endpoint)[0]


class _RangeReader(io.RawIOBase):
    """A read-only, seekable file over one stored object, read by ranged GETs (for PyAV's header probing)."""

    def __init__(self, store, key: str, size: int):
        self.store, self.key, self.size, self.offset = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.offset

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.size}[whence]
        self.offset = max(0, base + offset)
        return self.offset

    def readinto(self, buf) -> int:
        n = min(len(buf), self.size - self.offset)
        if n <= 0:
            return 0
        data = self.store.get_range(self.key, self.offset, n)
        buf[: len(data)] = data
        self.offset += len(data)
        return len(data)


def open_source(source: str, s3_endpoint: str | None = None):
    """A local path as a `Path`, or an `s3://` object as a buffered, seekable binary file read by ranged GETs
    (1 MiB at a time): enough to read a container's headers without downloading the whole object."""
    if not source.startswith("s3://"):
        return Path(source)
    from pipeline.errors import ProGVCError
    from pipeline.store import open_store, split_uri

    parent, key = split_uri(source)
    store = open_store(parent, s3_endpoint=s3_endpoint)
    info = store.head(key)
    if info is None:
        raise ProGVCError(f"{source}: no such object")
    return io.BufferedReader(_RangeReader(store, key, info.size), buffer_size=1 << 20)
