"""`progvc` errors for a user (issue 16.5): bad arguments are one line on stderr with exit code 2, found before
Ray or Prefect start (no Prefect database, no Ray session directory is created); errors inside a flow are
one line plus Prefect's one-line log records, the full traces only with `--verbose`; `--version`."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGVC = str(Path(sys.executable).parent / "progvc")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "AWS_", "PROGVC_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), RAY_TMPDIR=str(tmp_path / "ray-tmp"),
               AWS_CONFIG_FILE="/nonexistent-progvc-aws-config",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent-progvc-aws-credentials", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _progvc(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PROGVC, *args], env=env, cwd=env.get("PREFECT_HOME", ROOT).rsplit("/", 1)[0],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def source(tmp_path) -> str:
    d = tmp_path / "src"
    d.mkdir()
    (d / "clip.mp4").write_bytes((ROOT / "samples" / "sam2_dog.mp4").read_bytes())
    return str(d)


CASES = [
    (["compress", "{src}", "--dest", "{dest}", "--gop", "0"], {}, ["--gop", "0", ">= 1"]),
    (["compress", "{src}", "--dest", "{dest}", "--actors", "-1"], {}, ["--actors", "-1", ">= 0"]),
    (["compress", "{src}", "--dest", "{dest}", "--gop", "many"], {}, ["--gop", "'many'", "integer"]),
    (["compress", "{src}", "--dest", "{dest}", "--weights", "/nonexistent/progvc.pt"], {},
     ["--weights", "/nonexistent/progvc.pt", "no such file"]),
    (["compress", "{src}", "--dest", "{dest}", "--weights", "no-such-model"], {},
     ["--weights", "no-such-model", "not installed"]),
    (["compress", "{src}", "--dest", "{dest}"], {"PROGVC_WEIGHTS": "/nonexistent/w.pt"},
     ["PROGVC_WEIGHTS", "/nonexistent/w.pt", "no such file"]),
    (["compress", "{src}", "--dest", "{dest}"], {"PROGVC_GOP": "many"}, ["PROGVC_GOP", "many"]),
    (["compress", "{src}"], {}, ["--dest", "required"]),
    (["compress", "{src}", "--dest", "{dest}", "--threshold", "-3"], {}, ["--threshold", "-3"]),
    (["schedule", "{src}", "--dest", "{dest}", "--cron", "61 * * * *"], {}, ["--cron", "61 * * * *", "cron"]),
    (["schedule", "{src}", "--dest", "{dest}", "--cron", "every night"], {}, ["--cron", "every night"]),
    (["schedule", "{src}", "--dest", "{dest}", "--actors", "-2"], {}, ["--actors", "-2"]),
    (["schedule", "{src}", "--dest", "{dest}", "--timezone", "Mars/Olympus"], {},
     ["--timezone", "Mars/Olympus", "time zone"]),
    (["compress", "{src}", "--dest", "{dest}", "--fidelity", "101"], {}, ["--fidelity", "101", "0..100"]),
    (["compress", "{src}", "--dest", "{dest}", "--effort", "turbo"], {}, ["--effort", "'turbo'", "fast"]),
    (["compress", "{src}", "--dest", "{dest}", "--weights", "random:tiny:0", "--effort", "fast"], {},
     ["--fidelity/--effort apply to the latent family", "family vq"]),
    (["compress", "{src}", "--dest", "{dest}", "--fidelity", "50"], {"PROGVC_WEIGHTS": "random:tiny:0"},
     ["--fidelity/--effort apply to the latent family", "random:tiny:0"]),
    (["schedule", "{src}", "--dest", "{dest}", "--weights", "random:tiny:0", "--fidelity", "40"], {},
     ["--fidelity/--effort apply to the latent family"]),
    (["encode", "{src}/clip.mp4", "-o", "{dest}.pgv", "--weights", "random:tiny:0", "--effort", "slow"], {},
     ["--fidelity/--effort apply to the latent family"]),
    (["compress", "{src}", "--dest", "{dest}", "--mode", "keyframe", "--frame-scales", "3"], {},
     ["--mode keyframe", "latent-v1", "codes only plain mode"]),
    (["reserve", "{dest}", "abc", "--scales", "0", "-o", "x.mp4"], {}, ["--scales", "0", ">= 1"]),
    (["prune", "{dest}", "--keep-scales", "0"], {}, ["--keep-scales", "0"]),
]


@pytest.mark.parametrize("args, extra_env, names", CASES, ids=[" ".join(c[0][:1] + c[0][3:]) or "env" for c in CASES])
def test_bad_arguments_are_one_line_before_anything_starts(tmp_path, source, args, extra_env, names):
    dest = str(tmp_path / "archive")
    argv = [a.format(src=source, dest=dest) for a in args]
    res = _progvc(argv, _env(tmp_path, **extra_env))
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr and 1 <= len(err) <= 3, res.stderr
    assert err[-1].startswith(f"progvc {args[0]}: error: ")
    for n in names:
        assert n in err[-1], (n, err[-1])
    # nothing started: no Prefect database, no Ray session, nothing written
    home = tmp_path / "prefect-home"
    assert not home.exists() or not list(home.rglob("*.db")), list(home.rglob("*"))
    assert not (tmp_path / "ray-tmp").exists()
    assert not Path(dest).exists()


def test_flow_errors_are_short_unless_verbose(tmp_path, source):
    """An error inside the flow (no S3 credentials for the archive) is reported in a few lines without any
    traceback by default; `--verbose` (anywhere on the line) shows the full traces."""
    args = ["compress", source, "--dest", "s3://progvc-no-such-bucket/archive", "--s3-endpoint",
            "http://127.0.0.1:9", "--weights", "random:tiny:0"]
    res = _progvc(args, _env(tmp_path), timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and len(err) <= 6, res.stderr
    assert err[-1].startswith("progvc compress: error: ") and "credentials" in err[-1], err[-1]

    res = _progvc(["--verbose", *args], _env(tmp_path), timeout=300)
    assert res.returncode == 1 and res.stderr.count("Traceback") >= 2, res.stderr[-3000:]
    assert "progvc compress: error: " in res.stderr
    res = _progvc([*args, "--verbose"], _env(tmp_path), timeout=300)  # after the sub-command too
    assert res.returncode == 1 and "Traceback" in res.stderr, res.stderr[-3000:]


def test_version():
    res = subprocess.run([PROGVC, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"progvc {version('progvc-archive')}", res
    assert version("progvc-archive") == "0.1.0"
