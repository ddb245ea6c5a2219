"""Write the latent golden stream of the current parameter-block version, `tests/golden/latent_v1_params6.pgv`,
and its pinned MD5s `tests/golden/latent_v1_params6.json`.

    .venv/bin/python tests/golden/make_latent_golden.py

Content: a 176×128 window (versions 1-3: 96×64) of frames 0..5 of samples/sam2_dog.mp4 (the dog's fur and
the floor: texture and motion), two GOPs (4 + 2 frames), the default model latent-v1 at fidelity 60, effort
"fast", all 7 layers.
The JSON pins the MD5 of the decoded frames (T, H, W, 3) uint8 for K = 1..7 (`--predict argmax`: the
context model predicts the missing layers; the default is `none`) and the stream's bytes;
`tests/test_golden_stream.py` checks them. Re-run this only after a deliberate change of the latent format
or decoder (say so in the commit, and bump `pipeline.latent.codec.PARAM_VERSION` and the file name below):
streams already archived must keep decoding to the same pixels.

The streams of older versions hold the same content and are never regenerated: `latent_v1.pgv` (version 1,
commit 96c0dd1: motion coded by `motion.field_symbols`, bilinear chroma), `latent_v1_params2.pgv`
(version 2, commit a7aeb50: `mvcode` motion coding, per-GOP chroma upsampler, no overlapped blocks) and
`latent_v1_params3.pgv` (version 3, commit ab42fe3: overlapped blocks, no spread offsets) and
`latent_v1_params4.pgv` (version 4, commit 5d33d2d: spread offsets, bilinear motion interpolation) and
`latent_v1_params5.pgv` (version 5, commit 69b5dfa: sharp motion interpolation, temporal step weights 0).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GOLDEN = ROOT / "tests" / "golden"
STREAM = GOLDEN / "latent_v1_params6.pgv"
PINS = GOLDEN / "latent_v1_params6.json"
SOURCE = ROOT / "samples" / "sam2_dog.mp4"
X0, Y0, W, H = 160, 64, 176, 128
GOPS = ((0, 4), (4, 2))
FIDELITY, EFFORT = 60, "fast"
MAX_BYTES = 20_000


def decoded_md5s(path: Path) -> list[str]:
    """MD5 of the frames decoded from the first K layers, K = 1..N, through the stream API (the stream's own
    model from the registry, predict argmax)."""
    import numpy as np

    from pipeline.pgv import read_pgv
    from pipeline.stream import decode_video

    n = read_pgv(path).n_layers
    frames = (decode_video(path, scales=k, predict="argmax", progress=False) for k in range(1, n + 1))
    return [hashlib.md5(np.ascontiguousarray(f).tobytes()).hexdigest() for f in frames]


def main() -> int:
    import numpy as np
    import torch

    from pipeline import video_io
    from pipeline.latent import configured
    from pipeline.pgv import GopEntry, write_pgv
    from pipeline.stream import build_header, encoder_settings

    torch.set_num_threads(1)
    x = video_io.read_frames(SOURCE, 0, sum(n for _, n in GOPS))
    clip = np.ascontiguousarray(x[:, Y0 : Y0 + H, X0 : X0 + W])
    codec = configured(FIDELITY, EFFORT)
    encs = [codec.encode_gop(clip[f : f + n], gop_index=g) for g, (f, n) in enumerate(GOPS)]
    header = build_header(codec, W, H, [GopEntry(f, n, True) for f, n in GOPS], 25, encoder=encoder_settings(codec))
    size = write_pgv(STREAM, header, [e.chunks for e in encs])
    if size > MAX_BYTES:
        raise SystemExit(f"{STREAM}: {size} bytes, more than {MAX_BYTES}; use a smaller window")
    pins = {
        "stream": STREAM.name,
        "source": f"{SOURCE.relative_to(ROOT)} frames 0..{len(clip) - 1}, window x {X0}..{X0 + W - 1}, "
                  f"y {Y0}..{Y0 + H - 1}",
        "model_id": header.model_id,
        "encoder": header.encoder,
        "gops": [list(g) for g in GOPS],
        "bytes": size,
        "sha256": hashlib.sha256(STREAM.read_bytes()).hexdigest(),
        "layer_bytes": [sum(len(e.chunks[k]) for e in encs) for k in range(len(encs[0].chunks))],
        "pixels_md5": decoded_md5s(STREAM),
    }
    PINS.write_text(json.dumps(pins, indent=1) + "\n")
    print(f"{STREAM}: {size} bytes, layers {pins['layer_bytes']}")
    print(f"{PINS}: pixel MD5 per K = 1..{len(pins['pixels_md5'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
