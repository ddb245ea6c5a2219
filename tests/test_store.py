"""Store tests: the same suite on a local directory and on a real SeaweedFS S3 server."""

from __future__ import annotations

import os
import zlib

import pytest

from pipeline.errors import NotFoundError, StoreError
from pipeline.store import LocalStore, S3Store, StoreConfig, open_store, split_uri
from tests.fixtures_store import aws_env


def test_round_trip_head_delete(any_store):
    data = os.urandom(1000)
    info = any_store.put("videos/a/layer-1.bin", data)
    assert info.size == 1000
    assert any_store.get("videos/a/layer-1.bin") == data
    head = any_store.head("videos/a/layer-1.bin")
    assert head is not None and head.size == 1000
    any_store.put("videos/a/layer-1.bin", b"new")  # overwrite
    assert any_store.get("videos/a/layer-1.bin") == b"new"
    any_store.delete("videos/a/layer-1.bin")
    assert any_store.head("videos/a/layer-1.bin") is None
    any_store.delete("videos/a/layer-1.bin")  # absent: not an error
    with pytest.raises(NotFoundError, match="videos/a/layer-1.bin"):
        any_store.get("videos/a/layer-1.bin")


def test_ranged_reads_and_counter(any_store):
    data = bytes(range(256)) * 40
    any_store.put("x/obj", data)
    any_store.reset_counters()
    assert any_store.get_range("x/obj", 0, 10) == data[:10]
    assert any_store.get_range("x/obj", 5000, 240) == data[5000:5240]
    assert any_store.get_range("x/obj", len(data) - 3, 3) == data[-3:]
    assert any_store.bytes_read == 253
    with pytest.raises(StoreError, match="x/obj"):
        any_store.get_range("x/obj", len(data) - 3, 10)  # past the end
    with pytest.raises(StoreError):
        any_store.get_range("x/obj", -1, 3)


def test_multipart_upload(any_store):
    """6 MiB with a 5 MiB threshold: S3 does a 2-part upload (ETag -2, composite CRC32); both backends
    return the exact bytes."""
    data = os.urandom(6 * 1024 * 1024 + 123)
    info = any_store.put("big/layer-1.bin", data)
    assert info.size == len(data)
    got = any_store.get("big/layer-1.bin")
    assert zlib.crc32(got) == zlib.crc32(data) and len(got) == len(data)
    assert any_store.get_range("big/layer-1.bin", 5 * 1024 * 1024 - 10, 20) == \
        data[5 * 1024 * 1024 - 10 : 5 * 1024 * 1024 + 10]
    if isinstance(any_store, S3Store):
        head = any_store.head("big/layer-1.bin")
        assert head.multipart_parts == 2
        assert head.checksum and head.checksum.endswith("-2")


def test_listing(any_store):
    for key in ["manifests/j1/part-1.parquet", "manifests/j1/part-2.parquet", "manifests/j2/part-1.parquet",
                "videos/v/header.bin", "manifestsX/other"]:
        any_store.put(key, key.encode())
    keys = [o.key for o in any_store.list("manifests/")]
    assert keys == ["manifests/j1/part-1.parquet", "manifests/j1/part-2.parquet", "manifests/j2/part-1.parquet"]
    assert [o.key for o in any_store.list("manifests/j1/part-2")] == ["manifests/j1/part-2.parquet"]
    assert {o.key for o in any_store.list("")} >= set(keys) | {"videos/v/header.bin", "manifestsX/other"}
    assert all(o.size == len(o.key) for o in any_store.list("manifests/"))
    assert list(any_store.list("nothing/")) == []


def test_iter_bytes(any_store):
    data = os.urandom(100_000)
    any_store.put("src/clip.mp4", data)
    assert b"".join(any_store.iter_bytes("src/clip.mp4", chunk_size=30_000)) == data


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "", "a\\b", "a/."])
def test_keys_that_escape_are_refused(any_store, key):
    with pytest.raises(StoreError, match="invalid object key"):
        any_store.put(key, b"x")


def test_local_atomic_write_leaves_no_temp_and_refuses_symlink_escape(tmp_path):
    store = LocalStore(tmp_path / "root")
    store.put("a/b.bin", b"1" * 100)
    store.put("a/b.bin", b"2" * 50)
    assert sorted(p.name for p in (tmp_path / "root" / "a").iterdir()) == ["b.bin"]
    assert store.get("a/b.bin") == b"2" * 50
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root" / "link").symlink_to(outside)
    with pytest.raises(StoreError, match="outside the store root"):
        store.put("link/evil.bin", b"x")
    assert not (outside / "evil.bin").exists()


