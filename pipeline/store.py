"""Object stores addressed by URI: `s3://bucket/prefix` (boto3) or a local directory.

    store = open_store("s3://bucket/prefix", s3_endpoint="http://127.0.0.1:8333")
    store = open_store("/data/archive")           # or file:///data/archive
    store.put(key, data) -> ObjectInfo ; store.get(key) -> bytes ; store.get_range(key, offset, length)
    store.head(key) -> ObjectInfo | None ; store.list(prefix) -> Iterator[ObjectInfo] ; store.delete(key)

Keys are `/`-separated paths relative to the store's root (the URI's prefix). Every failure raises
`StoreError` (or `NotFoundError` for a missing object) naming the object's URI and what to do.

S3: endpoint, region and credentials come from the standard AWS settings (env vars, ~/.aws, profiles,
`AWS_ENDPOINT_URL`); `s3_endpoint` overrides the endpoint. Retries use botocore's own retry modes
(`standard` by default) with the attempts/timeouts of `StoreConfig` (defaults, or the environment's
`PROGVC_S3_*` settings: `StoreConfig.from_env`). Objects of `multipart_threshold` bytes
or more are uploaded in parts through boto3's managed transfer. Uploads send a CRC32 checksum that the
server checks (when it supports checksums) and that `head` reports back for verification.

Local: writes are atomic (temp file in the same directory + fsync + rename + directory fsync), so a reader
sees an old object or the new one, never a partial file. Keys that would escape the root are refused.

`bytes_read` / `bytes_written` count payload bytes moved by this store object (thread-safe), so partial
retrieval can be measured. Credentials never appear in messages, logs or reprs.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import NotFoundError, StoreError

_TMP_SUFFIX = ".progvc-tmp"
RETRY_MODES = ("standard", "adaptive", "legacy")  # botocore's retry modes


@dataclass(frozen=True)
class StoreConfig:
    """Transfer and retry settings. Sizes in bytes, times in seconds."""

    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunksize: int = 16 * 1024 * 1024
    max_attempts: int = 5  # botocore total attempts per request (first try included)
    retry_mode: str = "standard"  # botocore: "standard" | "adaptive" | "legacy"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16
    checksums: bool = True  # send CRC32 with uploads and ask for it on head

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        """Defaults, with the retry and timeout settings of the environment (unset ones keep theirs):
        `PROGVC_S3_MAX_ATTEMPTS` (else botocore's `AWS_MAX_ATTEMPTS`), `PROGVC_S3_RETRY_MODE` (else
        `AWS_RETRY_MODE`), `PROGVC_S3_CONNECT_TIMEOUT` and `PROGVC_S3_READ_TIMEOUT` (seconds)."""
        env = os.environ if env is None else env
        kw: dict[str, object] = {}
        for field_, names, kind in (
            ("max_attempts", ("PROGVC_S3_MAX_ATTEMPTS", "AWS_MAX_ATTEMPTS"), int),
            ("retry_mode", ("PROGVC_S3_RETRY_MODE", "AWS_RETRY_MODE"), str),
            ("connect_timeout", ("PROGVC_S3_CONNECT_TIMEOUT",), float),
            ("read_timeout", ("PROGVC_S3_READ_TIMEOUT",), float),
        ):
            name = next((n for n in names if env.get(n)), None)
            if name is None:
                continue
            try:
                value = kind(env[name])
            except ValueError as exc:
                raise ValueError(f"{name}={env[name]!r}: must be {'a number' if kind is float else 'an integer'}"
                                 ) from exc
            if kind is not str and value <= 0:
                raise ValueError(f"{name}={env[name]!r}: must be > 0")
            if kind is str and value not in RETRY_MODES:
                raise ValueError(f"{name}={value!r}: use one of {', '.join(RETRY_MODES)}")
            kw[field_] = value
        return cls(**kw)


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object. `crc32` is the whole-object CRC32 when the backend reports one; `checksum` is the
    backend's raw checksum string (S3 `ChecksumCRC32`, possibly composite `...-N` after a multipart upload)."""

    key: str
    size: int
    etag: str | None = None
    checksum: str | None = None
    mtime: float | None = None

    @property
    def multipart_parts(self) -> int | None:
        """Number of parts when the object came from a multipart upload (from the ETag `-N` suffix)."""
        if self.etag and "-" in self.etag.strip('"'):
            return int(self.etag.strip('"').rsplit("-", 1)[1])
        return None


