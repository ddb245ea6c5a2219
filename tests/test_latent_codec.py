"""The latent codec family (latent-v1, the default model) through the stream API, on real content.

A 64×48 crop of the first 5 frames of samples/sam2_dog.mp4, written as .y4m with PyAV and encoded by
`pipeline.stream.encode_video` at effort "fast" (one GOP): round trip, every K decodes with rising bits, K
layers of the full stream = a stream encoded with `scales=K`, a `head -c` cut at every layer end decodes,
bit-exact chunks and pixels across thread counts and processes, damage named by GOP and scale, and the
encoder settings in the header (`progvc info`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import video_io
from pipeline.errors import StreamError
from pipeline.pgv import CHUNK_HEADER_BYTES, pack_chunk, parse_chunk, read_pgv
from pipeline.stream import decode_video, encode_video

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sam2_dog.mp4"
T, H, W = 5, 48, 64
N = 7
FIDELITY, EFFORT = 60, "fast"


def _md5(a: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A textured 64×48 window of the dog clip (frames 0..4)."""
    x = video_io.read_frames(SAMPLE, 0, T)
    return np.ascontiguousarray(x[:, 100 : 100 + H, 200 : 200 + W])


@pytest.fixture(scope="module")
def clip_path(crop, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("latent") / "crop.y4m"
    video_io.write_video(p, crop, 25)
    return p


@pytest.fixture(scope="module")
def source(clip_path) -> np.ndarray:
    """The frames the encoder sees (the .y4m read back: 4:2:0 round trip of the crop)."""
    return video_io.read_frames(clip_path)


@pytest.fixture(scope="module")
def full(clip_path, tmp_path_factory):
    """(stats, path) of the full stream: every layer, one GOP."""
    out = tmp_path_factory.mktemp("latent") / "full.pgv"
    torch.set_num_threads(1)
    stats = encode_video(clip_path, out, fidelity=FIDELITY, effort=EFFORT, max_gop=16, progress=False)
    return stats, out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_round_trip_default_model_and_header(full, source, capsys):
    from flows.cli import main
    from pipeline.registry import DEFAULT_MODEL_ID

    stats, path = full
    h = stats.header
    assert DEFAULT_MODEL_ID == "latent-v1" and h.model_id == "latent-v1"
    assert (h.width, h.height, h.frame_count, len(h.gops), h.n_scales) == (W, H, T, 1, N)
    assert h.encoder == {"fidelity": FIDELITY, "effort": EFFORT}
    assert read_pgv(path).header.encoder == h.encoder  # written and parsed
    y = decode_video(path, progress=False)
    assert y.shape == source.shape and y.dtype == np.uint8
    assert _psnr(source, y) > 30.0, _psnr(source, y)
    assert main(["info", str(path)]) == 0
    assert f"encoder     fidelity={FIDELITY} effort={EFFORT}" in capsys.readouterr().out


def test_every_k_decodes_and_bits_rise(full, source):
    stats, path = full
    assert len(stats.layer_bytes) == N
    assert all(b > CHUNK_HEADER_BYTES for b in stats.layer_bytes), stats.layer_bytes  # every layer has payload
    cum = np.cumsum(stats.layer_bytes)
    assert all(a < b for a, b in zip(cum, cum[1:]))
    psnr = []
    for k in range(1, N + 1):
        y = decode_video(path, scales=k, progress=False)
        assert y.shape == source.shape
        psnr.append(_psnr(source, y))
    assert psnr[-1] == max(psnr) and psnr[-1] > psnr[0] + 3, psnr


@pytest.mark.parametrize("predict", ["none", "argmax"])
def test_k_layers_of_full_stream_equal_a_stream_encoded_with_k_scales(full, clip_path, tmp_path, predict):
    """Also with argmax prediction of the missing layers: a scales=K encode fits the ARM on every layer, so its
    chunks are the full stream's first K and the decoder predicts layers K+1.. from the same ARM."""
    _, path = full
    for k in (1, 3, N - 1):  # (every K costs an encode; these cover the base alone, a middle and the last cut)
        out = tmp_path / f"k{k}.pgv"
        torch.set_num_threads(1)
        s = encode_video(clip_path, out, scales=k, fidelity=FIDELITY, effort=EFFORT, progress=False)
        assert len(s.layer_bytes) == k
        assert read_pgv(out).layers == read_pgv(path, scales=k).layers  # the same chunks
        a = decode_video(path, scales=k, predict=predict, progress=False)
        b = decode_video(out, predict=predict, progress=False)
        assert np.array_equal(a, b), (k, predict, int(np.abs(a.astype(int) - b).max()))


def test_cut_at_every_layer_end_decodes(full, tmp_path):
    stats, path = full
    data = path.read_bytes()
    end = len(stats.header.to_bytes())
    for k in range(1, N + 1):
        end += stats.layer_bytes[k - 1]
        cut = tmp_path / f"cut{k}.pgv"
        with cut.open("wb") as fh:
            subprocess.run(["head", "-c", str(end), str(path)], stdout=fh, check=True)
        assert cut.read_bytes() == data[:end]
        s = read_pgv(cut)
        assert s.n_layers == k
        assert np.array_equal(decode_video(cut, progress=False), decode_video(path, scales=k, progress=False)), k
    with pytest.raises(StreamError, match="scale 2"):  # a cut inside a layer is refused, naming it
        read_pgv(data[: len(stats.header.to_bytes()) + stats.layer_bytes[0] + 10])


_IN_CHILD = """
import hashlib, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from pipeline import video_io
from pipeline.latent import configured
from pipeline.stream import decode_video, encode_video
what, args = sys.argv[2], sys.argv[3:]
if what == "gop":  # chunks of one GOP: a window of the sample clip
    x = np.ascontiguousarray(video_io.read_frames(args[0], 0, 5)[:, 64:192, 100:260])
    for c in configured(60, "fast").encode_gop(x).chunks:
        print(hashlib.md5(c).hexdigest())
    sys.exit(0)
if what == "encode":  # encode args[0] into args[1] first, then decode that
    encode_video(args[0], args[1], fidelity=60, effort="fast", progress=False)
    args = args[1:]
for k in range(1, 8):
    print(hashlib.md5(np.ascontiguousarray(decode_video(args[0], scales=k, progress=False)).tobytes()).hexdigest())
"""


def _child(threads: int, what: str, *args: str) -> list[str]:
    """Run `_IN_CHILD` in a fresh process with `threads` torch threads (OMP_WAIT_POLICY=PASSIVE: OpenMP's spinning
    threads made 2-thread runs ~20x slower on a busy 2-core machine; results do not depend on it)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    res = subprocess.run([sys.executable, "-c", _IN_CHILD, str(threads), what, *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.split()


def test_decode_bit_exact_across_threads_and_processes(full):
    """Decoded pixels at every K: the same with 1 torch thread here and with 2 in another process."""
    _, path = full
    ref = [_md5(decode_video(path, scales=k, progress=False)) for k in range(1, N + 1)]
    assert _child(2, "decode", str(path)) == ref


def test_encode_is_deterministic_in_another_process(full, clip_path, tmp_path):
    """The same source, settings and thread count (1, as the codec actors run) give the same chunks in another
    process, and it decodes to the same pixels there."""
    _, path = full
    ref = [_md5(decode_video(path, scales=k, progress=False)) for k in range(1, N + 1)]
    again = tmp_path / "again.pgv"
    assert _child(1, "encode", str(clip_path), str(again)) == ref
    assert again.read_bytes() == path.read_bytes()


def test_encode_chunks_identical_across_thread_counts():
    """The same GOP encoded with 1 torch thread here and 2 in another process gives the same chunks (the archive's
    idempotence: any actor writes the same bytes for the same content). A 160×128 window, large enough that
    torch splits its ops between threads."""
    from pipeline.latent import configured

    x = np.ascontiguousarray(video_io.read_frames(SAMPLE, 0, T)[:, 64:192, 100:260])
    torch.set_num_threads(1)
    ref = [hashlib.md5(c).hexdigest() for c in configured(FIDELITY, EFFORT).encode_gop(x).chunks]
    assert _child(2, "gop", str(SAMPLE)) == ref, "chunks differ between 1 and 2 torch threads"


def _damaged(path: Path, scale: int, fix_crc: bool, tmp_path: Path) -> Path:
    """A copy of the one-GOP stream with a payload byte of layer `scale` flipped; `fix_crc`: the chunk's payload
    CRC recomputed, so only the codec's own decoding can notice."""
    s = read_pgv(path)
    chunks = [list(s.gop_chunks(0))]
    ch, _ = parse_chunk(chunks[0][scale - 1])
    payload = bytearray(ch.payload)
    payload[len(payload) // 2] ^= 0x5A
    if fix_crc:
        chunks[0][scale - 1] = pack_chunk(ch.scale, ch.token_count, ch.token_crc, bytes(payload), 0)
    else:
        raw = bytearray(ch.data)
        raw[CHUNK_HEADER_BYTES + len(payload) // 2] ^= 0x5A
        chunks[0][scale - 1] = bytes(raw)
    from pipeline.pgv import write_pgv

    out = tmp_path / f"damaged{scale}{int(fix_crc)}.pgv"
    write_pgv(out, s.header, chunks)
    return out


@pytest.mark.parametrize("scale, fix_crc", [(1, False), (1, True), (4, False), (4, True), (7, False), (7, True)])
def test_damaged_layer_names_gop_and_scale(full, tmp_path, scale, fix_crc):
    """A flipped payload byte in layer `scale`: caught by the chunk's payload CRC, or (CRC recomputed) by the
    codec's own decoding / latent checksum; either way a StreamError naming GOP 0 and that scale."""
    _, path = full
    bad = _damaged(path, scale, fix_crc, tmp_path)
    with pytest.raises(StreamError, match=rf"GOP 0.*(scale|layer) {scale}\b"):
        decode_video(bad, progress=False)
    if scale > 1:  # the layers below the damage still decode
        assert decode_video(bad, scales=scale - 1, progress=False).shape == (T, H, W, 3)


def test_encoder_settings_refused_by_the_vq_family(tiny_codec, clip_path, tmp_path):
    from pipeline.errors import ProGVCError
    from pipeline.stream import encoder_for, encoder_settings

    with pytest.raises(ProGVCError, match="--fidelity/--effort apply to the latent family"):
        encode_video(clip_path, tmp_path / "vq.pgv", codec=tiny_codec, effort="fast", progress=False)
    assert encoder_for(tiny_codec) is tiny_codec and encoder_settings(tiny_codec) is None
    with pytest.raises(ProGVCError, match="--fidelity 101"):
        encoder_for(tiny_codec, fidelity=101)
    s = encode_video(clip_path, tmp_path / "vq.pgv", codec=tiny_codec, progress=False)
    assert s.header.encoder is None and b'"encoder"' not in (tmp_path / "vq.pgv").read_bytes()[:400]


@pytest.mark.parametrize(("obmc", "interp"), [(False, 0), (True, 0), (True, 1)])
def test_closed_loop_encoder_predicts_from_what_the_decoder_rebuilds(crop, obmc, interp):
    """The encoder's temporal prediction runs on the frames as the decoder will rebuild them (closed loop):
    its rebuilt planes equal the decoder's dequantise + inverse wavelet + inverse temporal prediction, bit
    for bit, at a coarse step (where open-loop prediction would drift) and with real motion, with and
    without overlapped blocks, with bilinear and sharp interpolation."""
    from pipeline.latent import dwt
    from pipeline.latent import gop as G
    from pipeline.latent.bands import Geometry
    from pipeline.latent.codec import LEVELS, step_for_quality
    from pipeline.latent.motion import inverse_mctf

    geo = Geometry(T, H, W, LEVELS)
    steps = G.step_tensors(geo, step_for_quality(30), 3)
    q, fields, rebuilt = G.analyse(torch.from_numpy(crop), geo, 16, 4.0, steps, 2, obmc, interp)
    assert any(bool((f.mv_l != 0).any()) for lev in fields for f in lev)  # the dog moves: real vectors
    spatial = [dwt.dwt2(c, geo.plane_levels(p), inverse=True) for p, c in enumerate(G.dequantise(q, steps))]
    decoded = inverse_mctf(spatial, fields, 16, obmc, interp)
    for p in range(3):
        assert torch.equal(rebuilt[p], decoded[p]), f"plane {p}: encoder and decoder references differ"


def test_untransmitted_layers_default_to_none(full):
    """`--predict` defaults to `none` (measured: latent-v1 none >= argmax by 0.00-0.06 dB at every K on
    foreman/mobile; the VQ model: none better on every dev clip): the library default decodes a K-layer
    prefix exactly as `predict="none"`, and the CLI commands that decode offer the same default."""
    from flows.cli import build_parser

    _, path = full
    assert np.array_equal(decode_video(path, scales=3, progress=False),
                          decode_video(path, scales=3, predict="none", progress=False))
    parser = build_parser()
    assert parser.parse_args(["reserve", "arch", "id", "--scales", "2", "-o", "o.mp4"]).predict == "none"
