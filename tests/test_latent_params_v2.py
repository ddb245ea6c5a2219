"""Parameter-block versions 2-4 of the latent codec: motion coding (`pipeline.latent.mvcode`), the per-GOP
chroma upsampler (`colour.CHROMA_UP`), overlapped-block motion compensation, spread offsets. Older streams keep
decoding: one golden stream per version is pinned in test_golden_stream.py (`tests/golden/latent_v1*.pgv`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.latent import mvcode
from pipeline.latent.codec import PARAM_VERSION, GopParams, LatentCodec
from pipeline.latent.coder import SymbolDecoder, SymbolEncoder, pack_ints
from pipeline.latent.colour import CHROMA_UP, planes_to_rgb, rgb_to_planes
from pipeline.latent.gop import T_WEIGHTS_Q16
from pipeline.latent.motion import Field, predict, upsample


def _random_field(gen: torch.Generator, shape: tuple[int, int], unit: int, symmetric: bool) -> Field:
    mode = torch.randint(0, 3, shape, generator=gen)
    mv_l = torch.randint(-12, 13, (*shape, 2), generator=gen) * unit
    noise = torch.randint(-1, 2, (*shape, 2), generator=gen) * unit
    mv_r = -mv_l + noise if symmetric else torch.randint(-12, 13, (*shape, 2), generator=gen) * unit
    return Field(mode, mv_l, mv_r)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 7)])
def test_motion_fields_round_trip_through_the_range_coder(shape, symmetric):
    """Encoded, range-coded and decoded fields equal the encoder's rebuilt fields, and every vector a block
    uses (left: modes 0/1, right: modes 0/2) equals the original; the symmetric predictor is chosen when the
    right vectors mirror the left ones."""
    gen = torch.Generator().manual_seed(sum(shape) + symmetric)
    unit = 2
    fields = [[_random_field(gen, shape, unit, symmetric) for _ in range(3)], [_random_field(gen, shape, unit,
                                                                                            symmetric)]]
    syms, rebuilt = mvcode.field_symbols(fields, unit)
    enc = SymbolEncoder()
    for _, v in syms:
        y = v.numpy()
        enc.encode(y, np.zeros(len(y), dtype=np.int64), np.full(len(y), 20, dtype=np.int64))
    dec = SymbolDecoder(enc.finish())

    def take(_cls: int, n: int) -> torch.Tensor:
        return torch.from_numpy(dec.decode(np.zeros(n, dtype=np.int64), np.full(n, 20, dtype=np.int64)))

    flags = [int(v[0]) for (c, v), k in zip(syms, range(len(syms))) if c == 0 and k % 4 == 1]
    for lev, rlev in zip(fields, rebuilt):
        for f, r in zip(lev, rlev):
            got = mvcode.decode_field(take, shape, unit)
            assert torch.equal(got.mode, r.mode) and torch.equal(got.mv_l, r.mv_l) and torch.equal(got.mv_r, r.mv_r)
            assert torch.equal(r.mv_l[f.mode != 2], f.mv_l[f.mode != 2])
            assert torch.equal(r.mv_r[f.mode != 1], f.mv_r[f.mode != 1])
            assert torch.equal(r.mv_r[f.mode == 1], -r.mv_l[f.mode == 1])
    if symmetric and shape[0] * shape[1] > 4:
        assert all(flags), flags


def test_unused_vectors_cost_no_symbols():
    """A field whose blocks all predict from the left codes no right vectors, and one all-right no left."""
    shape = (2, 3)
    left_only = Field(torch.ones(shape, dtype=torch.int64), torch.full((*shape, 2), 4), torch.full((*shape, 2), 8))
    syms, _ = mvcode.field_symbols([[left_only]], 1)
    assert [len(v) for _, v in syms] == [6, 1, 12, 0]
    right_only = Field(torch.full(shape, 2), torch.full((*shape, 2), 4), torch.full((*shape, 2), 8))
    syms, _ = mvcode.field_symbols([[right_only]], 1)
    assert [len(v) for _, v in syms] == [6, 1, 0, 12]


def _chroma_420(gen: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    """RGB frames as a 4:2:0 decoder hands them over: luma per pixel, chroma constant over 2×2 blocks."""
    y = gen.integers(40, 200, (t, h, w)).astype(np.float64)
    c = gen.integers(-50, 50, (t, h // 2, w // 2, 2)).repeat(2, 1).repeat(2, 2).astype(np.float64)
    cb, cr = c[..., 0], c[..., 1]
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def test_chroma_upsampler_choice_follows_the_source():
    """4:2:0-decoded content (chroma constant per 2×2 block) picks nearest, and its colour round trip is
    better than bilinear's; a smooth colour ramp picks bilinear."""
    gen = np.random.default_rng(0)
    blocky = _chroma_420(gen, 2, 16, 24)
    planes = list(rgb_to_planes(torch.from_numpy(blocky)))
    assert CHROMA_UP[LatentCodec.chroma_upsampler(blocky, planes)] == "nearest"
    err = [np.abs(planes_to_rgb(*planes, c).numpy().astype(int) - blocky).mean() for c in (0, 1)]
    assert err[1] < err[0] / 2, err
    ramp = np.zeros((2, 16, 24, 3), dtype=np.uint8)
    ramp[..., 0] = np.linspace(0, 255, 24, dtype=np.uint8)[None, None]
    ramp[..., 2] = np.linspace(255, 0, 16, dtype=np.uint8)[None, :, None]
    planes = list(rgb_to_planes(torch.from_numpy(ramp)))
    assert CHROMA_UP[LatentCodec.chroma_upsampler(ramp, planes)] == "bilinear"


