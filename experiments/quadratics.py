r"""Study 6 — first vs second order on ill-conditioned quadratics.

:math:`f(x) = \tfrac12 x^\top A x - b^\top x` from :math:`x_0 = 0`, with
:math:`A = Q \operatorname{diag}(\lambda) Q^\top`: :math:`Q` a random orthogonal basis (Haar),
:math:`\lambda_{\min} = \mu = 1`, :math:`\lambda_{\max} = L = \kappa` and the other
eigenvalues log-uniform in :math:`[1, \kappa]`, :math:`b \sim N(0, I)`. Several matrices per
condition number, each drawn from the master seed (``derive_many(seed, n, "quadratics",
...)``). Float64 throughout (a local ``jax.enable_x64`` context).

One stopping rule for every method: :math:`\|\nabla f(x_k)\| \le \text{tol}\,\|\nabla
f(x_0)\|` (relative, ``tol = 1e-6``) within ``maxiter`` iterations. The methods:

- GD: fixed step :math:`2 / (L + \mu)`, the best fixed step for a quadratic (contraction
  :math:`(\kappa - 1) / (\kappa + 1)` per step, so :math:`O(\kappa \log 1/\epsilon)`
  iterations);
- heavy ball (Polyak): :math:`x_{k+1} = x_k - \eta \nabla f(x_k) + \beta (x_k - x_{k-1})`
  with :math:`\eta = 4 / (\sqrt L + \sqrt\mu)^2`, :math:`\beta = ((\sqrt\kappa - 1) /
  (\sqrt\kappa + 1))^2`, the optimal pair for a quadratic: contraction
  :math:`(\sqrt\kappa - 1) / (\sqrt\kappa + 1)` per step (:func:`heavy_ball`);
- Nesterov: step :math:`1/L`, momentum :math:`(\sqrt\kappa - 1) / (\sqrt\kappa + 1)`;
- CG: linear conjugate gradients (:func:`conjugate_gradient`), one matrix-vector product
  per iteration; at most n iterations in exact arithmetic, :math:`O(\sqrt\kappa \log
  1/\epsilon)` by the Chebyshev bound;
- Adam: learning rate tuned per condition number on separate matrices
  (:func:`tune_adam`);
- L-BFGS (``jaxopt_lab.minimize`` ``"lbfgs"``, defaults) and Newton (``"newton"``).

Every run ends in one of four outcomes (:func:`classify`): *converged*; *stall* (the line
search failed, or at the end of the budget the optimality gap :math:`f - f^\star` is no
smaller than it was :data:`WINDOW` of the budget earlier: no progress); *budget* (still
making progress when ``maxiter`` ran out); *diverged* (non-finite, or the gap ended above
its value at :math:`x_0`).

python -m experiments.quadratics --budget quick --seed 0 --out runs/quadratics
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from matplotlib.figure import Figure

import jaxopt_lab as jl
from experiments.report import Section, write_report
from experiments.seeds import derive_many
from experiments.stats import Interval, holm_paired, slope_ci
from experiments.verdict import by_fact, by_interval
from jaxopt_lab.optim.solvers import Status
from jaxopt_lab.runtime import device_info

METHODS = ("GD", "heavy ball", "Nesterov", "CG", "Adam", "L-BFGS", "Newton")
ACCELERATED = ("heavy ball", "Nesterov", "CG")  # iterations ~ sqrt(kappa) by theory
FAST = ("L-BFGS", "CG")  # compared with GD's gradient evaluations
OUTCOMES = ("converged", "stall", "budget", "diverged")
WINDOW = 0.5  # a run at its budget is a stall if the gap did not shrink over this last fraction
SLOPE_THRESHOLD = 0.75  # between the kappa (1) and sqrt(kappa) (1/2) rates: decides the claims


@dataclass(frozen=True)
class QuadraticBudget:
    """Sizes of one run of the study."""

    name: str
    dim: int
    condition_numbers: tuple[float, ...]
    matrices: int  # per condition number
    maxiter: int  # every method's iteration budget
    tuning_matrices: int  # Adam's learning rate is chosen on these, per condition number
    tuning_maxiter: int
    adam_log10_lr: tuple[float, float]  # initial grid range (extended when the best is on it)
    lr_per_decade: int
    max_extensions: int  # decades the grid may grow on the side of an edge optimum
    tolerance: float = 1e-6  # relative: ||grad|| <= tolerance * ||grad(x0)||


BUDGETS: dict[str, QuadraticBudget] = {
    "quick": QuadraticBudget(
        name="quick",
        dim=10,
        condition_numbers=(1e1, 1e3),
        matrices=3,
        maxiter=20_000,
        tuning_matrices=2,
        tuning_maxiter=2_000,
        adam_log10_lr=(-2.0, 0.0),
        lr_per_decade=1,
        max_extensions=1,
    ),
    "medium": QuadraticBudget(
        name="medium",
        dim=100,
        condition_numbers=(1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
        matrices=5,
        maxiter=100_000,
        tuning_matrices=3,
        tuning_maxiter=10_000,
        adam_log10_lr=(-4.0, 0.0),
        lr_per_decade=3,
        max_extensions=2,
    ),
    "full": QuadraticBudget(
        name="full",
        dim=100,
        condition_numbers=tuple(10.0 ** (k / 2) for k in range(2, 13)),
        matrices=10,
        maxiter=1_000_000,
        tuning_matrices=3,
        tuning_maxiter=100_000,
        adam_log10_lr=(-4.0, 0.0),
        lr_per_decade=3,
        max_extensions=2,
    ),
}


# --------------------------------------------------------------------------- problems


class Quadratics(NamedTuple):
    """A batch of quadratics of one condition number (leading axis: matrix)."""

    a: np.ndarray  # (m, n, n), symmetric positive definite
    b: np.ndarray  # (m, n)
    mu: float  # smallest eigenvalue, shared
    lipschitz: float  # largest eigenvalue, shared

    @property
    def x_star(self) -> np.ndarray:
        return np.linalg.solve(self.a, self.b[..., None])[..., 0]

    def gap(self, x: np.ndarray) -> np.ndarray:
        """:math:`f(x) - f^\\star = \\tfrac12 (x - x^\\star)^\\top A (x - x^\\star)`, computed
        without the cancellation of :math:`f(x) - f^\\star` in floating point."""
        error = np.asarray(x, np.float64) - self.x_star
        return 0.5 * np.einsum("mi,mij,mj->m", error, self.a, error)


def random_quadratics(dim: int, condition_number: float, seeds: Sequence[int]) -> Quadratics:
    """One quadratic per seed: Haar-random eigenbasis, eigenvalues 1 and ``condition_number``
    plus ``dim - 2`` log-uniform ones between them, :math:`b \\sim N(0, I)`."""
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (both extreme eigenvalues), got {dim}")
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    a, b = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        q = q * np.sign(np.diag(r))  # Haar measure
        interior = 10.0 ** rng.uniform(0.0, np.log10(condition_number), dim - 2)
        eigenvalues = np.concatenate([[1.0], interior, [condition_number]])
        matrix = (q * eigenvalues) @ q.T
        a.append(0.5 * (matrix + matrix.T))
        b.append(rng.standard_normal(dim))
    return Quadratics(np.stack(a), np.stack(b), 1.0, float(condition_number))


def _objective(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    return 0.5 * x @ (a @ x) - b @ x


# --------------------------------------------------------------------------- methods


def heavy_ball(mu: float, lipschitz: float) -> tuple[float, float]:
    """Polyak's optimal (step, momentum) for a quadratic with eigenvalues in [mu, L]:
    :math:`\\eta = 4 / (\\sqrt L + \\sqrt\\mu)^2`, :math:`\\beta = \\rho^2` with the rate
    :math:`\\rho = (\\sqrt\\kappa - 1) / (\\sqrt\\kappa + 1)` (:func:`heavy_ball_rate`)."""
    if not 0 < mu <= lipschitz:
        raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={lipschitz}")
    step = 4.0 / (math.sqrt(lipschitz) + math.sqrt(mu)) ** 2
    return step, heavy_ball_rate(lipschitz / mu) ** 2


def heavy_ball_rate(condition_number: float) -> float:
    """:math:`(\\sqrt\\kappa - 1) / (\\sqrt\\kappa + 1)`: the contraction per step of the
    optimally tuned heavy ball (and the Chebyshev rate of CG)."""
    root = math.sqrt(condition_number)
    return (root - 1.0) / (root + 1.0)


def minimize_settings(name: str, problems: Quadratics, adam_lr: float) -> tuple[str, dict]:
    """``jaxopt_lab.minimize``'s method name and options for ``name`` (all but CG)."""
    mu, lipschitz = problems.mu, problems.lipschitz
    if name == "GD":
        return "gd", {"learning_rate": 2.0 / (lipschitz + mu)}
    if name == "heavy ball":
        step, momentum = heavy_ball(mu, lipschitz)
        return "momentum", {"learning_rate": step, "momentum": momentum}
    if name == "Nesterov":
        return "nesterov", {
            "learning_rate": 1.0 / lipschitz,
            "momentum": heavy_ball_rate(lipschitz / mu),
        }
    if name == "Adam":
        return "adam", {"learning_rate": adam_lr}
    if name == "L-BFGS":
        return "lbfgs", {}
    if name == "Newton":
        return "newton", {}
    raise ValueError(f"no minimize settings for {name!r}; methods: {', '.join(METHODS)}")


