"""Shared test material for the optimizer tests: random pytrees and (ours, optax) pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lab as jl

SHAPES = {"dense": {"kernel": (7, 5), "bias": (5,)}, "conv": {"kernel": (3, 3, 2, 4)}, "scale": ()}


def random_tree(seed: int, dtype=jnp.float32, shapes=SHAPES, batch: tuple[int, ...] = ()):
    """A nested dict of standard normal arrays with the given leaf shapes.

    Drawn with NumPy so that tests pay no compile time for random numbers; ``batch``
    prepends axes (e.g. steps of a scan, members of a vmap).
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda shape: jnp.asarray(rng.standard_normal((*batch, *shape), np.float32), dtype),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple),
    )


def _decay_mask(params):
    return {"dense": {"kernel": True, "bias": False}, "conv": True, "scale": False}


SCHEDULE = optax.exponential_decay(0.05, transition_steps=10, decay_rate=0.8)

# id -> (ours, optax twin): every optimizer with and without its options.
CASES = {
    "sgd": (jl.sgd(0.05), optax.sgd(0.05)),
    "sgd-schedule": (jl.sgd(SCHEDULE), optax.sgd(SCHEDULE)),
    "momentum": (jl.sgd(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
    "nesterov": (jl.sgd(0.05, 0.9, nesterov=True), optax.sgd(0.05, 0.9, nesterov=True)),
    "adagrad": (jl.adagrad(0.1), optax.adagrad(0.1)),
    "adagrad-options": (
        jl.adagrad(0.1, initial_accumulator_value=0.5, eps=1e-4),
        optax.adagrad(0.1, initial_accumulator_value=0.5, eps=1e-4),
    ),
    "rmsprop": (jl.rmsprop(0.01), optax.rmsprop(0.01)),
    "rmsprop-centered": (
        jl.rmsprop(0.01, decay=0.95, eps=1e-6, centered=True),
        optax.rmsprop(0.01, decay=0.95, eps=1e-6, centered=True),
    ),
    "rmsprop-momentum-nesterov": (
        jl.rmsprop(0.01, momentum=0.9, nesterov=True, eps_in_sqrt=False, bias_correction=True),
        optax.rmsprop(0.01, momentum=0.9, nesterov=True, eps_in_sqrt=False, bias_correction=True),
    ),
    "rmsprop-centered-momentum": (
        jl.rmsprop(0.01, centered=True, momentum=0.5, initial_scale=0.1),
        optax.rmsprop(0.01, centered=True, momentum=0.5, initial_scale=0.1),
    ),
    "adam": (jl.adam(0.01), optax.adam(0.01)),
    "adam-options": (
        jl.adam(SCHEDULE, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
        optax.adam(SCHEDULE, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
    ),
    "nadam": (jl.adam(0.01, nesterov=True), optax.adam(0.01, nesterov=True)),
    "adamw": (jl.adamw(0.01), optax.adamw(0.01)),
    "adamw-mask": (
        jl.adamw(0.01, weight_decay=0.1, mask=_decay_mask, nesterov=True),
        optax.adamw(0.01, weight_decay=0.1, mask=_decay_mask, nesterov=True),
    ),
    "clip-adam": (
        jl.chain(jl.clip_by_global_norm(1.0), jl.adam(0.01)),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.01)),
    ),
    "clip-value-sgd": (
        jl.chain(jl.clip(0.5), jl.sgd(0.05)),
        optax.chain(optax.clip(0.5), optax.sgd(0.05)),
    ),
    "agc-momentum": (
        jl.chain(jl.adaptive_grad_clip(0.05), jl.sgd(0.05, momentum=0.9)),
        optax.chain(optax.adaptive_grad_clip(0.05), optax.sgd(0.05, momentum=0.9)),
    ),
}


def random_gradients(seed: int, steps: int, dtype=jnp.float32):
    """``steps`` random gradient trees (standard deviation 2) stacked on a leading axis."""
    return jax.tree.map(lambda g: 2 * g, random_tree(seed, dtype, batch=(steps,)))


def run_steps(optimizer, params, gradients, apply=jl.apply_updates):
    """Apply one update per stacked gradient tree in a ``lax.scan``; return final params."""

    def step(carry, grads):
        params, state = carry
        updates, state = optimizer.update(grads, state, params)
        return (apply(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), gradients)
    return params
