"""Where the latent codec's bits go: per dev clip and fidelity, the bytes of the stream header, the GOP
parameter block (ARM + quantiser), the motion fields and the latents of each layer.

    .venv/bin/python bench/latent_bits.py [--clips DIR] [--frames 16] [--fidelities 30,50,70] [--effort fast]

Writes bench/results/latent_bits.json and prints a table. Ideal (model) bits for motion/latents; the
parameter block in bytes as coded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's `pipeline` package, not bench/pipeline.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "data" / "clips" / "dev"))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--fidelities", default="30,50,70")
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latent_bits.json"))
    a = ap.parse_args()
    from pipeline import metrics, video_io
    from pipeline.latent.codec import LatentCodec
    from pipeline.pgv import GopEntry
    from pipeline.stream import build_header, decode_gop_frames

    clips = sorted(Path(a.clips).glob("*.y4m")) or sorted((ROOT / "samples").glob("*.mp4"))
    rows = []
    for clip in clips:
        fr = video_io.read_frames(clip, 0, a.frames)
        t, h, w, _ = fr.shape
        for fid in [float(x) for x in a.fidelities.split(",")]:
            c = LatentCodec(quality=fid, effort=a.effort)
            t0 = time.time()
            enc = c.encode_gop(fr)
            header = build_header(c, w, h, [GopEntry(0, t, True)], 25, encoder={"fidelity": fid, "effort": a.effort})
            dec = decode_gop_frames(c, header, 0, enc.chunks, context=clip.stem)
            hdr = header.to_bytes()
            bd = c.last_breakdown
            px = t * h * w
            row = {"clip": clip.stem, "fidelity": fid, "effort": a.effort, "frames": t, "width": w, "height": h,
                   "header_bytes": len(hdr), "chunk_bytes": [len(x) for x in enc.chunks],
                   "bpp": 8 * sum(len(x) for x in enc.chunks) / px, "psnr_y": float(metrics.psnr_y(fr, dec).mean()),
                   "params_bytes": bd["params_bytes"], "motion_bytes": bd["motion_bits"] / 8,
                   "latent_bytes": [b / 8 for b in bd["latent_bits"]], "arm_hidden": bd["hidden"],
                   "motion_block": bd["motion_block"], "encode_s": time.time() - t0}
            rows.append(row)
            tot = sum(row["chunk_bytes"])
            print(f"{clip.stem:16s} fid {fid:4.0f} {row['bpp']:.4f} bpp {row['psnr_y']:5.2f} dB | total {tot} B: "
                  f"params {row['params_bytes']} ({100 * row['params_bytes'] / tot:.0f}%), motion "
                  f"{row['motion_bytes']:.0f} ({100 * row['motion_bytes'] / tot:.0f}%), latents "
                  f"{sum(row['latent_bytes']):.0f}; header {row['header_bytes']} B/video", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
