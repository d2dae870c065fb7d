"""Study 1 — convergence rate: full-batch GD, SGD with batch 1, mini-batch SGD, momentum,
Nesterov, Adagrad, RMSprop, Adam (all tuned by :mod:`experiments.protocol`) and full-batch
L-BFGS, on three workloads (the MNIST MLP, the same MLP on Fashion-MNIST, and MNIST
logistic regression, a convex objective).

**Configurations.** All eight first-order configurations run on the MNIST MLP; on
Fashion-MNIST and logistic regression a subset (GD, mini-batch SGD, momentum, Adam), so
that each verdict can say where it holds (the quick tier runs every configuration on
logistic regression alone). The medium and full tiers also tune momentum's ``beta``, and
Adam's ``b1`` and ``eps``, jointly with the rate, on the MNIST MLP, as two more
configurations. L-BFGS needs no learning rate (Hager-Zhang line search); it minimises the
same full-batch training loss from the same initial weights (the final seeds of the
protocol) for ``full_batch_steps`` iterations, evaluated at the same iterations as GD.

**Cost axes** (never wall time: :mod:`experiments.efficiency` measures time):

- *steps*: optimizer updates (L-BFGS: iterations);
- *epochs*: examples whose gradient was computed, divided by the number of training
  images: ``steps * batch / N`` for the first-order methods, the number of value-and-gradient
  evaluations for L-BFGS (each a full pass, line-search trials included). This is also the
  count of gradient evaluations in units of one full-batch gradient.

**Claims** (decided by :func:`experiments.verdict.by_interval` on paired-by-seed intervals):

1. *Per example processed, SGD (batch 1 and 32) converges faster than full-batch GD*: the
   training loss of SGD after its budget of ``E`` epochs minus GD's at GD's first evaluation
   at or after ``E`` epochs (so GD never processes fewer examples), per workload; on the
   MNIST MLP the two SGD configurations are Holm-corrected against GD. The opposite
   trade-off per *step* is reported beside it: GD's training loss after its last step minus
   mini-batch SGD's at its first evaluation at or after that many steps.
2. *Momentum and adaptive methods speed up convergence over plain SGD*: each one's mean
   validation loss over the run's evaluations (the area under its validation curve per
   epoch: low when it gets low early and stays low) minus mini-batch SGD's after the same
   epochs, Holm-corrected over the optimizers of a workload. Every configuration of this
   claim, SGD included, is selected by that same quantity on the tuning seeds
   (``selection="area"`` of :func:`experiments.protocol.tune`) and rerun on the final seeds:
   judged on the area while tuned for the final loss, Adam on logistic regression flipped
   between two rates of nearly equal final loss and opposite verdicts from one master seed
   to the next. The final validation loss differences of the runs selected by final
   validation loss (what the budget ends at) and their epochs to SGD's mean final
   validation loss (k/n seeds reached) are reported beside it.
3. *L-BFGS converges in fewer iterations than full-batch GD*: L-BFGS's training loss after
   GD's number of iterations minus GD's, and after at most GD's number of gradient
   evaluations minus GD's, per workload. Iterations and gradient evaluations to GD's
   worst final training loss are reported beside it (k/n reached).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import jaxopt_lab as jl
from experiments import protocol
from experiments.protocol import Config, ProtocolBudget, Tuned, Workload
from experiments.report import Section
from experiments.stats import first_reach, holm_paired, mean_ci, paired_difference
from experiments.verdict import Comparison, by_interval
from jaxopt_lab.training.step import TrainState, evaluate, init_train_state
from jaxopt_lab.training.sweep import SweepData

GD = "gd (full batch)"
SGD1 = "sgd (batch 1)"
LBFGS = "l-bfgs (full batch)"
ACCELERATED = ("momentum", "nesterov", "adagrad", "rmsprop", "adam")
# label -> (optimizer, the hyperparameters tuned jointly with its rate)
TUNED_EXTRAS = {
    "momentum (tuned beta)": ("momentum", ("momentum",)),
    "adam (tuned b1, eps)": ("adam", ("b1", "eps")),
}
# evaluation points (as fractions of its budget) of the profile's targets
PROFILE_FRACTIONS = (0.25, 0.5, 1.0)


def sgd_label(batch: int) -> str:
    return f"sgd (batch {batch})"


@dataclass(frozen=True)
class ConvergenceBudget:
    """The protocol tier the study runs at; the workload that runs every configuration
    (``every_config``) and those that run the subset GD, mini-batch SGD, momentum and Adam
    (``subset``); whether ``every_config`` also tunes momentum's ``beta`` and Adam's ``b1``
    and ``eps`` jointly with the learning rate."""

    protocol: str
    every_config: str = "mnist-mlp"
    subset: tuple[str, ...] = ("fashion-mlp", "mnist-logreg")
    tune_extras: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in protocol.BUDGETS:
            raise ValueError(
                f"unknown protocol tier {self.protocol!r}; choose from {sorted(protocol.BUDGETS)}"
            )
        unknown = {self.every_config, *self.subset} - set(protocol.WORKLOADS)
        if unknown or self.every_config in self.subset:
            raise ValueError(
                f"workloads must be distinct names from {sorted(protocol.WORKLOADS)}, got "
                f"{self.every_config!r} and {self.subset}"
            )

    @property
    def tier(self) -> ProtocolBudget:
        return protocol.BUDGETS[self.protocol]


BUDGETS: dict[str, ConvergenceBudget] = {
    # every code path on one workload (compilation dominates: about 10 s per configuration)
    "quick": ConvergenceBudget("quick", every_config="mnist-logreg", subset=()),
    "medium": ConvergenceBudget("medium", tune_extras=True),
    "full": ConvergenceBudget("full", tune_extras=True),
}


def configs(budget: ConvergenceBudget) -> dict[str, dict[str, Config]]:
    """Workload -> label -> first-order configuration of the study."""
    batch = budget.tier.batch_size
    every = {
        GD: Config("sgd", None),
        SGD1: Config("sgd", 1),
        sgd_label(batch): Config("sgd", batch),
        **{name: Config(name, batch) for name in ACCELERATED},
    }
    if budget.tune_extras:
        every |= {
            label: Config(optimizer, batch, names)
            for label, (optimizer, names) in TUNED_EXTRAS.items()
        }
    subset = {label: every[label] for label in (GD, sgd_label(batch), "momentum", "adam")}
    return {budget.every_config: every} | {name: subset for name in budget.subset}


@dataclass(frozen=True)
class Curves:
    """One configuration's final runs, ``[seed, evaluation point]``; every configuration of
    a workload runs the same final seeds in the same order (paired)."""

    label: str
    steps: np.ndarray  # [point] optimizer steps (L-BFGS: iterations)
    epochs: np.ndarray  # [seed, point] examples whose gradient was computed / N
    train_loss: np.ndarray
    val_loss: np.ndarray
    test_accuracy: np.ndarray  # [seed], measured once after the last step
    tuned: Tuned | None  # the protocol's record (None for L-BFGS: no learning rate)

    @classmethod
    def from_tuned(cls, label: str, tuned: Tuned) -> Curves:
        train = tuned.final_curve("train_loss")
        return cls(
            label,
            tuned.steps,
            np.broadcast_to(tuned.epochs, train.shape),
            train,
            tuned.final_curve("val_loss"),
            tuned.final_test_accuracy(),
            tuned,
        )

    @property
    def mean_val_loss(self) -> np.ndarray:
        """Per seed, the mean validation loss over the evaluations after step 0: the area
        under the validation curve against epochs divided by the budget (the evaluations
        are evenly spaced), low when a run gets low early and stays there."""
        return self.val_loss[:, 1:].mean(axis=1)

    def to_target(self, metric: str, axis: str, target: float) -> np.ndarray:
        """Per seed, the first ``steps`` or ``epochs`` at which ``metric`` <= target
        (inf when never)."""
        values = getattr(self, metric)
        positions = np.broadcast_to(getattr(self, axis), values.shape)
        return np.asarray(
            [first_reach(v, p, target) for v, p in zip(values, positions, strict=True)]
        )


def lbfgs_curves(workload: Workload, budget: ProtocolBudget, master: int) -> Curves:
    """Full-batch L-BFGS (:func:`jaxopt_lab.lbfgs`, Hager-Zhang line search) on the
    workload's training images, from the initial weights of each final seed, for
    ``full_batch_steps`` iterations evaluated every ``full_batch_steps / evals``."""
    data = protocol.data(workload, budget, protocol.CLEAN, master)
    run = _lbfgs_program(
        workload.hidden_sizes, budget.evals, budget.full_batch_steps // budget.evals
    )
    final_seeds = protocol.seeds(master, workload, "final", budget.final_seeds)
    records = [jax.tree.map(np.asarray, run(jnp.uint32(seed), data)) for seed in final_seeds]
    stacked = {k: np.stack([r[k] for r in records]) for k in records[0]}
    iterations = stacked["iterations"]
    if np.any(iterations != iterations[0]):
        raise RuntimeError(f"L-BFGS ran different iteration counts per seed: {iterations}")
    return Curves(
        LBFGS,
        iterations[0],
        stacked["fevals"].astype(np.float64),
        stacked["train"],
        stacked["val"],
        stacked["test"],
        None,
    )


@functools.cache
def _lbfgs_program(hidden_sizes: tuple[int, ...], evals: int, per_eval: int):
    """The jitted run ``(seed, data) -> curves`` (one compiled program per architecture and
    budget; the data are an argument, so workloads of the same shapes share it)."""
    build = protocol.model_factory(hidden_sizes)
    graphdef, _ = init_train_state(build({}, jax.random.key(0)), optax.identity())
    optimizer = jl.lbfgs()

    def run(seed: jax.Array, data: SweepData) -> dict[str, jax.Array]:
        # the initialisation key of jaxopt_lab.training.sweep: the same weights as the
        # first-order runs of this seed
        init_key = jax.random.split(jax.random.key(seed), 3)[0]
        _, state = init_train_state(build({}, init_key), optax.identity())

        def at(params) -> TrainState:
            return TrainState(state.step, params, state.model_state, ())

        def objective(params) -> jax.Array:
            return evaluate(
                at(params), data.train_images, data.train_labels, graphdef=graphdef
            ).loss

        value_and_grad = jl.value_and_grad_from_state(objective)

        def step(carry, _):
            params, opt_state = carry
            value, grad = value_and_grad(params, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, params, value=value, grad=grad, value_fn=objective
            )
            return (jl.apply_updates(params, updates), opt_state), None

        def measure(params, **counts: jax.Array) -> dict[str, jax.Array]:
            train = evaluate(at(params), data.eval_images, data.eval_labels, graphdef=graphdef)
            val = evaluate(at(params), data.val_images, data.val_labels, graphdef=graphdef)
            return {"train": train.loss, "val": val.loss, **counts}

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, length=per_eval)
            info = jl.lbfgs_info(carry[1])
            return carry, measure(carry[0], iterations=info.iterations, fevals=info.fevals)

        zero = jnp.zeros((), jnp.int32)
        start = measure(state.params, iterations=zero, fevals=zero)
        carry = (state.params, optimizer.init(state.params))
        (params, _), later = jax.lax.scan(chunk, carry, length=evals)
        curves = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), start, later)
        test = evaluate(at(params), data.test_images, data.test_labels, graphdef=graphdef)
        return {**curves, "test": test.accuracy}

    return jax.jit(run)


@dataclass(frozen=True)
class ConvergenceResults:
    """Every configuration's final runs per workload (L-BFGS last), selected by final
    validation loss; and, for claim 2, mini-batch SGD and the accelerated configurations
    selected by the area under the validation curve."""

    budget: ConvergenceBudget
    seed: int
    runs: dict[str, dict[str, Curves]]  # workload -> label -> curves
    speed: dict[str, dict[str, Curves]]  # workload -> label -> curves (selected by area)

    @property
    def tier(self) -> ProtocolBudget:
        return self.budget.tier

    @property
    def sgd(self) -> str:
        return sgd_label(self.tier.batch_size)


def speed_labels(labels, sgd: str) -> list[str]:
    """The configurations of claim 2, in the order given: mini-batch SGD (the baseline)
    and the momentum and adaptive ones."""
    return [label for label in labels if label == sgd or _accelerated(label)]


def _accelerated(label: str) -> bool:
    return label in ACCELERATED or label in TUNED_EXTRAS


def measure(budget: ConvergenceBudget, seed: int) -> ConvergenceResults:
    """Tune and rerun every configuration of every workload (selected by final validation
    loss, and claim 2's also by area), and run L-BFGS."""
    runs: dict[str, dict[str, Curves]] = {}
    speed: dict[str, dict[str, Curves]] = {}
    sgd = sgd_label(budget.tier.batch_size)
    for name, by_label in configs(budget).items():
        workload = protocol.WORKLOADS[name]
        runs[name] = {
            label: _curves(label, workload, config, budget.tier, seed, "final")
            for label, config in by_label.items()
        }
        runs[name][LBFGS] = lbfgs_curves(workload, budget.tier, seed)
        speed[name] = {
            label: _curves(label, workload, by_label[label], budget.tier, seed, "area")
            for label in speed_labels(by_label, sgd)
        }
    return ConvergenceResults(budget, seed, runs, speed)


def _curves(
    label: str,
    workload: Workload,
    config: Config,
    tier: ProtocolBudget,
    seed: int,
    selection: protocol.Selection,
) -> Curves:
    tuned = protocol.tune(workload, config, tier, seed, selection=selection)
    return Curves.from_tuned(label, tuned)


def first_at_or_after(positions: np.ndarray, value: float) -> int:
    """Index of the first of the increasing ``positions`` that is >= ``value``."""
    index = int(np.searchsorted(positions, value - 1e-9 * abs(value)))
    if index == len(positions):
        raise ValueError(f"no evaluation at or after {value:g} (last: {positions[-1]:g})")
    return index


def _per_seed(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[seed, index[seed]]``."""
    return values[np.arange(values.shape[0]), index]


def profile_targets(runs: dict[str, Curves], evals: int) -> np.ndarray:
    """Three decreasing validation-loss targets of one workload: what the *median*
    configuration (by mean final validation loss) has reached, as the running minimum of its
    mean curve, after 1/4, 1/2 and all of its evaluations."""
    finals = {label: float(np.mean(c.val_loss[:, -1])) for label, c in runs.items()}
    ranked = sorted(finals, key=lambda label: (math.isnan(finals[label]), finals[label]))
    median = runs[ranked[(len(ranked) - 1) // 2]]
    best_so_far = np.minimum.accumulate(median.val_loss.mean(axis=0))
    points = [max(1, math.ceil(f * evals)) for f in PROFILE_FRACTIONS]
    targets = best_so_far[points]
    initial = min(float(np.min(c.val_loss[:, 0])) for c in runs.values())
    if not np.all(np.diff(targets) < 0) or targets[0] >= initial:
        raise ValueError(
            f"the median configuration {median.label!r} gives targets {targets} that are not "
            f"distinct and below the initial validation loss {initial:.4g}"
        )
    return targets


def profile_problems(results: ConvergenceResults) -> dict[str, dict[str, np.ndarray]]:
    """Performance-profile problems: per workload, three distinct validation-loss targets
    (:func:`profile_targets`); per problem, every configuration's epochs to the target per
    final seed (inf when missed). Problem title -> configuration label -> ``[seed]``."""
    problems: dict[str, dict[str, np.ndarray]] = {}
    for name, runs in results.runs.items():
        for target in profile_targets(runs, results.tier.evals):
            problems[f"{name}, val loss <= {target:.3f}"] = {
                label: curves.to_target("val_loss", "epochs", target)
                for label, curves in runs.items()
            }
    return problems


# ---------------------------------------------------------------------------- figures

CEILING = 3.0  # validation losses above it (or diverged) are drawn at it


def _labels(results: ConvergenceResults) -> list[str]:
    """Every configuration label, in the order of first appearance."""
    return list(dict.fromkeys(label for runs in results.runs.values() for label in runs))


def _colors(labels: list[str]) -> dict[str, tuple | str]:
    """tab10 for the first-order configurations, black for L-BFGS."""
    palette = matplotlib.colormaps["tab10"]
    tuned = [label for label in labels if label != LBFGS]
    if len(tuned) > palette.N:
        raise ValueError(f"{len(tuned)} configurations, only {palette.N} colours")
    return {label: palette(i) for i, label in enumerate(tuned)} | {LBFGS: "black"}


_BY_FINAL = dict(ls="", marker="*", ms=11, mec="black", zorder=6)
_BY_TARGET = dict(ls="", marker="s", ms=13, mfc="none", mew=1.6, zorder=5)
_BY_AREA = dict(ls="", marker="D", ms=9, mfc="none", mew=1.6, zorder=5)


def plot_sensitivity(results: ConvergenceResults, path: Path) -> Figure:
    """DeepOBS-style learning-rate sensitivity: final validation loss (mean over the tuning
    seeds, band: their min to max) against the learning rate, one panel per workload. A
    star marks the rate chosen by final validation loss, an open diamond the rate chosen by
    the area under the validation curve (claim 2), an open square the rate chosen by steps
    to target; open circles are rates added by grid extensions; diverged or above
    :data:`CEILING`: drawn at the ceiling. Configurations that also tune ``beta``, ``b1`` or ``eps``
    show, per rate, the best of those values."""
    colors = _colors(_labels(results))
    fig = Figure(figsize=(6.0 * len(results.runs), 5.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(results.runs)))
    for ax, (name, runs) in zip(axes, results.runs.items(), strict=True):
        for label, curves in runs.items():
            if curves.tuned is None:
                continue
            rates, mean, low, high = _sensitivity(curves.tuned)
            color = colors[label]
            ax.plot(rates, mean, "-", color=color, label=label)
            ax.fill_between(rates, low, high, color=color, alpha=0.15)
            first = set(protocol.first_grid(curves.tuned.config, results.tier))
            for rate, value in zip(rates, mean, strict=True):
                ax.plot(rate, value, "o", ms=4, color=color, mfc=color if rate in first else "w")
            chosen = (
                (curves.tuned.best_by_target, _BY_TARGET),
                (curves.tuned.chosen("area"), _BY_AREA),
                (curves.tuned.chosen("final"), _BY_FINAL),
            )
            for hyperparameters, style in chosen:
                rate = hyperparameters["learning_rate"]
                index = int(np.flatnonzero(rates == rate)[0])
                ax.plot(rate, mean[index], color=color, **style)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate",
            ylabel="final validation loss (cross-entropy, nats)",
            title=f"{name}: tuning seeds, diverged drawn at {CEILING:g}",
        )
        ax.grid(alpha=0.3, which="both")
    tuned = [label for label in colors if label != LBFGS]
    handles = [Line2D([], [], color=colors[label], label=label) for label in tuned]
    handles += [
        Line2D([], [], color="gray", label="chosen by final val loss", **_BY_FINAL),
        Line2D([], [], color="gray", label="chosen by area (claim 2)", **_BY_AREA),
        Line2D([], [], color="gray", label="chosen by steps to target", **_BY_TARGET),
        Line2D([], [], ls="", marker="o", mfc="w", color="gray", label="added by an extension"),
    ]
    # six columns fit under three panels, three under one
    ncol = min(6, 3 * len(results.runs))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8)
    fig.savefig(path, dpi=120)
    return fig


def _sensitivity(tuned: Tuned) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per learning rate: the final validation loss (mean over tuning seeds) of its best
    extra hyperparameters, and that point's min and max over the tuning seeds (clipped to
    :data:`CEILING`)."""
    rates = tuned.learning_rates
    mean, low, high = [], [], []
    for rate in rates:
        point = min(
            (p for p in tuned.points if p.hyperparameters["learning_rate"] == rate),
            key=lambda p: p.final,
        )
        last = np.where(np.isfinite(point.val_loss[:, -1]), point.val_loss[:, -1], np.inf)
        mean.append(min(point.final, CEILING))
        low.append(min(float(last.min()), CEILING))
        high.append(min(float(last.max()), CEILING))
    return rates, np.asarray(mean), np.asarray(low), np.asarray(high)


def plot_convergence(results: ConvergenceResults, path: Path) -> Figure:
    """Training loss against steps and epochs, validation loss against epochs; one row per
    workload; mean over the final seeds with its 95% t band (log axes, step 0 left out)."""
    labels = _labels(results)
    colors = _colors(labels)
    columns = (
        ("train_loss", "steps", "optimizer steps (L-BFGS: iterations)", "training loss"),
        ("train_loss", "epochs", "epochs (gradient evaluations / N)", "training loss"),
        ("val_loss", "epochs", "epochs (gradient evaluations / N)", "validation loss"),
    )
    rows = len(results.runs)
    fig = Figure(figsize=(16, 4.2 * rows + 1.0), layout="constrained")
    axes = np.asarray(fig.subplots(rows, 3)).reshape(rows, 3)
    for row, (name, runs) in zip(axes, results.runs.items(), strict=True):
        for ax, (metric, axis, xlabel, ylabel) in zip(row, columns, strict=True):
            for label, curves in runs.items():
                values = getattr(curves, metric)
                at = np.broadcast_to(getattr(curves, axis), values.shape).mean(axis=0)
                bands = [mean_ci(column) for column in values.T]
                mean = np.asarray([b.mean for b in bands])
                ax.plot(at[1:], mean[1:], "-", color=colors[label], label=label)
                ax.fill_between(
                    at[1:],
                    [b.low for b in bands[1:]],
                    [b.high for b in bands[1:]],
                    color=colors[label],
                    alpha=0.2,
                )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel=xlabel,
                ylabel=f"{ylabel} (nats)",
                title=f"{name}: {ylabel} vs {axis}",
            )
            ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=colors[label], label=label) for label in labels]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=8)
    fig.savefig(path, dpi=120)
    return fig


