"""Benchmark: savings queries over a large manifest (DESIGN target: 100,000 rows in < 2 s).

    python -m bench.savings [--videos 1000 --gops 10 --scales 10 --videos-per-part 10] [--out FILE.json]

Builds a local archive whose manifest has videos × (1 + gops × scales) rows (synthetic sizes; the query
only reads manifest rows), committed through `pipeline.manifest.write_part` in parts of
`--videos-per-part` videos (and again after `compact` merged each job's parts), then times a cold
`read_manifest` + `savings(by=job/video/scale)`, best and median of `--repeats` runs.
Writes the timings as JSON (default out/bench/savings.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import manifest as mf
from pipeline.savings import savings
from pipeline.store import LocalStore, Store


def _video_rows(rng: np.random.Generator, job: str, v: int, n_gops: int, n_scales: int) -> dict:
    vid = f"{v:024x}"
    g = np.repeat(np.arange(n_gops), n_scales)
    k = np.tile(np.arange(1, n_scales + 1), n_gops)
    length = (rng.integers(20, 60, n_gops * n_scales) * k * k).astype(np.int64)
    offset = np.zeros_like(length)
    for s in range(1, n_scales + 1):  # chunks of one layer are contiguous, in GOP order
        m = k == s
        offset[m] = np.r_[0, np.cumsum(length[m])[:-1]]
    n = n_gops * n_scales + 1
    psnr = np.r_[np.nan, 18.0 + 1.5 * k + rng.normal(0, 0.3, k.size)]
    return {
        "job_id": [job] * n, "video_id": [vid] * n, "source_uri": [f"s3://raw/clip{v}.mp4"] * n,
        "source_bytes": np.full(n, 5_000_000 + 1000 * v, np.int64), "width": np.full(n, 640, np.int32),
        "height": np.full(n, 360, np.int32), "fps": np.full(n, 25.0),
        "gop_index": np.r_[-1, g].astype(np.int32), "first_frame": np.r_[0, g * 16].astype(np.int64),
        "frame_count": np.r_[16 * n_gops, np.full(k.size, 16)].astype(np.int32),
        "keyframe": np.r_[False, np.ones(k.size, bool)], "scale": np.r_[0, k].astype(np.int16),
        "layer_key": [f"videos/{vid}/header.bin"] + [f"videos/{vid}/layer-{s}.bin" for s in k],
        "byte_offset": np.r_[0, offset], "byte_length": np.r_[180, length],
        "token_count": np.r_[0, k * k * 16 * 16].astype(np.int64),
        "checksum": rng.integers(0, 2**32, n, dtype=np.int64), "model_id": ["0123456789abcdef"] * n,
        "psnr": pa.array(psnr, pa.float64(), from_pandas=True),
    }


def make_archive(store: Store, n_videos: int = 1000, n_gops: int = 10, n_scales: int = 10,
                 videos_per_part: int = 10, n_jobs: int = 4, seed: int = 0) -> int:
    """Commit a synthetic manifest of n_videos × (1 + n_gops × n_scales) rows; returns the row count."""
    rng = np.random.default_rng(seed)
    total = 0
    for start in range(0, n_videos, videos_per_part):
        job = f"job-{(start // videos_per_part) % n_jobs}"
        tables = [pa.table(_video_rows(rng, job, v, n_gops, n_scales))
                  for v in range(start, min(n_videos, start + videos_per_part))]
        table = pa.concat_tables([mf.conform(t) for t in tables])
        mf.write_part(store, job, table)
        total += table.num_rows
    return total


def run(n_videos: int, n_gops: int, n_scales: int, videos_per_part: int, repeats: int,
        compact: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="progvc-bench-") as tmp:
        store = LocalStore(Path(tmp) / "archive")
        t0 = time.perf_counter()
        n_rows = make_archive(store, n_videos, n_gops, n_scales, videos_per_part)
        if compact:  # what a job does when it finishes: merge its per-video parts
            for job in mf.list_jobs(store):
                mf.compact(store, job)
        build_s = time.perf_counter() - t0
        runs = []
        for _ in range(repeats):
            t = {}
            t0 = time.perf_counter()
            rows = mf.read_manifest(LocalStore(store.root))
            t["read_manifest_s"] = time.perf_counter() - t0
            for by in ("job", "video", "scale"):
                t1 = time.perf_counter()
                out = savings(rows, by=by)
                t[f"savings_by_{by}_s"] = time.perf_counter() - t1
                t[f"rows_by_{by}"] = out.num_rows
            t["total_s"] = time.perf_counter() - t0
            runs.append(t)
        parts = len(mf.list_parts(store))
    totals = [r["total_s"] for r in runs]
    return {
        "manifest_rows": n_rows, "videos": n_videos, "gops_per_video": n_gops, "scales": n_scales,
        "parts": parts, "compacted": compact, "build_s": round(build_s, 3),
        "total_s_best": round(min(totals), 4), "total_s_median": round(statistics.median(totals), 4),
        "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
        "target_s": 2.0, "meets_target": statistics.median(totals) < 2.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--gops", type=int, default=10)
    ap.add_argument("--scales", type=int, default=10)
    ap.add_argument("--videos-per-part", type=int, nargs="+", default=[10, 1],
                    help="one case per value; each value also runs once more with per-job compaction")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="out/bench/savings.json")
    args = ap.parse_args(argv)
    result = {"machine": {"python": platform.python_version(), "pyarrow": pa.__version__,
                          "cpu": platform.processor() or platform.machine()},
              "cases": [run(args.videos, args.gops, args.scales, vpp, args.repeats, compact)
                        for vpp in args.videos_per_part for compact in (False, True)]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for case in result["cases"]:
        print(f"{case['manifest_rows']} rows in {case['parts']} parts"
              f"{' (compacted)' if case['compacted'] else ''}: read + savings(job, video, scale) "
              f"best {case['total_s_best']:.3f} s, median {case['total_s_median']:.3f} s "
              f"(target < 2 s: {'ok' if case['meets_target'] else 'MISSED'})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
