"""Motion-field coding of parameter-block version 2: only the vectors a block uses, the right vector
predicted from the left one where that is cheaper.

Per odd frame (`Field`), in this order: the block modes (class 0), a predictor flag (class 0: 0 =
spatial, 1 = symmetric), the left vectors of the blocks that use them (mode 0 or 1; class 1), the right
vectors of the blocks that use them (mode 0 or 2; class 2), each as (dy, dx) residuals in grid units in
raster order. Left vectors are predicted by the causal median (left, up, up-right) of the left field;
right vectors by the causal median of the right field or, with the symmetric flag and in bi-directional
blocks, by minus the block's left vector (an odd frame sits halfway between its references, so constant
velocity gives mv_r = -mv_l). A vector a block does not use is not coded: it is set to its prediction
(left) or to minus the left vector (right), the same on both sides, so medians stay smooth.

Version 1 (every vector coded against the spatial median, zeros for unused right vectors) stays in
`motion.field_symbols` for the streams written with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipeline.latent.motion import MODE_SYMBOL, Field, causal_pred, mode_from_symbol


def _causal(x: list[list[list[int]]], i: int, j: int, k: int) -> int:
    """`motion.causal_pred` of component k at (i, j) of x (nested lists (nby, nbx, 2)): median of left, up,
    up-right."""
    return causal_pred(x, i, j)[k]


def _walk(shape: tuple[int, int], coded: np.ndarray, pred: Callable[[np.ndarray, int, int, int], int],
          fill: Callable[[np.ndarray, int, int, int], int], step: Callable[[int, int, int, int], int]
          ) -> np.ndarray:
    """Raster walk over a (nby, nbx, 2) field: at coded blocks x = pred + step(i, j, k, pred), elsewhere
    x = fill. `step` returns the value (encoder: the true one; decoder: pred + the next residual). `pred` and
    `fill` read the field walked so far as nested lists; returns it as (nby, nbx, 2) int64."""
    x = [[[0, 0] for _ in range(shape[1])] for _ in range(shape[0])]
    is_coded = coded.tolist()
    for i in range(shape[0]):
        for j in range(shape[1]):
            v = x[i][j]
            for k in range(2):
                v[k] = step(i, j, k, pred(x, i, j, k)) if is_coded[i][j] else fill(x, i, j, k)
    return np.array(x, dtype=np.int64).reshape(*shape, 2)


def _right_pred(flag: int, mode: np.ndarray, left: np.ndarray) -> Callable[[list, int, int, int], int]:
    mode_l, left_l = mode.tolist(), left.tolist()

    def pred(x: list[list[list[int]]], i: int, j: int, k: int) -> int:
        return -left_l[i][j][k] if flag and mode_l[i][j] == 0 else _causal(x, i, j, k)

    return pred


def _code(target: np.ndarray, coded: np.ndarray, pred, fill) -> tuple[np.ndarray, list[int]]:
    """Encoder walk: (the field as the decoder will rebuild it, the residuals of the coded blocks)."""
    res: list[int] = []

    def step(i: int, j: int, k: int, p: int) -> int:
        res.append(int(target[i, j, k]) - p)
        return int(target[i, j, k])

    return _walk(coded.shape, coded, pred, fill, step), res


def encode_field(f: Field, unit: int) -> tuple[list[tuple[int, torch.Tensor]], Field]:
    """One odd frame's symbols [(class, int64 symbols)] in coding order, and the field as decoded (unused
    vectors replaced as the decoder does; vectors in quarter-pels, multiples of `unit`)."""
    mode = f.mode.numpy()
    left_t, right_t = f.mv_l.numpy() // unit, f.mv_r.numpy() // unit
    left, res_l = _code(left_t, mode != 2, _causal, _causal)
    left_l = left.tolist()
    fill_r = lambda x, i, j, k: -left_l[i][j][k]  # noqa: E731
    best = None
    for flag in (0, 1):
        right, res_r = _code(right_t, mode != 1, _right_pred(flag, mode, left), fill_r)
        cost = sum(abs(r) for r in res_r)
        if best is None or cost < best[0]:
            best = (cost, flag, right, res_r)
    assert best is not None
    _, flag, right, res_r = best
    syms = [(0, torch.tensor(MODE_SYMBOL)[f.mode.reshape(-1)]), (0, torch.tensor([flag])),
            (1, torch.tensor(res_l, dtype=torch.int64)), (2, torch.tensor(res_r, dtype=torch.int64))]
    return syms, Field(f.mode.clone(), torch.from_numpy(left * unit), torch.from_numpy(right * unit))


def field_symbols(fields: list[list[Field]], unit: int) -> tuple[list[tuple[int, torch.Tensor]], list[list[Field]]]:
    """All levels' symbols in coding order and the fields as the decoder rebuilds them."""
    out, rebuilt = [], []
    for lev in fields:
        rebuilt.append([])
        for f in lev:
            syms, g = encode_field(f, unit)
            out += syms
            rebuilt[-1].append(g)
    return out, rebuilt


def decode_field(take: Callable[[int, int], torch.Tensor], shape: tuple[int, int], unit: int) -> Field:
    """Inverse of `encode_field`; `take(class, n)` returns the next n symbols (int64) of that class."""
    mode_t = mode_from_symbol(take(0, shape[0] * shape[1])).reshape(shape)
    flag = int(take(0, 1)[0])
    if flag not in (0, 1):
        raise ValueError("motion predictor flag out of range")
    mode = mode_t.numpy()

    def reader(cls_: int, n: int) -> Callable[[int, int, int, int], int]:
        it = iter(take(cls_, 2 * n).tolist())
        return lambda i, j, k, p: p + next(it)

    left = _walk(shape, mode != 2, _causal, _causal, reader(1, int((mode != 2).sum())))
    left_l = left.tolist()
    right = _walk(shape, mode != 1, _right_pred(flag, mode, left), lambda x, i, j, k: -left_l[i][j][k],
                  reader(2, int((mode != 1).sum())))
    return Field(mode_t, torch.from_numpy(left * unit), torch.from_numpy(right * unit))