# ----------------------------------------------------------------------------- report


def report(results: ConvergenceResults, out: Path) -> Section:
    section = Section("1. Convergence rate")
    tier, sgd = results.tier, results.sgd
    plot_sensitivity(results, out / "convergence_sensitivity.png")
    plot_convergence(results, out / "convergence.png")
    steps = ", ".join(
        f"{c.label}: {c.steps[-1]} steps"
        for c in results.runs[results.budget.every_config].values()
        if c.label in (SGD1, sgd)
    )
    section.text(
        f"Workloads: {', '.join(results.runs)} ({tier.num_train} training images, validation "
        f"on {tier.num_val} held-out training images, test on the test split once per final "
        f"run). Mini-batch configurations get {tier.epochs} epochs ({steps}), full-batch GD "
        f"and L-BFGS {tier.full_batch_steps} iterations; each run is evaluated "
        f"{tier.evals} times. Every learning rate is tuned on a log grid of {tier.per_decade} "
        f"rates per decade on {tier.tuning_seeds} tuning seeds (extended when the optimum "
        f"sits on an edge until the optimum of both selections below is bracketed), "
        f"selected by the quantity its verdict reads, and rerun on {tier.final_seeds} final "
        f"seeds shared by every configuration (paired): by final validation loss for "
        f"claims 1 and 3, the table and the figures; by the mean validation loss over the "
        f"run's evaluations (the area under the validation curve) for claim 2, SGD "
        f"included. The selection by steps to 1.05x the best validation loss is shown "
        f"beside them. "
        + (
            f"On {results.budget.every_config}, momentum's beta (grid "
            f"{list(protocol.EXTRA_GRIDS['momentum'])}) and Adam's b1 (grid "
            f"{list(protocol.EXTRA_GRIDS['b1'])}) and eps (grid "
            f"{list(protocol.EXTRA_GRIDS['eps'])}) are also tuned jointly with the rate. "
            if results.budget.tune_extras
            else "Momentum's beta and Adam's b1 stay at their defaults (0.9), Adam's eps at "
            "1e-8, in this tier. "
        )
        + "Cost is counted in steps and in epochs (examples whose gradient was computed / N; "
        "for L-BFGS its value-and-gradient evaluations, line search included); never wall "
        "time. Intervals: mean [95% t interval] over the final seeds, (k/n) when only k of n "
        "seeds reached a target."
    )
    for name, runs in results.runs.items():
        section.text(f"**{name}**")
        section.table(*_table(runs, sgd))
    edges = [
        f"{name} / {c.label}{suffix}: {c.tuned.edge}"
        for by_selection, suffix in ((results.runs, ""), (results.speed, " (by area)"))
        for name, runs in by_selection.items()
        for c in runs.values()
        if c.tuned is not None and c.tuned.edge
    ]
    extended = [
        f"{name} / {c.label} (+{c.tuned.extensions} decade{'s' * (c.tuned.extensions > 1)})"
        for name, runs in results.runs.items()
        for c in runs.values()
        if c.tuned is not None and c.tuned.extensions
    ]
    section.text(
        "Grid extensions: " + ("; ".join(extended) or "none") + ". Optima still on a grid "
        "edge after the extensions: " + ("; ".join(edges) or "none") + "."
    )
    section.figure(
        "convergence_sensitivity.png",
        "Learning-rate sensitivity: final validation loss against the learning rate "
        "(tuning seeds: mean, band min to max; star: chosen by final validation loss, "
        "diamond: chosen by the area under the validation curve, square: chosen by steps to "
        "target; open circles: added by grid extension).",
    )
    section.figure(
        "convergence.png",
        "Training loss against steps and epochs, validation loss against epochs (mean over "
        "the final seeds, band: 95% t interval).",
    )
    _claim_minibatch(section, results)
    _claim_accelerated(section, results)
    _claim_lbfgs(section, results)
    return section


