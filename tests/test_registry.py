"""Optimizers by name: the table the CLI and the experiments build from."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import random_gradients, random_tree, run_steps

import jaxopt_lab as jl
from jaxopt_lab.optim.registry import optax_twin

# the names are a contract (CLI flags, experiment labels, benchmark rows)
NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


def _close(a, b, rtol=1e-5, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_names_are_the_contract():
    assert jl.OPTIMIZER_NAMES == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_name_builds_its_optax_twin(name):
    params, grads = random_tree(0), random_gradients(1, 10)
    twin = optax_twin(name, 0.01)
    ours = jax.jit(lambda p, g: run_steps(jl.make_optimizer(name, 0.01), p, g))(params, grads)
    theirs = jax.jit(lambda p, g: run_steps(twin, p, g, optax.apply_updates))(params, grads)
    _close(ours, theirs)


def test_momentum_names_set_their_documented_defaults():
    params, grads = random_tree(0), random_gradients(1, 10)
    for name, reference in (
        ("momentum", optax.sgd(0.01, momentum=0.9)),
        ("nesterov", optax.sgd(0.01, momentum=0.9, nesterov=True)),
    ):
        ours = jax.jit(lambda p, g, n=name: run_steps(jl.make_optimizer(n, 0.01), p, g))(
            params, grads
        )
        theirs = jax.jit(lambda p, g, r=reference: run_steps(r, p, g, optax.apply_updates))(
            params, grads
        )
        _close(ours, theirs)


def test_options_reach_the_optimizer():
    params, grads = random_tree(0), random_tree(1)
    for ours, theirs in [
        (jl.make_optimizer("rmsprop", 0.01, centered=True), optax.rmsprop(0.01, centered=True)),
        (jl.make_optimizer("momentum", 0.1, momentum=0.5), optax.sgd(0.1, momentum=0.5)),
        (jl.make_optimizer("adam", 0.01, b1=0.5), optax.adam(0.01, b1=0.5)),
    ]:
        a, _ = ours.update(grads, ours.init(params), params)
        b, _ = theirs.update(grads, theirs.init(params), params)
        _close(a, b)
    with pytest.raises(ValueError, match="takes no option .betas."):
        jl.make_optimizer("adam", 0.01, betas=(0.9, 0.99))


def test_clipping_is_chained_before_the_optimizer():
    ours = jl.make_optimizer("adam", 0.01, clip_norm=1.0, clip_value=0.5)
    theirs = optax.chain(optax.clip(0.5), optax.clip_by_global_norm(1.0), optax.adam(0.01))
    params = random_tree(0)
    grads = jax.tree.map(lambda g: 10.0 * g, random_tree(1))
    a, _ = ours.update(grads, ours.init(params), params)
    b, _ = theirs.update(grads, theirs.init(params), params)
    _close(a, b, atol=1e-8)


def test_unknown_name_and_bad_clipping_raise():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'.*sgd, momentum.*adamw"):
        jl.make_optimizer("lion", 0.1)
    with pytest.raises(ValueError, match="max_norm"):
        jl.make_optimizer("sgd", 0.1, clip_norm=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        jl.make_optimizer("adam", -0.1)


def test_skip_nonfinite_drops_nan_updates():
    guarded = jl.make_optimizer("momentum", 0.1, skip_nonfinite=True)
    params = {"w": jnp.ones(2)}
    state = guarded.init(params)
    updates, state = guarded.update({"w": jnp.array([jnp.nan, 1.0])}, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)
    assert int(state.total_notfinite) == 1
    updates, state = guarded.update({"w": jnp.array([1.0, 1.0])}, state, params)
    np.testing.assert_allclose(updates["w"], -0.1)


def test_learning_rate_may_be_traced_inside_vmap():
    """A sweep builds the optimizer inside the trace, one learning rate per member."""
    params, grads = random_tree(0), random_gradients(1, 5)
    learning_rates = jnp.array([1e-3, 1e-2, 1e-1])

    def train(lr):
        return run_steps(jl.make_optimizer("adamw", lr, clip_norm=1.0), params, grads)

    swept = jax.jit(jax.vmap(train))(learning_rates)
    for i, lr in enumerate(learning_rates.tolist()):
        one = jax.jit(
            lambda p, g, lr=lr: run_steps(
                optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr)),
                p,
                g,
                optax.apply_updates,
            )
        )(params, grads)
        _close(jax.tree.map(lambda x, i=i: x[i], swept), one, rtol=1e-5, atol=1e-6)
