r"""Hyperparameter learning by hypergradients: tune the L2 penalty of MNIST logistic
regression on a validation loss, against a grid search with the same number of solves.

Inner problem (:func:`jaxopt_lab.problems.logistic_regression`, float64):

.. math:: W^\star(\lambda) = \arg\min_W \; \frac1N \sum_{n \in \text{train}}
          -\log \operatorname{softmax}(W^\top x_n + b)_{y_n} + \tfrac{\lambda}{2}\|W\|^2,

solved by :func:`jaxopt_lab.minimize` (L-BFGS) from zero. Outer objective: the validation
loss :math:`V(\lambda)` (mean cross-entropy of :math:`W^\star(\lambda)` on a validation set
carved from the MNIST *training* images, disjoint from the training subset). With
:math:`s = \log_{10}\lambda`, the hypergradient :math:`dV/ds` comes from ``jax.grad``
through ``minimize``, i.e. from the implicit function theorem at :math:`W^\star`
(:mod:`jaxopt_lab.optim.implicit`): one solve and one conjugate-gradient solve per point.

Both searches get ``solves`` inner solves over the same range of :math:`s`:

- grid search: ``solves`` points evenly spaced in :math:`s`;
- hypergradient descent: gradient descent on :math:`s` from the middle of the range,
  :math:`s_{k+1} = \operatorname{clip}(s_k - \eta_k\, dV/ds)`, with the first step
  :math:`\eta_0 = 0.5 / |dV/ds|` (half a decade) and the "bold driver" rule: after a
  decrease of :math:`V` the step grows by 1.5, after an increase the point is rejected
  (the next step starts again from the best point) and the step halves.

Each method's answer is its best evaluated point. The test split is touched once, for the
test accuracy at each method's chosen penalty. A dense reference curve of :math:`V` (not
counted in either budget) is drawn for the figure.

Second part: a non-negative least-squares fit through ``minimize(..., bounds=(0, inf))``
against :func:`scipy.optimize.nnls`, with the bounded implicit rule's sensitivities; it
runs only where ``minimize`` takes ``bounds``.

python -m experiments.hypergradient --budget quick --out runs/hypergradient
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.tree_util import Partial
from matplotlib.figure import Figure

import jaxopt_lab as jl
from experiments.report import Section, write_report
from jaxopt_lab import problems
from jaxopt_lab.optim.implicit import implicit_minimum
from jaxopt_lab.runtime import device_info

FIRST_STEP_DECADES = 0.5  # the first descent step moves s by half a decade
GROW, SHRINK = 1.5, 0.5  # bold-driver factors after a decrease / an increase
NUM_CLASSES = 10  # MNIST digits
FD_STEP = 1e-3  # central finite difference step in s (decades) for the check
MATCH = 1e-4  # |difference| <= MATCH x the grid's loss counts as a match, not a win
PROGRAM_SIZE_ITERATIONS = (10, 100, 1000)  # budgets at which the hypergradient is compiled
CHECK_TOL = 1e-9  # inner tolerance of the check's solves, so that solver error is below FD's


@dataclass(frozen=True)
class StudyBudget:
    """Sizes of one run of the study."""

    name: str
    num_train: int  # training subset (images from the MNIST training split)
    num_val: int  # validation subset (other images from the training split)
    solves: int  # inner solves per method
    log10_range: tuple[float, float]  # search range of s = log10(l2)
    reference_points: int  # dense validation curve for the figure, not counted
    inner_tol: float  # gradient-norm tolerance of each inner solve
    inner_maxiter: int
    nnls_shape: tuple[int, int]  # (rows, columns) of the non-negative least-squares fit


BUDGETS: dict[str, StudyBudget] = {
    "smoke": StudyBudget("smoke", 256, 256, 3, (-4.0, 0.0), 3, 1e-5, 500, (40, 10)),
    "quick": StudyBudget("quick", 2000, 2000, 10, (-6.0, 0.0), 13, 1e-6, 3000, (200, 50)),
    "medium": StudyBudget("medium", 4000, 4000, 16, (-6.0, 0.0), 9, 1e-6, 3000, (500, 100)),
}


@dataclass(frozen=True)
class Evaluation:
    """One inner solve at penalty ``10 ** log10_l2`` and what it measured."""

    log10_l2: float
    val_loss: float
    hypergradient: float | None  # dV/ds, where computed
    iterations: int
    converged: bool
    seconds: float  # wall time (after compilation)
    cpu_seconds: float  # process CPU time, both cores together


@dataclass(frozen=True)
class NnlsResults:
    """The bounded fit against scipy's NNLS and the bounded implicit rule's check."""

    rows: int
    columns: int
    x_ours: list[float]
    x_scipy: list[float]
    x_true: list[float]
    objective_ours: float
    objective_scipy: float
    max_abs_difference: float
    active_sets_agree: bool
    converged: bool
    sensitivity_implicit: float  # d ||x*||^2 / d t along a random change of b
    sensitivity_fd: float  # the same by central differences of scipy's NNLS


@dataclass(frozen=True)
class ProgramSize:
    """The compiled hypergradient program at one iteration budget: its traced equations
    and XLA's scratch memory (``memory_analysis().temp_size_in_bytes``), compiled, not run."""

    kind: str  # "implicit" (jax.grad through minimize) or "unrolled" (lax.scan of GD steps)
    iterations: int  # minimize's maxiter, or the number of unrolled steps
    equations: int
    temp_bytes: int