def _hyperparameters(chosen: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('learning_rate', 'lr')} {v:g}" for k, v in chosen.items())


def _rates_tried(tuned: Tuned) -> str:
    rates = tuned.learning_rates
    return f"{rates[0]:g} to {rates[-1]:g} ({rates.size})"


def _table(runs: dict[str, Curves], sgd: str) -> tuple[list[str], list[tuple]]:
    target = float(np.mean(runs[sgd].val_loss[:, -1]))
    headers = [
        "configuration",
        "rates tried",
        "chosen by final val loss",
        "chosen by area (claim 2)",
        "chosen by steps to target",
        "effective lr",
        "final train loss",
        "final val loss",
        f"epochs to val loss {target:.3f}",
        "test accuracy",
    ]
    rows = []
    for label, c in runs.items():
        tuned = c.tuned
        rows.append(
            (
                label,
                "-" if tuned is None else _rates_tried(tuned),
                "line search" if tuned is None else _hyperparameters(tuned.best),
                "-" if tuned is None else _hyperparameters(tuned.chosen("area")),
                "-" if tuned is None else _hyperparameters(tuned.best_by_target),
                "-" if tuned is None else tuned.effective_learning_rate,
                mean_ci(c.train_loss[:, -1]).format(),
                mean_ci(c.val_loss[:, -1]).format(),
                mean_ci(c.to_target("val_loss", "epochs", target)).format(),
                mean_ci(c.test_accuracy).format(),
            )
        )
    return headers, rows


