"""Study 6 (quadratics): linear CG against numpy, the heavy ball's closed-form rate, the
stall / budget / converged classification, Adam's grid extension, and the study at its
smoke budget."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import quadratics
from experiments.report import write_report
from experiments.verdict import VERDICTS
from jaxopt_lab.optim.solvers import Status


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _diagonal(eigenvalues, b):
    a = np.diag(np.asarray(eigenvalues, np.float64))[None]
    return quadratics.Quadratics(
        a, np.asarray(b, np.float64)[None], min(eigenvalues), max(eigenvalues)
    )


def test_random_quadratics_have_the_asked_spectrum_and_follow_the_seed():
    problems = quadratics.random_quadratics(12, 1e4, [3, 4])
    for a in problems.a:
        np.testing.assert_allclose(a, a.T)
        eigenvalues = np.linalg.eigvalsh(a)
        np.testing.assert_allclose([eigenvalues[0], eigenvalues[-1]], [1.0, 1e4], rtol=1e-9)
    assert not np.allclose(problems.a[0], problems.a[1])  # another seed, another matrix
    again = quadratics.random_quadratics(12, 1e4, [3])
    np.testing.assert_array_equal(again.a[0], problems.a[0])
    np.testing.assert_allclose(problems.gap(problems.x_star), 0.0, atol=1e-12)


def test_conjugate_gradient_solves_an_spd_system_in_at_most_n_iterations(x64):
    n = 8
    problems = quadratics.random_quadratics(n, 100.0, [11])
    a, b = problems.a[0], problems.b[0]
    tol = 1e-10 * np.linalg.norm(b)
    result = quadratics.conjugate_gradient(jnp.asarray(a), jnp.asarray(b), tol, 1000)
    assert int(result.status) == Status.CONVERGED
    # Exact arithmetic ends in n steps; in float64 the n-th residual is tiny but not zero
    # (5.7e-10 |b| on one CPU, below 1e-10 on another), so the last digits take a step more.
    assert 1 <= int(result.iterations) <= n + 2
    after_n = quadratics.conjugate_gradient(jnp.asarray(a), jnp.asarray(b), 0.0, n)
    before_n = quadratics.conjugate_gradient(jnp.asarray(a), jnp.asarray(b), 0.0, n - 1)
    assert float(after_n.residual_norm) <= 1e-6 * np.linalg.norm(b)
    assert float(before_n.residual_norm) > 1e-6 * np.linalg.norm(b)
    np.testing.assert_allclose(result.x, np.linalg.solve(a, b), rtol=1e-8)
    assert np.linalg.norm(b - a @ np.asarray(result.x)) <= 10 * tol  # the true residual too
    capped = quadratics.conjugate_gradient(jnp.asarray(a), jnp.asarray(b), tol, 3)
    assert int(capped.iterations) == 3 and int(capped.status) == Status.MAX_ITERATIONS


def test_optimal_heavy_ball_contracts_at_the_closed_form_rate(x64):
    kappa = 1e4
    problems = _diagonal([1.0, kappa], [1.0, kappa])  # x* = (1, 1): both directions excited
    run = quadratics.runner("heavy ball", 0.0)  # tolerance 0: run the whole budget
    k1, k2 = 200, 400
    gap1, gap2 = run(problems, k1).gap[0], run(problems, k2).gap[0]
    measured = (gap2 / gap1) ** (1 / (2 * (k2 - k1)))  # the gap is quadratic in the error
    rho = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    assert quadratics.heavy_ball_rate(kappa) == pytest.approx(rho)
    assert measured == pytest.approx(rho, rel=5e-3)
    # GD with step 2/(L+mu): both directions contract at exactly (kappa - 1) / (kappa + 1)
    gap0 = problems.gap(np.zeros((1, 2)))[0]
    gd_rate = (quadratics.runner("GD", 0.0)(problems, k2).gap[0] / gap0) ** (1 / (2 * k2))
    assert gd_rate == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-9)


def test_classify_tells_stalls_from_budgets():
    cases = [  # status, gap at the end, a window earlier, at x0 -> outcome
        (Status.CONVERGED, 0.0, np.nan, 9.0, "converged"),
        (Status.LINESEARCH_FAILED, 1.0, np.nan, 9.0, "stall"),
        (Status.MAX_ITERATIONS, 0.5, 1.0, 9.0, "budget"),
        (Status.MAX_ITERATIONS, 1.0, 1.0, 9.0, "stall"),
        (Status.MAX_ITERATIONS, 2.0, 1.0, 9.0, "stall"),
        (Status.MAX_ITERATIONS, 10.0, 5.0, 9.0, "diverged"),
        (Status.NON_FINITE, np.nan, np.nan, 9.0, "diverged"),
    ]
    status, gap, before, start, expected = zip(*cases, strict=True)
    outcomes = quadratics.classify(np.array(status), np.array(gap), np.array(before), start)
    assert outcomes == expected
    with pytest.raises(ValueError, match="window earlier"):
        quadratics.classify(np.array([Status.MAX_ITERATIONS]), 1.0, np.nan, 9.0)


def test_run_classified_on_real_runs(x64):
    problems = quadratics.random_quadratics(10, 1e3, [5, 6])
    gd = quadratics.runner("GD", 1e-6)
    slow = quadratics.run_classified(gd, problems, 200)
    assert slow.outcomes == ("budget", "budget")  # still descending when the budget ends
    assert np.all(np.isinf(slow.to_tolerance())) and np.all(slow.cost(200) == 201)
    # A doubled while GD keeps the step 2/(L+mu) of the original: unstable, the gap grows
    doubled = problems._replace(a=2 * problems.a, b=2 * problems.b)
    unstable = quadratics.run_classified(gd, doubled, 200)
    assert unstable.outcomes == ("diverged", "diverged")
    # step 2/L (told mu = 0) on diag(1, 64), x* = (0, 1): x oscillates 0, 2, 0, ... exactly
    periodic = _diagonal([1.0, 64.0], [0.0, 64.0])._replace(mu=0.0)
    assert quadratics.run_classified(gd, periodic, 200).outcomes == ("stall",)


def test_adam_grid_grows_past_an_edge_optimum(x64):
    budget = dataclasses.replace(
        quadratics.BUDGETS["quick"],
        dim=5,
        adam_log10_lr=(-3.0, -2.0),
        lr_per_decade=1,
        max_extensions=1,
        tuning_maxiter=2_000,
    )
    tuning = quadratics.tune_adam(budget, quadratics.random_quadratics(5, 10.0, [7, 8]))
    # faster with a larger rate: the optimum sits on the upper edge, the grid grows a decade
    assert tuning.extended == 1
    np.testing.assert_allclose(tuning.grid, [1e-3, 1e-2, 1e-1])
    assert tuning.learning_rate == pytest.approx(1e-1)
    assert tuning.on_edge  # still on the edge after the one extension allowed
    assert tuning.worst_iterations[0] > tuning.worst_iterations[-1]


@pytest.fixture(scope="module")
def smoke(quick_report):
    return quick_report.results["quadratics"]


def test_smoke_study_runs_every_method_on_every_matrix(smoke):
    budget = smoke.budget
    assert set(smoke.runs) == set(quadratics.METHODS)
    for runs in smoke.runs.values():
        assert len(runs) == len(budget.condition_numbers)
        for r in runs:
            assert len(r.outcomes) == budget.matrices
            assert set(r.outcomes) <= set(quadratics.OUTCOMES)
    converged = [r for runs in smoke.runs.values() for r in runs if r.converged.all()]
    assert all(max(r.relative_grad_norm) <= budget.tolerance for r in converged)
    assert all(r.iterations == (1,) * budget.matrices for r in smoke.runs["Newton"])
    json.dumps(dataclasses.asdict(smoke))  # the results file can be written


def test_smoke_report_gives_valid_verdicts(smoke, tmp_path):
    section = quadratics.report(smoke, tmp_path)
    assert section.figures == ["quadratic_iterations.png"]
    assert (tmp_path / "quadratic_iterations.png").stat().st_size > 20_000
    verdicts = [claim.verdict for claim in section.claims]
    assert len(verdicts) == 4 and set(verdicts) <= set(VERDICTS)
    # the textbook picture holds on these problems even at the smoke budget
    assert verdicts == ["confirmed"] * 4
    gd = quadratics.iteration_slope(smoke, "GD").interval
    assert 0.9 < gd.low <= gd.high < 1.1
    write_report(tmp_path / "REPORT.md", "t", "p", [section])
    assert "First vs second order" in (tmp_path / "REPORT.md").read_text()
