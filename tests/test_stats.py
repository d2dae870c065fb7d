"""experiments/stats.py: every function against closed forms, scipy, or a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from experiments.stats import (
    first_reach,
    holm,
    mean_ci,
    paired_difference,
    performance_profile,
    profile_area,
)


def test_the_95_percent_interval_covers_the_mean_90_to_98_percent_of_the_time_at_n_10():
    rng = np.random.default_rng(2024)
    draws = rng.normal(3.0, 2.0, size=(2000, 10))
    covered = np.mean([(i.low <= 3.0 <= i.high) for i in map(mean_ci, draws)])
    assert 0.90 <= covered <= 0.98, covered
    assert abs(covered - 0.95) < 0.015  # and it is the t interval's nominal 95%, not 91%


def test_mean_ci_is_the_t_interval_over_the_finite_samples():
    samples = [1.0, 2.0, 4.0, math.inf, 7.0, math.nan]
    interval = mean_ci(samples)
    finite = np.array([1.0, 2.0, 4.0, 7.0])
    low, high = scipy.stats.t.interval(0.95, 3, loc=finite.mean(), scale=scipy.stats.sem(finite))
    assert interval.mean == pytest.approx(3.5)
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert (interval.finite, interval.total) == (4, 6)
    assert interval.format().endswith("(4/6)")
    assert mean_ci([math.inf, math.inf]).format() == "none of 2"
    one = mean_ci([5.0, math.inf])
    assert one.mean == 5.0 and one.low == -math.inf and one.high == math.inf
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=1.0)


def test_paired_difference_is_scipys_paired_t_test_on_the_finite_pairs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 12), rng.normal(0.0, 1.0, 12)
    a[3], b[7] = math.nan, math.inf  # two pairs drop out
    result = paired_difference(a, b)
    keep = np.isfinite(a) & np.isfinite(b)
    assert result.p_value == pytest.approx(scipy.stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert result.interval.mean == pytest.approx(np.mean(a[keep] - b[keep]))
    assert (result.interval.finite, result.interval.total) == (10, 12)
    assert paired_difference([1.0, 2.0], [1.0, 2.0]).p_value == 1.0  # identical: no difference
    assert paired_difference([2.0, 3.0], [1.0, 2.0]).p_value == 0.0  # a constant shift
    assert math.isnan(paired_difference([1.0, math.nan], [0.0, 0.0]).p_value)
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([1.0], [1.0, 2.0])


def test_holm_step_down_adjustment():
    # Holm 1979's rule by hand: sorted 0.01, 0.02, 0.03, 0.5 with m = 4
    adjusted = holm([0.03, 0.01, 0.5, 0.02])
    np.testing.assert_allclose(adjusted, [0.06, 0.04, 0.5, 0.06])
    assert list(holm([0.9, 0.8])) == [1.0, 1.0]  # 2 x 0.8 capped at 1, then monotone
    assert np.isnan(holm([0.01, math.nan])[1]) and holm([0.01, math.nan])[0] == 0.02


def test_holm_keeps_the_family_wise_error_rate():
    rng = np.random.default_rng(7)
    null = rng.uniform(size=(4000, 5))  # five true null hypotheses per family
    rejected_any = np.mean([np.any(holm(row) < 0.05) for row in null])
    assert rejected_any <= 0.05 + 0.01, rejected_any


def test_first_reach():
    assert first_reach([3.0, 2.0, 1.0, 0.5], [0, 10, 20, 30], 1.0) == 20
    assert first_reach([3.0, 2.0], [0, 10], 1.0) == math.inf
    with pytest.raises(ValueError, match="differ"):
        first_reach([1.0], [0, 1], 1.0)


def test_performance_profile_and_its_area():
    times = {"a": [1.0, 2.0, math.inf], "b": [2.0, 1.0, 4.0]}
    taus = np.array([1.0, 2.0, 4.0])
    profile = performance_profile(times, taus)
    np.testing.assert_allclose(profile["a"], [1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(profile["b"], [2 / 3, 1.0, 1.0])
    assert profile_area(np.ones(3), taus) == pytest.approx(1.0)
    # trapezoids over log tau: (1/3 + 2/3)/2 and (2/3 + 2/3)/2, each ln 2 wide, over ln 4
    assert profile_area(profile["a"], taus) == pytest.approx((0.5 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="positive"):
        performance_profile({"a": [0.0]}, taus)