def test_parameter_block_versions():
    """The current block round trips with the chroma upsampler, three motion spreads, the OBMC flag, the
    spread offsets, the motion interpolation and the temporal step weights; only the current version is
    written; an unknown version and out-of-range fields are refused."""
    arm = [torch.zeros(s, dtype=torch.int64) for s in ((2, 27), (2,), (2, 2), (2,), (2, 2), (2,))]
    p = GopParams(4096, 2, 0, 2, 32, 2, (3, 4, 5), 9, 6, arm, chroma_up=1, obmc=1, spread_off=(0, -3, 7, 32, -32),
                  interp=1, t_weights=2)
    data = p.to_bytes()
    q, used = GopParams.parse(data)
    assert (q.version, q.chroma_up, q.mv_spread, q.obmc, q.spread_off, q.interp, q.t_weights, used) == (
        PARAM_VERSION, 1, (3, 4, 5), 1, (0, -3, 7, 32, -32), 1, 2, len(data))
    for bad in ({"spread_off": (33,)}, {"t_weights": len(T_WEIGHTS_Q16)}, {"interp": 2}):
        with pytest.raises(ValueError, match="out of range"):
            GopParams.parse(GopParams(4096, 2, 0, 2, 32, 2, (3, 4, 5), 9, 6, arm, **bad).to_bytes())
    with pytest.raises(ValueError, match=f"only parameter block version {PARAM_VERSION}"):
        GopParams(4096, 2, 0, 2, 32, 2, (3, 4), 9, 6, arm, version=1).to_bytes()
    with pytest.raises(ValueError, match="version 7 unknown"):
        GopParams.parse(pack_ints([7] + [1] * 19))


