"""Golden bitstreams: small streams committed under tests/golden/, decoded MD5s pinned.

One stream per codec family and mode, encoded by a shipped model: if decoding a stored stream changes
(the entropy coder, the context model's tables, chunk parsing, prediction, seeds, the pixel decoder), these
tests fail. An archive must decode forever, so a change here is a format break, never a refactor.

The VQ streams were made by the shipped `models/progvc.pt` (model 93d29d4227e6bce7) from a 288x128 crop of
frames 0..5 of samples/sam2_dog.mp4 (two latent tiles per row, the second partial), 2 GOPs of 3 frames,
all 10 layers:
`vq_plain.pgv` (plain mode) and `vq_keyframe.pgv` (keyframe mode, frame scales 4, encoder-chosen generated
prefix). Regenerate (only after a deliberate format change, with a note in the commit) with
`python -m tests.test_golden_stream --write`.

The token MD5s (integer, entropy decoded + predicted) hold on any machine and are checked exactly. The pixel
decoder is a float32 CNN on the CPU, whose last bit depends on the CPU's kernels: a decode whose pixel MD5
differs from the pin is compared with `vq_pixels_ref.json` instead, the sums of every 32x32 block per frame
and channel at each K (made on an AMD EPYC). A rounding flip moves one value by 1; across oneDNN's ISA levels
(SSE4.1..AVX-512) and oneDNN off, at most 12 values of a decode moved, never 2 in one block. So a block may
differ by at most 4 and a decode by 64 in total: swapping the bilinear latent upsampling for nearest,
floor for round, +0.001 on an output bias or +10 % on one weight of the decoder's convs fails this.
`python -m tests.test_golden_stream --write-pixel-ref` rewrites it (only while the token MD5s hold).

The latent streams (the default model latent-v1, fidelity 60, effort fast: a 96x64 window of
samples/sam2_dog.mp4, 176x128 from version 4 on, 2 GOPs) have their decoded-pixel MD5 per K pinned in a JSON
beside them, one stream per parameter-block version: `latent_v1.pgv` (version 1), `latent_v1_params2.pgv`
(version 2: motion coding of `pipeline.latent.mvcode`, per-GOP chroma upsampler), `latent_v1_params3.pgv`
(version 3: overlapped-block motion compensation), `latent_v1_params4.pgv` (version 4: spread offsets per
band class), `latent_v1_params5.pgv` (version 5: sharp motion interpolation) and `latent_v1_params6.pgv`
(version 6: temporal step weights); older ones are never regenerated. The decoder is integer throughout,
so they hold on any machine. A new version gets a new stream from
`.venv/bin/python tests/golden/make_latent_golden.py`; the older ones stay.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
MODEL = "93d29d4227e6bce7"  # models/progvc.pt, the shipped VQ model
STREAMS = {"vq_plain.pgv": None, "vq_keyframe.pgv": 4}  # name -> frame scales (keyframe mode)
T_WEIGHTS_PINNED = 1  # temporal step weights latent_v1_params6.pgv was written with (gop.T_WEIGHTS_Q16)
W, H = 288, 128

# md5 of the decoded frames (T, H, W, 3) uint8 with --predict argmax, per number of layers K = 1..10
# (checked equal to the decode of the code before the stream API existed, commit 92f4009)
PIXELS_MD5: dict[str, list[str]] = {
    "vq_plain.pgv": ["499a72315f28d2f4a60540f15e98a945", "f188ba43afe043380ae5538605ee263f",
                     "e4f9192582ce24e529e7ba01ce33d7fa", "375352e07b3eecfa64d3dc66bb873e48",
                     "f2ba90fbf117d0b360e6f20e4b9535d8", "82b55a9c7e61d85d38a33f9d1c4dffd4",
                     "6325d9e2e1bcb27d8075b90db9abe688", "ffe97240fe765237db805f4742b8d0c0",
                     "639e487ec46787fc355c3242fa65c35f", "4a0a4f7a06d8d40aad38032983ce6c03"],
    "vq_keyframe.pgv": ["499a72315f28d2f4a60540f15e98a945", "f188ba43afe043380ae5538605ee263f",
                        "e4f9192582ce24e529e7ba01ce33d7fa", "375352e07b3eecfa64d3dc66bb873e48",
                        "dc94ae8bc1d8cb1b7f2db36428e2e1df", "ce3088d535e28edaabc2df8b1c4fe07b",
                        "22b1d5688961e3534bca7b8ed49a29c2", "96dd6b256a582de6f1ed82161a6f9e4e",
                        "b2ee03a3cd1cd799d8d652a5f48d3d4d", "62f4fd4c37a9b7bdb3624bce8e1916a2"],
}
# md5 of the decoded tokens (every frame's scales 1..N, int64, frame-major) with argmax at K = 1..10
TOKENS_MD5: dict[str, list[str]] = {
    "vq_plain.pgv": ["d25dcc7a096a555473b91dea36265a0d", "ab5f460bd02e0e9ec4369909831b8376",
                     "2cb7c9b143395b8dcaab995662fe9001", "b7a11d883d655c1fbe085b21339b35e5",
                     "8152bb3dba6587eefaec7b13ab14078e", "b3ae08228dfae64183263373e5abca38",
                     "1a3db3f3784ab40598d2f9d22f635bf5", "5075f1238f90850467959850b8130a00",
                     "662b566d5cdab25f5d76400f367ef7b7", "e6249cb393aef5dc22c02f7dc28657bf"],
    "vq_keyframe.pgv": ["d25dcc7a096a555473b91dea36265a0d", "ab5f460bd02e0e9ec4369909831b8376",
                        "2cb7c9b143395b8dcaab995662fe9001", "b7a11d883d655c1fbe085b21339b35e5",
                        "38766819b0efcc70783402d1d3020f55", "65d2734ef9cb90614e3d02cab44b025e",
                        "2c26674f99903582560676f099a02fad", "9efb7c6b879d84ff50b6cdb06028bbf0",
                        "4002bb4ba04a461b8455b2af471f4953", "311cde54d5ec64f4bf5cfcf087f12611"],
}


PIXELS_REF = GOLDEN / "vq_pixels_ref.json"
BLOCK = 32  # block sums of the reference: (T, H/32, W/32, 3) int per K, 5 hex digits each, C order
MAX_BLOCK_DIFF, MAX_TOTAL_DIFF = 4, 64  # off the pinned MD5: per block and channel, and summed over a decode


def _md5(a: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


def _block_sums(frames: np.ndarray) -> np.ndarray:
    t, h, w, c = frames.shape
    return frames.astype(np.int64).reshape(t, h // BLOCK, BLOCK, w // BLOCK, BLOCK, c).sum((2, 4))


def _pixel_ref(name: str) -> list[np.ndarray]:
    """The reference block sums of a stream per K, tied to the stream's bytes."""
    import json

    ref = json.loads(PIXELS_REF.read_text())[name]
    assert ref["sha256"] == hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest(), "reference of another stream"
    shape = (6, H // BLOCK, W // BLOCK, 3)
    return [np.array([int(x[i : i + 5], 16) for i in range(0, len(x), 5)]).reshape(shape) for x in ref["sums"]]


PIN_THREADS = 2


def decoded_md5s(path: Path) -> tuple[list[str], list[str], list[np.ndarray]]:
    """(pixel md5, token md5, pixel block sums) per K of a golden stream, decoded through the stream API."""
    import torch

    from pipeline.pgv import read_pgv
    from pipeline.stream import iter_decoded, open_for_stream

    stream = read_pgv(path)
    h = stream.header
    codec = open_for_stream(h, source=str(path))
    pixels, tokens, sums = [], [], []
    # The VQ family's pixel decoder is float32 CNN: its rounding depends on the thread count (other tests,
    # e.g. eval's --threads 1, change it in this process). The pins were made with 2 threads; the token
    # MD5s are the machine-independent check.
    threads = torch.get_num_threads()
    torch.set_num_threads(PIN_THREADS)
    try:
        for k in range(1, stream.n_layers + 1):
            frames = np.stack(list(iter_decoded(stream, codec, scales=k, predict="argmax", source=path.name)))
            pixels.append(_md5(frames))
            sums.append(_block_sums(frames))
            toks = [
                torch.cat([t.flatten() for t in ft]).numpy()
                for g, e in enumerate(h.gops)
                for ft in codec.decode_gop_tokens(stream.gop_chunks(g, k), e.frame_count, h.width, h.height,
                                                  predict="argmax", frame_scales=h.frame_scales,
                                                  generate=e.generate)
            ]
            tokens.append(_md5(np.concatenate(toks).astype(np.int64)))
    finally:
        torch.set_num_threads(threads)
    return pixels, tokens, sums


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_golden_stream_decodes_to_pinned_pixels(name):
    from pipeline.pgv import read_pgv

    path = GOLDEN / name
    stream = read_pgv(path)
    h = stream.header
    assert (h.model_id, h.width, h.height, h.frame_count, len(h.gops), stream.n_layers) == (MODEL, W, H, 6, 2, 10)
    assert h.frame_scales == STREAMS[name] and h.format_version == 2
    assert path.stat().st_size <= 30_000
    pixels, tokens, sums = decoded_md5s(path)
    assert tokens == TOKENS_MD5[name], "the decoded tokens changed: the stream format or the decoder broke"
    if pixels == PIXELS_MD5[name]:
        return
    for k, (md5, got, ref) in enumerate(zip(pixels, sums, _pixel_ref(name), strict=True), 1):
        if md5 != PIXELS_MD5[name][k - 1]:  # another CPU's float32 rounding, or a changed pixel decoder
            d = np.abs(got - ref)
            assert d.max() <= MAX_BLOCK_DIFF and d.sum() <= MAX_TOTAL_DIFF, (
                f"K={k}: tokens are unchanged but the decoded pixels differ beyond rounding (pixel decoder): "
                f"block sums off by up to {d.max()}, {d.sum()} in total")


@pytest.mark.parametrize("pins_name, version", [("latent_v1.json", 1), ("latent_v1_params2.json", 2),
                                                ("latent_v1_params3.json", 3), ("latent_v1_params4.json", 4),
                                                ("latent_v1_params5.json", 5), ("latent_v1_params6.json", 6)])
def test_latent_golden_stream_decodes_to_pinned_pixels(capsys, pins_name, version):
    """Each committed latent-v1 stream (one per parameter-block version) decodes, through the stream API and
    the model the header names, to the pinned pixels at every K; `progvc info` shows its encoder settings."""
    import json

    from flows.cli import main
    from pipeline.latent.codec import GopParams
    from pipeline.pgv import parse_chunk, read_pgv
    from pipeline.stream import decode_video

    pins = json.loads((GOLDEN / pins_name).read_text())
    path = GOLDEN / pins["stream"]
    data = path.read_bytes()
    assert len(data) == pins["bytes"] <= 20_000 and hashlib.sha256(data).hexdigest() == pins["sha256"]
    stream = read_pgv(path)
    h = stream.header
    assert (h.model_id, h.mode, h.format_version, stream.n_layers) == ("latent-v1", "plain", 2, 7)
    assert h.encoder == pins["encoder"] == {"fidelity": 60, "effort": "fast"}
    assert [[g.first_frame, g.frame_count] for g in h.gops] == pins["gops"]
    assert stream.layer_bytes == pins["layer_bytes"]
    params = [GopParams.parse(parse_chunk(stream.gop_chunks(g)[0])[0].payload)[0] for g in range(len(h.gops))]
    assert {p.version for p in params} == {version}
    if version == 4:  # GOP 0 codes spread offsets, the 2-frame GOP 1 is cheaper without: both paths pinned
        assert [bool(p.spread_off) for p in params] == [True, False]
    assert {p.interp for p in params} == {int(version >= 5)}  # sharp motion interpolation from version 5
    assert {p.t_weights for p in params} == {T_WEIGHTS_PINNED if version >= 6 else 0}  # the stream's weights
    got = [_md5(decode_video(path, scales=k, predict="argmax", progress=False))
           for k in range(1, stream.n_layers + 1)]
    assert got == pins["pixels_md5"], "the latent decoder's output changed: a format break for archived streams"
    assert main(["info", str(path)]) == 0
    assert "encoder     fidelity=60 effort=fast" in capsys.readouterr().out


def test_golden_stream_cli_decode_matches(tmp_path, capsys):
    """`progvc decode` picks the model from the header (no --weights) and writes the K-layer frames the stream
    API decodes."""
    from flows.cli import main
    from pipeline import video_io
    from pipeline.stream import decode_video

    path = GOLDEN / "vq_plain.pgv"
    out = tmp_path / "k3.y4m"
    assert main(["decode", str(path), "-o", str(out), "--scales", "3", "--quiet"]) == 0
    ref = tmp_path / "ref.y4m"
    video_io.write_video(ref, decode_video(path, None, scales=3, progress=False), 25)
    assert np.array_equal(video_io.read_frames(out), video_io.read_frames(ref))


def test_reserved_pixels_equal_the_reference_decode(tmp_path, ray_session, prefect_harness):
    """The golden keyframe-mode stream stored as an archive (header.bin + layer objects, manifest) and
    re-served by the `reserve` flow (ranged reads, actors that load the model the header names, decode runs)
    gives the pixels of a reference decode of the same stream through the stream API, for argmax and
    seeded sampling."""
    from flows.reserve import reserve
    from pipeline import video_io
    from pipeline.archive import ArchiveWriter, GopData, SourceInfo
    from pipeline.pgv import parse_chunk, read_pgv
    from pipeline.store import open_store
    from pipeline.stream import iter_decoded

    path = GOLDEN / "vq_keyframe.pgv"
    stream = read_pgv(path)
    h = stream.header
    gops = []
    for g, e in enumerate(h.gops):  # what the actors report for each GOP: chunks, token counts and CRC32s
        chunks = stream.gop_chunks(g)
        parsed = [parse_chunk(c)[0] for c in chunks]
        gops.append(GopData(e.first_frame, e.frame_count, True, chunks, [c.token_count for c in parsed],
                            [c.token_crc for c in parsed], [h.coded_frames(g, k) for k in range(1, len(chunks) + 1)]))
    dest = tmp_path / "archive"
    vid = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    ArchiveWriter(open_store(str(dest)), "golden").archive_video(
        vid, h.to_bytes(), gops, SourceInfo(uri=str(path), size_bytes=path.stat().st_size, width=h.width,
                                            height=h.height, fps=25.0), h.model_id, mode=h.mode)
    for predict, seed, k in (("argmax", 0, 3), ("sample", 7, 2)):
        out = tmp_path / f"{predict}.y4m"
        r = reserve(dest=str(dest), video_id=vid, scales=k, output=str(out), predict=predict, seed=seed, actors=1)
        assert r["model_id"] == MODEL and r["frames"] == 6
        ref = tmp_path / f"ref-{predict}.y4m"
        video_io.write_video(ref, iter_decoded(stream, None, scales=k, predict=predict, seed=seed), 25)
        assert np.array_equal(video_io.read_frames(out), video_io.read_frames(ref)), predict


def write_golden() -> None:
    """Encode the golden streams with the shipped model and print their MD5s (see the module docstring)."""
    from pipeline import video_io
    from pipeline.pgv import GopEntry, write_pgv
    from pipeline.registry import open_codec
    from pipeline.stream import build_header

    x = video_io.read_frames(Path(__file__).resolve().parents[1] / "samples" / "sam2_dog.mp4", 0, 6)
    y0, x0 = (x.shape[1] - H) // 2, (x.shape[2] - W) // 2
    clip = np.ascontiguousarray(x[:, y0 : y0 + H, x0 : x0 + W])
    codec = open_codec(MODEL)
    GOLDEN.mkdir(exist_ok=True)
    for name, fs in STREAMS.items():
        encs = [codec.encode_gop(clip[f : f + 3], gop_index=g, frame_scales=fs) for g, f in enumerate((0, 3))]
        gops = [GopEntry(f, 3, True, e.generate) for f, e in zip((0, 3), encs)]
        n = write_pgv(GOLDEN / name, build_header(codec, W, H, gops, 25, fs), [e.chunks for e in encs])
        print(f"{name}: {n} bytes, generate {[e.generate for e in encs]}")
    write_pixel_ref(check_tokens=False)


def write_pixel_ref(check_tokens: bool = True) -> None:
    """Write `vq_pixels_ref.json` from this machine's decode of the VQ streams (and print their MD5s); with
    `check_tokens`, only while they decode to the pinned tokens."""
    import json

    out = {}
    for name in sorted(STREAMS):
        pixels, tokens, sums = decoded_md5s(GOLDEN / name)
        print(f"    {name!r}: {pixels},")
        print(f"    {name!r}: {tokens},")
        if check_tokens and tokens != TOKENS_MD5[name]:
            sys.exit(f"{name}: the decoded tokens differ from the pinned ones; nothing written")
        out[name] = {"sha256": hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest(),
                     "sums": ["".join(f"{v:05x}" for v in s.ravel()) for s in sums]}
    PIXELS_REF.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_golden()
    elif "--write-pixel-ref" in sys.argv:
        write_pixel_ref()
    else:
        sys.exit("usage: python -m tests.test_golden_stream --write (overwrites tests/golden/*.pgv)"
                 " | --write-pixel-ref")
