"""Study 3 (experiments/landscapes.py): the saddle's closed forms, the best-visited
criterion on Rastrigin, cross-fitting, and a smoke run of measure and report."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from experiments import landscapes
from experiments.stats import binomial_ci
from experiments.verdict import VERDICTS
from jaxopt_lab import problems

SADDLE = problems.saddle()  # one objective object: its compiled runs are reused


def _gd_first_passage(rate: float, offset: float) -> int:
    """Oracle: iterate GD's y-update on x² − y² + y⁴/4 in float64 until |y| >= r."""
    y, step = offset, 0
    while abs(y) < landscapes.ESCAPE_RADIUS:
        y -= rate * (-2 * y + y**3)
        step += 1
    return step


@pytest.mark.parametrize(("rate", "offset"), [(0.01, 1e-6), (0.1, 1e-6), (0.01, 1e-3), (0.5, 1e-8)])
def test_gd_escape_time_on_the_saddle_matches_the_closed_form(rate, offset):
    starts = jnp.asarray([[[0.7, offset], [-1.3, -offset]]])
    descent = landscapes.descend(
        SADDLE,
        "sgd",
        starts,
        hit=landscapes.escaped,
        steps=3000,
        key=jax.random.key(0),
        rates=[rate],
    )
    closed = landscapes.gd_escape_steps(rate, offset)
    assert closed == pytest.approx(math.log(0.1 / offset) / math.log(1 + 2 * rate))
    np.testing.assert_array_equal(descent.first_hit[0], _gd_first_passage(rate, offset))
    assert abs(descent.first_hit[0, 0] - math.ceil(closed)) <= max(1, 0.01 * closed)
    assert landscapes.gd_matches_closed_form(descent.first_hit[0], rate, offset, 3000)


def test_the_closed_form_check_accepts_a_budget_miss_only_when_predicted():
    never = np.full(4, np.inf)
    assert landscapes.gd_matches_closed_form(never, 0.01, 1e-6, budget=100)  # k* = 581
    assert not landscapes.gd_matches_closed_form(never, 0.01, 1e-6, budget=1000)
    assert not landscapes.gd_matches_closed_form(np.full(4, 300.0), 0.01, 1e-6, budget=1000)


def test_momentum_at_matched_effective_rate_escapes_later_than_gd():
    """The heavy-ball growth factor, the larger root of z² − (1 + β + lr·2)z + β, is below
    GD's 1 + 2η at lr = η(1 − β); at the same raw lr momentum is faster."""
    starts = jnp.broadcast_to(jnp.asarray([0.5, 1e-6]), (3, 4, 2))
    descent = landscapes.descend(
        SADDLE,
        "sgd",
        starts,
        hit=landscapes.escaped,
        steps=3000,
        key=jax.random.key(0),
        rates=[0.05, 0.05, 0.5],  # GD; momentum at the same effective and at the same raw lr
        betas=[0.0, 0.9, 0.9],
    )
    gd, matched, raw = descent.first_hit[:, 0]
    root = landscapes.momentum_growth(0.05, 0.9)
    assert root == pytest.approx(max(np.roots([1, -(1.9 + 2 * 0.005), 0.9]).real))
    assert root < 1 + 2 * 0.05
    assert matched > gd > raw
    assert matched == pytest.approx(math.log(0.1 / 1e-6) / math.log(root), rel=0.1)


def test_noisy_escape_probability_matches_a_simulation_of_the_linearised_saddle():
    rate, offset, noise, steps = 0.01, 1e-6, 0.01, 290
    rng = np.random.default_rng(0)
    y = np.full(40_000, offset)
    for _ in range(steps):
        y = (1 + 2 * rate) * y - rate * noise * rng.standard_normal(y.size)
    simulated = np.mean(np.abs(y) >= landscapes.ESCAPE_RADIUS)
    predicted = landscapes.noisy_escape_probability(rate, offset, noise, steps)
    assert 0.2 < predicted < 0.8
    assert predicted == pytest.approx(simulated, abs=0.015)
    assert landscapes.noisy_escape_probability(rate, offset, 0.0, steps) == 0.0
    assert landscapes.noisy_escape_probability(rate, offset, 0.0, 600) == 1.0  # k* = 581


def test_the_basin_level_is_half_the_lowest_non_global_minimum():
    g = problems.rastrigin(1).fun
    local = scipy.optimize.minimize_scalar(
        lambda x: float(g(jnp.asarray([x], jnp.float32))), bounds=(0.6, 1.4), method="bounded"
    )
    assert landscapes.SECOND_MINIMUM == pytest.approx(local.fun, abs=1e-4)
    assert landscapes.BASIN_LEVEL == pytest.approx(local.fun / 2, abs=1e-4)
    assert bool(landscapes.in_global_basin(jnp.asarray([0.03, -0.02])))
    assert not bool(landscapes.in_global_basin(jnp.asarray([0.1, -0.1])))  # basin, not deep
    assert not bool(landscapes.in_global_basin(jnp.asarray([local.x, 0.0])))
    assert not bool(landscapes.in_global_basin(jnp.asarray([0.0, -local.x])))


