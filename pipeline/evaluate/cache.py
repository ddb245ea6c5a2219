"""Content-addressed cache of evaluated RD points (and ProGVC encodings) for `progvc eval`.

A key is the SHA-256 of a JSON description of everything that decides a result: the frames' content
hash (covers the clip bytes and `--frames`), codec, preset, parameter, GOP length, encoder library
version, `runner.EVAL_VERSION`, and for ProGVC the model id (hash of the weights), a hash of the codec's
inference sources (a codec change recomputes its points), the prediction mode and, for keyframe mode only,
`mode` and `frame_scales` (plain-mode keys predate keyframe mode and are unchanged). A re-run only
computes points whose key is new. Entries are small JSON files, written atomically.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CACHE_DIR = Path(os.environ.get("PROGVC_EVAL_CACHE", Path.home() / ".cache" / "progvc-eval"))


def frames_hash(frames_THWC: np.ndarray) -> str:
    """SHA-256 (hex) of the frames' shape and bytes."""
    h = hashlib.sha256(repr(tuple(frames_THWC.shape)).encode())
    h.update(np.ascontiguousarray(frames_THWC).tobytes())
    return h.hexdigest()


def key_of(desc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()


class EvalCache:
    """JSON entries under `root/<kind>/<key[:2]>/<key>.json`; `root=None` disables caching."""

    def __init__(self, root: Path | str | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}.json"

    def get(self, kind: str, key: str) -> dict | None:
        if self.root is None:
            self.misses += 1
            return None
        p = self._path(kind, key)
        try:
            value = json.loads(p.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, kind: str, key: str, value: dict) -> None:
        if self.root is None:
            return
        p = self._path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, p)


def pack_chunks(gops: list[list[bytes]]) -> list[list[str]]:
    return [[base64.b64encode(c).decode() for c in g] for g in gops]


def unpack_chunks(data: list[list[str]]) -> list[list[bytes]]:
    return [[base64.b64decode(c) for c in g] for g in data]
