"""Security basics: no credentials in anything a job writes or says; object keys only from our own ids;
the local store never leaves its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StoreError
from tests.corpus import record, verify_archive
from tests.fixtures_cluster import TINY_MODEL
from tests.fixtures_store import aws_env, new_bucket
from tests.test_reliability_faults import make_sources

KEY_RE = (r"^(videos/[0-9a-f]{{24}}/(header|layer-\d+)\.bin"
          r"|(manifests|failures)/{job}/part-[0-9TZ]+-[0-9a-f]{{8}}\.parquet)$")


def _grep_tree(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


@pytest.mark.timeout(600)
def test_job_with_hostile_names_leaks_no_secret_and_keys_stay_ours(s3_server, monkeypatch, tmp_path, ray_session,
                                                                    prefect_harness, capfd):
    """Sources on S3 named `../../x.mp4`, with odd unicode and control characters, plus a corrupt one, go
    through a compress job into s3://bucket/archive. Every key the job wrote matches our own id scheme;
    the secret key appears nowhere: not in the report, stdout/stderr, logs (Prefect's database and files,
    our Ray session's logs), the manifest/failure parts or any object, nor in errors and reprs."""
    import re

    import boto3

    from flows.compress import compress
    from pipeline import manifest
    from pipeline.store import open_store

    aws_env(monkeypatch, s3_server)
    secret = s3_server.secret_key
    bucket = new_bucket(s3_server)
    srcs = make_sources(tmp_path / "src", 2, frames=8)
    bad = tmp_path / "src" / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.access_key,
                      aws_secret_access_key=secret, region_name="us-east-1")
    # SeaweedFS refuses keys with `../` or backslash segments (AWS S3 accepts them); these are the nastiest it takes
    names = {"raw/..%2F..%2Fx.mp4": srcs[0], "raw/\u202eevil ?*\u00e9.mp4": srcs[1],
             "raw/sub/...bad\tname.mp4": str(bad)}
    for key, path in names.items():
        s3.upload_file(path, bucket, key)
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="raw/")["Contents"])
    dest = f"s3://{bucket}/archive"
    rep = compress(sources=[f"s3://{bucket}/raw/"], dest=dest, job="sec-1", actors=1, weights=TINY_MODEL,
                   max_gop=8)
    assert len(rep["videos"]) == len(listed) == 3
    assert sorted(v["status"] for v in rep["videos"]) == ["committed", "committed", "failed"], rep["videos"]
    store = open_store(dest)
    keys = [o.key for o in store.list("")]
    pat = re.compile(KEY_RE.format(job="sec-1"))
    assert keys and all(pat.match(k) for k in keys), [k for k in keys if not pat.match(k)]
    outside = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
               if not o["Key"].startswith(("archive/", "raw/"))]
    assert outside == []  # nothing escaped the archive prefix
    assert len(verify_archive(store)) == 2

    # no secret anywhere the job wrote or said
    needle = secret.encode()
    assert secret not in repr(rep) and secret not in str(rep)
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err
    for k in keys:
        assert needle not in store.get(k), k
    for t in (manifest.read_manifest(store), manifest.read_failures(store)):
        assert secret not in str(t.to_pylist())
    places = {"PREFECT_HOME": Path(os.environ["PREFECT_HOME"])}
    try:
        import ray

        places["ray session logs"] = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    except Exception:  # noqa: BLE001 - no local Ray node to inspect
        pass
    for what, root in places.items():
        assert root.exists(), what
        assert _grep_tree(root, needle) == [], f"secret found under {what}"
    record("security", {"check": "compress job with hostile S3 names, secret grep",
                        "result": f"{len(keys)} keys all match our id scheme; secret absent from report, "
                                  f"stdout/stderr, objects, manifests, {', '.join(places)}"})


def test_store_errors_and_reprs_hide_credentials(s3_server, s3_bucket, monkeypatch):
    """A wrong secret, a missing bucket, an unreachable endpoint: errors (whole chain) and reprs never
    carry the secret."""
    from pipeline.archive import ArchiveWriter
    from pipeline.store import StoreConfig, open_store
    from tests.fixtures_store import synthetic_video

    wrong = "WRONG" + s3_server.secret_key[5:]
    aws_env(monkeypatch, s3_server, secret=wrong)
    cfg = StoreConfig(max_attempts=1, connect_timeout=1, read_timeout=2)
    texts = []
    for uri, endpoint in ((f"s3://{s3_bucket}/a", None), ("s3://no-such-bucket-x/a", None),
                          (f"s3://{s3_bucket}/a", "http://127.0.0.1:9")):
        store = open_store(uri, s3_endpoint=endpoint, config=cfg)
        texts.append(repr(store))
        with pytest.raises(StoreError) as e:
            ArchiveWriter(store, "sec-2").archive_video(*synthetic_video(1)[:4], "m" * 16)
        exc: BaseException | None = e.value
        while exc is not None:
            texts += [str(exc), repr(exc)]
            exc = exc.__cause__ or exc.__context__
    texts.append(repr(s3_server))
    for t in texts:
        assert wrong not in t and s3_server.secret_key not in t, t
    assert any("refused" in t for t in texts)


def test_local_store_keys_cannot_leave_root(tmp_path):
    """Keys with `..`, absolute paths, backslashes, NUL, or a symlink inside the root that points out are
    refused for put/get/head/delete; nothing is created outside the root."""
    from pipeline.store import open_store

    root = tmp_path / "root"
    store = open_store(str(root))
    (root / "link").symlink_to(tmp_path)  # a link inside the root leading out of it
    for key in ("../x", "a/../../x", "/etc/passwd", "..", "a\\..\\..\\x", "a\x00b", "link/escaped",
                "C:/x", "./x", "a//b"):
        for op in (lambda k: store.put(k, b"x"), store.get, store.head, store.delete):
            with pytest.raises(StoreError):
                op(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.sampled_from(["..", ".", "", "a", "b", "é", "\u202e", "x.bin", "~", "\\", "\x00", " "]),
                min_size=1, max_size=6))
def test_fuzz_keys_resolve_inside_root_or_are_refused(parts):
    """Random keys built from dangerous parts: `local_path` either refuses (StoreError) or gives a path
    inside the root."""
    import tempfile

    from pipeline.store import LocalStore

    with tempfile.TemporaryDirectory() as d:
        store = LocalStore(Path(d) / "r")
        key = "/".join(parts)
        try:
            p = store.local_path(key)
        except StoreError:
            return
        assert store.root in p.resolve().parents, (key, p)
