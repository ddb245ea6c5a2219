"""Memory bounds, measured: peak RSS of encoding + decoding one 3840×2160 frame, and peak RSS of a whole-video
encode/decode at two video lengths (memory must be flat in video length: GOP-by-GOP streaming).

Each measurement runs in a fresh subprocess (peak RSS = `ru_maxrss` of that process, so nothing else
inflates it). The model is `models/progvc.pt` when it exists, else the default config randomly
initialised (`--config default`), or the tiny test config (`--config tiny`); the JSON says which.

    python bench/memory_4k.py                       # 4K frame + 2 vs 8 GOPs, JSON to stdout / --out
    python bench/memory_4k.py --config tiny --what length --size 320x240
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _codec(config: str):
    from pipeline.codec import Codec, CodecConfig
    from pipeline.codec.codec import DEFAULT_WEIGHTS

    if config == "shipped" or (config == "auto" and DEFAULT_WEIGHTS.exists()):
        return Codec.load(), f"shipped weights {DEFAULT_WEIGHTS.name}"
    cfg = CodecConfig.tiny() if config == "tiny" else CodecConfig.default()
    return Codec.random(cfg, seed=0), f"{'tiny' if config == 'tiny' else 'default'} config, random init"


def _frames(t: int, h: int, w: int):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 255 / w + 5 * i) % 256
        out[i, ..., 1] = (yy * 255 / h) % 256
        out[i, ..., 2] = (128 + 100 * np.sin((xx + yy + 9 * i) / 37.0)).astype(np.uint8)
    return out


def child_frame(config: str, w: int, h: int) -> dict:
    """One frame (W×H) encoded with all scales and decoded from them."""
    import torch

    torch.set_num_threads(int(os.environ.get("PROGVC_THREADS", "2")))
    codec, model = _codec(config)
    x = _frames(1, h, w)
    base = _rss_mb()
    t0 = time.perf_counter()
    enc = codec.encode_gop(x)
    t_enc = time.perf_counter() - t0
    peak_enc = _peak_mb()
    from pipeline.pgv import GopEntry
    from pipeline.stream import build_header, decode_gop_frames

    header = build_header(codec, w, h, [GopEntry(0, 1, True)])
    t0 = time.perf_counter()
    y = decode_gop_frames(codec, header, 0, enc.chunks)
    t_dec = time.perf_counter() - t0
    assert y.shape == x.shape
    grid = codec.grid(h, w)
    return {"what": "frame", "model": model, "width": w, "height": h, "tiles": grid.n_tiles,
            "tile_latent": codec.tile, "baseline_rss_mb": round(base, 1), "peak_rss_encode_mb": round(peak_enc, 1),
            "peak_rss_mb": round(_peak_mb(), 1), "encode_s": round(t_enc, 2), "decode_s": round(t_dec, 2),
            "bytes": sum(len(c) for c in enc.chunks), "threads": torch.get_num_threads()}


def child_length(config: str, w: int, h: int, gops: int, gop: int) -> dict:
    """encode_video + decode_video (to a file) of a `gops`×`gop`-frame video: the library's streaming path."""
    import torch

    from pipeline import video_io
    from pipeline.pgv import GopEntry
    from pipeline.stream import decode_video, encode_video

    torch.set_num_threads(int(os.environ.get("PROGVC_THREADS", "2")))
    codec, model = _codec(config)
    with tempfile.TemporaryDirectory() as d:
        src, pgv, out = Path(d) / "src.y4m", Path(d) / "v.pgv", Path(d) / "out.y4m"
        video_io.write_video(src, (f for f in _frames(gops * gop, h, w)), 25)
        base = _rss_mb()
        t0 = time.perf_counter()
        stats = encode_video(src, pgv, codec, gops=[GopEntry(i * gop, gop, True) for i in range(gops)],
                             progress=False)
        n = decode_video(pgv, out, codec=codec, progress=False)
        secs = time.perf_counter() - t0
        assert n == gops * gop
        size = stats.total_bytes
    return {"what": "length", "model": model, "width": w, "height": h, "gops": gops, "gop": gop,
            "frames": gops * gop, "baseline_rss_mb": round(base, 1), "peak_rss_mb": round(_peak_mb(), 1),
            "seconds": round(secs, 2), "pgv_bytes": size}


def measure(kind: str, config: str, **kw) -> dict:
    """Run one measurement in a fresh subprocess; returns its JSON."""
    timeout = kw.pop("timeout", 3600)
    args = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--config", config,
            "--child-args", json.dumps(kw)]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"measurement {kind} {kw} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["auto", "shipped", "default", "tiny"], default="auto")
    p.add_argument("--what", choices=["all", "frame", "length"], default="all")
    p.add_argument("--size", default=None, help="WxH (default 3840x2160 for frame, 640x360 for length)")
    p.add_argument("--gop", type=int, default=4)
    p.add_argument("--lengths", default="2,8", help="video lengths to compare, in GOPs")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if a.child:
        kw = json.loads(a.child_args)
        res = child_frame(a.config, **kw) if a.child == "frame" else child_length(a.config, **kw)
        print(json.dumps(res))
        return 0
    results: dict = {"machine": {"cpus": os.cpu_count()}}
    if a.what in ("all", "frame"):
        w, h = map(int, (a.size or "3840x2160").split("x"))
        results["frame"] = measure("frame", a.config, w=w, h=h)
    if a.what in ("all", "length"):
        w, h = map(int, (a.size if a.what == "length" and a.size else "640x360").split("x"))
        runs = [measure("length", a.config, w=w, h=h, gops=int(n), gop=a.gop) for n in a.lengths.split(",")]
        peaks = [r["peak_rss_mb"] for r in runs]
        results["length"] = {"runs": runs, "peak_growth_pct": round(100 * (max(peaks) / min(peaks) - 1), 2)}
    text = json.dumps(results, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
