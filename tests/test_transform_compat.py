"""The transformations work under jit, vmap, lax.scan and grad, like any JAX function."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import random_tree

import jaxopt_lab as jl

OPTIMIZERS = {
    "sgd": (lambda lr: jl.sgd(lr), lambda lr: optax.sgd(lr)),
    "nesterov": (lambda lr: jl.sgd(lr, 0.9, True), lambda lr: optax.sgd(lr, 0.9, True)),
    "adagrad": (lambda lr: jl.adagrad(lr), lambda lr: optax.adagrad(lr)),
    "rmsprop": (
        lambda lr: jl.rmsprop(lr, centered=True),
        lambda lr: optax.rmsprop(lr, centered=True),
    ),
    "adam": (lambda lr: jl.adam(lr), lambda lr: optax.adam(lr)),
    "adamw": (lambda lr: jl.adamw(lr), lambda lr: optax.adamw(lr)),
}


def loss(params):
    return sum(jnp.sum(jnp.sin(x) + 0.5 * x**2) for x in jax.tree.leaves(params))


def descend(optimizer, params, steps, apply=jl.apply_updates):
    """``steps`` gradient steps on ``loss`` with a Python loop (not jitted)."""
    state = optimizer.init(params)
    for _ in range(steps):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = apply(params, updates)
    return params


def _close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_jit_matches_eager(name):
    optimizer = OPTIMIZERS[name][0](0.05)
    params = random_tree(0)
    state = optimizer.init(params)
    grads = jax.grad(loss)(params)
    eager = optimizer.update(grads, state, params)
    jitted = jax.jit(optimizer.update)(grads, state, params)
    _close(eager, jitted)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_scan_over_steps_matches_python_loop(name):
    optimizer = OPTIMIZERS[name][0](0.05)
    params = random_tree(1)

    def step(carry, _):
        p, s = carry
        updates, s = optimizer.update(jax.grad(loss)(p), s, p)
        return (jl.apply_updates(p, updates), s), loss(p)

    (scanned, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=20)
    # compiled and eager arithmetic may round differently; Adam's normalised steps
    # carry that rounding along, hence the looser tolerance than one update's
    _close(scanned, descend(optimizer, params, 20), rtol=1e-4, atol=1e-5)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_vmap_over_parameter_sets_and_learning_rates(name):
    """A batch of 4 parameter sets, each with its own (traced) learning rate."""
    make = OPTIMIZERS[name][0]
    batch = random_tree(2, batch=(4,))
    learning_rates = jnp.array([0.01, 0.03, 0.1, 0.3])

    @jax.vmap
    def run(params, lr):
        optimizer = make(lr)
        state = optimizer.init(params)
        for _ in range(5):
            updates, state = optimizer.update(jax.grad(loss)(params), state, params)
            params = jl.apply_updates(params, updates)
        return params

    batched = run(batch, learning_rates)
    for i, lr in enumerate(learning_rates.tolist()):
        one, batched_one = jax.tree.map(lambda x, i=i: x[i], (batch, batched))
        _close(batched_one, descend(make(lr), one, 5), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_grad_through_updates_matches_optax(name):
    """Meta-gradient: d loss(after 3 steps) / d learning rate, ours vs optax."""
    ours, theirs = OPTIMIZERS[name]
    params = random_tree(3)

    def final_loss(lr, make, apply):
        return loss(descend(make(lr), params, 3, apply))

    g_ours = jax.grad(final_loss)(0.05, ours, jl.apply_updates)
    g_optax = jax.grad(final_loss)(0.05, theirs, optax.apply_updates)
    assert np.isfinite(g_ours) and abs(g_ours) > 0
    np.testing.assert_allclose(g_ours, g_optax, rtol=1e-4)
