"""Encode and decode speed of the latent codec per effort, beside x265 medium/slow, measured in one run.

    python bench/codec_speed.py        # fast,medium,slow -> bench/results/codec_speed.{json,png}
    python bench/codec_speed.py --efforts fast,medium --frames 8 --out /tmp/speed

Frames: 448×256, the first `--frames` (16) of ../shared/data/clips/train/sam2_dog.y4m when it is there, else of
samples/sam2_dog.mp4 (any other `--clip` is scaled to cover 448×256 and centre-cropped). The latent codec codes
them as one GOP at `--fidelity` (60) per effort and decodes all layers (K = N) through the stream API; x265
(libx265 via PyAV, the rules of `progvc eval`: GOP = the frames, no scene cut, closed GOP) encodes the same frames
at `--crf` and is decoded by FFmpeg's hevc decoder; each decode runs `--repeats` (3) times and the median counts
(the first latent decode pays one-time set-up). Reported: frames/s of each, bpp, PSNR-Y, and the ratios
latent ÷ x265 (ratios, not absolute times, are what carries over between machines: this one is shared).
Threads: torch uses `--threads` (default 1, as `progvc encode` and the 1-CPU codec actors), x265 its own default
pool (every core): the ratios compare what each runs with by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

W, H = 448, 256
SHARED_CLIP = ROOT.parent / "shared" / "data" / "clips" / "train" / "sam2_dog.y4m"
SAMPLE_CLIP = ROOT / "samples" / "sam2_dog.mp4"
X265_PRESETS = ("medium", "slow")


def default_clip() -> Path:
    return SHARED_CLIP if SHARED_CLIP.is_file() else SAMPLE_CLIP


def frames_448x256(path: Path, n: int) -> np.ndarray:
    """The first `n` frames of `path` as (n, 256, 448, 3) uint8: scaled to cover 448×256 (aspect kept), then
    centre-cropped. A 448×256 source is taken as is."""
    import av

    from pipeline.video_io import read_frames

    x = read_frames(path, 0, n)
    if x.shape[1:3] == (H, W):
        return x
    t, h, w, _ = x.shape
    s = max(W / w, H / h)
    sw, sh = max(W, round(w * s)), max(H, round(h * s))
    out = []
    for f in x:
        g = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(
            width=sw, height=sh, interpolation="BICUBIC").to_ndarray()
        y0, x0 = (sh - H) // 2, (sw - W) // 2
        out.append(g[y0 : y0 + H, x0 : x0 + W])
    return np.ascontiguousarray(np.stack(out))


def _median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    """(median seconds, every run's seconds, the last result) of `repeats` calls of fn()."""
    runs, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs)), runs, out


def bench_latent(frames: np.ndarray, effort: str, fidelity: float, repeats: int = 3) -> dict:
    from pipeline.latent import configured
    from pipeline.metrics import psnr_y
    from pipeline.pgv import GopEntry, PgvStream
    from pipeline.stream import build_header, encoder_settings, iter_decoded

    codec = configured(fidelity, effort)
    t = len(frames)
    t0 = time.perf_counter()
    enc = codec.encode_gop(frames, gop_index=0)
    enc_s = time.perf_counter() - t0
    header = build_header(codec, W, H, [GopEntry(0, t, True)], 25, encoder=encoder_settings(codec))
    stream = PgvStream.from_gops(header, [enc.chunks])
    dec_s, runs, dec = _median_time(lambda: np.stack(list(iter_decoded(stream, codec))), repeats)
    bits = 8 * sum(len(c) for c in enc.chunks)
    return {"codec": "latent", "effort": effort, "fidelity": fidelity, "frames": t, "encode_s": enc_s,
            "decode_s": dec_s, "decode_runs_s": runs, "encode_fps": t / enc_s, "decode_fps": t / dec_s,
            "bpp": bits / (t * W * H),
            "psnr_y": float(np.mean(psnr_y(frames, dec))), "layers": len(enc.chunks)}


def bench_x265(frames: np.ndarray, preset: str, crf: int, repeats: int = 3) -> dict:
    from pipeline.evaluate import refcodecs
    from pipeline.metrics import psnr_y

    t = len(frames)
    enc = refcodecs.encode(frames, "x265", preset, crf, gop=t)
    # includes the conversion back to RGB, as ours includes colour conversion
    dec_s, runs, dec = _median_time(lambda: refcodecs.decode(enc, W, H), repeats)
    return {"codec": "x265", "preset": preset, "crf": crf, "frames": t, "encode_s": enc.encode_s,
            "decode_s": dec_s, "decode_runs_s": runs, "encode_fps": t / enc.encode_s, "decode_fps": t / dec_s,
            "bpp": enc.bits / (t * W * H), "psnr_y": float(np.mean(psnr_y(frames, dec)))}


