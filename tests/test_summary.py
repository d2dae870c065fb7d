"""The summary's performance profiles on synthetic problems whose answer is known, its
handling of configurations missing from a problem, and its protocol and limits text."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from experiments import protocol, summary
from experiments.stats import ALGOPERF_TAUS, profile_band

INF = math.inf
# a step from 0 to 1 between tau = 1.95 and 2.0 (a cost ratio of 1.98): the trapezoid rule
# over AlgoPerf's grid gives (0.05 / 2 + 2) / 3
AREA_AT_RATIO_198 = (0.05 / 2 + 2.0) / 3


def test_a_configuration_always_fastest_has_area_one_and_a_never_solver_zero():
    seeds = 5
    problems = {
        f"problem {p}": {
            "fast": np.full(seeds, 1.0 + p),
            "slow": np.full(seeds, 1.98 * (1.0 + p)),
            "never": np.full(seeds, INF),
        }
        for p in range(3)
    }
    (profile,) = summary.profiles(problems, seed=0, resamples=50)
    assert profile.ranking == ["fast", "slow", "never"]
    assert tuple(profile.bands["fast"].area[:3]) == (1.0, 1.0, 1.0)  # no seed spread: no width
    assert profile.bands["slow"].area.mean == pytest.approx(AREA_AT_RATIO_198)
    assert tuple(profile.bands["never"].area[:3]) == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(profile.bands["fast"].fractions, np.ones_like(ALGOPERF_TAUS))


@pytest.mark.parametrize("cheap", [2, 5])
def test_the_area_interval_resamples_seeds_and_matches_the_binomial_odds(cheap):
    # one problem, 11 seeds; "b" costs 1/1.98 on ``cheap`` seeds and 1.98 on the others, "a"
    # costs 1. In a resample (11 seeds drawn with replacement) b's median is 1/1.98 (b
    # fastest, a at ratio 1.98) when 6 or more draws are cheap seeds, with probability
    # P(Bin(11, cheap/11) >= 6); otherwise a is fastest and b at ratio 1.98. The 95%
    # percentile interval spans both areas iff that probability exceeds 2.5%.
    a = np.ones(11)
    b = np.where(np.arange(11) < cheap, 1 / 1.98, 1.98)
    bands = profile_band({"a": a[None], "b": b[None]}, resamples=4000, seed=1)
    intervals = {name: band.area for name, band in bands.items()}
    assert intervals["a"].mean == 1.0 and intervals["b"].mean == pytest.approx(AREA_AT_RATIO_198)
    flips = scipy.stats.binom.sf(5, 11, cheap / 11)
    assert abs(flips - 0.025) > 0.015  # far enough from the edge for 4000 resamples
    spans = flips > 0.025
    assert intervals["a"].low == pytest.approx(AREA_AT_RATIO_198 if spans else 1.0)
    assert intervals["b"].high == pytest.approx(1.0 if spans else AREA_AT_RATIO_198)
    assert intervals["a"].high == 1.0 and intervals["b"].low == pytest.approx(AREA_AT_RATIO_198)


def test_the_area_interval_pairs_configurations_by_seed():
    # seeds differ tenfold in difficulty, but on every seed b costs 1.98x a: resampling the
    # same seeds for both keeps the ratio, so the interval has no width (resampling each
    # configuration's seeds on its own would let b look faster than a)
    difficulty = np.where(np.arange(11) < 5, 1.0, 10.0)
    bands = profile_band(
        {"a": difficulty[None], "b": 1.98 * difficulty[None]}, resamples=1000, seed=0
    )
    intervals = {name: band.area for name, band in bands.items()}
    assert tuple(intervals["a"][:3]) == (1.0, 1.0, 1.0)
    assert intervals["b"][:3] == pytest.approx((AREA_AT_RATIO_198,) * 3)


def test_missing_configurations_are_profiled_only_where_they_ran():
    seeds = 4
    problems = {
        "clean": {"sgd": np.full(seeds, 2.0), "adam": np.full(seeds, 1.0), "gd": np.ones(seeds)},
        "noisy 1": {"sgd": np.full(seeds, 1.0), "adam": np.full(seeds, 5.0)},
        "noisy 2": {"sgd": np.full(seeds, 1.0), "adam": np.full(seeds, 5.0)},
    }
    groups = summary.group_problems(problems)
    assert groups == [
        (("clean",), ("sgd", "adam", "gd")),
        (("noisy 1", "noisy 2"), ("sgd", "adam")),
    ]
    clean, noisy, every = summary.profiles(problems, seed=0, resamples=20)
    # gd was never run on the noisy problems: it keeps area 1 on its only problem
    assert clean.bands["gd"].area.mean == 1.0 and "gd" not in every.configurations
    assert noisy.bands["sgd"].area.mean == 1.0 and noisy.bands["adam"].area.mean == 0.0
    assert every.problems == ("clean", "noisy 1", "noisy 2")
    # fastest on 2 of 3 problems, 1.98x the fastest on the third
    assert every.bands["sgd"].area.mean == pytest.approx(2 / 3 + AREA_AT_RATIO_198 / 3)


def test_bad_problem_sets_are_rejected():
    with pytest.raises(ValueError, match="at least one problem"):
        summary.profiles({}, seed=0)
    with pytest.raises(ValueError, match="no configuration"):
        summary.profiles({"p": {}}, seed=0)
    with pytest.raises(ValueError, match="same final seeds"):
        summary.profiles({"p": {"a": np.ones(3)}, "q": {"a": np.ones(4)}}, seed=0)


def test_report_draws_the_profiles_and_states_the_protocol_from_the_budget(tmp_path):
    budget = protocol.BUDGETS["medium"]
    problems = {
        "clean, loss <= 0.3": {"sgd": np.array([1.0, 1.2, INF]), "adam": np.array([0.5, 0.6, 0.7])},
        "noise, accuracy >= 0.9": {"sgd": np.array([2.0, 2.5, 3.0])},
    }
    section = summary.report(budget, problems, tmp_path, seed=7)
    text = section.markdown()
    assert (tmp_path / summary.FIGURE).stat().st_size > 0
    for number in (budget.num_train, budget.num_val):
        assert f"{number:,}" in text
    for phrase in (
        f"{budget.final_seeds} final seeds",
        f"{budget.epochs} epochs",
        f"{budget.per_decade} learning rates per decade",
        "master seed 7",
        "Holm",
    ):
        assert phrase in text
    assert "1.2 (2/3)" in text  # median epochs, with the seeds that reached the target
    limits = summary.limits(budget).markdown()
    assert "784-128-10, 101,770 parameters" in limits and "784-10, 7,850 parameters" in limits
    assert f"{budget.num_train:,} training images" in limits
