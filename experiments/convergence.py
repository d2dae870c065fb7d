"""Study 1 — convergence rate on MNIST: full-batch GD, SGD with batch 1, mini-batch SGD,
momentum, Nesterov, Adagrad, RMSprop, Adam and L-BFGS (full batch).

Every first-order configuration is tuned with the protocol of :mod:`experiments.mnist`
and reported at its best learning rate over the final seeds. L-BFGS needs no learning
rate (strong-Wolfe line search); it minimises the same full-batch loss in a jitted loop
of :func:`jaxopt_lab.lbfgs` updates. Curves are the training loss (on a fixed subset of
the training split) against optimizer steps, epochs (examples processed / training-set
size; for L-BFGS one full-batch function evaluation is one epoch) and wall time (each
run timed on its own, compilation excluded).

Target losses are set between the mean initial loss and the best final loss any method
reaches: ``target = best + fraction * (initial - best)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lab as jl
from experiments import mnist, plots
from experiments.budget import MnistBudget
from experiments.report import Section
from experiments.stats import first_reach, holm, mean_ci, paired_difference
from experiments.verdict import Outcome, by_fact, by_test
from jaxopt_lab.runtime import time_compile
from jaxopt_lab.training.step import TrainState, evaluate, init_train_state

TARGET_FRACTIONS = (0.5, 0.25, 0.1, 0.05)
MAIN_TARGET = 0.1


@dataclass(frozen=True)
class Trace:
    """One configuration's curves over its final seeds: arrays ``(seeds, points)``."""

    label: str
    learning_rate: float | str
    steps: np.ndarray
    epochs: np.ndarray
    seconds: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray

    def to_target(self, axis: str, target: float) -> np.ndarray:
        """Per seed, the first ``axis`` value (steps, epochs, seconds) with loss <= target."""
        positions = getattr(self, axis)
        positions = np.broadcast_to(positions, self.train_loss.shape)
        return np.asarray(
            [
                first_reach(loss, at, target)
                for loss, at in zip(self.train_loss, positions, strict=True)
            ]
        )


def _first_order_trace(label: str, tuned: mnist.Tuned, num_train: int) -> Trace:
    final = tuned.final
    steps = final.steps
    batch = tuned.config.batch_size or num_train
    seconds = final.run_seconds[0][:, None] * steps[None, :] / steps[-1]
    return Trace(
        label,
        tuned.learning_rate,
        steps,
        steps * batch / num_train,
        seconds,
        final.curves.train_loss[0],
        final.curves.val_loss[0],
        final.curves.val_accuracy[0],
    )


def lbfgs_trace(budget: MnistBudget) -> Trace:
    """Full-batch L-BFGS on the seed MLP, one timed run per final seed."""
    data = mnist.data(budget)
    iterations = budget.full_batch_steps
    evals = min(budget.evals, iterations)
    per_eval = iterations // evals
    graphdef, _ = init_train_state(mnist.seed_model({}, jax.random.key(0)), optax.identity())
    optimizer = jl.lbfgs()

    @jax.jit
    def run(seed: jax.Array) -> dict[str, jax.Array]:
        init_key = jax.random.split(jax.random.key(seed), 3)[0]  # as in jaxopt_lab.training.sweep
        _, state = init_train_state(mnist.seed_model({}, init_key), optax.identity())
        at = lambda params: TrainState(state.step, params, state.model_state, ())  # noqa: E731

        def objective(params):
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

        def measure(params, fevals):
            train = evaluate(at(params), data.eval_images, data.eval_labels, graphdef=graphdef)
            val = evaluate(at(params), data.val_images, data.val_labels, graphdef=graphdef)
            return {"train": train.loss, "val": val.loss, "acc": val.accuracy, "fevals": fevals}

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, length=per_eval)
            return carry, measure(carry[0], jl.lbfgs_info(carry[1]).fevals)

        start = measure(state.params, jnp.zeros((), jnp.int32))
        _, later = jax.lax.scan(chunk, (state.params, optimizer.init(state.params)), length=evals)
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), start, later)

    time_compile(run, jnp.uint32(0))
    records, times = [], []
    for seed in budget.final_seeds:
        start = time.perf_counter()
        records.append(jax.tree.map(np.asarray, jax.block_until_ready(run(jnp.uint32(seed)))))
        times.append(time.perf_counter() - start)
    stacked = {k: np.stack([r[k] for r in records]) for k in records[0]}
    steps = np.arange(evals + 1) * per_eval
    return Trace(
        "l-bfgs (full batch)",
        "line search",
        steps,
        stacked["fevals"].astype(np.float64),
        np.asarray(times)[:, None] * steps[None, :] / steps[-1],
        stacked["train"],
        stacked["val"],
        stacked["acc"],
    )


