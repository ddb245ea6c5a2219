"""One typed settings object for the pipeline: environment variables, then CLI flags on top.

| setting | environment | CLI flag | default |
|---|---|---|---|
| `s3_endpoint` | `PROGVC_S3_ENDPOINT`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` | `--s3-endpoint` | AWS |
| `ray_address` | `RAY_ADDRESS` | `--ray-address` | embedded local Ray |
| `prefect_api_url` | `PREFECT_API_URL` | – | ephemeral Prefect |
| `prefect_home` | `PREFECT_HOME` | – | a fresh temp dir per run |
| `weights` | `PROGVC_WEIGHTS` (weights file or model id) | `--weights` | `pipeline.registry.DEFAULT_MODEL_ID` |
| `device` | `PROGVC_DEVICE` (`auto`, `cpu`, `cuda`) | `--device` | `auto` (GPU if the cluster has one) |
| `actors` | `PROGVC_ACTORS` (0 = one per CPU/GPU) | `--actors` | 0 |
| `scales` | `PROGVC_SCALES` (0 = all) | `--scales` | 0 |
| `max_gop` | `PROGVC_GOP` | `--gop` | 16 |

S3 retries and timeouts (`PROGVC_S3_MAX_ATTEMPTS`, `PROGVC_S3_RETRY_MODE`, `PROGVC_S3_CONNECT_TIMEOUT`,
`PROGVC_S3_READ_TIMEOUT`) are read by every store itself: `pipeline.store.StoreConfig.from_env`.
`weights` is the model new archives are encoded with; decoding (`reserve`) uses the model each stream's
header names, looked up by id in `$PROGVC_MODELS_DIR` and `models/` (`pipeline.registry`), unless
`--weights` is given. Credentials are never settings: boto3 reads them from the standard AWS
environment/config/IAM role.
This module imports neither Ray nor Prefect; `apply_environment` must run before importing them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / "models" / "progvc.pt"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    """Where things run and which model is used (see the module docstring for the sources)."""

    s3_endpoint: str | None = None
    ray_address: str | None = None
    prefect_api_url: str | None = None
    prefect_home: str | None = None
    weights: str | None = None  # file or model id for encoding; None: the registry's default model
    device: str = "auto"
    actors: int = 0
    scales: int = 0
    max_gop: int = 16

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        if self.actors < 0 or self.scales < 0 or self.max_gop < 1:
            raise ValueError(f"actors={self.actors}, scales={self.scales}, max_gop={self.max_gop}: out of range")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (unset ones keep their defaults)."""
        env = os.environ if env is None else env

        def pick(*names: str) -> str | None:
            for n in names:
                v = env.get(n)
                if v:
                    return v
            return None

        kw: dict[str, object] = {
            "s3_endpoint": pick("PROGVC_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            "ray_address": pick("RAY_ADDRESS"),
            "prefect_api_url": pick("PREFECT_API_URL"),
            "prefect_home": pick("PREFECT_HOME"),
            "weights": pick("PROGVC_WEIGHTS"),
            "device": pick("PROGVC_DEVICE"),
        }
        for key, name in (("actors", "PROGVC_ACTORS"), ("scales", "PROGVC_SCALES"), ("max_gop", "PROGVC_GOP")):
            v = pick(name)
            if v is not None:
                try:
                    kw[key] = int(v)
                except ValueError as exc:
                    raise ValueError(f"{name}={v!r}: must be an integer") from exc
        return cls(**{k: v for k, v in kw.items() if v is not None})

    def override(self, **flags: object) -> Settings:
        """A copy with the CLI flags that were given (None means 'not given')."""
        names = {f.name for f in fields(self)}
        unknown = set(flags) - names
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


def apply_environment(settings: Settings | None = None) -> Settings:
    """Set the process environment Ray and Prefect read at import: no usage stats/analytics, a
    per-run `PREFECT_HOME` (a fresh temp dir) unless one is set, `RAY_ADDRESS`/`PREFECT_API_URL` from
    the settings. Returns the settings with `prefect_home` filled in."""
    s = settings or Settings.from_env()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # a fresh database on a busy machine can take longer than Prefect's default 20 s to migrate
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    home = s.prefect_home or os.environ.get("PREFECT_HOME")
    if not home:
        home = tempfile.mkdtemp(prefix="progvc-prefect-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # ours alone: gone with the process
    os.environ["PREFECT_HOME"] = home
    if s.ray_address:
        os.environ["RAY_ADDRESS"] = s.ray_address
    if s.prefect_api_url:
        os.environ["PREFECT_API_URL"] = s.prefect_api_url
    return replace(s, prefect_home=home)