def test_s3_wrong_credentials_refused(s3_server, s3_bucket, monkeypatch):
    aws_env(monkeypatch, s3_server, secret="definitely-wrong-secret-123")
    store = open_store(f"s3://{s3_bucket}/a", config=StoreConfig(max_attempts=1))
    with pytest.raises(StoreError) as ei:
        store.put("k", b"x")
    msg = str(ei.value)
    assert "refused" in msg and "AWS_SECRET_ACCESS_KEY" in msg and f"s3://{s3_bucket}/a/k" in msg
    assert "definitely-wrong-secret-123" not in msg and s3_server.secret_key not in msg
    assert "definitely-wrong-secret-123" not in repr(store) and s3_server.access_key not in repr(store)
    with pytest.raises(StoreError, match="refused"):
        store.head("k")
    with pytest.raises(StoreError, match="refused"):
        open_store(f"s3://{s3_bucket}/a", check=True)


def test_s3_missing_bucket_and_unreachable(s3_server, monkeypatch):
    aws_env(monkeypatch, s3_server)
    store = open_store("s3://no-such-bucket-progvc/x", config=StoreConfig(max_attempts=1))
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-progvc' does not exist"):
        store.put("k", b"x")
    with pytest.raises(StoreError, match="does not exist"):
        store.check()
    dead = open_store("s3://b/x", s3_endpoint="http://127.0.0.1:9", config=StoreConfig(max_attempts=2,
                                                                                         connect_timeout=1))
    with pytest.raises(StoreError, match="cannot reach the S3 endpoint http://127.0.0.1:9"):
        dead.get("k")


def test_s3_endpoint_argument_overrides_env(s3_server, s3_bucket, monkeypatch):
    aws_env(monkeypatch, s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # wrong on purpose
    store = open_store(f"s3://{s3_bucket}/p", s3_endpoint=s3_server.endpoint)
    store.put("k", b"hello")
    assert store.endpoint == s3_server.endpoint
    # the prefix is honoured: the object sits at p/k in the bucket
    assert s3_server.client().get_object(Bucket=s3_bucket, Key="p/k")["Body"].read() == b"hello"


def test_split_uri_and_open(tmp_path):
    assert split_uri("s3://b/p/q/x.mp4") == ("s3://b/p/q", "x.mp4")
    assert split_uri("s3://b/x.mp4") == ("s3://b", "x.mp4")
    assert split_uri(str(tmp_path / "x.mp4")) == (str(tmp_path.resolve()), "x.mp4")
    assert isinstance(open_store(f"file://{tmp_path}/a"), LocalStore)
    with pytest.raises(StoreError, match="unsupported archive URI"):
        open_store("gs://bucket/x")


def test_arrow_filesystem_reads_objects(any_store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2, 3]}), sink)
    any_store.put("manifests/j/part-1.parquet", sink.getvalue().to_pybytes())
    fs, base = any_store.arrow_filesystem()
    assert pq.read_table(f"{base}/manifests/j/part-1.parquet", filesystem=fs).column("a").to_pylist() == [1, 2, 3]


def test_store_config_from_env(monkeypatch):
    """Retry/timeout settings of the environment reach every store opened without an explicit config
    (flows, actors); bad values are named."""
    assert StoreConfig.from_env({}) == StoreConfig()
    cfg = StoreConfig.from_env({"PROGVC_S3_MAX_ATTEMPTS": "2", "AWS_MAX_ATTEMPTS": "9", "AWS_RETRY_MODE": "adaptive",
                                "PROGVC_S3_CONNECT_TIMEOUT": "1.5", "PROGVC_S3_READ_TIMEOUT": "7"})
    assert (cfg.max_attempts, cfg.retry_mode, cfg.connect_timeout, cfg.read_timeout) == (2, "adaptive", 1.5, 7.0)
    for env, name in (({"PROGVC_S3_READ_TIMEOUT": "soon"}, "PROGVC_S3_READ_TIMEOUT"),
                      ({"AWS_MAX_ATTEMPTS": "0"}, "AWS_MAX_ATTEMPTS"),
                      ({"PROGVC_S3_RETRY_MODE": "eager"}, "PROGVC_S3_RETRY_MODE")):
        with pytest.raises(ValueError, match=name):
            StoreConfig.from_env(env)
    monkeypatch.setenv("PROGVC_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("PROGVC_S3_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "progvc-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    dead = open_store("s3://b/x", s3_endpoint="http://127.0.0.1:9")
    assert (dead.config.max_attempts, dead.config.connect_timeout) == (1, 0.5)
    assert dead.client.meta.config.connect_timeout == 0.5
    with pytest.raises(StoreError, match=r"cannot reach the S3 endpoint http://127.0.0.1:9.* after 1 attempt \("):
        dead.get("k")