@pytest.mark.parametrize("interp", [0, 1])
@pytest.mark.parametrize("chroma", [False, True])
def test_overlapped_blocks_blend_only_where_motion_differs(chroma, interp):
    """OBMC equals plain block prediction when every block moves alike, stays within the references'
    range with bilinear interpolation (it only interpolates and averages), and differs from plain
    prediction where blocks move differently."""
    gen = torch.Generator().manual_seed(3)
    shape, block = (3, 4), 16  # luma 40×56 (partial blocks at the edges), chroma 20×28
    planes = [torch.randint(-2000, 2000, (20, 28) if chroma else (40, 56), generator=gen) for _ in range(2)]
    ref_l, ref_r = (upsample(x, chroma, interp) for x in planes)
    same = Field(torch.zeros(shape, dtype=torch.int64), torch.full((*shape, 2), 5), torch.full((*shape, 2), -3))
    assert torch.equal(predict(ref_l, ref_r, same, block, chroma, True), predict(ref_l, ref_r, same, block, chroma))
    mixed = Field(torch.randint(0, 3, shape, generator=gen), torch.randint(-40, 40, (*shape, 2), generator=gen),
                  torch.randint(-40, 40, (*shape, 2), generator=gen))
    blended = predict(ref_l, ref_r, mixed, block, chroma, True)
    assert not torch.equal(predict(ref_l, ref_r, mixed, block, chroma), blended)
    if not interp:  # bilinear only interpolates and averages (sharp filters may overshoot)
        lo = min(int(ref_l.sr.min()), int(ref_r.sr.min())) // 4096
        hi = max(int(ref_l.sr.max()), int(ref_r.sr.max())) // 4096
        assert lo <= int(blended.min()) and int(blended.max()) <= hi


def test_spread_offset_fit_is_the_best_offset():
    """`_fit_offset` (descent from 0) finds the offset an exhaustive search finds, on residuals coded with
    spreads that are too wide, too narrow and right."""
    from pipeline.latent.codec import SPREAD_OFFSET_MAX, _fit_offset
    from pipeline.latent.coder import table_bits
    from pipeline.latent.tables import N_SPREAD

    gen = np.random.default_rng(1)
    for scale, spread in ((0.3, 40), (6.0, 5), (2.0, 30)):
        y = np.round(gen.laplace(0, scale, 5000)).astype(np.int64)
        frac, sp = np.zeros(len(y), dtype=np.int64), np.full(len(y), spread)
        every = {o: table_bits(y, frac, np.clip(sp + o, 0, N_SPREAD - 1))
                 for o in range(-SPREAD_OFFSET_MAX, SPREAD_OFFSET_MAX + 1)}
        off, bits = _fit_offset(y, frac, sp)
        assert bits == min(every.values()) and every[off] == bits, (scale, spread, off)


@pytest.mark.parametrize("chroma", [False, True])
def test_sharp_interpolation_is_the_integer_filter(chroma):
    """Parameter block v5's sharp filter: whole-pel positions give the samples, a fractional position gives
    the separable integer filter (taps in 1/64, rounded once in 1/4096) computed directly, and positions
    past the edge (even 2^40 pels away) clamp to it; bilinear through the same path equals the textbook formula."""
    from pipeline.latent.motion import FILTERS, _compensate_at, compensate

    gen = torch.Generator().manual_seed(5)
    ref = torch.randint(-3000, 3000, (12, 14), generator=gen)
    f = 3 if chroma else 2
    for interp in (0, 1):
        up = upsample(ref, chroma, interp)
        off, taps = FILTERS[interp][int(chroma)]
        pi, pj = torch.arange(12).repeat_interleave(14), torch.arange(14).repeat(12)
        assert torch.equal(_compensate_at(up, pi, pj, torch.zeros(len(pi), 2, dtype=torch.int64)), ref.reshape(-1))
        i, j, fy, fx = 5, 6, 1, (1 << f) - 1
        rows = [sum(taps[fx][k] * int(ref[i + off + r, j + off + k]) for k in range(len(taps[0])))
                for r in range(len(taps[0]))]
        want = (sum(taps[fy][r] * rows[r] for r in range(len(rows))) + 2048) >> 12
        got = _compensate_at(up, torch.tensor([i]), torch.tensor([j]), torch.tensor([[fy, fx]]))
        assert int(got) == want
        far = _compensate_at(up, torch.tensor([0]), torch.tensor([13]), torch.tensor([[-50 << f, 50 << f]]))
        assert int(far) == int(ref[0, 13])
        huge = torch.full((12, 14, 2), 1 << 40)  # vectors past any int32 position still clamp to the edge
        assert torch.equal(compensate(up, huge), ref[-1, -1].expand(12, 14))
        assert torch.equal(compensate(up, -huge), ref[0, 0].expand(12, 14))
