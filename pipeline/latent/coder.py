"""Range coding of latent symbols with the fixed tables, and compact coding of integer parameters.

Symbols y in [-E, E] are coded as categories y + E of the table row (frac, spread); constriction's
categorical model takes the float64 rows of `tables.probs()` (integer weights divided once).
"""

from __future__ import annotations

import constriction
import numpy as np

from pipeline.latent import tables

_FIXED: dict[int, object] = {}
ESCAPE_DIGITS = 3  # |y| >= E: |y| - E follows as 3 uniform bytes (values up to E + 2^24 - 1)
_UNIFORM = constriction.stream.model.Categorical(np.full(256, 1 / 256), perfect=False)


def _model(row: int):
    """The fixed categorical model of table row `row` = frac * N_SPREAD + spread (cached)."""
    m = _FIXED.get(row)
    if m is None:
        p = tables.probs().reshape(-1, tables.N_SYMBOLS)[row]
        m = _FIXED[row] = constriction.stream.model.Categorical(p, perfect=False)
    return m


def _groups(frac: np.ndarray, spread: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Positions grouped by table row, rows ascending, positions ascending within a row: the coding order
    of one batch (both sides know frac/spread of the whole batch before its symbols)."""
    row = (frac * tables.N_SPREAD + spread).astype(np.int16)  # < 2^9: numpy's stable sort is a radix sort
    order = np.argsort(row, kind="stable")
    rs = row[order]
    cuts = [0, *(np.flatnonzero(rs[1:] != rs[:-1]) + 1).tolist(), len(rs)]
    return [(int(rs[a]), order[a:b]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


class SymbolEncoder:
    def __init__(self) -> None:
        self.enc = constriction.stream.queue.RangeEncoder()

    def encode(self, y: np.ndarray, frac: np.ndarray, spread: np.ndarray) -> None:
        """Code one batch (one checkerboard pass): symbols grouped by table row, see `_groups`."""
        if len(y) == 0:
            return
        e = tables.SYMBOL_RANGE
        sym = (np.clip(y, -e, e) + e).astype(np.int32)
        for row, idx in _groups(frac, spread):
            self.enc.encode(sym[idx], _model(row))
        esc = np.abs(y[np.abs(y) >= e]) - e  # escapes, in position order: |y| - E in ESCAPE_DIGITS bytes
        if len(esc):
            if esc.max() >= 1 << (8 * ESCAPE_DIGITS):
                raise ValueError(f"latent value {int(esc.max()) + e} beyond the escape range")
            digits = np.stack([(esc >> (8 * i)) & 255 for i in range(ESCAPE_DIGITS)], 1).reshape(-1)
            self.enc.encode(digits.astype(np.int32), _UNIFORM)

    def finish(self) -> bytes:
        return self.enc.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    def __init__(self, payload: bytes) -> None:
        words = np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<u4").astype(np.uint32)
        self.dec = constriction.stream.queue.RangeDecoder(words)

    def decode(self, frac: np.ndarray, spread: np.ndarray) -> np.ndarray:
        out = np.empty(len(frac), dtype=np.int64)
        for row, idx in _groups(frac, spread):
            out[idx] = self.dec.decode(_model(row), len(idx))
        e = tables.SYMBOL_RANGE
        out -= e
        at = np.flatnonzero(np.abs(out) >= e)
        if len(at):
            d = np.asarray(self.dec.decode(_UNIFORM, len(at) * ESCAPE_DIGITS), dtype=np.int64)
            d = d.reshape(-1, ESCAPE_DIGITS)
            extra = sum(d[:, i] << (8 * i) for i in range(ESCAPE_DIGITS))
            out[at] += np.sign(out[at]) * extra
        return out


def table_bits(y: np.ndarray, frac: np.ndarray, spread: np.ndarray) -> float:
    """Ideal code length (bits) of symbols under the tables, escapes included."""
    e = tables.SYMBOL_RANGE
    yc = np.clip(y, -e, e)
    esc = 8.0 * ESCAPE_DIGITS * int((np.abs(y) >= e).sum())
    return float(-np.log2(tables.probs()[frac, spread, yc + e]).sum()) + esc


# ---- integer parameters: signed exp-Golomb (order 0) bit packing --------------------------------------------


def pack_ints(values: list[int]) -> bytes:
    """Signed integers → bytes (zig-zag + exp-Golomb; u32 count first)."""
    bits: list[str] = []
    for v in values:
        u = 2 * v if v >= 0 else -2 * v - 1
        b = bin(u + 1)[2:]
        bits.append("0" * (len(b) - 1) + b)
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    body = int(s, 2).to_bytes(len(s) // 8, "big") if s else b""
    return len(values).to_bytes(4, "little") + body


def unpack_ints(data: bytes, offset: int = 0) -> tuple[list[int], int]:
    """Inverse of pack_ints → (values, offset after them). ValueError if truncated."""
    if offset + 4 > len(data):
        raise ValueError("parameter block truncated")
    n = int.from_bytes(data[offset : offset + 4], "little")
    out = []
    bits = "".join(f"{b:08b}" for b in data[offset + 4 :])
    i = 0
    for _ in range(n):
        z = 0
        while i < len(bits) and bits[i] == "0":
            z += 1
            i += 1
        if i + z + 1 > len(bits) or z > 40:
            raise ValueError("parameter block truncated or damaged")
        u = int(bits[i : i + z + 1], 2) - 1
        i += z + 1
        out.append(u // 2 if u % 2 == 0 else -(u + 1) // 2)
    return out, offset + 4 + (i + 7) // 8
