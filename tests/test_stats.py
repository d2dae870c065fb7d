"""experiments/stats.py: every function against closed forms, scipy, published values, or a
seeded simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from experiments.stats import (
    ALGOPERF_TAUS,
    Interval,
    binomial_ci,
    first_reach,
    holm,
    holm_paired,
    mean_ci,
    paired_difference,
    performance_profile,
    profile_area,
    profile_band,
    proportion_difference,
    slope_ci,
)

# --- means and paired differences --------------------------------------------------------


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


def test_interval_format():
    assert Interval(0.5, 0.25, 0.75, 10, 10).format() == "0.5 [0.25, 0.75]"
    assert Interval(0.5, 0.25, 0.75, 7, 10).format(precision=2) == "0.5 [0.25, 0.75] (7/10)"


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


# --- Holm ----------------------------------------------------------------------------------


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


def _excludes_zero(interval: Interval) -> bool:
    return interval.low > 0 or interval.high < 0


def test_holm_paired_is_holm_on_paired_t_tests_with_intervals_at_the_step_down_levels():
    rng = np.random.default_rng(3)
    baseline = rng.normal(0.0, 1.0, 10)
    others = {  # other - baseline has mean 2, 0.9, 0 and 0: p-values in that order
        name: baseline + rng.normal(shift, 1.0, 10)
        for name, shift in [("z", 2.0), ("b", 0.9), ("a", 0.0), ("c", 0.0)]
    }
    result = holm_paired(baseline, others)
    assert list(result) == ["z", "b", "a", "c"]  # the order of `others`
    p = [scipy.stats.ttest_rel(others[n], baseline).pvalue for n in result]
    assert [r.p_value for r in result.values()] == pytest.approx(p)
    assert [r.adjusted_p for r in result.values()] == pytest.approx(holm(p))
    # the smallest p-value is tested at alpha / m: its interval is the 1 - 0.05/4 t interval
    smallest = min(result, key=lambda n: result[n].p_value)
    expected = paired_difference(others[smallest], baseline, confidence=1 - 0.05 / 4).interval
    assert result[smallest].interval == pytest.approx(expected)
    assert result[smallest].interval.mean == pytest.approx(np.mean(others[smallest] - baseline))


def test_holm_paired_level_after_the_first_non_rejection_stays_put():
    # by hand: p-values 0.001 (rejected at 0.05/3), 0.04 (not rejected at 0.05/2) and 0.3;
    # the third keeps the second's level 1 - 0.05/2 instead of moving on to 0.95
    baseline = np.zeros(6)
    shifts = {"first": 0.001, "second": 0.04, "third": 0.3}
    noise = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0])  # mean 0, sd sqrt(6/5)
    sem = math.sqrt(6 / 5) / math.sqrt(6)
    others = {  # a mean difference with exactly the two-sided p-value asked for
        name: noise + scipy.stats.t.isf(p / 2, 5) * sem for name, p in shifts.items()
    }
    result = holm_paired(baseline, others)
    assert [result[n].p_value for n in shifts] == pytest.approx(list(shifts.values()))
    for name, level in [("first", 1 - 0.05 / 3), ("second", 1 - 0.05 / 2), ("third", 0.975)]:
        expected = paired_difference(others[name], baseline, confidence=level).interval
        assert result[name].interval == pytest.approx(expected), name


def test_holm_paired_interval_excludes_zero_exactly_when_the_adjusted_p_is_below_alpha():
    rng = np.random.default_rng(11)
    outcomes = []
    for _ in range(400):
        m, n = rng.integers(1, 6), rng.integers(3, 13)
        baseline = rng.normal(0.0, 1.0, n)
        others = {f"o{i}": baseline + rng.normal(rng.normal(0, 0.8), 1.0, n) for i in range(m)}
        for comparison in holm_paired(baseline, others).values():
            outcomes.append((comparison.adjusted_p < 0.05, _excludes_zero(comparison.interval)))
    rejected, excluded = np.array(outcomes).T
    np.testing.assert_array_equal(rejected, excluded)
    assert 100 < rejected.sum() < len(outcomes) - 100  # both outcomes seen many times


def test_holm_paired_intervals_keep_the_family_wise_error_rate_on_nulls():
    rng = np.random.default_rng(5)
    families = 1500
    any_excluding = 0
    for _ in range(families):
        baseline = rng.normal(0.0, 1.0, 10)
        others = {f"o{i}": baseline + rng.normal(0.0, 1.0, 10) for i in range(4)}
        any_excluding += any(
            _excludes_zero(c.interval) for c in holm_paired(baseline, others).values()
        )
    # Holm keeps it at or below 5%; uncorrected 95% intervals would give about 1 - 0.95^4 = 19%
    assert any_excluding / families <= 0.065, any_excluding / families


def test_holm_paired_edge_cases():
    assert holm_paired([1.0, 2.0], {}) == {}
    result = holm_paired([0.0, 0.0, 0.0], {"few": [1.0, math.nan, math.inf], "ok": [1.0, 1.2, 0.9]})
    assert math.isnan(result["few"].p_value) and math.isnan(result["few"].adjusted_p)
    assert not _excludes_zero(result["few"].interval)
    assert (result["few"].interval.finite, result["few"].interval.total) == (1, 3)
    with pytest.raises(ValueError, match="same shape"):
        holm_paired([0.0, 1.0], {"a": [1.0]})


# --- rates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_binomial_ci_is_scipys_wilson_interval(confidence):
    for n in (1, 2, 7, 10, 50, 333):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            interval = binomial_ci(k, n, confidence=confidence)
            oracle = scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
            assert (interval.low, interval.high) == pytest.approx((oracle.low, oracle.high))
            assert interval.mean == k / n and (interval.finite, interval.total) == (n, n)
    z2 = scipy.stats.norm.ppf(0.975) ** 2
    assert binomial_ci(0, 20) == pytest.approx((0.0, 0.0, z2 / (20 + z2), 20, 20))  # closed form


def test_binomial_ci_rejects_impossible_counts():
    for k, n in [(-1, 5), (6, 5), (0, 0)]:
        with pytest.raises(ValueError):
            binomial_ci(k, n)
    with pytest.raises(ValueError, match="confidence"):
        binomial_ci(1, 2, confidence=0.0)


def test_binomial_ci_covers_the_rate_92_to_98_percent_of_the_time_at_n_50():
    rng = np.random.default_rng(2025)
    successes = rng.binomial(50, 0.3, size=4000)
    covered = np.mean(
        [binomial_ci(int(k), 50).low <= 0.3 <= binomial_ci(int(k), 50).high for k in successes]
    )
    assert 0.92 <= covered <= 0.98, covered


# Newcombe 1998 (Statistics in Medicine 17:873), Table II, method 10 (hybrid score)
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_proportion_difference_reproduces_newcombes_published_intervals(counts, published):
    interval = proportion_difference(*counts)
    assert (round(interval.low, 4), round(interval.high, 4)) == published
    k1, n1, k2, n2 = counts
    assert interval.mean == pytest.approx(k1 / n1 - k2 / n2)
    assert (interval.finite, interval.total) == (n1 + n2, n1 + n2)


def test_proportion_difference_is_built_from_the_two_wilson_intervals():
    # by hand from scipy's Wilson bounds, at 90%
    (l1, u1), (l2, u2) = (
        scipy.stats.binomtest(k, n).proportion_ci(0.9, method="wilson")
        for k, n in [(7, 40), (19, 45)]
    )
    p1, p2 = 7 / 40, 19 / 45
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    interval = proportion_difference(7, 40, 19, 45, confidence=0.9)
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert interval.high < 0  # the second rate is clearly higher
    with pytest.raises(ValueError):
        proportion_difference(3, 2, 1, 2)


# --- slopes --------------------------------------------------------------------------------


def test_slope_ci_is_scipys_linregress_with_a_t_interval():
    rng = np.random.default_rng(1)
    x = np.log(np.logspace(0, 4, 12))
    y = 0.5 * x + rng.normal(0.0, 0.3, 12)
    x[2], y[5] = math.nan, math.inf  # two pairs drop out
    keep = np.isfinite(x) & np.isfinite(y)
    fit = scipy.stats.linregress(x[keep], y[keep])
    half = scipy.stats.t.ppf(0.975, keep.sum() - 2) * fit.stderr
    interval = slope_ci(x, y)
    assert interval.mean == pytest.approx(fit.slope)
    assert (interval.low, interval.high) == pytest.approx((fit.slope - half, fit.slope + half))
    assert (interval.finite, interval.total) == (10, 12)
    half90 = scipy.stats.t.ppf(0.95, keep.sum() - 2) * fit.stderr
    assert slope_ci(x, y, confidence=0.9).high == pytest.approx(fit.slope + half90)


def test_slope_ci_covers_the_true_slope_at_n_6():
    rng = np.random.default_rng(9)
    x = np.arange(6.0)
    draws = 2.0 - 1.5 * x + rng.normal(0.0, 1.0, size=(2000, 6))
    covered = np.mean([(i.low <= -1.5 <= i.high) for i in (slope_ci(x, y) for y in draws)])
    assert 0.93 <= covered <= 0.97, covered


def test_slope_ci_with_too_few_points():
    exact = slope_ci([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])  # on a line: zero residual
    assert exact == pytest.approx((2.0, 2.0, 2.0, 3, 3))
    two = slope_ci([1.0, 2.0, math.nan], [1.0, 3.0, 0.0])
    assert two.mean == pytest.approx(2.0) and (two.low, two.high) == (-math.inf, math.inf)
    for x, y in [([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([math.nan] * 3, [1.0] * 3)]:
        undetermined = slope_ci(x, y)
        assert math.isnan(undetermined.mean)
        assert (undetermined.low, undetermined.high) == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="same length"):
        slope_ci([1.0, 2.0], [1.0])


# --- time to target and performance profiles --------------------------------------------


def test_first_reach():
    assert first_reach([3.0, 2.0, 1.0, 0.5], [0, 10, 20, 30], 1.0) == 20
    assert first_reach([3.0, 2.0], [0, 10], 1.0) == math.inf
    with pytest.raises(ValueError, match="differ"):
        first_reach([1.0], [0, 1], 1.0)


def test_performance_profile_and_its_algoperf_area():
    times = {"a": [1.0, 2.0, math.inf], "b": [2.0, 1.0, 4.0]}
    taus = np.array([1.0, 2.0, 4.0])
    profile = performance_profile(times, taus)
    np.testing.assert_allclose(profile["a"], [1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(profile["b"], [2 / 3, 1.0, 1.0])
    assert profile_area(np.ones(3), taus) == pytest.approx(1.0)
    # trapezoids over tau (AlgoPerf): (1/3 + 2/3)/2 * 1 + (2/3 + 2/3)/2 * 2, over 4 - 1
    assert profile_area(profile["a"], taus) == pytest.approx((0.5 + 4 / 3) / 3)
    # a step from 0 to 1 at tau = 2 on AlgoPerf's grid: 2/3 of the area over [1, 4]
    step = (ALGOPERF_TAUS >= 2.0).astype(float)
    assert profile_area(step, ALGOPERF_TAUS) == pytest.approx(2 / 3, abs=0.05 / 3 / 2 + 1e-12)
    assert (ALGOPERF_TAUS[0], ALGOPERF_TAUS[-1]) == (1.0, 4.0)
    with pytest.raises(ValueError, match="positive"):
        performance_profile({"a": [0.0]}, taus)
    with pytest.raises(ValueError, match="same"):
        performance_profile({"a": [1.0, 2.0], "b": [1.0]}, taus)
    with pytest.raises(ValueError, match="differ"):
        profile_area(np.ones(2), taus)


def _band_oracle(times, taus, columns, confidence):
    """The bootstrap by loops: medians of the resampled seeds, then Dolan-More ratios."""
    names = list(times)
    curves = {n: [] for n in names}
    for picked in columns:
        medians = {n: np.median(times[n][:, picked], axis=1) for n in names}
        best = np.min([medians[n] for n in names], axis=0)
        for n in names:
            ratios = np.where(np.isinf(best), np.inf, medians[n] / best)
            curves[n].append([np.mean(ratios <= tau) for tau in taus])
    tail = (1 - confidence) / 2
    return {n: np.quantile(np.array(c), [tail, 1 - tail], axis=0) for n, c in curves.items()}


def test_profile_band_is_a_paired_percentile_bootstrap_over_seeds():
    rng = np.random.default_rng(4)
    times = {
        "fast": rng.lognormal(0.0, 0.5, size=(6, 8)),
        "slow": rng.lognormal(0.4, 0.5, size=(6, 8)),
        "flaky": np.where(rng.uniform(size=(6, 8)) < 0.3, np.inf, rng.lognormal(0.2, 0.5, (6, 8))),
    }
    taus = ALGOPERF_TAUS
    band = profile_band(times, taus, resamples=300, seed=3)
    columns = np.random.default_rng(3).integers(0, 8, size=(300, 8))
    oracle = _band_oracle(times, taus, columns, 0.95)
    point = performance_profile({n: np.median(t, axis=1) for n, t in times.items()}, taus)
    for name in times:
        np.testing.assert_allclose(band[name].fractions, point[name])
        np.testing.assert_allclose(band[name].low, np.minimum(oracle[name][0], point[name]))
        np.testing.assert_allclose(band[name].high, np.maximum(oracle[name][1], point[name]))
        assert np.all(band[name].low <= band[name].fractions)
        assert np.all(band[name].fractions <= band[name].high)
    assert np.any(band["slow"].high > band["slow"].low)  # the seeds do vary
    again = profile_band(times, taus, resamples=300, seed=3)
    np.testing.assert_array_equal(again["flaky"].low, band["flaky"].low)


def test_profile_band_is_widened_to_contain_the_point_estimate():
    # every problem ties at the point (median 2 against 2), a tie resamples rarely keep:
    # the raw percentiles lie below the point estimate 1, the band is stretched up to it
    rows = sorted(set(itertools.permutations([1.0, 1.0, 1.0, 3.0, 3.0, 3.0])))
    times = {"a": np.array(rows), "b": np.full((len(rows), 6), 2.0)}
    taus = np.array([1.0, 1.25])
    band = profile_band(times, taus, resamples=500, seed=0)
    columns = np.random.default_rng(0).integers(0, 6, size=(500, 6))
    oracle = _band_oracle(times, taus, columns, 0.95)
    for name in times:
        np.testing.assert_array_equal(band[name].fractions, 1.0)
        assert np.all(oracle[name][1] < 1.0)  # the percentile band alone misses the point
        np.testing.assert_array_equal(band[name].high, 1.0)
        np.testing.assert_allclose(band[name].low, oracle[name][0])


def test_profile_band_median_over_seeds_misses_when_half_the_seeds_miss():
    inf = math.inf
    times = {
        "a": np.array([[1.0, 1.0, inf, inf], [1.0, 1.0, 1.0, inf]]),  # half miss on problem 0
        "b": np.array([[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]),
    }
    band = profile_band(times, [1.0, 2.0, 3.0], resamples=50)
    np.testing.assert_allclose(band["a"].fractions, [0.5, 0.5, 0.5])  # problem 0 unsolved
    np.testing.assert_allclose(band["b"].fractions, [0.5, 0.5, 1.0])


def test_profile_band_of_an_always_fastest_solver_and_of_identical_seeds():
    rng = np.random.default_rng(8)
    base = rng.lognormal(0.0, 1.0, size=(5, 10))
    # "fast" is faster than "slow" on every seed; "twice" takes exactly twice as long
    times = {"fast": base, "slow": base * rng.uniform(1.1, 5.0, size=(5, 10)), "twice": 2 * base}
    band = profile_band(times, ALGOPERF_TAUS, resamples=400)
    for curve in band["fast"][:3]:
        np.testing.assert_array_equal(curve, 1.0)
    assert tuple(band["fast"].area[:3]) == (1.0, 1.0, 1.0)
    # paired resampling: "twice" is never within a factor below 2 of "fast" in any resample
    below_two = ALGOPERF_TAUS < 2.0 - 1e-9
    np.testing.assert_array_equal(band["twice"].high[below_two], 0.0)
    np.testing.assert_array_equal(band["twice"].low[~below_two], 1.0)
    identical = {n: np.repeat(t[:, :1], 10, axis=1) for n, t in times.items()}
    for fractions, low, high, _ in profile_band(identical, ALGOPERF_TAUS, resamples=100).values():
        np.testing.assert_array_equal(low, fractions)
        np.testing.assert_array_equal(high, fractions)
    twice = profile_band(identical, ALGOPERF_TAUS, resamples=100)["twice"]
    expected = profile_area(twice.fractions, ALGOPERF_TAUS)  # 0 below tau = 2, 1 above
    assert expected == pytest.approx(2 / 3, abs=0.01)
    assert twice.area.low == twice.area.mean == twice.area.high == expected


def test_profile_band_validates_its_input():
    good = np.ones((2, 3))
    bad = [
        ({"a": good, "b": np.ones((2, 4))}, "same"),
        ({"a": np.ones(3)}, "problems, seeds"),
        ({"a": good, "b": -good}, "positive"),
        ({"a": good, "b": np.full((2, 3), math.nan)}, "positive"),
        ({}, "at least one"),
    ]
    for times, message in bad:
        with pytest.raises(ValueError, match=message):
            profile_band(times, ALGOPERF_TAUS, resamples=10)
    with pytest.raises(ValueError, match="resamples"):
        profile_band({"a": good}, ALGOPERF_TAUS, resamples=0)
