"""Every optimizer against its optax twin: 100 steps on random nested pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import CASES, random_gradients, random_tree, run_steps

import jaxopt_lab as jl

STEPS = 100


def _agree(ours, theirs, dtype):
    if dtype == jnp.float32:
        tol = {"rtol": 1e-5, "atol": 1e-6}
    else:  # a few bfloat16 ulps of optax's result
        tol = {"rtol": 4 * 2.0**-8, "atol": 4 * 2.0**-8}
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), **tol)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_optax_for_100_steps(case, dtype):
    ours, theirs = CASES[case]
    params = random_tree(0, dtype)
    grads = random_gradients(1, STEPS, dtype)
    ours_final = jax.jit(lambda p, g: run_steps(ours, p, g))(params, grads)
    optax_final = jax.jit(lambda p, g: run_steps(theirs, p, g, optax.apply_updates))(params, grads)
    _agree(ours_final, optax_final, dtype)
    # the parameters really moved, so agreement is not trivial
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), ours_final, params)
    assert max(float(m) for m in jax.tree.leaves(moved)) > 1e-3


def test_state_is_a_pytree_of_the_parameter_dtypes():
    params = random_tree(0, jnp.bfloat16)
    state = jl.adam(1e-3, mu_dtype=jnp.float32).init(params)
    adam_state = state[0]
    assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(adam_state.mu))
    assert all(v.dtype == jnp.bfloat16 for v in jax.tree.leaves(adam_state.nu))


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: jl.sgd(-0.1), "learning_rate"),
        (lambda: jl.sgd(0.0), "learning_rate"),
        (lambda: jl.sgd(0.1, momentum=1.0), "momentum"),
        (lambda: jl.sgd(0.1, momentum=-0.1), "momentum"),
        (lambda: jl.adam(1e-3, b1=1.0), "b1"),
        (lambda: jl.adam(1e-3, b2=-0.5), "b2"),
        (lambda: jl.adam(1e-3, eps=-1e-8), "eps"),
        (lambda: jl.adam(1e-3, eps_root=-1.0), "eps_root"),
        (lambda: jl.adamw(1e-3, weight_decay=-1.0), "weight_decay"),
        (lambda: jl.rmsprop(1e-3, decay=1.5), "decay"),
        (lambda: jl.rmsprop(1e-3, eps=-1.0), "eps"),
        (lambda: jl.adagrad(1e-3, initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (lambda: jl.adagrad(-1e-3), "learning_rate"),
        (lambda: jl.clip_by_global_norm(0.0), "max_norm"),
        (lambda: jl.clip_by_global_norm(-1.0), "max_norm"),
        (lambda: jl.clip(-1.0), "max_delta"),
        (lambda: jl.adaptive_grad_clip(0.0), "clipping"),
        (lambda: jl.apply_if_finite(jl.sgd(0.1), -1), "max_consecutive_errors"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"])
def test_grads_with_another_structure_are_rejected(name):
    optimizer = jl.make_optimizer(name, 0.1)
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    state = optimizer.init(params)
    with pytest.raises(ValueError, match="structure"):
        updates, _ = optimizer.update({"w": jnp.ones(3)}, state, params)
        jl.apply_updates(params, updates)
