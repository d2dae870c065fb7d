"""Optimizer states move between optax and jaxopt_lab: the same fields in the same layout,
so a state saved from one restores into the other by pytree path (as our checkpoints are
keyed) and training continues to the same parameters."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from optim_cases import random_gradients, random_tree

import jaxopt_lab as jl

PAIRS = {
    "momentum": (lambda: jl.sgd(0.05, momentum=0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "rmsprop": (lambda: jl.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    "rmsprop-centered-bias-corrected": (
        lambda: jl.rmsprop(0.01, centered=True, bias_correction=True, momentum=0.5),
        lambda: optax.rmsprop(0.01, centered=True, bias_correction=True, momentum=0.5),
    ),
    "adam": (lambda: jl.adam(0.01), lambda: optax.adam(0.01)),
    "adamw": (lambda: jl.adamw(0.01), lambda: optax.adamw(0.01)),
    "sgd-schedule": (
        lambda: jl.sgd(optax.linear_schedule(0.1, 0.01, 20)),
        lambda: optax.sgd(optax.linear_schedule(0.1, 0.01, 20)),
    ),
}


def restore_by_path(template, saved):
    """``saved``'s leaves in ``template``'s structure, matched by pytree path (keystr)."""
    by_path = {
        jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(saved)
    }
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in paths]
    assert sorted(names) == sorted(by_path), (names, sorted(by_path))
    return jax.tree_util.tree_unflatten(treedef, [by_path[name] for name in names])


def train(optimizer, params, state, gradients):
    def step(carry, grads):
        params, state = carry
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (params, state), gradients)[0]


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("direction", ["optax->ours", "ours->optax"])
def test_a_saved_state_restores_and_training_continues_identically(name, direction):
    make_ours, make_theirs = PAIRS[name]
    first, second = (
        (make_theirs(), make_ours())
        if direction == "optax->ours"
        else (
            make_ours(),
            make_theirs(),
        )
    )
    params, before, after = random_tree(0), random_gradients(1, 20), random_gradients(2, 20)
    params, saved = train(first, params, first.init(params), before)
    restored = restore_by_path(second.init(params), saved)
    continued, _ = train(second, params, restored, after)
    reference, _ = train(first, params, saved, after)
    for a, b in zip(jax.tree.leaves(continued), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_field_names_match_optax(name):
    make_ours, make_theirs = PAIRS[name]
    params = random_tree(0)
    ours, theirs = make_ours().init(params), make_theirs().init(params)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert getattr(a, "_fields", None) == getattr(b, "_fields", None), (a, b)


@pytest.mark.parametrize(
    "optimizer",
    [
        jl.sgd(0.1),
        jl.sgd(0.1, momentum=0.9),
        jl.clip(1.0),
        jl.clip_by_global_norm(1.0),
        jl.adam(0.1),
    ],
    ids=["sgd", "momentum", "clip", "clip_by_global_norm", "adam"],
)
def test_wrong_gradient_tree_names_both_structures(optimizer):
    params = {"w": np.ones(3, np.float32), "b": np.zeros(2, np.float32)}
    state = optimizer.init(params)
    with pytest.raises(ValueError, match="structure") as error:
        optimizer.update({"w": np.ones(3, np.float32)}, state, params)
    message = str(error.value)
    assert "got" in message and "expected" in message and "'b'" in message
