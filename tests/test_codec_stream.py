"""`.pgv` container, damage detection, model mismatch, determinism, CLI — tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.codec.container import GopEntry, StreamHeader, read_pgv, split_layer, write_pgv
from pipeline.errors import ModelMismatchError, StreamError


def _make_pgv(codec, clip, path, gop=2):
    t, h, w, _ = clip.shape
    gops = [GopEntry(s, min(gop, t - s), True) for s in range(0, t, gop)]
    chunks = [codec.encode_gop(clip[g.first_frame : g.first_frame + g.frame_count], gop_index=i).chunks
              for i, g in enumerate(gops)]
    hdr = StreamHeader(codec.model_id, w, h, 25, 1, t, tuple(codec.cfg.scales), codec.cfg.tile, gops)
    write_pgv(path, hdr, chunks)
    return hdr, chunks


def test_header_roundtrip_and_damage():
    hdr = StreamHeader("0123456789abcdef", 177, 99, 30000, 1001, 5, (1, 2, 4), 4, [GopEntry(0, 3), GopEntry(3, 2)])
    b = hdr.to_bytes()
    assert StreamHeader.from_bytes(b) == hdr
    bad = bytearray(b)
    bad[20] ^= 0x01
    with pytest.raises(StreamError, match="checksum"):
        StreamHeader.from_bytes(bytes(bad))
    huge = bytearray(b)
    huge[8:12] = (2**31).to_bytes(4, "little")  # hostile length: refused, never allocated
    with pytest.raises(StreamError, match="length"):
        StreamHeader.from_bytes(bytes(huge))
    with pytest.raises(StreamError, match="not a ProGVC"):
        StreamHeader.from_bytes(b"RIFF" + b[4:])


def test_cut_at_each_layer_end_equals_scales_k(tiny_codec, tiny_clip, tmp_path):
    from pipeline.codec.video import decode_video

    p = tmp_path / "a.pgv"
    _make_pgv(tiny_codec, tiny_clip, p)
    s = read_pgv(p)
    n = tiny_codec.cfg.n_scales
    assert s.n_layers == n
    data = p.read_bytes()
    end = s.header_bytes
    for k in range(1, n + 1):
        end += s.layer_bytes[k - 1]
        cut = tmp_path / f"cut{k}.pgv"
        cut.write_bytes(data[:end])
        assert read_pgv(cut).n_layers == k
        a = decode_video(cut, None, codec=tiny_codec, progress=False)
        b = decode_video(p, None, scales=k, codec=tiny_codec, progress=False)
        assert np.array_equal(a, b)
        if k < n:  # a cut inside the next layer names GOP/scale and suggests --scales
            mid = tmp_path / f"mid{k}.pgv"
            mid.write_bytes(data[: end + 10])
            with pytest.raises(StreamError, match=rf"GOP 0 scale {k + 1}.*--scales {k}"):
                read_pgv(mid)


def test_flipped_byte_names_gop_and_scale(tiny_codec, tiny_clip, tmp_path):
    from pipeline.codec.video import decode_video

    p = tmp_path / "a.pgv"
    hdr, chunks = _make_pgv(tiny_codec, tiny_clip, p)
    data = bytearray(p.read_bytes())
    s = read_pgv(p)
    # byte inside the payload of GOP 1, scale 3
    off = s.header_bytes + sum(s.layer_bytes[:2]) + len(chunks[0][2]) + 26
    data[off] ^= 0x40
    bad = tmp_path / "bad.pgv"
    bad.write_bytes(bytes(data))
    with pytest.raises(StreamError, match="GOP 1 scale 3"):
        decode_video(bad, None, codec=tiny_codec, progress=False)
    # a damaged chunk handed to decode_gop directly
    ch = bytearray(chunks[0][1])
    ch[-1] ^= 0x01
    with pytest.raises(StreamError, match="GOP 0 scale 2"):
        tiny_codec.decode_gop([chunks[0][0], bytes(ch)], 2, 64, 64, gop_index=0)
    # same chunk bytes but a wrong token checksum (decoder divergence) is caught too
    from pipeline.codec.container import pack_chunk, parse_chunk

    c0, _ = parse_chunk(chunks[0][0])
    forged = pack_chunk(1, c0.token_count, c0.token_crc ^ 1, c0.payload)
    with pytest.raises(StreamError, match="GOP 3 scale 1.*checksum"):
        tiny_codec.decode_gop([forged], 2, 64, 64, gop_index=3)
    with pytest.raises(StreamError, match="scale 2"):
        split_layer(b"".join(c[1] for c in chunks)[:-3], len(chunks), 2)


def test_other_model_refused(tiny_codec, other_tiny_codec, tiny_clip, tmp_path):
    from pipeline.codec.video import decode_video

    assert tiny_codec.model_id != other_tiny_codec.model_id and len(tiny_codec.model_id) == 16
    p = tmp_path / "a.pgv"
    _make_pgv(tiny_codec, tiny_clip, p)
    with pytest.raises(ModelMismatchError) as ei:
        decode_video(p, None, codec=other_tiny_codec, progress=False)
    assert tiny_codec.model_id in str(ei.value) and other_tiny_codec.model_id in str(ei.value)


def test_batch_size_and_threads_do_not_change_results(tiny_codec):
    from tests.fixtures_codec import moving_clip

    clip = moving_clip(3, 40, 150, seed=7)  # 10 tiles of two sizes
    t, h, w, _ = clip.shape
    ref = tiny_codec.encode_gop(clip, batch_size=1)
    assert tiny_codec.encode_gop(clip, batch_size=8).chunks == ref.chunks
    dec1 = tiny_codec.decode_gop(ref.chunks[:2], t, w, h, batch_size=1)
    dec8 = tiny_codec.decode_gop(ref.chunks[:2], t, w, h, batch_size=8)
    assert np.array_equal(dec1, dec8)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        e1 = tiny_codec.encode_gop(clip)
        d1 = tiny_codec.decode_gop(e1.chunks, t, w, h)
        torch.set_num_threads(2)
        e2 = tiny_codec.encode_gop(clip)
        d2 = tiny_codec.decode_gop(e1.chunks, t, w, h)
    finally:
        torch.set_num_threads(old)
    assert e1.chunks == e2.chunks == ref.chunks
    assert np.array_equal(d1, d2)


def test_cli_encode_decode_info(tiny_weights, tiny_video, tmp_path, capsys):
    from flows.cli import main
    from pipeline.video_io import probe, read_frames

    out = tmp_path / "v.pgv"
    assert main(["encode", tiny_video, "-o", str(out), "--gop", "4", "--weights", tiny_weights, "--quiet"]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "model id" in info and "layers present: 4/4" in info and "GOPs        2" in info
    y4m = tmp_path / "v.y4m"
    assert main(["decode", str(out), "-o", str(y4m), "--scales", "2", "--weights", tiny_weights, "--quiet"]) == 0
    vi = probe(y4m)
    assert (vi.width, vi.height, vi.frame_count) == (64, 48, 6)
    assert read_frames(y4m).shape == (6, 48, 64, 3)
    assert main(["decode", str(out), "-o", str(tmp_path / "v.mp4"), "--weights", tiny_weights, "--quiet",
                 "--predict", "none", "--scales", "1"]) == 0
    assert main(["decode", str(tmp_path / "missing.pgv"), "-o", str(y4m), "--weights", tiny_weights]) == 1


def test_other_process_decodes_identically(tiny_weights, tmp_path):
    """A stream encoded in another process (1 torch thread) decodes here to the same tokens/frames."""
    import subprocess
    import sys

    from pipeline.codec import Codec
    from tests.fixtures_codec import moving_clip

    clip = moving_clip(3, 48, 80, seed=11)
    np.save(tmp_path / "clip.npy", clip)
    code = (
        "import numpy as np, torch, pickle, sys; torch.set_num_threads(1);"
        "from pipeline.codec import Codec;"
        f"c = Codec.load({tiny_weights!r}); e = c.encode_gop(np.load({str(tmp_path / 'clip.npy')!r}));"
        f"pickle.dump((c.model_id, e.chunks), open({str(tmp_path / 'enc.pkl')!r}, 'wb'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    import pickle

    model_id, chunks = pickle.load(open(tmp_path / "enc.pkl", "rb"))
    here = Codec.load(tiny_weights)
    assert model_id == here.model_id
    assert here.encode_gop(clip).chunks == chunks
    out = here.decode_gop(chunks, 3, 80, 48)
    assert np.array_equal(out, here.decode_tokens(here.encode_tokens(clip), 80, 48))
