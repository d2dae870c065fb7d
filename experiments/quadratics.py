"""Study 6 — first vs second order on ill-conditioned quadratics.

:math:`f(x) = \\tfrac12 x^\\top A x - b^\\top x` with eigenvalues of :math:`A` log-spaced
from 1 to the condition number :math:`\\kappa` (:func:`jaxopt_lab.problems.quadratic`),
solved in float64 with :func:`jaxopt_lab.minimize` to :math:`\\|\\nabla f\\| \\le 10^{-6}`.
GD uses the textbook optimal fixed step :math:`2 / (\\lambda_{\\min} + \\lambda_{\\max})`;
Adam's learning rate is the best of a log grid per problem (fewest iterations).
Theory: GD needs :math:`O(\\kappa \\log 1/\\epsilon)` iterations, L-BFGS far fewer,
Newton one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import numpy as np

import jaxopt_lab as jl
from experiments import plots
from experiments.budget import QuadraticBudget
from experiments.report import Section
from experiments.verdict import by_fact
from jaxopt_lab import problems

TOLERANCE = 1e-6
ADAM_LEARNING_RATES = (1e-3, 1e-2, 1e-1, 1.0)


def _solve(problem: problems.Problem, maxiter: int, method: str, **options: float) -> float:
    """Iterations ``method`` needs to reach the tolerance (``inf`` if not within budget)."""
    result = jl.minimize(problem.fun, problem.x0, method, tol=TOLERANCE, maxiter=maxiter, **options)
    return float(result.iterations) if bool(result.converged) else float("inf")


@dataclass(frozen=True)
class QuadraticResults:
    """Iterations to the tolerance per method and condition number (inf: not reached)."""

    budget: QuadraticBudget
    iterations: dict[str, list[float]]
    adam_lr: list[float]


def measure(budget: QuadraticBudget) -> QuadraticResults:
    maxiter = budget.maxiter
    iterations: dict[str, list[float]] = {"gd": [], "adam": [], "lbfgs": [], "newton": []}
    adam_lr: list[float] = []
    with jax.enable_x64(True):
        for kappa in budget.condition_numbers:
            problem = problems.quadratic(budget.dim, kappa)
            solve = partial(_solve, problem, maxiter)
            iterations["gd"].append(solve("gd", learning_rate=2 / (1 + kappa)))
            adam = [solve("adam", learning_rate=lr) for lr in ADAM_LEARNING_RATES]
            iterations["adam"].append(min(adam))
            adam_lr.append(ADAM_LEARNING_RATES[int(np.argmin(adam))])
            iterations["lbfgs"].append(solve("lbfgs"))
            iterations["newton"].append(solve("newton"))

    return QuadraticResults(budget, iterations, adam_lr)


def report(results: QuadraticResults, out: Path) -> Section:
    section = Section("6. First vs second order on ill-conditioned quadratics")
    budget, iterations, adam_lr = results.budget, results.iterations, results.adam_lr
    maxiter = budget.maxiter
    plots.plot_iterations_vs_condition(
        budget.condition_numbers, iterations, maxiter, out / "quadratic_iterations.png"
    )
    section.text(
        f"Quadratics of dimension {budget.dim}, float64, stop at ||grad|| <= "
        f'{TOLERANCE:g}, at most {maxiter} iterations ("never" = not within budget). GD\'s '
        f"step is 2 / (1 + kappa); Adam gets the best of {ADAM_LEARNING_RATES}."
    )
    section.table(
        ["condition number", "GD", "Adam", "Adam lr", "L-BFGS", "Newton"],
        [
            (
                f"{kappa:g}",
                iterations["gd"][i],
                iterations["adam"][i],
                adam_lr[i],
                iterations["lbfgs"][i],
                iterations["newton"][i],
            )
            for i, kappa in enumerate(budget.condition_numbers)
        ],
    )
    section.figure(
        "quadratic_iterations.png", "Iterations to tolerance against the condition number."
    )
    kappas = np.asarray(budget.condition_numbers)
    gd, lbfgs = np.asarray(iterations["gd"]), np.asarray(iterations["lbfgs"])
    gd_growth = _growth(kappas, gd)
    lbfgs_growth = _growth(kappas, lbfgs)
    section.claim(
        "Second-order methods (L-BFGS) handle ill-conditioning that slows first-order methods.",
        [
            by_fact(f"L-BFGS needs fewer iterations than GD at kappa {k:g}", bool(a < b))
            for k, a, b in zip(kappas, lbfgs, gd, strict=True)
        ],
        f"from kappa {kappas[0]:g} to {kappas[-1]:g}, GD needs {_fmt(gd[0])} -> {_fmt(gd[-1])} "
        f"iterations (slope {gd_growth} in log-log), Adam {_fmt(iterations['adam'][0])} -> "
        f"{_fmt(iterations['adam'][-1])}, L-BFGS {_fmt(lbfgs[0])} -> {_fmt(lbfgs[-1])} "
        f"(slope {lbfgs_growth}), Newton {_fmt(iterations['newton'][-1])}.",
    )
    return section


def _fmt(value: float) -> str:
    return "never" if not np.isfinite(value) else f"{value:.0f}"


def _growth(kappas: np.ndarray, iterations: np.ndarray) -> str:
    """Slope of log(iterations) against log(kappa) over the finite points."""
    finite = np.isfinite(iterations)
    if finite.sum() < 2:
        return "n/a"
    slope = np.polyfit(np.log(kappas[finite]), np.log(iterations[finite]), 1)[0]
    return f"{slope:.2f}"
