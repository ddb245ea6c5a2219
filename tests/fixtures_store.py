"""Fixtures for the store area (see tests/conftest.py).

- `s3_server` (session): a real SeaweedFS (`weed mini`) on 127.0.0.1, free ports, SigV4 credentials.
- `s3_bucket`: a fresh bucket on it per test.
- `store_uri` (parametrized "local" / "s3"): an archive URI; for "s3" the standard AWS environment
  (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) points at `s3_server`,
  so `open_store(store_uri)` works unchanged on both — the same tests run on both backends.
- `any_store`: `open_store(store_uri)` with small multipart settings and quick retries.
- `fresh_s3_server` (function): a private server for fault tests that kill and restart it.
"""

from __future__ import annotations

import uuid

import pytest

from pipeline.local_s3 import SeaweedServer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_s3_server(tmp_path):
    server = SeaweedServer(tmp_path / "seaweed-data")
    server.start()
    yield server
    server.stop()


def new_bucket(server: SeaweedServer) -> str:
    return server.make_bucket(f"t-{uuid.uuid4().hex[:16]}")


@pytest.fixture
def s3_bucket(s3_server):
    return new_bucket(s3_server)


def aws_env(monkeypatch, server: SeaweedServer, secret: str | None = None) -> None:
    """Point the standard AWS environment at `server` (what a user of a MinIO/Ceph/SeaweedFS would do)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent-progvc-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent-progvc-aws-credentials")


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path, monkeypatch):
    if request.param == "local":
        return str(tmp_path / "archive")
    server = request.getfixturevalue("s3_server")
    aws_env(monkeypatch, server)
    return f"s3://{new_bucket(server)}/archive"


@pytest.fixture
def any_store(store_uri):
    from pipeline.store import StoreConfig, open_store

    cfg = StoreConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024,
                      max_attempts=3, connect_timeout=2, read_timeout=20)
    return open_store(store_uri, config=cfg)


# ------------------------------------------------------------------ synthetic encoded videos (plain data)


def synthetic_video(seed: int, n_gops: int = 4, n_scales: int = 5, gop_len: int = 8, chunk_base: int = 64):
    """Deterministic fake codec output for one video: (video_id, header, gops, source).

    Chunk (g, k) is a real codec chunk frame (`pipeline.codec.container.pack_chunk`) around a random
    payload whose size grows with k (as fine scales cost more); token counts and token checksums are
    plausible integers, and the chunk headers agree with them (retrieval checks that), so this exercises
    the archive fully without running a model."""
    import hashlib
    import random

    from pipeline.archive import GopData, SourceInfo, video_id_from_chunks
    from pipeline.codec.container import pack_chunk

    rng = random.Random(seed)
    source_bytes = rng.randbytes(2000 + 37 * seed)
    vid = video_id_from_chunks([source_bytes])
    gops = []
    for g in range(n_gops):
        counts = [k * k * 4 * gop_len for k in range(1, n_scales + 1)]
        crcs = [rng.getrandbits(32) for _ in range(n_scales)]
        chunks = [pack_chunk(k, counts[k - 1], crcs[k - 1], rng.randbytes(chunk_base * k + rng.randrange(1, 50)))
                  for k in range(1, n_scales + 1)]
        gops.append(GopData(first_frame=g * gop_len, frame_count=gop_len, keyframe=True, chunks=chunks,
                            token_counts=counts, checksums=crcs))
    header = b"PGVH" + hashlib.sha256(source_bytes).digest() + rng.randbytes(40)
    source = SourceInfo(uri=f"file:///videos/clip{seed}.mp4", size_bytes=len(source_bytes) * 1000,
                        width=64, height=48, fps=25.0)
    return vid, header, gops, source