def test_best_visited_counts_a_path_that_crosses_the_basin_and_leaves_it():
    """On the ramp f = −x₁ GD walks (−1.5, 0), (−1, 0), ..., through the global minimum
    at step 3 and out of its basin; the final iterate is far outside."""
    ramp = problems.Problem("ramp", lambda x: -x[0], None, None, None)
    descent = landscapes.descend(
        ramp,
        "sgd",
        jnp.asarray([[[-1.5, 0.0], [-1.5, 3.0]]]),
        hit=landscapes.in_global_basin,
        steps=10,
        key=jax.random.key(0),
        rates=[0.5],
    )
    assert descent.first_hit[0, 0] == 3  # x₁ = 0 there
    assert np.isinf(descent.first_hit[0, 1])  # x₂ = 3 never enters the basin
    np.testing.assert_allclose(descent.final[0, 0], [3.5, 0.0])
    assert not bool(landscapes.in_global_basin(jnp.asarray(descent.final[0, 0])))


def test_cross_fitting_scores_each_half_with_the_choice_of_the_other():
    table = np.zeros((3, 6), bool)
    table[1, 0::2] = True  # config 1 wins on the even starts
    table[2, 1::2] = True  # config 2 wins on the odd starts
    table[2, 0] = True
    chosen = landscapes.cross_fit(table)
    assert chosen == (1, 2)
    scored = landscapes.cross_fitted(table, chosen)
    np.testing.assert_array_equal(scored[1::2], table[1, 1::2])  # odd scored by config 1
    np.testing.assert_array_equal(scored[0::2], table[2, 0::2])  # even scored by config 2
    np.testing.assert_array_equal(scored, [True, False, False, False, False, False])
    with pytest.raises(ValueError, match="configs, starts"):
        landscapes.cross_fit(np.zeros(4, bool))


def test_starts_derive_from_the_master_seed():
    a, b = landscapes.saddle_starts([1e-6, 1e-3], 8, 0), landscapes.saddle_starts([1e-6], 8, 1)
    np.testing.assert_array_equal(a, landscapes.saddle_starts([1e-6, 1e-3], 8, 0))
    np.testing.assert_array_equal(a[0, :, 0], a[1, :, 0])  # same x draws at every offset
    np.testing.assert_allclose(np.abs(a[:, :, 1]), [[1e-6] * 8, [1e-3] * 8], rtol=1e-6)
    assert not np.array_equal(a[0], b[0])
    r0, r1 = landscapes.rastrigin_starts(8, 0), landscapes.rastrigin_starts(8, 1)
    assert not np.array_equal(r0, r1)
    assert np.all(np.abs(r0) <= 5.12)


def test_descend_rejects_malformed_input():
    run = dict(hit=landscapes.escaped, key=jax.random.key(0))
    with pytest.raises(ValueError, match="configs, count, 2"):
        landscapes.descend(SADDLE, "sgd", jnp.zeros((4, 2)), steps=5, **run)
    with pytest.raises(ValueError, match="one value per configuration"):
        landscapes.descend(SADDLE, "sgd", jnp.zeros((2, 4, 2)), steps=5, rates=[0.1], **run)
    with pytest.raises(ValueError, match="steps"):
        landscapes.descend(SADDLE, "sgd", jnp.zeros((1, 4, 2)), steps=0, **run)
    with pytest.raises(ValueError, match="positive"):
        landscapes.gd_escape_steps(0.01, 0.0)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, quick_report):
    results = quick_report.results["landscapes"]
    out = tmp_path_factory.mktemp("landscapes")
    return results, landscapes.report(results, out), out


def test_measure_at_smoke_tier_gives_every_rate_a_wilson_interval(smoke):
    results, _, _ = smoke
    budget = landscapes.BUDGETS["quick"]
    intervals = [binomial_ci(k, results.saddle.starts) for k in results.saddle.noise_escapes()]
    for run in results.rastrigin.values():
        intervals += [binomial_ci(int(s.sum()), s.size) for s in (run.visited, run.final)]
        intervals += [binomial_ci(k, budget.rastrigin_starts) for k in run.successes]
        assert run.visited.shape == (budget.rastrigin_starts,)
        assert np.all(run.visited | ~run.final)  # a final success was visited
    for interval in intervals:
        assert 0.0 <= interval.low <= interval.mean <= interval.high <= 1.0
    assert set(results.rastrigin) == set(landscapes.RASTRIGIN_VARIANTS)
    steps = results.saddle.escape_steps
    assert set(steps) == set(landscapes.saddle_settings())
    assert all(row.shape == (budget.saddle_starts,) for row in steps.values())
    # Newton's unit step is attracted to the saddle; L-BFGS leaves it
    assert all(np.all(np.isinf(row)) for row in results.saddle.by_offset("newton"))
    assert all(np.all(np.isfinite(row)) for row in results.saddle.by_offset("lbfgs (hager-zhang)"))


def test_report_states_claims_with_rule_verdicts_and_writes_its_figures(smoke):
    _, section, out = smoke
    assert len(section.claims) == 6
    assert all(claim.verdict in VERDICTS for claim in section.claims)
    assert all(claim.comparisons for claim in section.claims)
    for name in section.figures:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "closed form" in section.markdown()