def _claim_minibatch(section: Section, results: ConvergenceResults) -> None:
    """Claim 1: SGD's training loss after its epochs minus GD's at no fewer epochs."""
    comparisons: list[Comparison] = []
    evidence, per_step = [], []
    for name, runs in results.runs.items():
        gd = runs[GD]
        stochastic = {label: runs[label] for label in (SGD1, results.sgd) if label in runs}
        epochs = max(c.epochs[0, -1] for c in stochastic.values())
        at = first_at_or_after(gd.epochs[0], epochs)
        family = holm_paired(
            gd.train_loss[:, at], {label: c.train_loss[:, -1] for label, c in stochastic.items()}
        )
        for label, result in family.items():
            comparisons.append(by_interval(f"{name}: {label} - gd", result.interval, -1))
            evidence.append(
                f"{name}: {label} {stochastic[label].epochs[0, -1]:.3g} epochs minus gd "
                f"{gd.epochs[0, at]:.3g} epochs {result.interval.format()}"
            )
        mini = runs[results.sgd]
        step = first_at_or_after(mini.steps, gd.steps[-1])
        difference = paired_difference(gd.train_loss[:, -1], mini.train_loss[:, step])
        per_step.append(
            f"{name}: gd after {gd.steps[-1]} steps minus sgd after {mini.steps[step]} "
            f"{difference.interval.format()}"
        )
    section.claim(
        "Per example processed, stochastic (batch 1) and mini-batch SGD converge faster than "
        "full-batch gradient descent.",
        comparisons,
        "training loss of SGD after its budget minus full-batch GD's at its first evaluation "
        "with at least as many epochs, paired by seed (negative: SGD further along with no "
        f"more examples; Holm-corrected over the SGD configurations of a workload): "
        f"{'; '.join(evidence)}. Per step (reported, not part of the verdict), GD's training "
        "loss after its last step minus mini-batch SGD's at its first evaluation with at least "
        f"as many steps (negative: GD ahead per step): {'; '.join(per_step)}.",
    )


