"""The library's own error types. Every failure a user can cause raises one of these, with a
message that names the file/object and says what to do."""

from __future__ import annotations


class ProGVCError(Exception):
    """Base of every error this project raises on purpose."""


class VideoError(ProGVCError):
    """A source cannot be read as video (not video, corrupt, truncated, unsupported)."""


class StreamError(ProGVCError):
    """A `.pgv` stream or layer object is damaged, truncated or inconsistent."""


class ModelMismatchError(StreamError):
    """A stream was made by a different model than the one loaded."""


class StoreError(ProGVCError):
    """The object store refused or lost an operation (missing object, permissions, outage)."""


class NotFoundError(StoreError):
    """An object or a video that should be in the archive is not there."""


class ManifestError(ProGVCError):
    """Manifest rows are missing, inconsistent, or describe scales that were pruned."""