def ratios(latent: list[dict], x265: list[dict]) -> list[dict]:
    """latent ÷ x265 frames/s, encode and decode, for every (effort, x265 preset)."""
    return [{"effort": a["effort"], "x265_preset": b["preset"], "encode_ratio": a["encode_fps"] / b["encode_fps"],
             "decode_ratio": a["decode_fps"] / b["decode_fps"]} for a in latent for b in x265]


def plot(doc: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"latent {r['effort']}", r) for r in doc["latent"]] + [(f"x265 {r['preset']}", r) for r in doc["x265"]]
    labels = [lab for lab, _ in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for a, key, title in ((ax[0], "encode_fps", "encode"), (ax[1], "decode_fps", "decode (all layers)")):
        vals = [r[key] for _, r in rows]
        colors = ["tab:blue" if lab.startswith("latent") else "tab:gray" for lab in labels]
        bars = a.bar(labels, vals, color=colors)
        a.set_yscale("log")
        a.set_ylabel("frames/s (log)")
        a.set_title(f"{title}, {W}×{H}, {doc['frames']} frames")
        for b, v in zip(bars, vals):
            a.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        a.tick_params(axis="x", labelrotation=20)
        a.grid(axis="y", alpha=0.3, which="both")
    ax[1].axhline(10, color="tab:red", ls="--", lw=1)  # the issue's decode target at K = N
    ax[1].annotate("10 frames/s", (0, 10), xytext=(2, 3), textcoords="offset points", color="tab:red", fontsize=8)
    fig.suptitle(f"latent-v1 (fidelity {doc['fidelity']:g}, {doc['threads']} torch thread(s)) vs x265 "
                 f"(crf {doc['crf']}); {doc['host']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--efforts", default="fast,medium,slow", help="latent efforts to measure (default all three)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--fidelity", type=float, default=60.0)
    p.add_argument("--crf", type=int, default=28, help="x265 CRF (default 28, x265's own default)")
    p.add_argument("--clip", type=Path, default=None, help=f"default {SHARED_CLIP} if present, else {SAMPLE_CLIP}")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the latent codec (default 1, as the codec actors and `progvc encode` run "
                        "on this machine; more threads were slower on the shared 2-core machine)")
    p.add_argument("--repeats", type=int, default=3,
                   help="decodes per codec; the median is reported (the first run pays one-time set-up)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "codec_speed"),
                   help="output path without suffix (.json and .png are written)")
    a = p.parse_args(argv)
    import torch

    from pipeline.encoder_options import EFFORTS

    efforts = [e.strip() for e in a.efforts.split(",") if e.strip()]
    bad = [e for e in efforts if e not in EFFORTS]
    if bad or not efforts:
        p.error(f"--efforts: unknown {bad}; use some of {', '.join(EFFORTS)}")
    torch.set_num_threads(max(1, a.threads))
    clip = a.clip or default_clip()
    frames = frames_448x256(clip, a.frames)
    print(f"{clip}: {len(frames)} frames {W}x{H}, torch threads {a.threads}", flush=True)
    x265 = []
    for preset in X265_PRESETS:
        x265.append(bench_x265(frames, preset, a.crf, a.repeats))
        r = x265[-1]
        print(f"  x265 {preset:6s} enc {r['encode_fps']:8.2f} fps  dec {r['decode_fps']:8.2f} fps  bpp {r['bpp']:.4f}"
              f"  PSNR-Y {r['psnr_y']:.2f}", flush=True)
    latent = []
    for effort in efforts:
        latent.append(bench_latent(frames, effort, a.fidelity, a.repeats))
        r = latent[-1]
        print(f"  latent {effort:6s} enc {r['encode_fps']:8.3f} fps  dec {r['decode_fps']:8.2f} fps  bpp {r['bpp']:.4f}"
              f"  PSNR-Y {r['psnr_y']:.2f}", flush=True)
    doc = {
        "clip": str(clip), "width": W, "height": H, "frames": len(frames), "fidelity": a.fidelity, "crf": a.crf,
        "threads": a.threads, "decode_repeats": a.repeats, "host": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_avg": list(os.getloadavg()), "torch": torch.__version__,
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "latent": latent, "x265": x265, "ratios": ratios(latent, x265),
        "note": "ratios latent ÷ x265 frames/s (same frames, same run); >1 = latent faster",
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    plot(doc, out.with_suffix(".png"))
    for r in doc["ratios"]:
        print(f"  latent {r['effort']} / x265 {r['x265_preset']}: encode x{r['encode_ratio']:.4f}, "
              f"decode x{r['decode_ratio']:.3f}")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
