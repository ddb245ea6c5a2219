"""Resource bounds (cheap versions of bench/memory_4k.py, tiny codec, each in a fresh subprocess so peak
RSS is that measurement's own): memory flat in video length, and a 3840×2160 frame within a bound."""

from __future__ import annotations

import pytest

from bench.memory_4k import measure
from tests.corpus import record

FLAT_PCT = 5.0  # peak RSS of the longer video may exceed the shorter one's by at most this


@pytest.mark.timeout(600)
def test_memory_flat_in_video_length():
    """encode_video + decode_video stream GOP by GOP: 2 GOPs vs 8 GOPs, peak RSS within a few %. Holding
    the 32 frames as float32 would add ~29 MB (~10% of the ~300 MB peak), so a non-streaming path fails."""
    short = measure("length", "tiny", w=320, h=240, gops=2, gop=4)
    long = measure("length", "tiny", w=320, h=240, gops=8, gop=4)
    growth = 100 * (long["peak_rss_mb"] / short["peak_rss_mb"] - 1)
    record("bounds", {"check": "memory vs video length (tiny codec, 320x240, 8 vs 32 frames)",
                      "short_peak_mb": short["peak_rss_mb"], "long_peak_mb": long["peak_rss_mb"],
                      "growth_pct": round(growth, 2)})
    assert long["pgv_bytes"] > 3 * short["pgv_bytes"]  # the long one really did 4x the work
    assert growth < FLAT_PCT, (short, long)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_4k_frame_tiny_codec_within_bound():
    """One 3840×2160 frame, all scales, encode + decode with the tiny codec: peak RSS under 2 GiB above
    the process's own baseline (tiles bound the context model's memory; the CNNs run on the whole frame)."""
    r = measure("frame", "tiny", w=3840, h=2160)
    record("bounds", {"check": "3840x2160 frame, tiny codec", **r})
    assert r["peak_rss_mb"] - r["baseline_rss_mb"] < 2048, r
