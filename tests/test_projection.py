"""Projections onto the box, the orthant, the simplex and the l2 ball against closed forms
and the variational characterisation of a projection, <x - P(x), z - P(x)> <= 0 for every z
in the set; ``project`` and ``minimize(method="projected_gd")`` against hand-written
projected gradient descent and the KKT solution of a bounded quadratic."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lab as jl

pytestmark = pytest.mark.usefixtures("float64")


def _assert_is_projection(x, projected, members):
    """``projected`` is the nearest point of the set to ``x``: no member is closer, and
    the angle condition <x - P, z - P> <= 0 holds for every member z."""
    gap = x - projected
    for z in members:
        assert gap @ (z - projected) <= 1e-10
        assert np.linalg.norm(x - z) >= np.linalg.norm(gap) - 1e-12


def test_box_matches_clip_with_scalar_pytree_and_infinite_bounds():
    rng = np.random.default_rng(0)
    x = {"a": jnp.asarray(rng.normal(size=5) * 3), "b": jnp.asarray(rng.normal(size=(2, 3)))}
    lower = {"a": jnp.asarray([-1.0, -jnp.inf, 0.0, -2.0, 0.5]), "b": -0.5}
    got = jl.projection_box(x, lower, 1.0)
    np.testing.assert_array_equal(got["a"], np.clip(x["a"], lower["a"], 1.0))
    np.testing.assert_array_equal(got["b"], np.clip(x["b"], -0.5, 1.0))
    assert got["a"].dtype == x["a"].dtype


def test_non_negative_is_the_positive_part():
    x = jnp.asarray([-2.0, 0.0, 3.0, -1e-12])
    np.testing.assert_array_equal(jl.projection_non_negative(x), [0.0, 0.0, 3.0, 0.0])


@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("seed", range(4))
def test_simplex_is_the_nearest_point(scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=7) * 2
    projected = np.asarray(jl.projection_simplex(jnp.asarray(x), scale))
    assert np.all(projected >= 0)
    assert projected.sum() == pytest.approx(scale, rel=1e-12)
    members = rng.dirichlet(np.ones(7), size=200) * scale
    vertices = scale * np.eye(7)
    _assert_is_projection(x, projected, [*members, *vertices])


def test_simplex_keeps_members_and_spans_pytree_leaves():
    member = jnp.asarray([0.2, 0.3, 0.5])
    np.testing.assert_allclose(jl.projection_simplex(member), member, atol=1e-15)
    tree = {"a": jnp.asarray([3.0, 0.0]), "b": jnp.asarray(1.0)}
    got = jl.projection_simplex(tree)
    # together the leaves form one simplex: x - tau with tau = 1.5 on (3, 0, 1) -> (1, 0, 0)
    np.testing.assert_allclose(got["a"], [1.0, 0.0])
    np.testing.assert_allclose(got["b"], 0.0)


@pytest.mark.parametrize("radius", [0.5, 2.0])
def test_l2_ball_scales_outside_points_and_keeps_inside_ones(radius):
    rng = np.random.default_rng(1)
    x = rng.normal(size=6) * 3
    projected = np.asarray(jl.projection_l2_ball(jnp.asarray(x), radius))
    np.testing.assert_allclose(projected, x * radius / np.linalg.norm(x), rtol=1e-14)
    directions = rng.normal(size=(200, 6))
    members = radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    _assert_is_projection(x, projected, members * rng.uniform(0, 1, (200, 1)))
    inside = x / np.linalg.norm(x) * radius * 0.5
    np.testing.assert_array_equal(jl.projection_l2_ball(jnp.asarray(inside), radius), inside)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="radius"):
        jl.projection_l2_ball(jnp.ones(2), 0.0)
    with pytest.raises(ValueError, match="scale"):
        jl.projection_simplex(jnp.ones(2), -1.0)


def test_project_after_sgd_is_projected_gradient_descent():
    target = jnp.asarray([1.0, -2.0, 0.5, -0.1])

    def fun(x):
        return jnp.sum((x - target) ** 2)

    optimizer = jl.chain(jl.sgd(0.1), jl.project(jl.projection_non_negative))
    x, state = jnp.zeros(4), None
    state = optimizer.init(x)
    expected = np.zeros(4)
    for _ in range(100):
        updates, state = optimizer.update(jax.grad(fun)(x), state, x)
        x = jl.apply_updates(x, updates)
        expected = np.maximum(expected - 0.1 * 2 * (expected - np.asarray(target)), 0)
    np.testing.assert_allclose(x, expected, atol=1e-14)
    np.testing.assert_allclose(x, np.maximum(target, 0), atol=1e-8)


def test_projected_gd_method_reaches_the_kkt_point_of_a_bounded_quadratic():
    # f = 1/2 |D x - c|^2 with D diagonal: the box solution is clip(c / D, l, u)
    scales = jnp.asarray([1.0, 2.0, 0.5, 1.5, 1.0])
    centre = jnp.asarray([2.0, -3.0, 0.2, 1.0, -0.4])

    def fun(x):
        return 0.5 * jnp.sum((scales * x - centre) ** 2)

    lower, upper = jnp.asarray([-1.0, -1.0, 0.0, 0.0, 0.0]), 1.0
    expected = np.clip(centre / scales, lower, upper)
    result = jl.minimize(
        fun, jnp.zeros(5), "projected_gd", bounds=(lower, upper), learning_rate=0.2, tol=1e-10
    )
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, expected, atol=1e-9)
    lbfgsb = jl.minimize(fun, jnp.zeros(5), "lbfgs", bounds=(lower, upper), tol=1e-10)
    np.testing.assert_allclose(lbfgsb.x, expected, atol=1e-9)
    assert int(lbfgsb.fevals) < int(result.fevals)


def test_projection_box_as_a_partial_in_project():
    projection = functools.partial(jl.projection_box, lower=-0.5, upper=0.5)
    updates, _ = jl.project(projection).update(
        jnp.asarray([2.0, -2.0, 0.1]), jl.project(projection).init(jnp.zeros(3)), jnp.zeros(3)
    )
    np.testing.assert_array_equal(updates, [0.5, -0.5, 0.1])