def _claim_accelerated(section: Section, results: ConvergenceResults) -> None:
    """Claim 2: mean validation loss over the run minus mini-batch SGD's, every run selected
    by that quantity (the primary comparison), Holm-corrected per workload; beside it the
    final validation loss and epochs to SGD's final validation loss of the runs selected by
    final validation loss."""
    comparisons: list[Comparison] = []
    evidence = []
    for name, speed in results.speed.items():
        runs = results.runs[name]
        baseline, others = speed[results.sgd], [label for label in speed if _accelerated(label)]
        sgd_by_final = runs[results.sgd]
        area = holm_paired(
            baseline.mean_val_loss, {label: speed[label].mean_val_loss for label in others}
        )
        final = holm_paired(
            sgd_by_final.val_loss[:, -1], {label: runs[label].val_loss[:, -1] for label in others}
        )
        target = float(np.mean(sgd_by_final.val_loss[:, -1]))
        parts = []
        for label in others:
            comparisons.append(by_interval(f"{name}: {label} - sgd", area[label].interval, -1))
            reach = mean_ci(runs[label].to_target("val_loss", "epochs", target))
            parts.append(
                f"{label} (effective lr {speed[label].tuned.effective_learning_rate:.3g}) "
                f"{area[label].interval.format()}; by final loss (effective lr "
                f"{runs[label].tuned.effective_learning_rate:.3g}) final "
                f"{final[label].interval.format()}, epochs to {target:.3f} {reach.format()}"
            )
        sgd_reach = mean_ci(sgd_by_final.to_target("val_loss", "epochs", target))
        evidence.append(
            f"{name} (sgd lr {baseline.tuned.effective_learning_rate:.3g} by area, "
            f"{sgd_by_final.tuned.effective_learning_rate:.3g} by final loss, epochs to "
            f"{target:.3f} {sgd_reach.format()}): {'; '.join(parts)}"
        )
    section.claim(
        "Momentum and adaptive methods (Adagrad, RMSprop, Adam) speed up convergence over "
        "plain mini-batch SGD.",
        comparisons,
        "mean validation loss over the run's evaluations (the area under the validation "
        "curve per epoch, after the same epochs) minus mini-batch SGD's, every configuration "
        "selected by that same quantity on the tuning seeds, paired by seed and "
        "Holm-corrected over the optimizers of a workload (negative: lower loss along the "
        "way); beside it, for the runs selected by final validation loss, the same "
        "difference of the final validation loss and the epochs to SGD's mean final "
        f"validation loss: {' | '.join(evidence)}.",
    )


