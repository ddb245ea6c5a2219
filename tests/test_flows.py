"""The `progvc` archive commands and Prefect flows on local folders (real Ray, Prefect test harness)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import video_io
from pipeline.errors import ProGVCError
from pipeline.settings import Settings
from tests.fixtures_cluster import TINY_MODEL

REPO = Path(__file__).resolve().parent.parent


def test_cli_help_imports_neither_ray_nor_prefect():
    code = ("import sys, flows.cli as c; c.build_parser().format_help(); "
            "print(sorted(m for m in ('ray', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_settings_env_then_flags():
    s = Settings.from_env({"RAY_ADDRESS": "ray://h:10001", "PROGVC_ACTORS": "3", "AWS_ENDPOINT_URL": "http://x:1",
                           "PROGVC_S3_ENDPOINT": "http://y:2", "PROGVC_DEVICE": "cpu"})
    assert (s.ray_address, s.actors, s.s3_endpoint, s.device) == ("ray://h:10001", 3, "http://y:2", "cpu")
    t = s.override(actors=5, device=None, weights="w.pt")
    assert (t.actors, t.device, t.weights) == (5, "cpu", "w.pt")
    with pytest.raises(ValueError, match="PROGVC_GOP"):
        Settings.from_env({"PROGVC_GOP": "many"})
    with pytest.raises(ValueError, match="device"):
        Settings(device="tpu")


def test_list_sources_and_job_names(tmp_path):
    from flows.compress import new_job_id
    from flows.sources import list_sources

    (tmp_path / "sub").mkdir()
    for name in ("b.mp4", "sub/a.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = list_sources([str(tmp_path), str(tmp_path / "b.mp4")])
    assert [Path(f).name for f in found] == ["b.mp4", "a.MOV"]  # sorted, each once, no .txt
    # a missing named source stays in the list: the job records it as one failed source and goes on
    assert list_sources([str(tmp_path / "missing")]) == [str(tmp_path / "missing")]
    assert new_job_id("nightly-1") == "nightly-1"
    assert new_job_id().startswith("job-")
    with pytest.raises(ProGVCError):
        new_job_id("../escape")


def test_prefect_yaml_matches_flow_and_deployment_builds(prefect_harness):
    import inspect

    from prefect.schedules import Cron  # noqa: F401

    from flows.compress import compress
    from flows.deploy import compress_deployment

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "nightly-compress"]
    path, name = dep["entrypoint"].split(":")
    assert (REPO / path).is_file() and name == "compress"
    params = set(inspect.signature(compress.fn).parameters)
    assert set(dep["parameters"]) <= params
    assert dep["schedules"][0]["cron"] == "0 2 * * *"
    d = compress_deployment(sources=["s3://raw/"], dest="s3://archive", scales=3)
    assert d.parameters == {"sources": ["s3://raw/"], "dest": "s3://archive", "scales": 3}
    assert d.schedules[0].schedule.cron == "0 2 * * *"
    with pytest.raises(TypeError, match="not parameters"):
        compress_deployment(sources=["x"], dest="y", bogus=1)


@pytest.fixture(scope="module")
def local_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("flows-src")
    rng = np.random.default_rng(5)
    for i, (h, w, n) in enumerate([(48, 64, 14), (32, 48, 9)]):
        frames = np.clip(rng.normal(120 + 40 * i, 20, (n, h, w, 3)), 0, 255).astype(np.uint8)
        video_io.write_video(d / f"clip{i}.mp4", frames, fps=25)
    return d


def test_cli_compress_savings_prune_reserve(local_clips, tmp_path, ray_session, prefect_harness, capsys):
    from flows.cli import main
    from pipeline import manifest
    from pipeline.store import open_store

    dest = tmp_path / "archive"
    rc = main(["compress", str(local_clips), "--dest", str(dest), "--weights", TINY_MODEL, "--actors", "2",
               "--gop", "8", "--scales", "3", "--job", "cli-1", "--quality"])
    assert rc == 0
    store = open_store(str(dest))
    rows = manifest.read_manifest(store)
    assert sorted(set(rows.column("scale").to_pylist())) == [0, 1, 2, 3]  # only K=3 layers stored
    assert len(set(rows.column("video_id").to_pylist())) == 2
    vid = rows.filter(rows.column("frame_count").to_numpy() == 14).column("video_id")[0].as_py()
    layer_rows = rows.filter(rows.column("scale").to_numpy() > 0)
    psnr = np.array(layer_rows.column("psnr").to_pylist(), dtype=float)
    assert np.isfinite(psnr).all() and (psnr > 0).all()  # --quality measured every video at every K
    assert np.isfinite(np.array(layer_rows.column("ms_ssim").to_pylist(), dtype=float)).all()

    csv, pq_path, png = tmp_path / "s.csv", tmp_path / "s.parquet", tmp_path / "s.png"
    rc = main(["savings", str(dest), "--by", "scale", "--csv", str(csv), "--parquet", str(pq_path),
               "--plot", str(png)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Storage savings" in out
    assert csv.stat().st_size > 0 and pq_path.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"

    before = sum(o.size for o in store.list("videos/"))
    assert main(["prune", str(dest), "--keep-scales", "2"]) == 0
    after = sum(o.size for o in store.list("videos/"))
    assert after < before and not [o for o in store.list("videos/") if o.key.endswith("layer-3.bin")]
    capsys.readouterr()

    # pruned scales cannot be re-served; the error says which K still works
    assert main(["reserve", str(dest), vid, "--scales", "3", "-o", str(tmp_path / "x.mp4"),
                 "--weights", TINY_MODEL]) == 1
    assert "--scales <= 2" in capsys.readouterr().err
    out_y4m = tmp_path / "k1.y4m"
    assert main(["reserve", str(dest), vid, "--scales", "1", "-o", str(out_y4m), "--weights", TINY_MODEL,
                 "--actors", "1"]) == 0
    info = video_io.probe(out_y4m)
    assert (info.width, info.height, info.frame_count) == (64, 48, 14)

    # verify (issue 16.9a) on real codec output: clean after the prune; one flipped byte -> exit 1, one line
    capsys.readouterr()
    assert main(["verify", str(dest)]) == 0
    layer = store.local_path(f"videos/{vid}/layer-2.bin")
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01
    layer.write_bytes(bytes(data))
    assert main(["verify", str(dest)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"{store.url(f'videos/{vid}/layer-2.bin')}: "), out


@pytest.mark.slow
def test_schedule_run_once_serves_the_deployment(local_clips, tmp_path):
    """`progvc schedule --run-once`: registers the cron deployment, runs it once through a Prefect runner
    (a separate flow-run process), and the archive gets committed (ephemeral Prefect in a subprocess)."""
    dest = tmp_path / "sched-archive"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run([sys.executable, "-m", "flows", "schedule", str(local_clips), "--dest", str(dest),
                          "--weights", TINY_MODEL, "--actors", "1", "--cron", "0 3 * * *", "--run-once"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Completed" in out.stdout
    from pipeline import manifest
    from pipeline.store import open_store

    assert len(manifest.committed_video_ids(open_store(str(dest)))) == 2
