"""Quality metrics (pipeline/metrics.py) on real arrays; VMAF through imageio-ffmpeg's real libvmaf."""

import math

import numpy as np
import pytest

from pipeline import metrics


def textured_clip(T: int = 6, H: int = 144, W: int = 176, seed: int = 0) -> np.ndarray:
    """Deterministic natural-ish content: moving gradients + fixed texture, (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    tex = rng.normal(0, 12, (H, W))
    frames = []
    for t in range(T):
        base = 110 + 50 * np.sin((xx + 3 * t) / 17.0) * np.cos((yy - 2 * t) / 23.0) + tex
        rgb = np.stack([base, 0.8 * base + 30, 1.1 * base - 10], axis=-1)
        frames.append(np.clip(rgb, 0, 255))
    return np.stack(frames).round().astype(np.uint8)


def test_psnr_identical_is_capped():
    x = textured_clip(3)
    assert np.all(metrics.psnr_y(x, x) == metrics.PSNR_MAX_DB)
    assert np.all(metrics.psnr_rgb(x, x) == metrics.PSNR_MAX_DB)


def test_psnr_of_known_error_is_exact():
    rng = np.random.default_rng(1)
    ref = rng.integers(10, 246, (4, 32, 40, 3)).astype(np.uint8)
    d = 5
    sign = rng.choice([-1, 1], size=(4, 32, 40, 1))  # same sign on R, G, B -> luma error exactly d
    dist = (ref.astype(int) + d * sign).astype(np.uint8)
    expected = 20 * math.log10(255 / d)
    np.testing.assert_allclose(metrics.psnr_rgb(ref, dist), expected, atol=1e-9)
    np.testing.assert_allclose(metrics.psnr_y(ref, dist), expected, atol=1e-9)


def test_psnr_of_gaussian_noise_matches_sigma():
    rng = np.random.default_rng(2)
    ref = np.full((2, 64, 64, 3), 128, dtype=np.uint8)
    sigma = 4.0
    noise = rng.normal(0, sigma, ref.shape).round()
    dist = (ref + noise).astype(np.uint8)
    expected = 10 * math.log10(255**2 / (sigma**2 + 1 / 12))  # rounding adds 1/12 LSB^2
    assert metrics.psnr_rgb(ref, dist).mean() == pytest.approx(expected, abs=0.1)
    # independent channel noise is averaged by the luma weights: var = sigma^2 * sum(w^2)
    w2 = float(np.sum(np.array([0.299, 0.587, 0.114]) ** 2))
    expected_y = 10 * math.log10(255**2 / ((sigma**2 + 1 / 12) * w2))
    assert metrics.psnr_y(ref, dist).mean() == pytest.approx(expected_y, abs=0.15)


def test_shape_mismatch_is_refused():
    x = textured_clip(2)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr_y(x, x[:, :-1])


def test_ms_ssim_identical_noisy_and_small_frames():
    x = textured_clip(3)  # QCIF: smaller side 144 < 160 -> 9-tap window, 5 scales
    assert metrics.ms_ssim_window(144, 176) == 9
    assert metrics.ms_ssim_window(288, 352) == 11
    assert metrics.ms_ssim_window(32, 64) is None
    np.testing.assert_allclose(metrics.ms_ssim(x, x), 1.0, atol=1e-5)
    rng = np.random.default_rng(3)
    noisy = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    v = metrics.ms_ssim(x, noisy)
    assert v.shape == (3,) and np.all(v < 0.99) and np.all(v > 0.3)
    tiny = x[:, :24, :24].copy()
    np.testing.assert_allclose(metrics.ms_ssim(tiny, tiny), 1.0, atol=1e-5)
    assert np.all(metrics.ms_ssim(tiny, noisy[:, :24, :24].copy()) < 0.99)


@pytest.mark.skipif(not metrics.vmaf_available(), reason="imageio-ffmpeg's FFmpeg lacks libvmaf")
def test_vmaf_identical_near_100_and_degraded_lower():
    x = textured_clip(6)
    same = metrics.vmaf(x, x)
    assert same.shape == (6,)
    assert same.mean() > 95
    rng = np.random.default_rng(4)
    degraded = np.clip(x.astype(np.float64) + rng.normal(0, 25, x.shape), 0, 255).astype(np.uint8)
    worse = metrics.vmaf(x, degraded)
    assert worse.mean() < same.mean() - 10


def test_compute_metrics_and_clip_means():
    x = textured_clip(2)
    out = metrics.compute_metrics(x, x, ["psnr_y", "ms_ssim"])
    assert set(out) == {"psnr_y", "ms_ssim"}
    means = metrics.clip_means(out)
    assert means["psnr_y"] == metrics.PSNR_MAX_DB and means["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute_metrics(x, x, ["lpips"])


def test_tfd_identical_is_zero_and_frame0_is_excluded():
    x = textured_clip(4)
    v = metrics.tfd(x, x)
    assert v.shape == (4,) and math.isnan(v[0])
    np.testing.assert_array_equal(v[1:], 0.0)
    assert metrics.clip_means({"tfd": v}) == {"tfd": 0.0}
    assert "tfd" in metrics.METRICS and "tfd" in metrics.LOWER_IS_BETTER
    assert math.isnan(metrics.clip_means(metrics.compute_metrics(x[:1], x[:1], ["tfd"]))["tfd"])


def test_tfd_of_frozen_decode_is_source_motion_energy():
    x = textured_clip(5)
    frozen = np.repeat(x[:1], 5, axis=0)  # decoder shows frame 0 throughout
    y = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    motion_T = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2))
    v = metrics.tfd(x, frozen)
    np.testing.assert_allclose(v[1:], motion_T, rtol=1e-12)
    assert motion_T.min() > 1.0  # the clip does move, so the test can fail
    # clip mean = mean over frames 1..T-1, also through compute_metrics/clip_means and JSON-style None
    per = metrics.compute_metrics(x, frozen, ["tfd", "psnr_y"])
    assert metrics.clip_means(per)["tfd"] == pytest.approx(motion_T.mean())
    as_json = [None] + [float(a) for a in per["tfd"][1:]]
    assert metrics.clip_means({"tfd": as_json})["tfd"] == pytest.approx(motion_T.mean())


def test_tfd_ignores_constant_error_but_sees_flicker():
    rng = np.random.default_rng(5)
    ref = rng.integers(20, 230, (4, 24, 32, 3)).astype(np.uint8)
    offset = (ref.astype(int) + 17).astype(np.uint8)  # same error in every frame: no temporal artefact
    np.testing.assert_allclose(metrics.tfd(ref, offset)[1:], 0.0, atol=1e-12)
    assert metrics.psnr_y(ref, offset).mean() < 24  # large static error, still tfd 0
    flicker = ref.astype(int)
    flicker[1::2] += 6  # odd frames brighter by 6 levels in R, G, B -> luma change error 6 every frame
    np.testing.assert_allclose(metrics.tfd(ref, flicker.astype(np.uint8))[1:], 6.0, atol=1e-9)
