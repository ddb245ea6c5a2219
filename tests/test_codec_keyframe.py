"""Keyframe mode (CGVC): keyframes carry every scale, other frames their first K — tiny random models."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.codec.codec import best_prefix, coded_scales
from pipeline.codec.container import GopEntry, StreamHeader, read_pgv
from pipeline.errors import ProGVCError, StreamError
from tests.fixtures_codec import moving_clip


def test_coded_scales():
    assert [coded_scales(f, 4, None) for f in range(3)] == [4, 4, 4]
    assert [coded_scales(f, 4, 2) for f in range(3)] == [4, 2, 2]
    assert [coded_scales(f, 1, 2) for f in range(3)] == [1, 1, 1]


def test_best_prefix():
    assert best_prefix(np.array([3.0, 1.0, -0.5, -4.0])) == 2
    assert best_prefix(np.array([-1.0, 5.0, -1.0])) == 2  # a loss early is worth a bigger gain after it
    assert best_prefix(np.array([-1.0, -2.0])) == 0
    assert best_prefix(np.array([1.0, 0.0, 0.0])) == 1  # ties: the shortest prefix
    assert best_prefix(np.array([])) == 0


def test_chunks_above_frame_scales_hold_the_keyframe_alone(tiny_codec):
    clip = moving_clip(5, 64, 80, seed=2)
    plain = tiny_codec.encode_gop(clip)
    kf = tiny_codec.encode_gop(clip, frame_scales=2)
    assert kf.chunks[:2] == plain.chunks[:2]  # scales 1..K: same tokens, same context, same bytes
    for k in (2, 3):
        assert kf.token_counts[k] == plain.token_counts[k] // 5  # the keyframe's share only
    assert sum(map(len, kf.chunks)) < sum(map(len, plain.chunks))


def test_tokens_decode_exactly(tiny_codec):
    """predict="none": the keyframe gets all its encoder tokens back, the other frames their first K."""
    clip = moving_clip(4, 64, 64, seed=5)
    ref = tiny_codec.encode_tokens(clip)
    kf = tiny_codec.encode_gop(clip, frame_scales=1)
    got = tiny_codec.decode_gop_tokens(kf.chunks, 4, 64, 64, predict="none", frame_scales=1)
    assert [len(t) for t in got] == [4, 1, 1, 1]
    for f, toks in enumerate(got):
        for k, t in enumerate(toks):
            assert np.array_equal(t.numpy(), ref[f][k].numpy())
    full = tiny_codec.decode_gop_tokens(kf.chunks, 4, 64, 64, predict="argmax", frame_scales=1)
    assert all(len(t) == tiny_codec.cfg.n_scales for t in full)
    assert np.array_equal(full[0][3].numpy(), ref[0][3].numpy())  # the keyframe's fine scale is coded, not guessed


def test_wrong_mode_is_a_stream_error(tiny_codec):
    clip = moving_clip(3, 64, 64)
    kf = tiny_codec.encode_gop(clip, frame_scales=2)
    with pytest.raises(StreamError, match="scale 3: chunk has .* tokens.*mode"):
        tiny_codec.decode_gop(kf.chunks, 3, 64, 64)  # read as plain
    plain = tiny_codec.encode_gop(clip)
    with pytest.raises(StreamError, match="scale 3"):
        tiny_codec.decode_gop(plain.chunks, 3, 64, 64, frame_scales=2)


def test_header_records_mode():
    g = [GopEntry(0, 3)]
    h = StreamHeader("0123456789abcdef", 64, 48, 25, 1, 3, (1, 2, 3, 4), 4, g, mode="keyframe", frame_scales=2)
    back = StreamHeader.from_bytes(h.to_bytes())
    assert (back.mode, back.frame_scales) == ("keyframe", 2)
    assert [back.coded_frames(0, k) for k in (1, 2, 3, 4)] == [3, 3, 1, 1]
    plain = StreamHeader("0123456789abcdef", 64, 48, 25, 1, 3, (1, 2, 3, 4), 4, g)
    assert b"frame_scales" not in plain.to_bytes()  # plain streams are byte-identical to before the mode
    for mode, fs in (("keyframe", None), ("keyframe", 5), ("keyframe", 0), ("plain", 2), ("dream", None)):
        bad = StreamHeader("0123456789abcdef", 64, 48, 25, 1, 3, (1, 2, 3, 4), 4, g, mode=mode, frame_scales=fs)
        with pytest.raises(StreamError, match="mode"):
            StreamHeader.from_bytes(bad.to_bytes())


@pytest.fixture(scope="module")
def kf_stream(tiny_codec, tiny_video, tmp_path_factory):
    from pipeline.codec.video import encode_video

    p = tmp_path_factory.mktemp("kf") / "kf.pgv"
    stats = encode_video(tiny_video, p, codec=tiny_codec, max_gop=4, progress=False, mode="keyframe",
                         frame_scales=2, gops=[GopEntry(0, 4), GopEntry(4, 2)])
    return p, stats


def test_stream_roundtrip_and_every_layer_cut(tiny_codec, tiny_video, kf_stream, tmp_path):
    """Decoding needs no flags (the header says keyframe mode); a cut at any layer end still decodes."""
    from pipeline.codec.video import decode_video
    from pipeline.video_io import read_frames

    p, stats = kf_stream
    s = read_pgv(p)
    assert (s.header.mode, s.header.frame_scales) == ("keyframe", 2)
    src = read_frames(tiny_video)
    full = decode_video(p, None, codec=tiny_codec, predict="none", progress=False)
    ref = tiny_codec.encode_tokens(src)
    for g0, n in ((0, 4), (4, 2)):  # keyframe: all scales; the others: their first 2
        toks = [ref[g0 + f][: coded_scales(f, 4, 2)] for f in range(n)]
        assert np.array_equal(full[g0 : g0 + n], tiny_codec.decode_tokens(toks, 64, 48))
    data = p.read_bytes()
    end = s.header_bytes
    for k in range(1, s.n_layers + 1):
        end += s.layer_bytes[k - 1]
        cut = tmp_path / f"cut{k}.pgv"
        cut.write_bytes(data[:end])
        a = decode_video(cut, None, codec=tiny_codec, progress=False)
        b = decode_video(p, None, scales=k, codec=tiny_codec, progress=False)
        assert a.shape == (6, 48, 64, 3) and np.array_equal(a, b)
    assert s.layer_bytes[2] < s.layer_bytes[1] * 2  # layers 3-4 carry 2 keyframes, not 6 frames


def test_encode_video_rejects_bad_frame_scales(tiny_codec, tiny_video, tmp_path):
    from pipeline.codec.video import encode_video

    for mode, fs, msg in (("keyframe", None, "needs --frame-scales"), ("keyframe", 5, "1 <= K <= 4"),
                          ("plain", 2, "keyframe only"), ("other", None, "mode 'other'")):
        with pytest.raises(ProGVCError, match=msg):
            encode_video(tiny_video, tmp_path / "x.pgv", codec=tiny_codec, progress=False, mode=mode,
                         frame_scales=fs)
    with pytest.raises(ProGVCError, match="1 <= K <= 2"):  # the keyframes keep only 2 scales here
        encode_video(tiny_video, tmp_path / "x.pgv", codec=tiny_codec, scales=2, progress=False,
                     mode="keyframe", frame_scales=3)


def test_cli_keyframe_mode(tiny_weights, tiny_video, tmp_path, capsys):
    from flows.cli import main
    from pipeline.video_io import probe

    out = tmp_path / "k.pgv"
    assert main(["encode", tiny_video, "-o", str(out), "--mode", "keyframe", "--keyframe-scales", "3",
                 "--frame-scales", "1", "--weights", tiny_weights, "--quiet"]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "mode=keyframe" in info and "layers 1..1" in info and "layers present: 3/4" in info
    mp4 = tmp_path / "k.mp4"
    assert main(["decode", str(out), "-o", str(mp4), "--weights", tiny_weights, "--quiet"]) == 0
    assert probe(mp4).frame_count == 6
    assert main(["encode", tiny_video, "-o", str(out), "--mode", "keyframe", "--weights", tiny_weights]) == 1


def test_encoder_picks_the_generated_prefix_that_fits_best(tiny_codec):
    """generation="auto": G = the prefix of non-keyframes whose generated scales lower the summed squared
    error most (computed here from the two decodes); the decoder generates frames 1..G only."""
    clip = moving_clip(6, 64, 64, seed=4)
    enc = tiny_codec.encode_gop(clip, frame_scales=2)
    assert enc.generate is not None and 0 <= enc.generate <= 5
    everyone = tiny_codec.decode_gop(enc.chunks, 6, 64, 64, frame_scales=2)  # generate=None: every frame
    nobody = tiny_codec.decode_gop(enc.chunks, 6, 64, 64, frame_scales=2, generate=0)
    ref = clip.astype(np.float64)
    gain = [((nobody[f] - ref[f]) ** 2).mean() - ((everyone[f] - ref[f]) ** 2).mean() for f in range(1, 6)]
    best = max(range(6), key=lambda g: (sum(gain[:g]), -g))
    assert enc.generate == best
    chosen = tiny_codec.decode_gop(enc.chunks, 6, 64, 64, frame_scales=2, generate=enc.generate)
    g = enc.generate
    assert np.array_equal(chosen[: g + 1], everyone[: g + 1]) and np.array_equal(chosen[g + 1 :], nobody[g + 1 :])
    assert np.array_equal(nobody[0], everyone[0])  # the keyframe is never affected
    assert tiny_codec.encode_gop(clip, frame_scales=2, generation="all").generate is None
    assert tiny_codec.encode_gop(clip).generate is None  # plain mode: nothing to choose
    assert tiny_codec.encode_gop(clip, frame_scales=2, generation="all").chunks == enc.chunks


def test_header_keeps_the_generated_prefix(tiny_codec, tiny_video, tmp_path):
    from pipeline.codec.video import decode_video, encode_video

    g = [GopEntry(0, 4, True, 2), GopEntry(4, 2, True, 0)]
    h = StreamHeader("0123456789abcdef", 64, 48, 25, 1, 6, (1, 2, 3, 4), 4, g, mode="keyframe", frame_scales=2)
    assert StreamHeader.from_bytes(h.to_bytes()).gops == g
    for bad in ([GopEntry(0, 4, True, 4), GopEntry(4, 2)], [GopEntry(0, 4, True, -1), GopEntry(4, 2)]):
        with pytest.raises(StreamError, match="generated prefix"):
            StreamHeader.from_bytes(StreamHeader(**{**h.__dict__, "gops": bad}).to_bytes())
    plain = StreamHeader("0123456789abcdef", 64, 48, 25, 1, 6, (1, 2, 3, 4), 4, g)
    with pytest.raises(StreamError, match="generated prefix"):
        StreamHeader.from_bytes(plain.to_bytes())
    p = tmp_path / "auto.pgv"
    stats = encode_video(tiny_video, p, codec=tiny_codec, progress=False, mode="keyframe", frame_scales=2,
                         gops=[GopEntry(0, 4), GopEntry(4, 2)])
    gens = [e.generate for e in read_pgv(p).header.gops]
    assert gens == [e.generate for e in stats.header.gops] and all(x is not None for x in gens)
    frames = decode_video(p, None, codec=tiny_codec, progress=False)
    expect = [tiny_codec.decode_gop(read_pgv(p).gop_chunks(i), n, 64, 48, frame_scales=2, generate=gn)
              for i, (n, gn) in enumerate(zip((4, 2), gens))]
    assert np.array_equal(frames, np.concatenate(expect))
