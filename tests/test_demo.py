"""The README's main-job command (`bash scripts/demo.sh`) runs end to end: real SeaweedFS, local Ray,
ephemeral Prefect. The tiny random model (PROGVC_WEIGHTS) keeps it quick; without it the demo takes the same
path with the default latent model at --effort fast (minutes: see the README's Quickstart)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.video_io import probe

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_compresses_prints_savings_and_reserves(tmp_path):
    env = dict(os.environ, PROGVC_WEIGHTS="random:tiny:0", PREFECT_HOME=str(tmp_path / "prefect"))
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"3 video\(s\): \d+ source bytes, \d+ bytes stored", out), out[-4000:]
    mp4 = re.search(r"Playable MP4: (\S+\.mp4)", out)
    assert mp4, out[-4000:]
    info = probe(mp4.group(1))
    assert (info.width, info.height, info.frame_count) == (448, 256, 24)
    run_dir = str(Path(mp4.group(1)).parent)
    assert not _processes_mentioning(run_dir), "the demo left its S3 server running"
    shutil.rmtree(Path(mp4.group(1)).parent, ignore_errors=True)


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (Linux /proc)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids
