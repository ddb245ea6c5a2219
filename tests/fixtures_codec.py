"""Fixtures for the codec area (see tests/conftest.py): tiny random models and small synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest


def moving_clip(t: int = 4, h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """A non-trivial (T, H, W, 3) uint8 clip: smooth colour gradients and a moving textured square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w, 1), yy / max(h, 1), 0.5 + 0.5 * np.sin((xx + yy) / 7.0)], -1) * 200.0
    tex = rng.integers(0, 55, (h, w, 3)).astype(np.float32)
    frames = []
    for i in range(t):
        f = base + tex
        y0, x0 = (5 + 3 * i) % max(h, 1), (7 + 4 * i) % max(w, 1)
        f[y0 : y0 + h // 3, x0 : x0 + w // 3] = 255.0 - f[y0 : y0 + h // 3, x0 : x0 + w // 3]
        frames.append(f)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_codec():
    """A tiny random codec (CodecConfig.tiny(), seed 0): 64×64, 4 frames encode in well under a second."""
    from pipeline.codec import Codec, CodecConfig

    return Codec.random(CodecConfig.tiny(), seed=0)


@pytest.fixture(scope="session")
def other_tiny_codec():
    """A second tiny codec with different weights (another model id)."""
    from pipeline.codec import Codec, CodecConfig

    return Codec.random(CodecConfig.tiny(), seed=1)


@pytest.fixture(scope="session")
def tiny_clip() -> np.ndarray:
    return moving_clip(4, 64, 64)


@pytest.fixture(scope="session")
def tiny_weights(tiny_codec, tmp_path_factory) -> str:
    """The tiny codec saved as a weights file (for --weights / Codec.load)."""
    p = tmp_path_factory.mktemp("weights") / "tiny.pt"
    tiny_codec.save(p)
    return str(p)


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> str:
    """A 6-frame 64×48 .y4m clip written with PyAV (real file I/O)."""
    from pipeline.video_io import write_video

    p = tmp_path_factory.mktemp("clips") / "tiny.y4m"
    write_video(p, moving_clip(6, 48, 64, seed=3), 25)
    return str(p)
