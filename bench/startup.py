"""Start-up cost of the archive commands a user types (issue 16.6): `progvc --help`, `savings`, `ls`, `reserve`.

    python bench/startup.py --label before    # on the commit before the change
    python bench/startup.py --label after     # -> bench/results/startup.{json,png} (both labels kept)
    python bench/startup.py --plot-only       # redraw the PNG from the JSON

Set-up (not timed as start-up): `samples/sam2_dog.mp4` (24 frames, 448×256) is archived with
`progvc compress --weights models/progvc.pt` (the shipped VQ model: its decode does not depend on the
latent codec under development) into a temporary local folder store. Then each command runs `--runs` (3)
times as a subprocess, exactly as a user types it (fresh process, no PREFECT_API_URL / RAY_ADDRESS: the
ephemeral Prefect server and embedded Ray the commands start themselves), and the median wall time is kept:

- `progvc --help`
- `progvc savings <archive>`
- `progvc ls <archive>` (null where the command does not exist yet)
- `progvc reserve <archive> <full video id> --scales 2 -o out.mp4` (includes decoding 24 frames)
- reference: `progvc decode cut.pgv --scales 2 -o out.mp4`, the same decode of the same layers (header.bin +
  layer-1..2.bin of the archive, a valid .pgv cut) with no archive, no Ray, no Prefect: `reserve - decode` is
  what re-serving adds to the decode itself (start-up, manifest, ranged reads).

Runs are interleaved (run 1 of every command, then run 2, ...) so each command sees the same load. The
machine's cores are shared with other work (load average recorded): absolute seconds vary with the load, and
`reserve - decode` (`reserve_overhead_s`, medians) is the figure to compare between labels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "results" / "startup.json"
CLIP = ROOT / "samples" / "sam2_dog.mp4"
WEIGHTS = ROOT / "models" / "progvc.pt"
COMMANDS = ("help", "savings", "ls", "reserve", "decode")


def _progvc() -> str:
    exe = Path(sys.executable).parent / "progvc"
    return str(exe) if exe.exists() else "progvc"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_ADDRESS"))}
    env["PYTHONPATH"] = str(ROOT)
    env["RAY_TMPDIR"] = str(home / "ray")  # short-lived session dirs of the embedded Ray, removed with `home`
    return env


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _time(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, res.returncode, (res.stderr.strip().splitlines() or [""])[-1]


def measure(runs: int, clip: Path, weights: Path, scales: int) -> dict:
    from pipeline.archive import video_id_of

    progvc = _progvc()
    work = Path(tempfile.mkdtemp(prefix="progvc-startup-"))
    try:
        env = _env(work)
        archive = work / "archive"
        t_compress, rc, err = _time([progvc, "compress", str(clip), "--dest", str(archive), "--weights",
                                     str(weights), "--job", "startup"], env, work, timeout=1800)
        if rc != 0:
            raise SystemExit(f"set-up failed: progvc compress exited {rc}: {err}")
        vid = video_id_of(clip)
        cut = work / "cut.pgv"  # header + layers 1..K of the archive: the same stream bytes reserve decodes
        cut.write_bytes(b"".join((archive / "videos" / vid / name).read_bytes()
                                 for name in ["header.bin", *(f"layer-{k}.bin" for k in range(1, scales + 1))]))
        argvs = {
            "help": [progvc, "--help"],
            "savings": [progvc, "savings", str(archive)],
            "ls": [progvc, "ls", str(archive)],
            "reserve": [progvc, "reserve", str(archive), vid, "--scales", str(scales), "-o", str(work / "out.mp4")],
            "decode": [progvc, "decode", str(cut), "--scales", str(scales), "-o", str(work / "ref.mp4"), "--quiet"],
        }
        load = list(os.getloadavg())
        times: dict[str, list[float]] = {n: [] for n in COMMANDS}
        codes: dict[str, list[int]] = {n: [] for n in COMMANDS}
        last: dict[str, str] = {}
        for _ in range(runs):  # interleaved: every command sees the same load
            for name in COMMANDS:
                if 2 in codes[name]:  # no such command (yet)
                    continue
                s, rc, last[name] = _time(argvs[name], env, work)
                times[name].append(round(s, 3))
                codes[name].append(rc)
        results = {}
        for name in COMMANDS:
            ok = all(c == 0 for c in codes[name])
            results[name] = {
                "argv": ["progvc", *[a.replace(str(work), "$TMP") for a in argvs[name][1:]]],
                "median_s": round(statistics.median(times[name]), 3) if ok else None,
                "runs_s": times[name], "exit_codes": codes[name], **({} if ok else {"error": last[name]}),
            }
            print(f"{name:8s} median {results[name]['median_s']} s  runs {times[name]}  rc {codes[name]}", flush=True)
        overhead = round(results["reserve"]["median_s"] - results["decode"]["median_s"], 3) \
            if results["reserve"]["median_s"] is not None and results["decode"]["median_s"] is not None else None
        print(f"reserve - decode: {overhead} s", flush=True)
        return {"commit": _git_commit(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "load_avg_before": load, "load_avg_after": list(os.getloadavg()),
                "setup_compress_s": round(t_compress, 1), "video_id": vid, "reserve_overhead_s": overhead,
                "results": results}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plot(data: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lab for lab in ("before", "after") if lab in data]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.8 / max(1, len(labels))
    for i, lab in enumerate(labels):
        res = data[lab]["results"]
        vals = [res.get(c, {}).get("median_s") for c in COMMANDS]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(COMMANDS))]
        over = data[lab].get("reserve_overhead_s")
        bars = ax.bar(xs, [v or 0 for v in vals], width, label=f"{lab} ({data[lab]['commit']})"
                      + (f": reserve - decode {over:.1f} s" if over is not None else ""))
        for b, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    names = {"help": "progvc --help", "decode": "decode\n(reference:\nsame decode)"}
    ax.set_xticks(range(len(COMMANDS)), [names.get(c, f"progvc {c}") for c in COMMANDS])
    ax.set_ylabel("wall time, median of runs (s)")
    ax.set_title("Start-up of archive commands (one 24-frame clip, local store)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", choices=["before", "after"], default="after")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--scales", type=int, default=2, help="K for reserve")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.plot_only:
        data.update({
            "bench": "archive command start-up (issue 16.6)",
            "clip": args.clip.name, "weights": args.weights.name, "runs": args.runs,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "note": "median wall time of `runs` subprocess runs per command; cores shared with other work "
                    "(load_avg_before per label)",
        })
        data[args.label] = measure(args.runs, args.clip, args.weights, args.scales)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.out}")
    print(f"wrote {plot(data, args.out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