def crc32_b64(data: bytes | memoryview) -> str:
    """S3's `ChecksumCRC32` form: base64 of the big-endian CRC32 of `data`."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def composite_crc32_b64(data: bytes | memoryview, part_size: int) -> str:
    """S3's COMPOSITE CRC32 of a multipart upload with parts of `part_size` bytes: `b64(crc(crcs))-N`."""
    view = memoryview(data)
    crcs = [zlib.crc32(view[i : i + part_size]).to_bytes(4, "big") for i in range(0, len(view), part_size)]
    return f"{base64.b64encode(zlib.crc32(b''.join(crcs)).to_bytes(4, 'big')).decode()}-{len(crcs)}"


def check_key(key: str) -> str:
    """Validate a store key: relative, `/`-separated, no empty, `.` or `..` parts. Returns it unchanged."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"invalid object key {key!r}: keys are non-empty relative paths like 'videos/x/a.bin'")
    if key.startswith("/") or "\\" in key or "\x00" in key or (len(key) > 1 and key[1] == ":"):
        raise StoreError(f"invalid object key {key!r}: must be a relative path inside the store (no leading "
                         f"'/', drive letter or backslash)")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid object key {key!r}: empty, '.' or '..' path parts would escape or alias "
                         f"the store root; use plain names")
    if parts[-1].endswith(_TMP_SUFFIX):
        raise StoreError(f"invalid object key {key!r}: the suffix {_TMP_SUFFIX} is reserved for temp files")
    return key


class Store(ABC):
    """Common interface of the object stores. `uri` is the root; keys are relative to it."""

    uri: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.bytes_written = 0

    def count_read(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def count_written(self, n: int) -> None:
        with self._lock:
            self.bytes_written += n

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_read = 0
            self.bytes_written = 0

    def url(self, key: str) -> str:
        """Full URI of `key` (for messages and manifests)."""
        return f"{self.uri.rstrip('/')}/{key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    @abstractmethod
    def put(self, key: str, data: bytes | bytearray | memoryview) -> ObjectInfo:
        """Store `data` under `key` atomically (readers see the old object or the whole new one)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Whole object. NotFoundError if absent."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from byte `offset`. StoreError if the object is shorter than offset + length."""

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = 8 * 1024 * 1024) -> Iterator[bytes]:
        """Stream the object in chunks (flat memory, e.g. for hashing a large source)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size/checksum of `key`, or None if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (string prefix, as S3 does), in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing an absent key is not an error."""

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def local_path(self, key: str) -> Path | None:
        """Filesystem path of `key` for local stores (None for remote ones)."""
        return None

    def arrow_filesystem(self):
        """(pyarrow FileSystem, base path) for reading this store's objects with pyarrow / DuckDB: the
        object `key` is at f"{base}/{key}"."""
        raise NotImplementedError

    def _check_range(self, key: str, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise StoreError(f"invalid range of {self.url(key)}: offset={offset}, length={length} must be >= 0")


# ---------------------------------------------------------------------------------------------- local


class LocalStore(Store):
    """A directory on the local filesystem."""

    def __init__(self, root: str | Path, config: StoreConfig | None = None):
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self.config = config or StoreConfig.from_env()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create archive directory {self.root}: {e.strerror}; check the path and "
                             f"its permissions") from e

    def local_path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        # resolve() follows symlinks: a link inside the root must not lead outside it either
        real = path.resolve()
        if real != self.root and self.root not in real.parents:
            raise StoreError(f"object key {key!r} resolves outside the store root {self.root}; refusing it")
        return path

    def _os_error(self, key: str, e: OSError, action: str) -> StoreError:
        if isinstance(e, FileNotFoundError):
            return NotFoundError(f"{self.url(key)} not found (while trying to {action}); check the archive URI "
                                 f"and that the object was written")
        return StoreError(f"cannot {action} {self.url(key)}: {e.strerror or e}; check the directory's "
                          f"permissions and free space")

    def arrow_filesystem(self):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(self.root)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> ObjectInfo:
        path = self.local_path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise self._os_error(key, e, "write") from e
        n = memoryview(data).nbytes
        self.count_written(n)
        return ObjectInfo(key=key, size=n, checksum=crc32_b64(data) if self.config.checksums else None)

    def get(self, key: str) -> bytes:
        try:
            data = self.local_path(key).read_bytes()
        except IsADirectoryError as e:
            raise NotFoundError(f"{self.url(key)} is a directory, not an object") from e
        except OSError as e:
            raise self._os_error(key, e, "read") from e
        self.count_read(len(data))
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._check_range(key, offset, length)
        try:
            with open(self.local_path(key), "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as e:
            raise self._os_error(key, e, "read") from e
        self.count_read(len(data))
        if len(data) != length:
            raise StoreError(f"{self.url(key)} is shorter than requested: wanted bytes {offset}..{offset + length}"
                             f", got {len(data)}; the object was truncated or the manifest is stale")
        return data

    def iter_bytes(self, key: str, chunk_size: int = 8 * 1024 * 1024) -> Iterator[bytes]:
        try:
            with open(self.local_path(key), "rb") as f:
                while chunk := f.read(chunk_size):
                    self.count_read(len(chunk))
                    yield chunk
        except OSError as e:
            raise self._os_error(key, e, "read") from e

    def head(self, key: str) -> ObjectInfo | None:
        path = self.local_path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._os_error(key, e, "stat") from e
        if not path.is_file():
            return None
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # walk only the deepest directory that the prefix names, then filter by string prefix
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.local_path(base) if base else self.root
        if not start.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.endswith(_TMP_SUFFIX):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        st = full.stat()
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    found.append(ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime))
        yield from sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        try:
            self.local_path(key).unlink(missing_ok=True)
        except OSError as e:
            raise self._os_error(key, e, "delete") from e


