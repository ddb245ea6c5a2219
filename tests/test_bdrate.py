"""Bjøntegaard delta rate / quality (pipeline/evaluate/bdrate.py)."""

import math

import numpy as np
import pytest

from pipeline.evaluate.bdrate import bd_quality, bd_rate, pareto_front, pchip_integral

# Published example curves: the libx265 test data of the FAU-LMS `bjontegaard` package README
# (github.com/FAU-LMS/bjontegaard, "Test 1" and the high-bitrate "Test 2" of example_usage.py).
# That package's PCHIP method matches the JCT-VC/JVET CTC Excel sheet to 10 decimals (its README).
# Expected values were computed independently with bjontegaard 1.3.0 (scipy 1.17.1 PchipInterpolator):
#   bd_rate(..., method="pchip") and bd_psnr(..., method="pchip").
RATE_A1 = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A1 = [40.037, 38.615, 36.845, 34.851]
RATE_T1 = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T1 = [40.121, 38.651, 36.970, 34.987]
RATE_A2 = [82472.76, 26875.24, 9487.76, 4593.6]
PSNR_A2 = [43.825, 41.404, 40.037, 38.615]
RATE_T2 = [99896.96, 33952.04, 9787.8, 4469.0]
PSNR_T2 = [44.731, 41.875, 40.121, 38.651]


def test_bd_rate_matches_published_example_test1():
    r = bd_rate(RATE_A1, PSNR_A1, RATE_T1, PSNR_T1)
    assert r.value == pytest.approx(-4.417485350589045, abs=1e-9)
    assert bd_quality(RATE_A1, PSNR_A1, RATE_T1, PSNR_T1).value == pytest.approx(0.11969278542479489, abs=1e-9)


def test_bd_rate_matches_published_example_test2_high_rates():
    assert bd_rate(RATE_A2, PSNR_A2, RATE_T2, PSNR_T2).value == pytest.approx(-4.47218200276197, abs=1e-9)
    assert bd_quality(RATE_A2, PSNR_A2, RATE_T2, PSNR_T2).value == pytest.approx(0.08887484704747745, abs=1e-9)


def test_bd_rate_unequal_point_counts_match_reference():
    # 5 vs 3 points; reference from bjontegaard 1.3.0 pchip, require_matching_points=False.
    r5, q5 = [100, 200, 400, 800, 1600], [30, 32.5, 34.6, 36.2, 37.1]
    r3, q3 = [150, 420, 1300], [31.0, 34.0, 37.5]
    assert bd_rate(r5, q5, r3, q3).value == pytest.approx(18.531164919603384, abs=1e-9)
    assert bd_quality(r5, q5, r3, q3).value == pytest.approx(-0.4644849673619166, abs=1e-9)


def test_bd_rate_analytic_scaled_rates():
    """Curve B = curve A with every rate times 0.9 -> log-rate shift is constant -> exactly -10 %."""
    q = [30.0, 33.0, 35.5, 37.0, 38.2]
    r = [0.01, 0.02, 0.04, 0.08, 0.16]
    res = bd_rate(r, q, [x * 0.9 for x in r], q)
    assert res.value == pytest.approx(-10.0, abs=1e-9)
    assert res.overlap == (30.0, 38.2)
    assert bd_rate(r, q, r, q).value == pytest.approx(0.0, abs=1e-12)
    assert bd_rate([x * 0.9 for x in r], q, r, q).value == pytest.approx(100 / 0.9 - 100, abs=1e-9)


def test_bd_rate_only_over_overlap_and_none_without_it():
    q = [30.0, 32.0, 34.0, 36.0]
    r = [1.0, 2.0, 4.0, 8.0]
    # test curve covers only 33..40 dB: overlap is 33..36
    res = bd_rate(r, q, [3.0, 5.0, 9.0, 20.0], [33.0, 35.0, 37.0, 40.0])
    assert res.overlap == (33.0, 36.0)
    assert res.value is not None
    none = bd_rate(r, q, [10.0, 20.0], [37.0, 39.0])
    assert none.value is None and "no overlap" in none.reason
    few = bd_rate(r, q, [10.0], [37.0])
    assert few.value is None and "too few" in few.reason


def test_pareto_front_drops_dominated_points_and_order():
    r, q = pareto_front([4.0, 1.0, 2.0, 3.0, 2.0], [35.0, 30.0, 29.0, 36.0, 33.0])
    assert list(r) == [1.0, 2.0, 3.0] and list(q) == [30.0, 33.0, 36.0]


def test_pchip_integral_exact_on_linear_and_monotone():
    x = np.array([0.0, 1.0, 3.0, 4.0])
    y = 2 * x + 1  # PCHIP reproduces straight lines exactly
    assert pchip_integral(x, y, 0.5, 3.5) == pytest.approx((3.5**2 + 3.5) - (0.25 + 0.5))
    # monotone data stays monotone: integral over a sub-interval bounded by the knot values
    y2 = np.array([0.0, 0.1, 5.0, 5.1])
    v = pchip_integral(x, y2, 1.0, 3.0)
    assert 0.1 * 2 < v < 5.0 * 2 and math.isfinite(v)
