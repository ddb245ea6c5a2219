"""Training data: frames from the permitted training sets (never clips/dev, never clips/nc)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("PROGVC_DATA", "/work/shared/data"))
# Sources whose content is a dev clip or CC-BY-NC: never used for shipped weights.
EXCLUDED_SOURCES = (
    "co-tracker",
    "carphone",
    "test_cif_I_CABAC",
    "CVPCMNL1",
    "test_qcif_cabac",
    "bus_352x288",
)


def read_video(path: Path, max_frames: int, step: int = 1, max_side: int = 0) -> np.ndarray:
    """Every `step`-th frame of `path`, at most `max_frames`, as (T, H, W, 3) uint8 RGB.

    Frames come from `video_io.iter_frames`, so training sees the colour conversion (source matrix and
    range, rotation) that encoding sees. With `max_side`, frames whose longer side exceeds it are
    resized (bicubic) to fit, with even sides."""
    from PIL import Image

    from pipeline.video_io import iter_frames

    frames = []
    for i, rgb in enumerate(iter_frames(path)):
        if i % step:
            continue
        h, w = rgb.shape[:2]
        if max_side and max(w, h) > max_side:
            s = max_side / max(w, h)
            size = (max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        frames.append(rgb)
        if len(frames) >= max_frames:
            break
    return np.stack(frames)


def train_clips() -> list[np.ndarray]:
    """Every clips/train video as (T, H, W, 3) uint8 (consecutive frames, for the context model)."""
    return [read_video(p, 48) for p in sorted((DATA / "clips" / "train").glob("*.y4m"))]


def train_images() -> list[np.ndarray]:
    """images/train photographs (H, W, 3) uint8."""
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((DATA / "images" / "train").glob("*.png"))]


def source_frames(max_frames: int = 24, max_side: int = 640) -> list[np.ndarray]:
    """Sparse frames of the permitted sources (dev-clip and NC sources excluded), as single images."""
    out = []
    for p in sorted((DATA / "sources").rglob("*")):
        if p.suffix.lower() not in (".mp4", ".webm", ".264", ".y4m") or any(x in str(p) for x in EXCLUDED_SOURCES):
            continue
        try:
            out.extend(read_video(p, max_frames, step=7, max_side=max_side))
        except Exception:  # noqa: BLE001 - an unreadable source just does not contribute
            continue
    return out


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
        h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    c = img[y : y + size, x : x + size]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return c