# ---------------------------------------------------------------------------------------------- S3

_AUTH_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "403", "InvalidSecurity", "TokenRefreshRequired"}


class S3Store(Store):
    """`s3://bucket/prefix` through boto3 (any S3-compatible server)."""

    def __init__(self, uri: str, s3_endpoint: str | None = None, config: StoreConfig | None = None,
                 profile: str | None = None, region: str | None = None):
        super().__init__()
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, path = split_s3(uri)
        if not self.bucket:
            raise StoreError(f"not an S3 URI: {uri!r}; use s3://bucket/prefix")
        self.prefix = path.strip("/")
        self.uri = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.config = config or StoreConfig.from_env()
        cfg = self.config
        try:
            session = boto3.session.Session(profile_name=profile)
        except Exception as e:  # e.g. ProfileNotFound
            raise StoreError(f"cannot use AWS profile {profile!r} for {self.uri}: {type(e).__name__}; check "
                             f"AWS_PROFILE / ~/.aws/config") from e
        self._session = session
        region = region or session.region_name or "us-east-1"
        endpoint = s3_endpoint or None  # None: boto3 reads AWS_ENDPOINT_URL(_S3) / config itself
        custom_endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        bconf = Config(
            retries={"max_attempts": cfg.max_attempts, "mode": cfg.retry_mode},
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            max_pool_connections=cfg.max_pool_connections,
            request_checksum_calculation="when_supported" if cfg.checksums else "when_required",
            response_checksum_validation="when_supported" if cfg.checksums else "when_required",
            # S3-compatible servers on an IP address need path-style URLs (bucket in the path)
            **({"s3": {"addressing_style": "path"}} if custom_endpoint else {}),
        )
        try:
            self.client = session.client("s3", endpoint_url=endpoint, region_name=region, config=bconf)
        except Exception as e:  # bad endpoint URL, unknown profile, ...
            raise StoreError(f"cannot set up an S3 client for {self.uri}: {type(e).__name__}: {e}; check "
                             f"--s3-endpoint / AWS_ENDPOINT_URL and the AWS profile") from e
        self.endpoint = self.client.meta.endpoint_url
        self.region = region
        self._transfer = TransferConfig(multipart_threshold=cfg.multipart_threshold,
                                        multipart_chunksize=cfg.multipart_chunksize, use_threads=True,
                                        max_concurrency=4)

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint={self.endpoint!r})"

    def _k(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, key: str | None, e: Exception, action: str) -> StoreError:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        where = self.url(key) if key is not None else self.uri
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint} (while trying to "
                                  f"{action} {where}); create it or fix the archive URI")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return NotFoundError(f"{where} not found at {self.endpoint} (while trying to {action}); check "
                                     f"the archive URI, or the bucket {self.bucket!r} may not exist")
            if code in _AUTH_CODES or status == 403:
                return StoreError(f"access to {where} refused by {self.endpoint} ({code}) while trying to "
                                  f"{action}: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                  f"AWS_PROFILE) and the bucket's permissions")
            if code == "InvalidRange" or status == 416:
                return StoreError(f"{where}: requested range is past the end of the object; the object was "
                                  f"truncated or the manifest is stale")
            return StoreError(f"S3 refused to {action} {where} at {self.endpoint}: {code} "
                              f"{err.get('Message', '')}".rstrip() + "; retry later or check the server")
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(f"no usable AWS credentials to {action} {where}: set AWS_ACCESS_KEY_ID and "
                              f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / ~/.aws/credentials")
        if isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)):
            n = self.config.max_attempts
            return StoreError(f"cannot reach the S3 endpoint {self.endpoint} to {action} {where} after "
                              f"{n} attempt{'s' * (n != 1)} ({type(e).__name__}); is the server running? "
                              f"Set --s3-endpoint / AWS_ENDPOINT_URL to the right address")
        return StoreError(f"S3 error while trying to {action} {where} at {self.endpoint}: "
                          f"{type(e).__name__}: {e}")

    def put(self, key: str, data: bytes | bytearray | memoryview) -> ObjectInfo:
        k = self._k(key)
        n = memoryview(data).nbytes
        extra = {"ChecksumAlgorithm": "CRC32"} if self.config.checksums else {}
        try:
            if n >= self.config.multipart_threshold:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, k, Config=self._transfer,
                                           ExtraArgs=extra)
                info = self.head(key)
                if info is None:
                    raise NotFoundError(f"{self.url(key)} missing right after its upload; retry the write")
            else:
                r = self.client.put_object(Bucket=self.bucket, Key=k, Body=bytes(data), **extra)
                info = ObjectInfo(key=key, size=n, etag=r.get("ETag"), checksum=r.get("ChecksumCRC32"))
        except StoreError:
            raise
        except Exception as e:
            raise self._error(key, e, "write") from e
        self.count_written(n)
        return info

    def get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except Exception as e:
            raise self._error(key, e, "read") from e
        self.count_read(len(body))
        return body

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._check_range(key, offset, length)
        if length == 0:
            return b""
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self._k(key),
                                       Range=f"bytes={offset}-{offset + length - 1}")
            body = r["Body"].read()
        except Exception as e:
            raise self._error(key, e, f"read bytes {offset}..{offset + length} of") from e
        self.count_read(len(body))
        if len(body) != length:
            raise StoreError(f"{self.url(key)} is shorter than requested: wanted bytes {offset}..{offset + length}"
                             f", got {len(body)}; the object was truncated or the manifest is stale")
        return body

    def iter_bytes(self, key: str, chunk_size: int = 8 * 1024 * 1024) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
            for chunk in body.iter_chunks(chunk_size):
                self.count_read(len(chunk))
                yield chunk
        except Exception as e:
            raise self._error(key, e, "read") from e

    def head(self, key: str) -> ObjectInfo | None:
        kw = {"ChecksumMode": "ENABLED"} if self.config.checksums else {}
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._k(key), **kw)
        except Exception as e:
            err = self._error(key, e, "inspect")
            if isinstance(err, NotFoundError):
                return None
            raise err from e
        return ObjectInfo(key=key, size=int(r["ContentLength"]), etag=r.get("ETag"),
                          checksum=r.get("ChecksumCRC32"),
                          mtime=r["LastModified"].timestamp() if r.get("LastModified") else None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(key=o["Key"][strip:], size=int(o["Size"]), etag=o.get("ETag"),
                                     mtime=o["LastModified"].timestamp() if o.get("LastModified") else None)
        except Exception as e:
            raise self._error(prefix or None, e, "list") from e

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))
        except Exception as e:
            err = self._error(key, e, "delete")
            if not isinstance(err, NotFoundError):
                raise err from e

    def arrow_filesystem(self):
        import pyarrow.fs as pafs

        creds = self._session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        parsed = urlparse(self.endpoint)
        fs = pafs.S3FileSystem(
            access_key=frozen.access_key if frozen else None, secret_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None, region=self.region,
            endpoint_override=parsed.netloc if parsed.netloc else None, scheme=parsed.scheme or "https",
            connect_timeout=self.config.connect_timeout, request_timeout=self.config.read_timeout,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=self.config.max_attempts),
        )
        return fs, f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def check(self) -> None:
        """Fail early with a clear StoreError when the bucket is missing, unreachable or refuses us."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            err = self._error(None, e, "open")
            if isinstance(err, NotFoundError):
                err = StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}; create it or fix "
                                 f"the archive URI {self.uri}")
            raise err from e


# ---------------------------------------------------------------------------------------------- open


def open_store(uri: str | Path, s3_endpoint: str | None = None, config: StoreConfig | None = None,
               check: bool = False, **s3_kw) -> Store:
    """Open `s3://bucket/prefix` (S3Store) or a local directory / `file://` URI (LocalStore).

    s3_endpoint: endpoint URL override (e.g. http://127.0.0.1:8333); otherwise the AWS settings decide.
    check: verify now that the bucket exists and accepts our credentials (S3 only).
    s3_kw: `profile=`, `region=` for S3Store.
    """
    text = str(uri)
    if text.startswith("s3://"):
        store = S3Store(text, s3_endpoint=s3_endpoint, config=config, **s3_kw)
        if check:
            store.check()
        return store
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme != "file":
            raise StoreError(f"unsupported archive URI {text!r}: use s3://bucket/prefix or a local directory")
        text = parsed.path
    return LocalStore(text, config=config)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/any/key` -> (`bucket`, `any/key`), the key taken verbatim: S3 keys may hold `?`, `#`,
    tabs or newlines, which `urllib.parse` would cut off or strip. ("", "") when not an s3:// URI."""
    text = str(uri)
    if not text.startswith("s3://"):
        return "", ""
    bucket, _, path = text[5:].partition("/")
    return bucket, path


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://b/p/x.mp4` -> (`s3://b/p`, `x.mp4`); `/d/x.mp4` -> (`/d`, `x.mp4`): the parent store + key."""
    text = str(uri).rstrip("/")
    if text.startswith("s3://"):
        bucket, path = split_s3(text)
        path = path.strip("/")
        if not path:
            raise StoreError(f"{uri!r} names a bucket, not an object")
        parent, _, name = path.rpartition("/")
        return (f"s3://{bucket}" + (f"/{parent}" if parent else "")), name
    if text.startswith("file://"):
        text = urlparse(text).path
    p = Path(text).expanduser().resolve()
    return str(p.parent), p.name
