"""Orchestration overhead of the archive pipeline: end-to-end job frames/s vs the actors' own frames/s.

For 1 and 2 codec actors, on the same clips (the bundled samples, each looped to `--frames` frames):
- `raw`: the actors alone — a pool encodes every GOP of every clip (read + encode on the actors, Ray
  dispatch, no Prefect, no store), timed from the first call to the last result;
- `job`: the whole `compress` flow (ephemeral Prefect, listing, hashing, GOP planning, encoding,
  writing + verifying + committing to a local archive), timed around the flow call; actor start-up
  (processes + model load) is reported apart and excluded from `job_fps_steady`.
overhead_% = 100 · (1 − job_fps_steady / raw_fps). The job also plans GOPs (a low-resolution decode of every
frame) on the actors, which `raw` does not do; `overhead_vs_actor_work_%` compares against the actors' own
busy time in the job instead (planning included), leaving only idle time, dispatch, Prefect and writes.

    python bench/pipeline.py [--weights P] [--frames 192] [--actors 1 2] [--repeat 2] [--out ...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_clips(dst: Path, frames: int) -> list[str]:
    """Each sample clip looped (forwards, backwards, ...) to `frames` frames, written as H.264 MP4."""
    import numpy as np

    from pipeline import video_io

    out = []
    for src in sorted((REPO / "samples").glob("*.mp4")):
        f = video_io.read_frames(src)
        seq = np.concatenate([f, f[::-1]])
        reps = -(-frames // len(seq))
        clip = np.concatenate([seq] * reps)[:frames]
        path = dst / src.name
        video_io.write_video(path, clip, video_io.probe(src).fps, crf=18, preset="veryfast")
        out.append(str(path))
    return out


def raw_actor_fps(clips: list[str], weights: str, n_actors: int, max_gop: int) -> dict:
    """The actors' own throughput: encode every GOP of every clip through the pool, nothing else."""
    from flows.compress import UNIT_FRAMES
    from pipeline.gop import group_gops, plan_gops, source_keyframes
    from workers.pool import CodecPool
    from workers.requests import EncodeRequest, InfoRequest

    calls = []
    frames = 0
    for c in clips:
        gops = plan_gops(c, max_gop=max_gop)
        frames += sum(g.frame_count for g in gops)
        for unit in group_gops(gops, source_keyframes(c), max_frames=max(UNIT_FRAMES, max_gop)):
            calls.append((len(calls), EncodeRequest(c, [(i, gops[i].first_frame, gops[i].frame_count) for i in unit])))
    pool = CodecPool(weights, n_actors=n_actors, device="auto")
    try:
        pool.call(InfoRequest())  # warm
        t0 = time.perf_counter()
        busy = 0.0
        for _, res, err in pool.map(calls):
            if err is not None:
                raise err
            busy += sum(r.busy_s for r in res)
        wall = time.perf_counter() - t0
    finally:
        pool.close()
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "actor_busy_s": busy,
            "busy_fps_per_actor": frames / busy}


def job_fps(clips: list[str], weights: str, n_actors: int, max_gop: int, work: Path) -> dict:
    from flows.compress import compress

    dest = work / f"archive-{n_actors}"
    t0 = time.perf_counter()
    rep = compress(sources=clips, dest=str(dest), actors=n_actors, weights=weights, max_gop=max_gop,
                   job=f"bench-{n_actors}")
    wall = time.perf_counter() - t0
    if rep["failed"] or len(rep["committed"]) != len(clips):
        raise SystemExit(f"bench job failed: {rep['failed']}")
    steady = wall - rep["startup_s"]
    return {"frames": rep["frames"], "wall_s": wall, "flow_reported_s": rep["seconds"],
            "actor_startup_s": rep["startup_s"], "fps": rep["frames"] / wall, "fps_steady": rep["frames"] / steady,
            "actor_busy_s": sum(v["actor_busy_s"] for v in rep["committed"]),
            "actor_plan_s": sum(v["plan_s"] for v in rep["committed"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_w = REPO / "models" / "progvc.pt"
    ap.add_argument("--weights", default=str(default_w) if default_w.exists() else "random:tiny:0")
    ap.add_argument("--frames", type=int, default=192, help="frames per clip (samples looped)")
    ap.add_argument("--gop", type=int, default=16)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest is kept")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "pipeline.json"))
    args = ap.parse_args(argv)

    from pipeline.settings import apply_environment

    apply_environment()
    from workers.pool import ensure_ray

    ensure_ray()
    results = []
    with tempfile.TemporaryDirectory(prefix="progvc-bench-") as tmp:
        work = Path(tmp)
        clips = make_clips(work, args.frames)
        # warm Prefect's database and the Python imports, so the first measured job pays nothing extra
        job_fps(clips[:1], args.weights, 1, args.gop, work / "warm")
        for n in args.actors:  # best of `--repeat` runs each: the machine is shared, noise only slows
            raw = max((raw_actor_fps(clips, args.weights, n, args.gop) for _ in range(args.repeat)),
                      key=lambda r: r["fps"])
            job = max((job_fps(clips, args.weights, n, args.gop, work / f"r{i}") for i in range(args.repeat)),
                      key=lambda r: r["fps_steady"])
            res = {
                "actors": n,
                "raw": raw,
                "job": job,
                "overhead_pct": 100.0 * (1.0 - job["fps_steady"] / raw["fps"]),
                "overhead_incl_startup_pct": 100.0 * (1.0 - job["fps"] / raw["fps"]),
                # vs the actors' whole share of the job (GOP planning + reading + encoding, from their own
                # busy time): what is left is idle actors, dispatch, Prefect and the driver's writes
                "actor_work_fps": job["frames"] * n / job["actor_busy_s"],
                "overhead_vs_actor_work_pct": 100.0 * (1.0 - job["fps_steady"] * job["actor_busy_s"]
                                                       / (job["frames"] * n)),
            }
            results.append(res)
            print(json.dumps({"actors": n, "raw_fps": round(raw["fps"], 2), "job_fps_steady":
                              round(job["fps_steady"], 2), "job_fps": round(job["fps"], 2),
                              "overhead_pct": round(res["overhead_pct"], 1),
                              "overhead_vs_actor_work_pct": round(res["overhead_vs_actor_work_pct"], 1),
                              "actor_startup_s": round(job["actor_startup_s"], 2)}), flush=True)
    doc = {
        "bench": "pipeline orchestration overhead",
        "weights": args.weights,
        "clips": [Path(c).name for c in clips],
        "frames_per_clip": args.frames,
        "max_gop": args.gop,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "repeat": args.repeat,
        "note": "best of `repeat` runs each; the CPU cores were shared with other work (see load_avg)",
        "load_avg": os.getloadavg(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
