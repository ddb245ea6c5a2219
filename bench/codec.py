"""Codec benchmark on the dev clips: per clip and per scale count K — bpp, PSNR-Y, PSNR-RGB, MS-SSIM,
coded bits ÷ model cross-entropy, encode/decode frames/s, codebook usage per scale. Writes JSON + PNG.

    python bench/codec.py --weights models/progvc.pt --frames 16 --out bench/out/codec
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.codec import Codec  # noqa: E402
from pipeline.metrics import ms_ssim, psnr_rgb, psnr_y  # noqa: E402
from pipeline.pgv import CHUNK_HEADER_BYTES, GopEntry, PgvStream  # noqa: E402
from pipeline.stream import build_header, iter_decoded  # noqa: E402

DEV = Path("/work/shared/data/clips/dev")


def bench_clip(codec: Codec, path: Path, frames: int, gop: int, with_none: bool) -> dict:
    from pipeline.video_io import probe, read_frames

    info = probe(path)
    x = read_frames(path, 0, min(frames, info.frame_count))
    t, h, w, _ = x.shape
    gops = [GopEntry(s, min(gop, t - s), True) for s in range(0, t, gop)]
    t0 = time.perf_counter()
    encs = [codec.encode_gop(x[g.first_frame : g.first_frame + g.frame_count], gop_index=i) for i, g in enumerate(gops)]
    enc_s = time.perf_counter() - t0
    hdr = build_header(codec, w, h, gops, 25)
    stream = PgvStream.from_gops(hdr, [e.chunks for e in encs])
    n = codec.n_layers
    px = t * h * w
    layer_bytes = [sum(len(e.chunks[k]) for e in encs) for k in range(n)]
    payload_bits = [8 * sum(len(e.chunks[k]) - CHUNK_HEADER_BYTES for e in encs) for k in range(n)]
    ce = [sum(e.ce_bits[k] for e in encs) for k in range(n)]
    toks = codec.encode_tokens(x)
    usage = [len(np.unique(np.concatenate([ft[k].flatten().numpy() for ft in toks]))) / codec.cfg.codebook_size
             for k in range(n)]
    rows = []
    modes = ["argmax"] + (["none"] if with_none else [])
    for k in range(1, n + 1):
        for mode in modes:
            if mode == "none" and k == n:
                continue
            t1 = time.perf_counter()
            y = np.stack(list(iter_decoded(stream, codec, k, predict=mode)))
            dec_s = time.perf_counter() - t1
            total = len(hdr.to_bytes()) + sum(layer_bytes[:k])
            rows.append({
                "K": k, "predict": mode, "bytes": total, "bpp": 8 * total / px,
                "psnr_y": float(np.mean([psnr_y(a[None], b[None]) for a, b in zip(x, y)])),
                "psnr_rgb": float(np.mean([psnr_rgb(a[None], b[None]) for a, b in zip(x, y)])),
                "ms_ssim": float(np.mean(ms_ssim(x, y))),
                "decode_fps": t / dec_s,
            })
            print(f"  {path.stem} K={k:2d} {mode:6s} bpp={rows[-1]['bpp']:.4f} PSNR-Y={rows[-1]['psnr_y']:.2f} "
                  f"MS-SSIM={rows[-1]['ms_ssim']:.4f} dec={rows[-1]['decode_fps']:.2f} fps", flush=True)
    return {
        "clip": path.stem, "width": w, "height": h, "frames": t, "gops": len(gops),
        "encode_fps": t / enc_s, "layer_bytes": layer_bytes,
        "coded_over_ce": [p / c if c else None for p, c in zip(payload_bits, ce)],
        "coded_over_ce_total": sum(payload_bits) / max(sum(ce), 1e-9),
        "bits_per_token": [c / max(sum(e.token_counts[k] for e in encs), 1) for k, c in enumerate(ce)],
        "codebook_usage": usage, "rows": rows,
    }


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        for mode, ls in (("argmax", "-o"), ("none", ":x")):
            rr = [x for x in r["rows"] if x["predict"] == mode or (mode == "none" and x["K"] == len(r["layer_bytes"]))]
            if mode == "none" and len(rr) <= 1:
                continue
            bpp = [x["bpp"] for x in rr]
            lab = r["clip"] + ("" if mode == "argmax" else " (no prediction)")
            ax[0].plot(bpp, [x["psnr_y"] for x in rr], ls, ms=3, label=lab)
            ax[1].plot(bpp, [x["ms_ssim"] for x in rr], ls, ms=3, label=lab)
    ax[0].set(xlabel="bpp", ylabel="PSNR-Y (dB)", title="ProGVC, K = 1..N scales")
    ax[1].set(xlabel="bpp", ylabel="MS-SSIM", title="ProGVC, K = 1..N scales")
    for a in ax:
        a.grid(alpha=0.3)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def markdown(doc: dict) -> str:
    """The per-clip, per-K table (argmax prediction; "none" rows when measured) as Markdown."""
    lines = [
        "| clip | K | predict | bpp | PSNR-Y | PSNR-RGB | MS-SSIM | decode fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["clips"]:
        for r in c["rows"]:
            lines.append(f"| {c['clip']} | {r['K']} | {r['predict']} | {r['bpp']:.4f} | {r['psnr_y']:.2f} | "
                         f"{r['psnr_rgb']:.2f} | {r['ms_ssim']:.4f} | {r['decode_fps']:.2f} |")
    lines += ["", "| clip | frames | encode fps | coded ÷ CE (all) | coded ÷ CE per scale | bits/token per scale "
              "| codebook usage per scale |", "|---|---|---|---|---|---|---|"]
    for c in doc["clips"]:
        lines.append(
            f"| {c['clip']} | {c['frames']} | {c['encode_fps']:.2f} | {c['coded_over_ce_total']:.4f} | "
            + " ".join(f"{x:.3f}" for x in c["coded_over_ce"]) + " | "
            + " ".join(f"{x:.2f}" for x in c["bits_per_token"]) + " | "
            + " ".join(f"{x:.2f}" for x in c["codebook_usage"]) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", default=None)
    p.add_argument("--clips", nargs="*", default=None, help="default: every clips/dev/*.y4m")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--gop", type=int, default=16)
    p.add_argument("--no-predict", action="store_true", help="also decode each K < N with predict='none'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/out/codec")
    p.add_argument("--merge", nargs="*", default=None, help="merge earlier JSON outputs (e.g. clips benched "
                   "in parallel processes) into --out instead of measuring")
    a = p.parse_args(argv)
    out = Path(a.out)
    if a.merge:
        docs = [json.loads(Path(m).read_text()) for m in a.merge]
        if len({d["model_id"] for d in docs}) != 1:
            raise SystemExit("--merge: the JSON files come from different models")
        doc = {**docs[0], "clips": [c for d in docs for c in d["clips"]]}
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
        plot(doc["clips"], out.with_suffix(".png"))
        out.with_suffix(".md").write_text(markdown(doc))
        print(f"merged {len(docs)} files into {out.with_suffix('.json')}, .png and .md")
        return 0
    torch.set_num_threads(a.threads)
    codec = Codec.load(a.weights)
    clips = [Path(c) for c in a.clips] if a.clips else sorted(DEV.glob("*.y4m"))
    results = [bench_clip(codec, c, a.frames, a.gop, a.no_predict) for c in clips]
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "model_id": codec.model_id, "weights": str(a.weights or "models/progvc.pt"), "meta": codec.meta,
        "frames_per_clip": a.frames, "gop": a.gop, "threads": a.threads, "metrics": "pipeline.metrics",
        "host": platform.processor() or platform.machine(), "torch": torch.__version__, "clips": results,
    }
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    plot(results, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out.with_suffix('.json')}, .png and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