@dataclass(frozen=True)
class HypergradientResults:
    """Everything :func:`report` needs; JSON-serialisable with :func:`dataclasses.asdict`."""

    budget: str
    seed: int
    num_train: int
    num_val: int
    solves: int
    log10_range: tuple[float, float]
    grid: list[Evaluation]
    descent: list[Evaluation]
    reference: list[Evaluation]
    # (hypergradient, finite difference) at the descent's first point, solves to CHECK_TOL
    fd_check: tuple[float, float]
    test_accuracy: dict[str, float]  # method -> test accuracy at its chosen penalty
    program_sizes: list[ProgramSize]
    nnls: NnlsResults | None

    @property
    def grid_best(self) -> Evaluation:
        return min(self.grid, key=lambda e: e.val_loss)

    @property
    def descent_best(self) -> Evaluation:
        return min(self.descent, key=lambda e: e.val_loss)


# --------------------------------------------------------------------------- the problem

LOSS = problems.logistic_regression(np.zeros((1, 1)), np.zeros(1, int)).fun.func


class _Data(NamedTuple):
    """The arrays of one run (a pytree: passed to the compiled functions as arguments)."""

    train_x: jax.Array
    train_y: jax.Array
    val_x: jax.Array
    val_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array


def _load(budget: StudyBudget, seed: int) -> _Data:
    """Disjoint train and validation subsets of the MNIST training split (a seeded
    permutation), and the test split, as float64 pixels / 255."""
    from jaxopt_lab.training.data import load_dataset

    dataset = load_dataset("mnist")
    images = np.asarray(dataset.train_images).reshape(len(dataset.train_labels), -1)
    labels = np.asarray(dataset.train_labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    train = order[: budget.num_train]
    val = order[budget.num_train : budget.num_train + budget.num_val]
    test_x = np.asarray(dataset.test_images).reshape(len(dataset.test_labels), -1)

    def pixels(array: np.ndarray) -> jax.Array:
        return jnp.asarray(array / 255.0, jnp.float64)

    return _Data(
        pixels(images[train]),
        jnp.asarray(labels[train]),
        pixels(images[val]),
        jnp.asarray(labels[val]),
        pixels(test_x),
        jnp.asarray(dataset.test_labels),
    )


def _start(data: _Data) -> dict[str, jax.Array]:
    """The inner solves' starting point: zero weights and biases."""
    return {
        "weights": jnp.zeros((data.train_x.shape[1], NUM_CLASSES)),
        "bias": jnp.zeros(NUM_CLASSES),
    }


def _solve(log10_l2, train_x, train_y, x0, tol, maxiter):
    fun = Partial(LOSS, train_x, train_y, 10.0**log10_l2)
    return jl.minimize(fun, x0, "lbfgs", tol=tol, maxiter=maxiter)


def _validation_loss(log10_l2, data: _Data, x0, tol, maxiter):
    result = _solve(log10_l2, data.train_x, data.train_y, x0, tol, maxiter)
    return LOSS(data.val_x, data.val_y, 0.0, result.x), (result.iterations, result.converged)


# data are arguments of the compiled functions, never constants folded into them
_plain = jax.jit(_validation_loss, static_argnames=("maxiter",))
_with_hypergradient = jax.jit(
    jax.value_and_grad(_validation_loss, has_aux=True), static_argnames=("maxiter",)
)


def _evaluator(budget: StudyBudget, data: _Data) -> Callable[..., Evaluation]:
    x0 = _start(data)

    def evaluate(log10_l2: float, hypergradient: bool, tol: float | None = None) -> Evaluation:
        tol = budget.inner_tol if tol is None else tol
        args = (jnp.asarray(log10_l2), data, x0, tol, budget.inner_maxiter)
        wall, cpu = time.perf_counter(), time.process_time()
        if hypergradient:
            (value, (iterations, converged)), grad = _with_hypergradient(*args)
            grad = float(grad)
        else:
            value, (iterations, converged) = _plain(*args)
            grad = None
        value = float(value)  # waits for the result
        return Evaluation(
            log10_l2=float(log10_l2),
            val_loss=value,
            hypergradient=grad,
            iterations=int(iterations),
            converged=bool(converged),
            seconds=time.perf_counter() - wall,
            cpu_seconds=time.process_time() - cpu,
        )

    return evaluate


def _descend(evaluate: Callable[..., Evaluation], budget: StudyBudget) -> list[Evaluation]:
    """Hypergradient descent with the bold-driver step (module doc), ``solves`` solves."""
    low, high = budget.log10_range
    best = evaluate((low + high) / 2, True)
    path = [best]
    step = FIRST_STEP_DECADES / max(abs(best.hypergradient), 1e-12)
    for _ in range(budget.solves - 1):
        proposal = float(np.clip(best.log10_l2 - step * best.hypergradient, low, high))
        trial = evaluate(proposal, True)
        path.append(trial)
        if trial.val_loss < best.val_loss:
            best, step = trial, step * GROW
        else:
            step *= SHRINK
    return path


def _unrolled_validation_loss(log10_l2, data: _Data, x0, steps: int):
    """The validation loss after ``steps`` gradient-descent steps (step 1) differentiated
    by unrolling: the alternative the implicit rule replaces."""
    fun = Partial(LOSS, data.train_x, data.train_y, 10.0**log10_l2)

    def step(x, _):
        return jax.tree.map(lambda p, g: p - g, x, jax.grad(fun)(x)), None

    x, _ = jax.lax.scan(step, x0, length=steps)
    return LOSS(data.val_x, data.val_y, 0.0, x)


def _program_sizes(data: _Data, budget: StudyBudget) -> list[ProgramSize]:
    """Equations and scratch memory of the compiled hypergradient, implicit against
    unrolled, at growing iteration budgets (compiled only)."""
    x0, s = _start(data), jnp.asarray(-3.0)

    def implicit(log10_l2, data, count):
        return _validation_loss(log10_l2, data, x0, budget.inner_tol, count)[0]

    def unrolled(log10_l2, data, count):
        return _unrolled_validation_loss(log10_l2, data, x0, count)

    rows = []
    for kind, loss in (("implicit", implicit), ("unrolled", unrolled)):
        gradient = jax.grad(loss)
        for count in PROGRAM_SIZE_ITERATIONS:
            compiled = jax.jit(gradient, static_argnums=2).lower(s, data, count).compile()
            jaxpr = jax.make_jaxpr(gradient, static_argnums=2)(s, data, count)
            temp = compiled.memory_analysis().temp_size_in_bytes
            rows.append(ProgramSize(kind, count, len(jaxpr.eqns), int(temp)))
    return rows


def _test_accuracy(log10_l2: float, data: _Data, budget: StudyBudget) -> float:
    x0 = _start(data)
    result = _solve(
        jnp.asarray(log10_l2),
        data.train_x,
        data.train_y,
        x0,
        budget.inner_tol,
        budget.inner_maxiter,
    )
    logits = data.test_x @ result.x["weights"] + result.x["bias"]
    return float(jnp.mean(jnp.argmax(logits, axis=1) == data.test_y))


# --------------------------------------------------------------------------- NNLS


def _bounds_supported() -> bool:
    return "bounds" in inspect.signature(jl.minimize).parameters


def _least_squares(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((a @ x - b) ** 2)


def _nnls(budget: StudyBudget, seed: int) -> NnlsResults | None:
    r"""Fit :math:`\min_{x \ge 0} \tfrac12\|Ax - b\|^2` with ``minimize(bounds=(0, inf))``
    and with scipy's NNLS; check the bounded implicit rule's directional derivative of
    :math:`\|x^\star(b)\|^2` against central differences of scipy's solution. None where
    ``minimize`` has no ``bounds`` argument."""
    if not _bounds_supported():
        return None
    rows, columns = budget.nnls_shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, columns))
    x_true = np.where(rng.random(columns) < 0.5, 0.0, rng.random(columns) + 0.5)
    b = a @ x_true + 0.5 * rng.standard_normal(rows)
    direction = rng.standard_normal(rows)
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)

    def fit(bb: jax.Array) -> jl.OptimizeResult:
        fun = Partial(_least_squares, a_j, bb)
        return jl.minimize(fun, jnp.zeros(columns), "lbfgs", tol=1e-10, bounds=(0.0, jnp.inf))

    result = fit(b_j)

    def squared_norm(t: jax.Array) -> jax.Array:
        bb = b_j + t * direction
        solved = fit(jax.lax.stop_gradient(bb))
        fun = Partial(_least_squares, a_j, bb)
        x, _ = implicit_minimum(fun, solved.x, solved.fun, bounds=(0.0, jnp.inf))
        return jnp.sum(x**2)

    sensitivity = float(jax.grad(squared_norm)(0.0))
    x_scipy, _ = scipy.optimize.nnls(a, b)
    h = 1e-5
    plus = np.sum(scipy.optimize.nnls(a, b + h * direction)[0] ** 2)
    minus = np.sum(scipy.optimize.nnls(a, b - h * direction)[0] ** 2)
    x_ours = np.asarray(result.x)
    return NnlsResults(
        rows=rows,
        columns=columns,
        x_ours=x_ours.tolist(),
        x_scipy=x_scipy.tolist(),
        x_true=x_true.tolist(),
        objective_ours=float(_least_squares(a_j, b_j, result.x)),
        objective_scipy=float(_least_squares(a_j, b_j, jnp.asarray(x_scipy))),
        max_abs_difference=float(np.max(np.abs(x_ours - x_scipy))),
        active_sets_agree=bool(np.array_equal(x_ours == 0, x_scipy == 0)),
        converged=bool(result.converged),
        sensitivity_implicit=sensitivity,
        sensitivity_fd=float((plus - minus) / (2 * h)),
    )