def targets(traces: list[Trace]) -> dict[float, float]:
    """Target training losses by fraction of the way from the best final to the initial loss."""
    initial = float(np.mean([t.train_loss[:, 0].mean() for t in traces]))
    best = float(np.min([t.train_loss[:, -1].mean() for t in traces]))
    return {f: best + f * (initial - best) for f in TARGET_FRACTIONS}


@dataclass(frozen=True)
class ConvergenceResults:
    """Every configuration tuned and rerun, plus L-BFGS, with the loss targets."""

    budget: MnistBudget
    num_train: int
    tuned: dict[str, mnist.Tuned]
    traces: tuple[Trace, ...]
    levels: dict[float, float]  # target fraction -> training-loss target

    @property
    def by_label(self) -> dict[str, Trace]:
        return {t.label: t for t in self.traces}

    @property
    def main_target(self) -> float:
        return self.levels[MAIN_TARGET]


def measure(budget: MnistBudget) -> ConvergenceResults:
    num_train = int(mnist.data(budget).train_labels.shape[0])
    tuned = {label: mnist.tune(config, budget) for label, config in mnist.configs(budget).items()}
    traces = [_first_order_trace(label, t, num_train) for label, t in tuned.items()]
    traces.append(lbfgs_trace(budget))
    return ConvergenceResults(budget, num_train, tuned, tuple(traces), targets(traces))


def profile_problems(results: ConvergenceResults) -> dict[str, dict[str, float]]:
    """Performance-profile problems: seconds to each clean loss target, per configuration."""
    return {
        f"clean, loss <= {loss:.3f}": {
            t.label: float(np.mean(t.to_target("seconds", loss))) for t in results.traces
        }
        for loss in results.levels.values()
    }


