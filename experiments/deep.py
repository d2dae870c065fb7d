"""Study 5 — exploding and vanishing gradients in a deep MLP.

A ``deep_layers``-layer ReLU MLP (no dropout) is initialised with weights
:math:`W \\sim \\mathcal N(0, g^2 / \\text{fan-in})`: gain :math:`g = \\sqrt2` is He's
careful initialisation, smaller gains shrink the signal layer after layer (vanishing
gradients) and larger ones blow it up (exploding). Every gain is trained with momentum
SGD with and without ``clip_by_global_norm(1.0)`` and with and without batch norm, and the
gradient norm of every layer's kernel is probed on a fixed batch throughout training.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxopt_lab as jl
from experiments import mnist, plots
from experiments.budget import Budget
from experiments.report import Section
from experiments.stats import mean_ci
from experiments.verdict import by_fact, by_threshold
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.step import TrainState
from jaxopt_lab.training.sweep import SweepResult, sweep

GAINS = (0.5, math.sqrt(2.0), 3.0)
LEARNING_RATE = 0.01
CLIP_NORM = 1.0
PROBE_BATCH = 256


@functools.cache
def deep_model_factory(layers: int, width: int, batch_norm: bool):
    """Builds the deep MLP and redraws every kernel with std ``gain / sqrt(fan_in)``."""

    def build(hyperparameters: Mapping[str, jax.Array], key: jax.Array) -> nnx.Module:
        model_key, weight_key = jax.random.split(key)
        model = MLP(
            hidden_sizes=(width,) * layers,
            dropout_rate=0.0,
            batch_norm=batch_norm,
            rngs=nnx.Rngs(model_key),
        )
        dense = [*model.hidden, model.output]
        for layer, layer_key in zip(dense, jax.random.split(weight_key, len(dense)), strict=True):
            fan_in, fan_out = layer.kernel.value.shape
            scale = hyperparameters["gain"] / jnp.sqrt(fan_in)
            layer.kernel.value = scale * jax.random.normal(layer_key, (fan_in, fan_out))
        return model

    return build


@functools.cache
def momentum_factory(clip: bool):
    """Momentum SGD at ``hyperparameters["learning_rate"]``, optionally clipped."""

    def build(
        hyperparameters: Mapping[str, jax.Array], key: jax.Array
    ) -> optax.GradientTransformation:
        del key
        return jl.make_optimizer(
            "momentum", hyperparameters["learning_rate"], clip_norm=CLIP_NORM if clip else None
        )

    return build


def layer_gradient_probe(images: jax.Array, labels: jax.Array):
    """A probe: the gradient norm of each Dense kernel (input side first) on one batch,
    in training mode (batch statistics, as the optimizer sees it)."""

    def probe(state: TrainState, graphdef: nnx.GraphDef) -> jax.Array:
        def loss(params, model_state):
            # fresh leaves, so batch norm may update its statistics inside this trace
            model = nnx.merge(graphdef, params, jax.tree.map(jnp.copy, model_state))
            logits = model(images.astype(jnp.float32) / 255, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        grads = nnx.merge(
            graphdef, jax.grad(loss)(state.params, state.model_state), state.model_state
        )
        kernels = [*grads.hidden, grads.output]
        return jnp.stack([jnp.linalg.norm(layer.kernel.value) for layer in kernels])

    return probe


@dataclass(frozen=True)
class DeepResults:
    """One sweep over the gains per setup (plain or batch norm, clipped or not), with the
    per-layer gradient norms probed through training."""

    budget: Budget
    sweeps: dict[str, SweepResult]


def measure(budget: Budget) -> DeepResults:
    mnist_budget, deep = budget.mnist, budget.deep
    data = mnist.data(mnist_budget)
    probe = layer_gradient_probe(data.train_images[:PROBE_BATCH], data.train_labels[:PROBE_BATCH])
    evals = min(mnist_budget.evals, deep.steps)
    results = {}
    for batch_norm in (False, True):
        for clip in (False, True):
            label = f"{'batch norm' if batch_norm else 'plain'}, {'clipped' if clip else 'no clip'}"
            results[label] = sweep(
                momentum_factory(clip),
                {"learning_rate": [LEARNING_RATE], "gain": GAINS},
                mnist_budget.tuning_seeds,
                data,
                model_factory=deep_model_factory(deep.layers, deep.width, batch_norm),
                batch_size=mnist_budget.batch_size,
                num_evals=evals,
                steps_per_eval=deep.steps // evals,
                probe=probe,
                vectorize=False,
            )
    return DeepResults(budget, results)


def report(results: DeepResults, out: Path) -> Section:
    section = Section("5. Exploding and vanishing gradients in a deep MLP")
    mnist_budget, deep = results.budget.mnist, results.budget.deep
    sweeps = results.sweeps
    steps = next(iter(sweeps.values())).steps
    # probes: (lr, gain, seed, evals + 1, layers + 1) -> geometric mean over seeds
    norms = {
        label: np.exp(np.log(np.maximum(r.curves.probes[0], 1e-30)).mean(axis=1))
        for label, r in sweeps.items()
    }
    accuracy = {label: r.curves.val_accuracy[0, :, :, -1] for label, r in sweeps.items()}
    plots.plot_layer_gradients(GAINS, norms, steps, out / "deep_gradients.png")

    section.text(
        f"{deep.layers} hidden layers of width {deep.width}, ReLU, momentum SGD "
        f"(lr {LEARNING_RATE}, momentum 0.9), batch {mnist_budget.batch_size}, {deep.steps} "
        f"steps, seeds {list(mnist_budget.tuning_seeds)}; clipping is "
        f"clip_by_global_norm({CLIP_NORM}). "
        f"Kernels drawn with std gain / sqrt(fan_in); gain sqrt(2) = He initialisation. "
        f"Gradient norms probed on a fixed batch of {PROBE_BATCH} training images."
    )
    section.table(
        ["setup", *(f"val accuracy, gain {g:.3g}" for g in GAINS)],
        [(label, *(mean_ci(a).format() for a in acc)) for label, acc in accuracy.items()],
    )
    section.table(
        ["setup", *(f"gain {g:.3g}: first-layer grad norm, init -> end" for g in GAINS)],
        [
            (label, *(f"{n[i, 0, 0]:.3g} -> {n[i, -1, 0]:.3g}" for i in range(len(GAINS))))
            for label, n in norms.items()
        ],
    )
    section.figure(
        "deep_gradients.png",
        "Gradient norm per layer at initialisation (solid) and after training (dashed), per gain.",
    )

    plain = norms["plain, no clip"]
    small, he, large = 0, 1, 2
    acc = {label: a.mean(axis=1) for label, a in accuracy.items()}
    first_layer = plain[:, 0, 0]  # per gain, at initialisation
    vanishing = first_layer[small] < 1e-3 * first_layer[he]
    exploding = first_layer[large] > 1e3 * first_layer[he]
    section.claim(
        "Deep networks with poor initialisation suffer vanishing or exploding gradients.",
        [
            by_fact("vanishing at the small gain (< 1e-3 x He)", vanishing),
            by_fact("exploding at the large gain (> 1e3 x He)", exploding),
        ],
        f"plain {deep.layers}-layer MLP at init, first-layer gradient norm: "
        f"{first_layer[small]:.3g} with gain {GAINS[small]}, {first_layer[he]:.3g} with He's "
        f"gain, {first_layer[large]:.3g} with gain {GAINS[large]} "
        f"({first_layer[small] / first_layer[he]:.2g}x and "
        f"{first_layer[large] / first_layer[he]:.2g}x He's).",
    )
    section.claim(
        "Gradient clipping rescues training from exploding gradients.",
        [
            by_threshold(
                "accuracy gain from clipping at the large gain",
                acc["plain, clipped"][large] - acc["plain, no clip"][large],
                supports_above=0.05,
                contradicts_below=0.05,
            )
        ],
        f"gain {GAINS[large]}: accuracy {acc['plain, no clip'][large]:.3f} without clipping, "
        f"{acc['plain, clipped'][large]:.3f} with clip_by_global_norm({CLIP_NORM}).",
    )
    section.claim(
        "Normalisation (batch norm) fixes vanishing and exploding gradients.",
        [
            by_threshold(
                f"accuracy gain from batch norm at gain {GAINS[g]:.3g}",
                acc["batch norm, no clip"][g] - acc["plain, no clip"][g],
                supports_above=0.05,
                contradicts_below=0.05,
            )
            for g in (small, large)
        ],
        f"accuracy, plain vs batch norm: gain {GAINS[small]} {acc['plain, no clip'][small]:.3f} "
        f"vs {acc['batch norm, no clip'][small]:.3f}; gain {GAINS[large]} "
        f"{acc['plain, no clip'][large]:.3f} vs {acc['batch norm, no clip'][large]:.3f}.",
    )
    section.claim(
        "Careful initialisation (He) avoids the problem without any other fix.",
        [
            by_threshold(
                "He's accuracy minus the better of the other gains",
                acc["plain, no clip"][he]
                - max(acc["plain, no clip"][small], acc["plain, no clip"][large]),
                supports_above=0.05,
                contradicts_below=0.05,
            )
        ],
        f"plain, no clip: accuracy {acc['plain, no clip'][he]:.3f} with He's gain vs "
        f"{acc['plain, no clip'][small]:.3f} (gain {GAINS[small]}) and "
        f"{acc['plain, no clip'][large]:.3f} (gain {GAINS[large]}).",
    )
    return section
