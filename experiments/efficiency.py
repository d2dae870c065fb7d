"""Study 4 — computational efficiency: optimizer-state memory and step time.

For the seed MLP (101,770 parameters) every optimizer's state is measured with
:func:`jaxopt_lab.optim.base.tree_bytes` (bytes per parameter), and one jitted training
step (:func:`jaxopt_lab.training.step.train_step`, batch ``batch_size``) is timed with
:func:`jaxopt_lab.runtime.time_call` (compilation excluded, median of repeats). L-BFGS's
step is one update with its line search on the same batch's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import optax

import jaxopt_lab as jl
from experiments import mnist, plots
from experiments.budget import Budget
from experiments.report import Section
from experiments.verdict import by_fact, by_threshold
from jaxopt_lab.optim.base import tree_bytes, tree_size
from jaxopt_lab.runtime import time_call
from jaxopt_lab.training.step import TrainState, evaluate, init_train_state, train_step

ADAPTIVE = ("adagrad", "rmsprop", "adam", "adamw")


def _lbfgs_step_seconds(state: TrainState, graphdef, images, labels, repeats: int) -> float:
    optimizer = jl.lbfgs()

    def objective(params):
        at = TrainState(state.step, params, state.model_state, ())
        return evaluate(at, images, labels, graphdef=graphdef).loss

    @jax.jit
    def step(params, opt_state):
        value, grad = jax.value_and_grad(objective)(params)
        updates, opt_state = optimizer.update(
            grad, opt_state, params, value=value, grad=grad, value_fn=objective
        )
        return jl.apply_updates(params, updates), opt_state

    return time_call(step, state.params, optimizer.init(state.params), repeats=repeats).median_s


@dataclass(frozen=True)
class EfficiencyResults:
    """Optimizer-state bytes per parameter and milliseconds per training step, by name."""

    budget: Budget
    params: int
    state_bytes: dict[str, float]
    step_ms: dict[str, float]


def measure(budget: Budget) -> EfficiencyResults:
    batch_size = budget.mnist.batch_size
    data = mnist.data(budget.mnist)
    images, labels = data.train_images[:batch_size], data.train_labels[:batch_size]
    key = jax.random.key(0)
    state_bytes, step_ms = {}, {}
    graphdef, plain = init_train_state(mnist.seed_model({}, key), optax.identity())
    params = tree_size(plain.params)
    for name in (*jl.OPTIMIZER_NAMES, "lbfgs"):
        optimizer = jl.lbfgs() if name == "lbfgs" else jl.make_optimizer(name, 1e-3)
        _, state = init_train_state(mnist.seed_model({}, key), optimizer)
        state_bytes[name] = tree_bytes(state.opt_state) / params
        if name == "lbfgs":
            seconds = _lbfgs_step_seconds(plain, graphdef, images, labels, budget.timing_repeats)
        else:
            step = jax.jit(partial(train_step, graphdef=graphdef, optimizer=optimizer))
            seconds = time_call(
                step, state, images, labels, key, repeats=budget.timing_repeats
            ).median_s
        step_ms[name] = 1e3 * seconds
    return EfficiencyResults(budget, params, state_bytes, step_ms)


def report(results: EfficiencyResults, out: Path) -> Section:
    section = Section("4. Computational efficiency: state memory and step time")
    budget, params = results.budget, results.params
    state_bytes, step_ms = results.state_bytes, results.step_ms
    rows = [(name, state_bytes[name], step_ms[name]) for name in state_bytes]
    plots.plot_efficiency(state_bytes, step_ms, out / "efficiency.png")
    section.text(
        f"Seed MLP, {params:,} float32 parameters ({4 * params:,} bytes); step = gradient of a "
        f"batch of {budget.mnist.batch_size} + update + apply, median of {budget.timing_repeats} "
        f"timed calls after compilation on {jax.devices()[0].device_kind}."
    )
    section.table(["optimizer", "state bytes / parameter", "ms / step"], rows)
    section.figure("efficiency.png", "Optimizer-state bytes per parameter and step time.")
    adaptive_bytes = {n: state_bytes[n] for n in ADAPTIVE}
    section.claim(
        "Adaptive methods cost extra per-parameter memory.",
        [
            by_fact(f"{n} keeps more state than sgd", b > state_bytes["sgd"])
            for n, b in adaptive_bytes.items()
        ],
        "state bytes per parameter: "
        + ", ".join(f"{n} {b:.3g}" for n, b in state_bytes.items())
        + " (one float32 buffer = 4 bytes/parameter).",
    )
    extra = step_ms["adam"] / step_ms["sgd"]
    section.claim(
        "The extra state makes adaptive steps noticeably slower.",
        [
            by_threshold(
                "Adam's step time / SGD's", extra, supports_above=1.5, contradicts_below=1.2
            )
        ],
        f"Adam's step takes {extra:.2f}x SGD's ({step_ms['adam']:.3g} vs {step_ms['sgd']:.3g} "
        f"ms per step of batch {budget.mnist.batch_size}, gradient computation included).",
    )
    return section
