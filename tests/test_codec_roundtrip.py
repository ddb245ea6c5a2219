"""Codec round trips with a tiny random model: every K, odd sizes, tiles, prediction modes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.codec.tiles import TileGrid
from tests.fixtures_codec import moving_clip


def test_tile_grid_partial_tiles():
    g = TileGrid(lh=37, lw=18, tile=16, scales=(1, 2, 16))
    assert g.rows == [16, 16, 5] and g.cols == [16, 2]
    assert g.grid_size(0) == (3, 2)  # every tile has at least one token
    assert g.grid_size(1) == (2 + 2 + 1, 2 + 1)
    assert g.grid_size(2) == (37, 18)  # finest scale = latent size
    blocks = g.token_blocks(1)
    assert blocks[-1] == (4, 2, 1, 1) and len(blocks) == 6


def test_roundtrip_every_k(tiny_codec, tiny_clip):
    t, h, w, _ = tiny_clip.shape
    enc = tiny_codec.encode_gop(tiny_clip)
    n = tiny_codec.cfg.n_scales
    assert len(enc.chunks) == n == len(enc.token_counts) == len(enc.checksums) == len(enc.ce_bits)
    truth = tiny_codec.encode_tokens(tiny_clip)
    sizes = np.cumsum([len(c) for c in enc.chunks])
    assert np.all(np.diff(sizes) > 0)  # bpp strictly rising with K
    for k in range(1, n + 1):
        toks = tiny_codec.decode_gop_tokens(enc.chunks[:k], t, w, h, predict="none")
        for f in range(t):
            assert len(toks[f]) == k
            for j in range(k):
                assert np.array_equal(toks[f][j].numpy(), truth[f][j].numpy())
        frames = tiny_codec.decode_gop(enc.chunks[:k], t, w, h)
        assert frames.shape == (t, h, w, 3) and frames.dtype == np.uint8
    full = tiny_codec.decode_gop(enc.chunks, t, w, h)
    assert np.array_equal(full, tiny_codec.decode_tokens(truth, w, h))


def test_prediction_modes(tiny_codec, tiny_clip):
    t, h, w, _ = tiny_clip.shape
    enc = tiny_codec.encode_gop(tiny_clip)
    n = tiny_codec.cfg.n_scales
    arg = tiny_codec.decode_gop_tokens(enc.chunks[:1], t, w, h, predict="argmax")
    assert all(len(ft) == n for ft in arg)
    s1 = tiny_codec.decode_gop_tokens(enc.chunks[:1], t, w, h, predict="sample", seed=5)
    s2 = tiny_codec.decode_gop_tokens(enc.chunks[:1], t, w, h, predict="sample", seed=5)
    s3 = tiny_codec.decode_gop_tokens(enc.chunks[:1], t, w, h, predict="sample", seed=6)
    flat = [np.concatenate([x.flatten().numpy() for x in ft]) for ft in s1]
    assert all(np.array_equal(a, np.concatenate([x.flatten().numpy() for x in b])) for a, b in zip(flat, s2))
    assert any(not np.array_equal(a, np.concatenate([x.flatten().numpy() for x in b])) for a, b in zip(flat, s3))
    none = tiny_codec.decode_gop(enc.chunks[:1], t, w, h, predict="none")
    pred = tiny_codec.decode_gop(enc.chunks[:1], t, w, h, predict="argmax")
    assert none.shape == pred.shape and not np.array_equal(none, pred)
    with pytest.raises(ValueError):
        tiny_codec.decode_gop(enc.chunks[:1], t, w, h, predict="bogus")


@pytest.mark.parametrize("w,h", [(177, 99), (1, 1), (17, 33)])
def test_odd_sizes_roundtrip(tiny_codec, w, h):
    clip = moving_clip(2, h, w, seed=w)
    enc = tiny_codec.encode_gop(clip)
    out = tiny_codec.decode_gop(enc.chunks, 2, w, h)
    assert out.shape == (2, h, w, 3)
    assert np.array_equal(out, tiny_codec.decode_tokens(tiny_codec.encode_tokens(clip), w, h))
    part = tiny_codec.decode_gop(enc.chunks[:2], 2, w, h, predict="none")
    assert part.shape == (2, h, w, 3)


def test_coded_bits_match_cross_entropy(tiny_codec):
    clip = moving_clip(8, 256, 256, seed=1)  # 16 tiles: the last scale holds 2048 tokens
    enc = tiny_codec.encode_gop(clip)
    assert enc.token_counts[-1] >= 1000
    from pipeline.codec.container import CHUNK_HEADER_BYTES

    payload = [8 * (len(c) - CHUNK_HEADER_BYTES) for c in enc.chunks]
    ratio = payload[-1] / enc.ce_bits[-1]
    assert 0.99 <= ratio <= 1.01, ratio
    total = sum(payload) / sum(enc.ce_bits)
    assert total <= 1.01 + 64 * len(payload) / sum(enc.ce_bits), total


def test_kv_cached_steps_match_full_pass(tiny_codec, tiny_clip):
    """Decoding scale by scale with a KV cache gives the training-time block-causal full pass."""
    import torch

    from pipeline.codec.context import scale_features

    cfg = tiny_codec.cfg
    ctx = tiny_codec.ctx64
    q = tiny_codec.tok.quant
    toks = tiny_codec.encode_tokens(tiny_clip)
    cur, prev = toks[1], toks[0]
    t = cfg.tile
    sizes = q.sizes(t, t)
    cur_t = [c[None] for c in cur]
    feats = scale_features(cur_t, cfg.n_scales, lambda i, k: q.scale_contrib64(i, k, t, t),
                           (1, cfg.latent_dim, t, t), sizes, torch.float64)
    full = ctx(feats, [p[None] for p in prev], [p[None] for p in prev])
    cache = [None] * len(ctx.blocks)
    steps = torch.cat([ctx.step(k, feats[k], prev[k][None], prev[k][None], cache) for k in range(cfg.n_scales)], 1)
    assert torch.allclose(full, steps, atol=1e-10)
    other = ctx(feats, [None] * cfg.n_scales, [None] * cfg.n_scales)
    assert not torch.allclose(full, other, atol=1e-6)  # the previous frame / keyframe context is used
