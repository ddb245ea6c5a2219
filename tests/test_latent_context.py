"""The latent codec's context model: `BandContext.arm` (what the encoder codes with and the decoder decodes with)
gives exactly `arm_int` of `BandContext.rows` (what the encoder fits the ARM to), on random bands with parents
short of or larger than the band, siblings and cross bands of other sizes, mostly-zero and beyond-clamp values."""

from __future__ import annotations

import pytest
import torch

from pipeline.latent.context import N_FEATURES, BandContext, BandInfo, IntARM, arm_int
from pipeline.latent.gop import pass_positions


def _values(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """int64, ~70 % zeros, a few beyond ±CTX_CLAMP."""
    x = torch.randint(-40, 41, shape, generator=g)
    x[torch.rand(shape, generator=g) < 0.7] = 0
    x[torch.rand(shape, generator=g) < 0.02] *= 500
    return x


def _arm_params(g: torch.Generator, hidden: int, w_bits: int) -> list[torch.Tensor]:
    shapes = [(hidden, N_FEATURES), (hidden,), (hidden, hidden), (hidden,), (2, hidden), (2,)]
    scale = [1 << 8, 1 << 10, 1 << w_bits, 1 << 10, 1 << w_bits, 1 << 10]
    q = [torch.randint(-m, m + 1, s, generator=g) for s, m in zip(shapes, scale)]
    q[5][1] += 20 << 8  # mid-table spreads
    return q


@pytest.mark.parametrize("seed", range(6))
def test_arm_equals_arm_int_of_rows(seed):
    g = torch.Generator().manual_seed(seed)
    n, h, w = 1 + seed % 3, 5 + seed, 9 - seed // 2
    dh, dw = (seed % 3) - 1, ((seed + 1) % 3) - 1  # the parent one row/column short, exact or larger
    parent = _values(g, (n, max(1, (h + 1) // 2 + dh), max(1, (w + 1) // 2 + dw)))
    sib = (_values(g, (n, h + dh, w)), _values(g, (n, h, w + dw)) if seed % 2 else None)
    cross = (_values(g, (n, h, w - 1)), None) if seed > 2 else (None, None)
    tpar = _values(g, (1, h, w)) if seed % 2 else None
    info = BandInfo(1 + seed % 3, 1 + seed % 4, seed > 2, seed % 2 == 1)
    ctx = BandContext((n, h, w), info, parent if seed != 4 else None, sib, cross, tpar,
                      torch.randint(0, 4, (n,), generator=g))
    cur = _values(g, (n, h, w))
    for w1_bits, w_bits in ((8, 5), (12, 8)):
        q = _arm_params(g, 5, w_bits)
        arm = IntARM.of(q, w1_bits, w_bits)
        for second in (False, True):
            pos = pass_positions(n, h, w, second)
            got = ctx.arm(cur, pos, second, arm)
            want = arm_int(ctx.rows(cur, pos, second), q, w1_bits, w_bits)
            for a, b in zip(got, want):
                assert torch.equal(a, b)
            assert len(set(want[0].tolist())) > 2 and len(set(want[2].tolist())) > 1  # not vacuous