# --------------------------------------------------------------------------- measure


def measure(budget: str, seed: int = 0) -> HypergradientResults:
    """Run the study at ``budget`` ("smoke", "quick", "medium"); ``seed`` picks the
    train/validation subsets (and the NNLS problem)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    sizes = BUDGETS[budget]
    low, high = sizes.log10_range
    with jax.enable_x64(True):
        data = _load(sizes, seed)
        evaluate = _evaluator(sizes, data)
        evaluate(high, False)  # compile both programs, untimed
        evaluate(high, True)
        grid = [evaluate(s, False) for s in np.linspace(low, high, sizes.solves)]
        descent = _descend(evaluate, sizes)
        reference = [evaluate(s, False) for s in np.linspace(low, high, sizes.reference_points)]
        # the check at the descent's start, where dV/ds is far from zero (at the chosen
        # point it nearly vanishes and the finite difference would measure only noise)
        start = descent[0].log10_l2
        check = evaluate(start, True, CHECK_TOL).hypergradient
        plus = evaluate(start + FD_STEP, False, CHECK_TOL).val_loss
        minus = evaluate(start - FD_STEP, False, CHECK_TOL).val_loss
        fd_check = (check, (plus - minus) / (2 * FD_STEP))
        chosen = min(descent, key=lambda e: e.val_loss)
        grid_best = min(grid, key=lambda e: e.val_loss)
        test_accuracy = {
            "grid search": _test_accuracy(grid_best.log10_l2, data, sizes),
            "hypergradient descent": _test_accuracy(chosen.log10_l2, data, sizes),
        }
        program_sizes = _program_sizes(data, sizes)
        nnls = _nnls(sizes, seed)
    return HypergradientResults(
        budget=budget,
        seed=seed,
        num_train=sizes.num_train,
        num_val=sizes.num_val,
        solves=sizes.solves,
        log10_range=sizes.log10_range,
        grid=grid,
        descent=descent,
        reference=reference,
        fd_check=fd_check,
        test_accuracy=test_accuracy,
        program_sizes=program_sizes,
        nnls=nnls,
    )


# --------------------------------------------------------------------------- figures


def plot_validation_curve(results: HypergradientResults, path: Path) -> None:
    """Validation loss against the penalty: the reference curve, the grid's points and the
    descent's path in order, each method's best point starred."""
    figure = Figure(figsize=(7, 4.4), layout="constrained")
    ax = figure.subplots()
    reference = sorted(results.reference, key=lambda e: e.log10_l2)
    ax.plot(
        [e.log10_l2 for e in reference],
        [e.val_loss for e in reference],
        "-",
        color="0.7",
        label="reference curve (not counted)",
    )
    ax.plot(
        [e.log10_l2 for e in results.grid],
        [e.val_loss for e in results.grid],
        "s",
        color="tab:blue",
        label=f"grid search ({len(results.grid)} solves)",
    )
    ax.plot(
        [e.log10_l2 for e in results.descent],
        [e.val_loss for e in results.descent],
        "o-",
        color="tab:red",
        ms=4,
        lw=0.8,
        label=f"hypergradient descent ({len(results.descent)} solves)",
    )
    for index, e in enumerate(results.descent):
        ax.annotate(
            str(index),
            (e.log10_l2, e.val_loss),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            color="tab:red",
        )
    for best, color in ((results.grid_best, "tab:blue"), (results.descent_best, "tab:red")):
        ax.plot(best.log10_l2, best.val_loss, "*", ms=14, color=color, mec="black")
    ax.set(
        xlabel="log10 of the L2 penalty (dimensionless)",
        ylabel="validation cross-entropy (nats)",
        title=f"MNIST logistic regression, {results.num_train} training images",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def plot_best_so_far(results: HypergradientResults, path: Path) -> None:
    """Best validation loss found after each inner solve, above the lowest loss either
    method found (the grid in ascending order of the penalty, as a grid search runs)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    lowest = min(results.grid_best.val_loss, results.descent_best.val_loss)
    for name, evaluations, color in (
        ("grid search", results.grid, "tab:blue"),
        ("hypergradient descent", results.descent, "tab:red"),
    ):
        excess = np.minimum.accumulate([e.val_loss for e in evaluations]) - lowest
        drawn = np.where(excess > 0, excess, np.nan)  # the lowest itself has no log
        ax.plot(np.arange(1, len(excess) + 1), drawn, "o-", color=color, label=name)
    ax.set(
        xlabel="inner solves",
        ylabel="best validation loss so far - lowest found (nats)",
        yscale="log",
        title="same budget of inner solves",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def plot_nnls(nnls: NnlsResults, path: Path) -> None:
    """The non-negative coefficients: ours, scipy's NNLS and the generating ones."""
    figure = Figure(figsize=(7, 3.8), layout="constrained")
    ax = figure.subplots()
    index = np.arange(nnls.columns)
    ax.plot(index, nnls.x_true, "x", color="0.5", label="generating coefficients")
    ax.plot(index, nnls.x_scipy, "s", mfc="none", color="tab:blue", label="scipy.optimize.nnls")
    ax.plot(index, nnls.x_ours, ".", color="tab:red", label="minimize(bounds=(0, inf))")
    ax.set(
        xlabel="coefficient index",
        ylabel="coefficient value (dimensionless)",
        title=f"non-negative least squares, {nnls.rows} x {nnls.columns}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)


# --------------------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def report(results: HypergradientResults, out: Path) -> Section:
    """The study's section of REPORT.md; writes its figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    section = Section("7. Hyperparameter learning by hypergradients")
    grid, descent = results.grid_best, results.descent_best
    low, high = results.log10_range
    difference = grid.val_loss - descent.val_loss
    section.text(
        f"Budget **{results.budget}**, seed {results.seed}: multinomial logistic regression "
        f"on {results.num_train} MNIST training images (float64, L-BFGS to a gradient norm "
        f"of {BUDGETS[results.budget].inner_tol:g}), validation loss on {results.num_val} "
        "other images of the training split. Each method gets "
        f"{results.solves} inner solves over log10(l2) in [{low:g}, {high:g}]: the grid "
        "evenly spaced, the hypergradient descent from the middle of the range with the "
        "bold-driver step (module doc of `experiments/hypergradient.py`). The "
        "hypergradient is `jax.grad` through `jl.minimize` (implicit function theorem at "
        "the solution, conjugate gradients on Hessian-vector products)."
    )
    plain = results.grid + results.reference
    hyper = results.descent
    section.table(
        ["method", "solves", "best log10(l2)", "best validation loss", "test accuracy"],
        [
            (
                "grid search",
                len(results.grid),
                grid.log10_l2,
                grid.val_loss,
                results.test_accuracy["grid search"],
            ),
            (
                "hypergradient descent",
                len(results.descent),
                descent.log10_l2,
                descent.val_loss,
                results.test_accuracy["hypergradient descent"],
            ),
        ],
    )
    relative = difference / grid.val_loss
    verdict = "matches" if abs(relative) <= MATCH else "beats" if difference > 0 else "loses to"
    section.text(
        f"Hypergradient descent **{verdict}** the grid search (a match: within "
        f"{100 * MATCH:g}% of the grid's loss): validation loss {descent.val_loss:.7f} "
        f"against {grid.val_loss:.7f}, the grid's minus the descent's = {difference:+.3g} "
        f"nats ({100 * relative:+.3g}% of the grid's). "
        f"Lowest point of the reference curve ({len(results.reference)} extra solves, not "
        f"counted): {min(e.val_loss for e in results.reference):.5f}. Test accuracy is "
        "measured once per chosen penalty and never used for choosing."
    )
    hypergradient, finite_difference = results.fd_check
    section.text(
        f"Check of the hypergradient at the descent's first point: dV/dlog10(l2) = "
        f"{hypergradient:.6g} "
        f"(implicit) against {finite_difference:.6g} (central difference, step "
        f"{FD_STEP:g} decade; these three solves to a gradient norm of {CHECK_TOL:g}). "
        "Cost per point after compilation (median wall / CPU "
        f"seconds, shared 2-core machine): a solve {_median([e.seconds for e in plain]):.3f} "
        f"/ {_median([e.cpu_seconds for e in plain]):.3f} s, a solve with its hypergradient "
        f"{_median([e.seconds for e in hyper]):.3f} / "
        f"{_median([e.cpu_seconds for e in hyper]):.3f} s; L-BFGS iterations per solve "
        f"{min(e.iterations for e in plain + hyper)}-{max(e.iterations for e in plain + hyper)}"
        f", all converged: {all(e.converged for e in plain + hyper)}."
    )
    plot_validation_curve(results, out / "hypergradient_validation.png")
    section.figure(
        "hypergradient_validation.png",
        "Validation loss against the L2 penalty: grid points, the numbered descent path and "
        "each method's best (stars).",
    )
    plot_best_so_far(results, out / "hypergradient_best_so_far.png")
    section.figure(
        "hypergradient_best_so_far.png",
        "Best validation loss after each inner solve, above the lowest found by either method "
        "(a point at the lowest is not drawn: zero has no logarithm).",
    )
    section.text(
        "Memory of the hypergradient: the compiled `jax.grad` program (compiled, not run) "
        "at growing iteration budgets. Through `minimize` the backward pass is one CG solve "
        "at the solution, so neither the program nor its scratch memory depends on "
        "`maxiter`; unrolling gradient-descent steps in a `lax.scan` keeps every step's "
        "residuals for the backward pass."
    )
    section.table(
        ["differentiation", "iterations", "jaxpr equations", "scratch memory (MB)"],
        [
            (row.kind, row.iterations, row.equations, row.temp_bytes / 1e6)
            for row in results.program_sizes
        ],
    )
    nnls = results.nnls
    if nnls is None:
        section.text(
            "Non-negative least squares: not run, `jl.minimize` has no `bounds` argument in "
            "this build."
        )
        return section
    section.text(
        f"Non-negative least squares ({nnls.rows} x {nnls.columns}) through "
        "`jl.minimize(..., bounds=(0, inf))` against `scipy.optimize.nnls`: objective "
        f"{nnls.objective_ours:.10g} against {nnls.objective_scipy:.10g}, largest coefficient "
        f"difference {nnls.max_abs_difference:.2e}, same active set: "
        f"{nnls.active_sets_agree}, converged: {nnls.converged}. Bounded implicit rule "
        f"(active coordinates get zero sensitivity): d||x*||^2 along a random change of b = "
        f"{nnls.sensitivity_implicit:.8g}, central differences of scipy's NNLS "
        f"{nnls.sensitivity_fd:.8g}."
    )
    plot_nnls(nnls, out / "hypergradient_nnls.png")
    section.figure("hypergradient_nnls.png", "Non-negative least-squares coefficients.")
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/hypergradient")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = measure(args.budget, args.seed)
    (out / "results.json").write_text(json.dumps(dataclasses.asdict(results), indent=1))
    section = report(results, out)
    info = device_info()
    preamble = (
        f"`python -m experiments.hypergradient --budget {args.budget} --seed {args.seed}`, "
        f"measured on {info['device']} ({info['backend']}), JAX {info['jax_version']}, in "
        f"{time.perf_counter() - start:.0f} s."
    )
    path = write_report(out / "REPORT.md", "Hypergradient study", preamble, [section])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