class CGResult(NamedTuple):
    x: jax.Array
    residual_norm: jax.Array  # ||b - A x|| by the recurrence
    iterations: jax.Array
    status: jax.Array  # a jaxopt_lab Status code


@jax.jit
def conjugate_gradient(a: jax.Array, b: jax.Array, tol: jax.Array, maxiter: jax.Array) -> CGResult:
    """Linear conjugate gradients for :math:`A x = b` from :math:`x_0 = 0` (Hestenes-Stiefel):
    :math:`\\alpha_k = r_k^\\top r_k / p_k^\\top A p_k`, :math:`x_{k+1} = x_k + \\alpha_k p_k`,
    :math:`r_{k+1} = r_k - \\alpha_k A p_k`, :math:`p_{k+1} = r_{k+1} + (r_{k+1}^\\top
    r_{k+1} / r_k^\\top r_k) p_k`, until :math:`\\|r_k\\| \\le` ``tol`` (the gradient of
    :math:`\\tfrac12 x^\\top A x - b^\\top x` is :math:`-r`) or ``maxiter`` iterations."""

    def running(state):
        _, _, _, rr, k = state
        return (k < maxiter) & (jnp.sqrt(rr) > tol) & jnp.isfinite(rr)

    def step(state):
        x, r, p, rr, k = state
        ap = a @ p
        alpha = rr / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        rr_next = r @ r
        return x, r, r + (rr_next / rr) * p, rr_next, k + 1

    start = (jnp.zeros_like(b), b, b, b @ b, jnp.zeros((), jnp.int32))
    x, _, _, rr, k = jax.lax.while_loop(running, step, start)
    norm = jnp.sqrt(rr)
    status = jnp.select(
        [~jnp.isfinite(rr), norm <= tol],
        [Status.NON_FINITE, Status.CONVERGED],
        Status.MAX_ITERATIONS,
    )
    return CGResult(x, norm, k, status.astype(jnp.int32))