def _claim_lbfgs(section: Section, results: ConvergenceResults) -> None:
    """Claim 3: L-BFGS's training loss minus GD's after as many iterations and after no
    more gradient evaluations."""
    comparisons: list[Comparison] = []
    evidence = []
    for name, runs in results.runs.items():
        gd, lbfgs = runs[GD], runs[LBFGS]
        iterations = paired_difference(lbfgs.train_loss[:, -1], gd.train_loss[:, -1]).interval
        # per seed, the last L-BFGS evaluation within GD's gradient evaluations
        within = (lbfgs.epochs <= gd.epochs[0, -1]).sum(axis=1) - 1
        evaluations = paired_difference(
            _per_seed(lbfgs.train_loss, within), gd.train_loss[:, -1]
        ).interval
        comparisons += [
            by_interval(f"{name}: per iteration", iterations, -1),
            by_interval(f"{name}: per gradient evaluation", evaluations, -1),
        ]
        target = float(np.max(gd.train_loss[:, -1]))
        evidence.append(
            f"{name}: after {gd.steps[-1]} iterations {iterations.format()}, after <= "
            f"{gd.epochs[0, -1]:g} gradient evaluations {evaluations.format()}; to training "
            f"loss {target:.3f} (GD's worst final) L-BFGS needs "
            f"{mean_ci(lbfgs.to_target('train_loss', 'steps', target)).format()} iterations / "
            f"{mean_ci(lbfgs.to_target('train_loss', 'epochs', target)).format()} gradient "
            f"evaluations, GD {mean_ci(gd.to_target('train_loss', 'steps', target)).format()}"
        )
    section.claim(
        "L-BFGS (second order, full batch) converges in fewer iterations than full-batch "
        "gradient descent, also counting its line search's gradient evaluations.",
        comparisons,
        "L-BFGS's training loss minus full-batch GD's, paired by seed (negative: L-BFGS "
        f"further along): {'; '.join(evidence)}.",
    )