def report(results: ConvergenceResults, out: Path) -> Section:
    section = Section("1. Convergence rate on MNIST")
    budget, num_train, traces = results.budget, results.num_train, results.traces
    main = results.main_target
    plots.plot_tuning(
        budget.learning_rates,
        {label: t.tuning.curves.val_loss[:, :, -1] for label, t in results.tuned.items()},
        out / "tuning.png",
    )
    plots.plot_convergence(traces, out / "convergence.png")
    section.text(
        f"Seed MLP (784-128-10, ReLU, no dropout) on the first {num_train} MNIST training "
        f"images; mini-batch runs take {budget.steps} steps, full-batch GD and L-BFGS "
        f"{budget.full_batch_steps}. Learning-rate grid for every first-order method: "
        f"{', '.join(f'{lr:g}' for lr in budget.learning_rates)}; tuned on seeds "
        f"{list(budget.tuning_seeds)} by final validation loss, reported over seeds "
        f"{list(budget.final_seeds)} as mean [95% t interval] (k/n: seeds that got there). "
        "Main target: training "
        f"loss <= {main:.3f} ({MAIN_TARGET:g} of the way from the best final loss to the "
        "initial one)."
    )
    rows = []
    for t in traces:
        rows.append(
            (
                t.label,
                t.learning_rate,
                mean_ci(t.train_loss[:, -1]).format(),
                mean_ci(t.val_accuracy[:, -1]).format(),
                mean_ci(t.to_target("steps", main)).format(),
                mean_ci(t.to_target("epochs", main)).format(),
                mean_ci(t.to_target("seconds", main)).format(),
                float(np.mean(t.seconds[:, -1] / t.steps[-1]) * 1e3),
            )
        )
    section.table(
        [
            "optimizer",
            "best lr",
            "final train loss",
            "final val accuracy",
            "steps to target",
            "epochs to target",
            "seconds to target",
            "ms / step",
        ],
        rows,
    )
    section.text(
        "(k/n) after an interval: only k of the n seeds reached the target; the interval is "
        'over those k. "none of n": no seed did.'
    )
    section.figure(
        "tuning.png", "Final validation loss over the shared learning-rate grid (tuning seeds)."
    )
    section.figure(
        "convergence.png",
        "Training loss against steps, epochs and wall time (mean over seeds, band: min to max).",
    )

    by_label = results.by_label
    gd = by_label["gd (full batch)"]
    minibatch = by_label[f"sgd (batch {budget.batch_size})"]
    sgd1 = by_label["sgd (batch 1)"]
    gd_s, mb_s = gd.to_target("seconds", main), minibatch.to_target("seconds", main)
    gd_e, mb_e = gd.to_target("epochs", main), minibatch.to_target("epochs", main)
    gd_steps, mb_steps = gd.to_target("steps", main), minibatch.to_target("steps", main)
    section.claim(
        "Stochastic and mini-batch gradient descent converge faster than vanilla (full-batch) GD.",
        [
            by_fact("faster in seconds", np.mean(mb_s) < np.mean(gd_s)),
            by_fact("faster in epochs", np.mean(mb_e) < np.mean(gd_e)),
            by_fact("no more steps", np.mean(mb_steps) <= np.mean(gd_steps)),
        ],
        f"to loss {main:.3f}: mini-batch SGD {np.mean(mb_s):.3g} s / {np.mean(mb_e):.3g} epochs / "
        f"{np.mean(mb_steps):.4g} steps, full-batch GD {np.mean(gd_s):.3g} s / "
        f"{np.mean(gd_e):.3g} epochs / {np.mean(gd_steps):.4g} steps, SGD batch 1 "
        f"{np.mean(sgd1.to_target('seconds', main)):.3g} s. Faster per second and per epoch, "
        "slower per step where GD gets there at all.",
    )
    faster = ("momentum", "nesterov", "adagrad", "rmsprop", "adam")
    diffs = [
        paired_difference(by_label[label].train_loss[:, -1], minibatch.train_loss[:, -1])
        for label in faster
    ]
    adjusted = holm([d.p_value for d in diffs])
    accelerated, evidence, comparisons = [], [], []
    for label, diff, p in zip(faster, diffs, adjusted, strict=True):
        comparison = by_test(f"{label} - sgd", diff.interval.mean, p, -1)
        accelerated += [label] if comparison.outcome is Outcome.SUPPORTS else []
        evidence.append(f"{label} {diff.interval.format()} (Holm p {p:.2g})")
        comparisons.append(comparison)
    section.claim(
        "Momentum and adaptive methods (Adagrad, RMSprop, Adam) speed up convergence "
        "over plain SGD.",
        comparisons,
        f"training loss after the same {budget.steps} steps minus mini-batch SGD's "
        f"({minibatch.train_loss[:, -1].mean():.3g}), paired by seed (negative = further "
        f"along): {'; '.join(evidence)}. Lower at 5% after Holm's correction: "
        f"{', '.join(accelerated) or 'none'}.",
    )
    lbfgs = by_label["l-bfgs (full batch)"]
    section.claim(
        "L-BFGS (second order, full batch) converges in fewer iterations than first-order methods.",
        [
            by_fact(
                "fewer iterations than full-batch GD",
                np.mean(lbfgs.to_target("steps", main)) < np.mean(gd_steps),
            )
        ],
        f"iterations to loss {main:.3f}: L-BFGS "
        f"{mean_ci(lbfgs.to_target('steps', main)).format()}, full-batch GD "
        f"{mean_ci(gd_steps).format()}; in wall time L-BFGS "
        f"{np.mean(lbfgs.to_target('seconds', main)):.3g} s vs mini-batch SGD "
        f"{np.mean(mb_s):.3g} s.",
    )
    return section
