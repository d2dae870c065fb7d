"""What the MNIST studies share: the data subset, the model, the optimizer configurations
and the fair-tuning protocol.

Tuning protocol (DeepOBS-style): every configuration gets the same log-spaced
learning-rate grid, trained with the tuning seeds; the rate with the lowest final
validation loss (mean over seeds, a diverged run counting as infinitely bad) wins, and
the winner is rerun with the final seeds, one run at a time so that each run's wall
time is measured. Results are cached per configuration, so later studies reuse them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import numpy as np
import optax
from flax import nnx

import jaxopt_lab as jl
from experiments.budget import MnistBudget
from jaxopt_lab.training.data import load_dataset
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.sweep import (
    OptimizerFactory,
    SweepData,
    SweepResult,
    best_index,
    named_optimizer,
    subset,
    sweep,
)


@dataclass(frozen=True)
class Config:
    """An optimizer by registry name and its batch size (None: the whole training set)."""

    optimizer: str
    batch_size: int | None


def configs(budget: MnistBudget) -> dict[str, Config]:
    """The first-order configurations of the convergence study, by label."""
    batch = budget.batch_size
    return {
        "gd (full batch)": Config("sgd", None),
        "sgd (batch 1)": Config("sgd", 1),
        f"sgd (batch {batch})": Config("sgd", batch),
        "momentum": Config("momentum", batch),
        "nesterov": Config("nesterov", batch),
        "adagrad": Config("adagrad", batch),
        "rmsprop": Config("rmsprop", batch),
        "adam": Config("adam", batch),
    }


def seed_model(hyperparameters: Mapping[str, jax.Array], key: jax.Array) -> nnx.Module:
    """The seed MLP (784-128-10, ReLU) without dropout: a deterministic objective."""
    del hyperparameters
    return MLP(dropout_rate=0.0, rngs=nnx.Rngs(key))


@functools.cache
def factory(optimizer: str) -> OptimizerFactory:
    """The plain factory of ``optimizer``: one object per name, so the compiled run
    of a configuration is reused by every study."""
    return named_optimizer(optimizer)


@functools.cache
def noisy_factory(optimizer: str) -> OptimizerFactory:
    """``optimizer`` at ``learning_rate`` after Gaussian noise of std ``noise`` is added to
    every gradient entry (constant variance: optax.add_noise with gamma 0)."""

    def build(
        hyperparameters: Mapping[str, jax.Array], key: jax.Array
    ) -> optax.GradientTransformation:
        noise = optax.add_noise(eta=hyperparameters["noise"] ** 2, gamma=0.0, key=key)
        return jl.chain(noise, jl.make_optimizer(optimizer, hyperparameters["learning_rate"]))

    return build


@functools.cache
def data(budget: MnistBudget) -> SweepData:
    """The budget's MNIST subsets, on the device."""
    return subset(load_dataset("mnist"), budget.num_train, budget.num_eval, budget.num_val)


def steps_for(config: Config, budget: MnistBudget) -> int:
    """Full-batch methods get ``full_batch_steps``; the others ``steps``."""
    return budget.full_batch_steps if config.batch_size is None else budget.steps


@dataclass(frozen=True)
class Tuned:
    """A configuration after tuning: the grid sweep and the reruns at the best rate."""

    config: Config
    learning_rate: float
    tuning: SweepResult
    final: SweepResult


_TUNED: dict[tuple[MnistBudget, Config], Tuned] = {}


def tune(config: Config, budget: MnistBudget) -> Tuned:
    """Run (or fetch) the tuning protocol for ``config``."""
    cache_key = (budget, config)
    if cache_key not in _TUNED:
        train = data(budget)
        batch_size = config.batch_size or int(train.train_labels.shape[0])
        steps = steps_for(config, budget)
        evals = min(budget.evals, steps)
        kwargs = dict(
            data=train,
            model_factory=seed_model,
            batch_size=batch_size,
            num_evals=evals,
            steps_per_eval=steps // evals,
            vectorize=budget.vectorized_tuning,
        )
        tuning = sweep(
            factory(config.optimizer),
            {"learning_rate": budget.learning_rates},
            budget.tuning_seeds,
            **kwargs,
        )
        best = budget.learning_rates[best_index(tuning)]
        if budget.final_seeds == budget.tuning_seeds and not budget.vectorized_tuning:
            index = budget.learning_rates.index(best)
            final = _slice_learning_rate(tuning, index)
        else:
            kwargs["vectorize"] = False  # one run at a time: wall time per run
            final = sweep(
                factory(config.optimizer),
                {"learning_rate": [best]},
                budget.final_seeds,
                **kwargs,
            )
        _TUNED[cache_key] = Tuned(config, best, tuning, final)
    return _TUNED[cache_key]


def _slice_learning_rate(result: SweepResult, index: int) -> SweepResult:
    """The sweep restricted to one learning rate (keeping a length-1 axis)."""
    pick = lambda x: np.asarray(x)[index : index + 1]  # noqa: E731
    return SweepResult(
        grid={"learning_rate": pick(result.grid["learning_rate"])},
        seeds=result.seeds,
        steps=result.steps,
        curves=jax.tree.map(pick, result.curves),
        run_seconds=pick(result.run_seconds),
        compile_seconds=result.compile_seconds,
        total_seconds=result.total_seconds,
        vectorized=result.vectorized,
    )
