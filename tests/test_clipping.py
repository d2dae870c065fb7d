"""Clipping transformations against optax, and the non-finite update guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import random_tree

import jaxopt_lab as jl

PAIRS = {
    "clip": (jl.clip(0.3), optax.clip(0.3)),
    "clip_by_global_norm": (jl.clip_by_global_norm(1.5), optax.clip_by_global_norm(1.5)),
    "adaptive_grad_clip": (jl.adaptive_grad_clip(0.1), optax.adaptive_grad_clip(0.1)),
}


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0], ids=["small", "unit", "huge"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_clipping_matches_optax(name, scale):
    ours, theirs = PAIRS[name]
    params = random_tree(0)
    grads = jax.tree.map(lambda g: scale * g, random_tree(1))
    u_ours, _ = ours.update(grads, ours.init(params), params)
    u_optax, _ = theirs.update(grads, theirs.init(params), params)
    for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_optax), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_global_norm_clip_bounds_the_norm_and_keeps_direction():
    grads = jax.tree.map(lambda g: 50.0 * g, random_tree(2))
    clipped, _ = jl.clip_by_global_norm(1.0).update(grads, None)
    np.testing.assert_allclose(jl.tree_l2_norm(clipped), 1.0, rtol=1e-5)
    cosine = jl.tree_vdot(clipped, grads) / (jl.tree_l2_norm(clipped) * jl.tree_l2_norm(grads))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)


def _nan_like(tree):
    return jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), tree)


def test_apply_if_finite_skips_nan_and_inf_and_counts_them():
    optimizer = jl.apply_if_finite(jl.adam(0.1), max_consecutive_errors=3)
    params = random_tree(0)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    good = random_tree(1)
    updates, state = update(good, state, params)
    params = jl.apply_updates(params, updates)
    before, inner_before = params, state.inner_state

    inf_grads = jax.tree.map(lambda g: g.at[..., 0].set(jnp.inf) if g.ndim else g, good)
    for bad in (_nan_like(good), inf_grads):
        updates, state = update(bad, state, params)
        params = jl.apply_updates(params, updates)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(state.inner_state), jax.tree.leaves(inner_before), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(state.notfinite_count) == 2 and int(state.total_notfinite) == 2
    assert not bool(state.last_finite)

    updates, state = update(good, state, params)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 2
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_apply_if_finite_gives_up_after_max_consecutive_errors():
    optimizer = jl.apply_if_finite(jl.sgd(0.1), max_consecutive_errors=2)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    applied = []
    for _ in range(4):
        updates, state = optimizer.update(_nan_like(params), state, params)
        applied.append(bool(jnp.any(jnp.isnan(updates["w"]))))
    assert applied == [False, False, True, True]