class RawRuns(NamedTuple):
    """One method on a batch of quadratics, one entry per matrix."""

    iterations: np.ndarray
    gradient_evaluations: np.ndarray  # value-and-gradient calls (CG: 1 + matrix-vector products)
    status: np.ndarray  # Status codes
    relative_grad_norm: np.ndarray  # ||grad f(x)|| / ||grad f(x0)||
    gap: np.ndarray  # f(x) - f*


Runner = Callable[[Quadratics, int], RawRuns]


def runner(name: str, tolerance: float, adam_lr: float = math.nan) -> Runner:
    """``run(problems, maxiter)``: method ``name`` (Adam with ``adam_lr``) on every matrix of
    ``problems`` until ``||grad|| <= tolerance * ||grad(x0)||`` or ``maxiter`` iterations."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")

    def run(problems: Quadratics, maxiter: int) -> RawRuns:
        a, b = jnp.asarray(problems.a), jnp.asarray(problems.b)
        g0 = np.linalg.norm(problems.b, axis=1)  # x0 = 0: ||grad f(x0)|| = ||b||
        tol = jnp.asarray(tolerance * g0)
        if name == "CG":
            cg = jax.vmap(conjugate_gradient, in_axes=(0, 0, 0, None))(a, b, tol, maxiter)
            x, grad_norm, iterations, status = cg
            evaluations = iterations + 1
        else:
            method, options = minimize_settings(name, problems, adam_lr)
            x0 = jnp.zeros(problems.b.shape[1])

            def solve(a: jax.Array, b: jax.Array, tol: jax.Array) -> jl.OptimizeResult:
                objective = Partial(_objective, a, b)
                return jl.minimize(objective, x0, method, tol=tol, maxiter=maxiter, **options)

            result = jax.vmap(solve)(a, b, tol)
            x, grad_norm, iterations = result.x, result.grad_norm, result.iterations
            evaluations, status = result.fevals, result.status
        return RawRuns(
            np.asarray(iterations),
            np.asarray(evaluations),
            np.asarray(status),
            np.asarray(grad_norm) / g0,
            problems.gap(np.asarray(x)),
        )

    return run


def classify(
    status: np.ndarray, gap: np.ndarray, gap_before: np.ndarray | float, gap_start: np.ndarray
) -> tuple[str, ...]:
    """The outcome of each run: ``converged``; ``diverged`` (non-finite, or the optimality
    gap ``gap`` ended above ``gap_start``, the gap at :math:`x_0`); ``stall`` (the line search
    failed, or the budget ran out with the gap no smaller than ``gap_before``, the gap a
    window earlier: no progress); ``budget`` (the budget ran out while the gap was still
    shrinking). ``gap_before`` is only read for budget stops."""
    arrays = np.broadcast_arrays(status, gap, gap_before, gap_start)
    outcomes = []
    for code, end, before, start in zip(*(a.ravel() for a in arrays), strict=True):
        code = Status(int(code))
        if code == Status.CONVERGED:
            outcomes.append("converged")
        elif code == Status.NON_FINITE or end > start:
            outcomes.append("diverged")
        elif code == Status.LINESEARCH_FAILED:
            outcomes.append("stall")
        elif np.isnan(before):
            raise ValueError("a run stopped by its budget needs the gap a window earlier")
        else:
            outcomes.append("budget" if end < before else "stall")
    return tuple(outcomes)


@dataclass(frozen=True)
class Runs:
    """One method at one condition number, one entry per matrix."""

    iterations: tuple[int, ...]  # iterations run (to the tolerance where converged)
    gradient_evaluations: tuple[int, ...]
    outcomes: tuple[str, ...]  # one of OUTCOMES
    relative_grad_norm: tuple[float, ...]

    @property
    def converged(self) -> np.ndarray:
        return np.asarray(self.outcomes) == "converged"

    def to_tolerance(self) -> np.ndarray:
        """Iterations to the tolerance, ``inf`` where it was not reached."""
        return np.where(self.converged, np.asarray(self.iterations, np.float64), np.inf)

    def cost(self, maxiter: int) -> np.ndarray:
        """Gradient evaluations to the tolerance; a run that missed it is censored at
        ``maxiter + 1`` (GD's evaluations over the whole budget)."""
        evaluations = np.asarray(self.gradient_evaluations, np.float64)
        return np.where(self.converged, evaluations, maxiter + 1.0)


def run_classified(run: Runner, problems: Quadratics, maxiter: int) -> Runs:
    """Run, and for runs stopped by the budget rerun to ``maxiter - WINDOW * maxiter``
    (every method is deterministic) to tell a stall from a budget."""
    raw = run(problems, maxiter)
    gap_before = np.full(raw.gap.shape, np.nan)
    if np.any(raw.status == Status.MAX_ITERATIONS):
        gap_before = run(problems, max(1, maxiter - int(WINDOW * maxiter))).gap
    return Runs(
        tuple(int(i) for i in raw.iterations),
        tuple(int(e) for e in raw.gradient_evaluations),
        classify(raw.status, raw.gap, gap_before, problems.gap(np.zeros_like(problems.b))),
        tuple(float(g) for g in raw.relative_grad_norm),
    )


@dataclass(frozen=True)
class AdamTuning:
    """Adam's learning rate at one condition number, chosen on separate tuning matrices:
    fewest iterations to the tolerance on the worst matrix (``inf`` when any missed it),
    ties broken by the lowest median final relative gradient norm."""

    learning_rate: float
    grid: tuple[float, ...]  # every rate tried, ascending
    worst_iterations: tuple[float, ...]
    median_grad_norm: tuple[float, ...]
    extended: int  # decades added because the best rate sat on an edge of the grid
    on_edge: bool  # the choice still sits on an edge after the extensions


def tune_adam(budget: QuadraticBudget, problems: Quadratics) -> AdamTuning:
    """Search ``budget.lr_per_decade`` rates per decade over ``budget.adam_log10_lr``; while
    the best sits on an edge, extend the grid by a decade on that side (at most
    ``budget.max_extensions`` times)."""
    per_decade = budget.lr_per_decade
    low, high = (round(end * per_decade) for end in budget.adam_log10_lr)
    exponents = range(low, high + 1)
    scores: dict[int, tuple[float, float]] = {}
    extended = 0
    while True:
        for exponent in exponents:
            if exponent not in scores:
                rate = 10.0 ** (exponent / per_decade)
                raw = runner("Adam", budget.tolerance, rate)(problems, budget.tuning_maxiter)
                reached = np.where(raw.status == Status.CONVERGED, raw.iterations, np.inf)
                scores[exponent] = (
                    float(np.max(reached)),
                    float(np.median(raw.relative_grad_norm)),
                )
        best = min(sorted(scores), key=scores.__getitem__)
        edge = best in (min(scores), max(scores))
        if not edge or extended == budget.max_extensions:
            break
        extended += 1
        side = -1 if best == min(scores) else 1
        exponents = range(best + side, best + side * (per_decade + 1), side)
    grid = sorted(scores)
    return AdamTuning(
        learning_rate=10.0 ** (best / per_decade),
        grid=tuple(10.0 ** (e / per_decade) for e in grid),
        worst_iterations=tuple(scores[e][0] for e in grid),
        median_grad_norm=tuple(scores[e][1] for e in grid),
        extended=extended,
        on_edge=edge,
    )


@dataclass(frozen=True)
class QuadraticResults:
    """Every method's runs per condition number (in ``budget.condition_numbers`` order)."""

    budget: QuadraticBudget
    seed: int
    runs: dict[str, tuple[Runs, ...]]  # method -> one Runs per condition number
    adam: tuple[AdamTuning, ...]  # one per condition number


def measure(budget: QuadraticBudget, seed: int) -> QuadraticResults:
    """Draw ``budget.matrices`` quadratics per condition number (and separate tuning
    matrices for Adam) from the master ``seed`` and run every method on them."""
    runs: dict[str, list[Runs]] = {name: [] for name in METHODS}
    tunings = []
    with jax.enable_x64(True):
        for kappa in budget.condition_numbers:
            tag = f"{kappa:g}"
            seeds = derive_many(seed, budget.matrices, "quadratics", "matrices", tag)
            problems = random_quadratics(budget.dim, kappa, seeds)
            tuning_seeds = derive_many(seed, budget.tuning_matrices, "quadratics", "tuning", tag)
            tuning = tune_adam(budget, random_quadratics(budget.dim, kappa, tuning_seeds))
            tunings.append(tuning)
            for name in METHODS:
                run = runner(name, budget.tolerance, tuning.learning_rate)
                runs[name].append(run_classified(run, problems, budget.maxiter))
    return QuadraticResults(budget, seed, {k: tuple(v) for k, v in runs.items()}, tuple(tunings))


# --------------------------------------------------------------------------- analysis


class Slope(NamedTuple):
    """Log-log slope of iterations to the tolerance against the condition number, fitted
    over the condition numbers at which every matrix converged (a partly converged one
    would bias the slope down)."""

    interval: Interval
    condition_numbers: tuple[float, ...]  # those in the fit


def iteration_slope(results: QuadraticResults, name: str) -> Slope:
    """:func:`~experiments.stats.slope_ci` of log10(iterations) on log10(kappa), one point
    per matrix."""
    kappas, iterations = [], []
    for kappa, runs in zip(results.budget.condition_numbers, results.runs[name], strict=True):
        if runs.converged.all():
            kappas += [kappa] * len(runs.iterations)
            iterations += list(runs.iterations)
    interval = slope_ci(np.log10(kappas), np.log10(iterations))
    return Slope(interval, tuple(dict.fromkeys(kappas)))


def _median(values: np.ndarray) -> float:
    return float(np.median(values))


def _kappa_range(kappas: Sequence[float]) -> str:
    if len(kappas) < 2:
        return "no fit (converged at < 2 kappa)"
    return f"kappa {kappas[0]:g}..{kappas[-1]:g}"


def _outcome_counts(runs: Runs) -> str:
    counts = [(o, runs.outcomes.count(o)) for o in OUTCOMES]
    return ", ".join(f"{n} {o}" for o, n in counts if n)


def report(results: QuadraticResults, out: Path) -> Section:
    """Tables, the figure and four claims decided by the verdict rule."""
    budget, runs = results.budget, results.runs
    kappas = budget.condition_numbers
    section = Section("6. First vs second order on ill-conditioned quadratics")
    section.text(
        f"f(x) = x'Ax/2 - b'x in dimension {budget.dim}, float64, from x0 = 0: "
        f"{budget.matrices} matrices per condition number kappa, each with a Haar-random "
        "eigenbasis, eigenvalues 1 and kappa plus log-uniform ones between them, and b ~ "
        f"N(0, I), all drawn from master seed {results.seed}. One stopping rule for every "
        f"method: ||grad f|| <= {budget.tolerance:g} ||grad f(x0)|| within {budget.maxiter} "
        "iterations. GD: step 2/(L+mu); heavy ball: Polyak's optimal step 4/(sqrt L + "
        "sqrt mu)^2 and momentum ((sqrt kappa - 1)/(sqrt kappa + 1))^2; Nesterov: step 1/L, "
        "momentum (sqrt kappa - 1)/(sqrt kappa + 1); CG: linear conjugate gradients (one "
        "matrix-vector product, counted as one gradient evaluation, per iteration); Adam: "
        f"learning rate tuned per kappa on {budget.tuning_matrices} separate matrices "
        f"({budget.lr_per_decade} rates per decade, {budget.tuning_maxiter} iterations, "
        "fewest iterations to the tolerance on the worst of them, then lowest median final "
        "gradient norm); L-BFGS (memory 10, Hager-Zhang line search) and Newton: "
        "jaxopt_lab.minimize defaults. Outcomes: converged; stall (line search "
        f"failed, or f - f* no smaller at the budget than {WINDOW:g} of the budget earlier); "
        "budget (still decreasing when the budget ran out); diverged (non-finite, or f - f* "
        "ended above its value at x0)."
    )
    section.table(
        ["kappa", *METHODS],
        [
            (
                f"{kappa:g}",
                *(
                    f"{_median(runs[name][i].to_tolerance()):.0f}"
                    if runs[name][i].converged.all()
                    else f"{_median(runs[name][i].to_tolerance()):.0f} "
                    f"({int(runs[name][i].converged.sum())}/{budget.matrices} converged)"
                    for name in METHODS
                ),
            )
            for i, kappa in enumerate(kappas)
        ],
    )
    section.text(
        "Median iterations to the tolerance over the matrices (inf: most did not reach it). "
        "Outcomes of every run, per method and kappa:"
    )
    section.table(
        ["kappa", *METHODS],
        [(f"{k:g}", *(_outcome_counts(runs[n][i]) for n in METHODS)) for i, k in enumerate(kappas)],
    )
    section.table(
        ["kappa", "Adam learning rate", "grid searched", "extended (decades)", "on an edge"],
        [
            (f"{k:g}", t.learning_rate, f"{t.grid[0]:.2g}..{t.grid[-1]:.2g}", t.extended, t.on_edge)
            for k, t in zip(kappas, results.adam, strict=True)
        ],
    )
    slopes = {name: iteration_slope(results, name) for name in METHODS}
    section.table(
        ["method", "log-log slope [95% CI]", "fitted over"],
        [
            (
                n,
                "n/a" if math.isnan(s.interval.mean) else s.interval.format(),
                _kappa_range(s.condition_numbers),
            )
            for n, s in slopes.items()
        ],
    )
    section.text(
        "A method that oscillates at a floor above the tolerance (Adam with a constant rate) "
        "lands in stall or budget by where its oscillation sits at the two checkpoints; "
        "both mean the tolerance was not reached. A line-search failure is always a stall."
    )
    plot_iterations(results, slopes, out / "quadratic_iterations.png")
    section.figure(
        "quadratic_iterations.png",
        "Left: iterations to the tolerance against kappa (log-log), one point per matrix, "
        "line through the medians, crosses for runs that missed it (at the iterations they "
        "ran), reference slopes kappa and sqrt(kappa). Right: fitted slopes with 95% "
        "intervals against the theory (1, 1/2) and the decision threshold 0.75.",
    )

    gd = slopes["GD"]
    section.claim(
        "Gradient descent (fixed step 2/(L+mu)) needs iterations growing like kappa.",
        [by_interval(f"GD slope - {SLOPE_THRESHOLD}", gd.interval.plus(-SLOPE_THRESHOLD), 1)],
        f"GD's log-log slope is {gd.interval.format()} over {_kappa_range(gd.condition_numbers)} "
        f"(theory 1; {SLOPE_THRESHOLD} separates kappa from sqrt(kappa)).",
    )
    section.claim(
        "Heavy ball and Nesterov (tuned from the extreme eigenvalues) and conjugate gradients "
        "need iterations growing like sqrt(kappa) or slower.",
        [
            by_interval(
                f"{n} slope - {SLOPE_THRESHOLD}", slopes[n].interval.plus(-SLOPE_THRESHOLD), -1
            )
            for n in ACCELERATED
        ],
        "; ".join(
            f"{n} slope {slopes[n].interval.format()} over "
            f"{_kappa_range(slopes[n].condition_numbers)}"
            for n in ACCELERATED
        )
        + " (theory: 1/2 for all three; CG also adapts to the spread of the spectrum).",
    )
    comparisons, ratios = [], []
    gd_cost = [np.log10(r.cost(budget.maxiter)) for r in runs["GD"]]
    for i, kappa in enumerate(kappas):
        others = {n: np.log10(runs[n][i].cost(budget.maxiter)) for n in FAST}
        for name, holm in holm_paired(gd_cost[i], others).items():
            ratio = Interval(*(10.0**v for v in holm.interval[:3]), *holm.interval[3:])
            label = f"{name}/GD gradient evaluations at kappa {kappa:g}: {ratio.format()}"
            comparisons.append(by_interval(label, holm.interval, -1))
            ratios.append((name, kappa, ratio))
    section.claim(
        "L-BFGS and conjugate gradients handle the ill-conditioning that slows gradient "
        "descent: they need fewer gradient evaluations than GD at every condition number.",
        comparisons,
        "ratio of gradient evaluations to the tolerance (geometric mean over the matrices, "
        f"paired, Holm-corrected over {len(FAST)} methods per kappa; a run that missed the "
        f"tolerance counts as {budget.maxiter + 1}, GD's whole budget): "
        + "; ".join(f"{n} at {k:g}: {r.mean:.3g}" for n, k, r in ratios)
        + ".",
    )
    newton = [r.converged.all() and set(r.iterations) == {1} for r in runs["Newton"]]
    section.claim(
        "Newton's method needs one step on a quadratic.",
        [
            by_fact(f"Newton converged in 1 iteration on every matrix at kappa {k:g}", holds)
            for k, holds in zip(kappas, newton, strict=True)
        ],
        f"Newton's iterations on the {budget.matrices * len(kappas)} matrices: "
        f"{sorted(set(i for r in runs['Newton'] for i in r.iterations))}; outcomes: "
        + ", ".join(sorted(set(o for r in runs["Newton"] for o in r.outcomes)))
        + ".",
    )
    return section


# --------------------------------------------------------------------------- figure


def plot_iterations(results: QuadraticResults, slopes: dict[str, Slope], path: Path) -> None:
    """Iterations to the tolerance against kappa per method (log-log) beside the fitted
    slopes with their intervals."""
    budget = results.budget
    kappas = np.asarray(budget.condition_numbers)
    fig = Figure(figsize=(13.5, 5.6), layout="constrained")
    ax, ax_slope = fig.subplots(1, 2, width_ratios=[1.7, 1])
    colors = [f"C{i}" for i in range(len(METHODS))]
    medians = {}
    for index, (name, color) in enumerate(zip(METHODS, colors, strict=True)):
        shift = 10.0 ** (0.012 * (index - (len(METHODS) - 1) / 2))  # methods side by side
        for kappa, runs in zip(kappas, results.runs[name], strict=True):
            iterations, ok = np.asarray(runs.iterations, float), runs.converged
            at = np.full(iterations.shape, kappa * shift)
            ax.scatter(at[ok], iterations[ok], s=14, color=color, alpha=0.6, lw=0)
            ax.scatter(at[~ok], iterations[~ok], s=30, color=color, marker="x")
        median = np.array([_median(r.to_tolerance()) for r in results.runs[name]])
        medians[name] = median
        ax.plot(kappas * shift, median, "-", color=color, label=name)
    grid = np.geomspace(kappas[0], kappas[-1], 50)
    for name, power, style in (("GD", 1.0, "--"), ("heavy ball", 0.5, ":")):
        anchor = medians[name][0] / 2  # below the method's own line, not over it
        if np.isfinite(anchor):
            label = "reference ~ kappa" if power == 1 else "reference ~ sqrt(kappa)"
            ax.plot(grid, anchor * (grid / kappas[0]) ** power, style, color="gray", label=label)
    ax.axhline(budget.maxiter, color="black", lw=0.8, ls="-.", label="budget (maxiter)")
    ax.scatter([], [], marker="x", color="gray", label="missed the tolerance")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="condition number kappa = L / mu",
        ylabel=f"iterations to ||grad|| <= {budget.tolerance:g} ||grad(x0)||",
        title=f"{budget.matrices} matrices per kappa, dimension {budget.dim}",
        ylim=(0.5, 3 * budget.maxiter),
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    for index, (name, color) in enumerate(zip(METHODS, colors, strict=True)):
        interval = slopes[name].interval
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            error = [[interval.mean - interval.low], [interval.high - interval.mean]]
            ax_slope.errorbar(interval.mean, index, xerr=error, fmt="o", color=color, capsize=4)
        elif np.isfinite(interval.mean):
            ax_slope.plot(interval.mean, index, "o", color=color, mfc="white")
        else:
            ax_slope.text(0.02, index, "no fit", va="center", color=color, fontsize=8)
    ax_slope.axvline(1.0, color="gray", ls="--", label="kappa (slope 1)")
    ax_slope.axvline(0.5, color="gray", ls=":", label="sqrt(kappa) (slope 1/2)")
    ax_slope.axvline(SLOPE_THRESHOLD, color="red", lw=0.8, label=f"threshold {SLOPE_THRESHOLD}")
    ax_slope.set(
        yticks=range(len(METHODS)),
        yticklabels=[_short_range(n, slopes[n].condition_numbers) for n in METHODS],
        xlabel="log-log slope of iterations vs kappa",
        xlim=(-0.1, 1.3),
        ylim=(len(METHODS) - 0.5, -0.5),
        title="fitted growth rate, 95% interval",
    )
    ax_slope.tick_params(axis="y", labelsize=8)
    ax_slope.grid(alpha=0.3, axis="x")
    ax_slope.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)


def _short_range(name: str, kappas: Sequence[float]) -> str:
    return f"{name}\n(kappa {kappas[0]:.0e}..{kappas[-1]:.0e})" if len(kappas) > 1 else name


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/quadratics")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = measure(BUDGETS[args.budget], args.seed)
    seconds = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(dataclasses.asdict(results), indent=1))
    section = report(results, out)
    info: dict[str, Any] = device_info()
    preamble = (
        f"`python -m experiments.quadratics --budget {args.budget} --seed {args.seed}`, "
        f"measured on {info['device']} ({info['backend']}), JAX {info['jax_version']}, in "
        f"{seconds:.0f} s."
    )
    path = write_report(out / "REPORT.md", "Quadratics study", preamble, [section])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
