"""The shared foundations: chain, apply_updates, tree arithmetic, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import random_tree

import jaxopt_lab as jl
from jaxopt_lab.optim import base


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def test_chain_applies_left_to_right_like_optax():
    params, grads = random_tree(0), random_tree(1)
    ours = jl.chain(jl.clip(0.5), jl.scale_by_adam(), jl.scale_by_learning_rate(0.1))
    theirs = optax.chain(optax.clip(0.5), optax.scale_by_adam(), optax.scale(-0.1))
    state = ours.init(params)
    assert len(state) == 3
    for _ in range(3):
        a, state = ours.update(grads, state, params)
    state = theirs.init(params)
    for _ in range(3):
        b, state = theirs.update(grads, state, params)
    np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-6)


def test_chain_passes_extra_arguments_only_to_those_that_take_them():
    def needs_value(updates, state, params=None, *, value):
        return jax.tree.map(lambda g: g * value, updates), state

    scaled = optax.GradientTransformationExtraArgs(lambda p: base.EmptyState(), needs_value)
    optimizer = jl.chain(jl.sgd(1.0), scaled)
    updates, _ = optimizer.update({"w": jnp.ones(2)}, optimizer.init({"w": jnp.ones(2)}), value=3.0)
    np.testing.assert_allclose(updates["w"], -3.0)


def test_chain_rejects_a_state_of_another_chain():
    params = {"w": jnp.ones(2)}
    state = jl.sgd(0.1, momentum=0.9).init(params)
    with pytest.raises(ValueError, match="3 transformations"):
        jl.chain(jl.clip(1.0), jl.clip(1.0), jl.sgd(0.1)).update(params, state, params)


def test_apply_updates_keeps_dtypes_and_none_leaves():
    params = {"w": jnp.ones(3, jnp.bfloat16), "b": None, "s": jnp.float32(2.0)}
    updates = {"w": jnp.full(3, 0.5, jnp.float32), "b": None, "s": jnp.float32(-1.0)}
    new = jl.apply_updates(params, updates)
    assert new["w"].dtype == jnp.bfloat16 and new["b"] is None
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), 1.5)
    np.testing.assert_array_equal(new["s"], 1.0)
    with pytest.raises(ValueError, match="structure of updates differs"):
        jl.apply_updates(params, {"w": updates["w"]})


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_inner_product_and_norm_match_numpy(dtype):
    x, y = random_tree(0, dtype), random_tree(1, dtype)
    vdot, norm = jl.tree_vdot(x, y), jl.tree_l2_norm(x)
    assert vdot.dtype == norm.dtype == jnp.float32  # bfloat16 is accumulated in float32
    np.testing.assert_allclose(vdot, _flat(x) @ _flat(y), rtol=1e-5)
    np.testing.assert_allclose(norm, np.linalg.norm(_flat(x)), rtol=1e-5)
    np.testing.assert_allclose(jl.tree_l2_norm(x, squared=True), norm**2, rtol=1e-5)


def test_leafwise_arithmetic():
    x, y = random_tree(0), random_tree(1)
    np.testing.assert_allclose(_flat(base.tree_scale(2.5, x)), 2.5 * _flat(x), rtol=1e-6)
    np.testing.assert_allclose(
        _flat(base.tree_add_scaled(x, -0.5, y)), _flat(x) - 0.5 * _flat(y), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(_flat(base.tree_sub(x, y)), _flat(x) - _flat(y), rtol=1e-6)
    assert not _flat(base.tree_zeros_like(x)).any()
    full = base.tree_full_like(x, 0.25, jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(full)} == {jnp.dtype(jnp.bfloat16)}
    assert base.tree_cast(x, None) is x
    assert {v.dtype for v in jax.tree.leaves(base.tree_cast(x, jnp.float16))} == {
        jnp.dtype(jnp.float16)
    }


def test_sizes_count_elements_and_bytes_also_of_shape_structs():
    tree = {"a": jnp.zeros((7, 5)), "b": jnp.zeros(3, jnp.bfloat16), "c": jnp.float32(1.0)}
    assert base.tree_size(tree) == 35 + 3 + 1
    assert base.tree_bytes(tree) == 4 * 35 + 2 * 3 + 4
    shapes = jax.eval_shape(lambda: tree)
    assert base.tree_size(shapes) == 39 and base.tree_bytes(shapes) == base.tree_bytes(tree)


def test_safe_increment_saturates_instead_of_wrapping():
    top = jnp.iinfo(jnp.int32).max
    assert int(base.safe_increment(jnp.int32(top - 1))) == top
    assert int(base.safe_increment(jnp.int32(top))) == top


@pytest.mark.parametrize(
    "check, bad, good",
    [
        (base.check_positive, [0.0, -1.0, jnp.float32(-2.0)], [1e-9, 3, jnp.float32(0.5)]),
        (base.check_non_negative, [-1e-12, -3], [0.0, 2.0]),
        (base.check_unit_interval, [1.0, -0.1, 1.5], [0.0, 0.999]),
        (base.check_positive_int, [0, 1.0, True, -2], [1, 10]),
    ],
)
def test_checks_name_the_argument(check, bad, good):
    for value in bad:
        with pytest.raises(ValueError, match="my_argument"):
            check("my_argument", value)
    for value in good:
        check("my_argument", value)


def test_checks_skip_traced_values_and_accept_schedules():
    @jax.jit
    def build(lr):
        base.check_learning_rate(lr)  # traced: the value is unknown at trace time
        return lr * 2

    assert float(build(-1.0)) == -2.0
    base.check_learning_rate(optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        base.check_learning_rate(0.0)
    with pytest.raises(ValueError, match="eps must be a scalar"):
        base.check_positive("eps", jnp.ones(3))
