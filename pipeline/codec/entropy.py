"""Deterministic integer probability tables and constriction range coding.

Probabilities come from float64 logits quantized to a 1/16 grid: q = floor(16·logit), distance
d = clip(max q − q, 0, 256), integer weight w = LUT[d] (round(2²²·exp(−d/16)), at least 1),
p = w / Σw in float64. Any process computing the same q computes bit-identical p.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

LUT_RANGE = 256
LUT = np.maximum(1, np.round(2.0**22 * np.exp(-np.arange(LUT_RANGE + 1) / 16.0))).astype(np.int64)
_MODEL = constriction.stream.model.Categorical(perfect=False)


def quantize_logits(logits: torch.Tensor) -> np.ndarray:
    """(n, V) float64 logits → (n, V) int64 weights from the fixed LUT."""
    q = torch.floor(logits.double() * 16.0).to(torch.int64).numpy()
    d = np.clip(q.max(1, keepdims=True) - q, 0, LUT_RANGE)
    return LUT[d]


def weights_to_probs(w: np.ndarray) -> np.ndarray:
    return w / w.sum(1, keepdims=True, dtype=np.int64).astype(np.float64)


def cross_entropy_bits(w: np.ndarray, symbols: np.ndarray) -> float:
    p = w[np.arange(len(symbols)), symbols] / w.sum(1, dtype=np.int64)
    return float(-np.log2(p).sum())


def argmax_symbols(w: np.ndarray) -> np.ndarray:
    return w.argmax(1).astype(np.int64)


def sample_symbols(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One symbol per row drawn with integer weights w (exact integer arithmetic)."""
    c = np.cumsum(w, 1)
    r = rng.integers(0, c[:, -1])
    return (c <= r[:, None]).sum(1).astype(np.int64)


class ScaleEncoder:
    """Range-codes the tokens of one (GOP, scale) chunk, frame after frame."""

    def __init__(self) -> None:
        self.enc = constriction.stream.queue.RangeEncoder()
        self.count = 0

    def encode(self, symbols: np.ndarray, w: np.ndarray) -> None:
        if len(symbols):
            self.enc.encode(symbols.astype(np.int32), _MODEL, weights_to_probs(w))
            self.count += len(symbols)

    def finish(self) -> bytes:
        return self.enc.get_compressed().astype("<u4").tobytes()


class ScaleDecoder:
    def __init__(self, payload: bytes) -> None:
        words = np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<u4").astype(np.uint32)
        self.dec = constriction.stream.queue.RangeDecoder(words)

    def decode(self, w: np.ndarray) -> np.ndarray:
        if len(w) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.dec.decode(_MODEL, weights_to_probs(w)), dtype=np.int64)
