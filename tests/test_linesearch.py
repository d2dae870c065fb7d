"""Line searches: the accepted step meets its conditions, the returned value and gradient
are those of the accepted point, and the evaluation count is the number of real calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lab as jl
from jaxopt_lab import problems


def _counted(fun):
    """``value_and_grad(fun)`` that also counts its real executions (not its traces)."""
    calls = []

    def value_and_grad(x):
        jax.debug.callback(lambda: calls.append(1))
        return jax.value_and_grad(fun)(x)

    return value_and_grad, calls


def _search(search, fun, x, direction, **options):
    value_and_grad, calls = _counted(fun)
    value, grad = jax.value_and_grad(fun)(x)
    result = jax.jit(lambda x, d: search(value_and_grad, x, value, grad, d, **options))(
        x, direction
    )
    jax.block_until_ready(result)
    jax.effects_barrier()
    return value, grad, result, len(calls)


def _assert_is_accepted_point(fun, x, direction, result):
    point = x + result.step * direction
    value, grad = jax.value_and_grad(fun)(point)
    np.testing.assert_allclose(result.value, value, rtol=1e-6)
    np.testing.assert_allclose(result.grad, grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("initial_step", [1e-4, 1.0, 10.0], ids=["expand", "unit", "zoom"])
def test_zoom_meets_strong_wolfe(initial_step):
    problem = problems.rosenbrock(2)
    x = problem.x0
    direction = -jax.grad(problem.fun)(x)
    direction = direction / jnp.linalg.norm(direction)
    value, grad, result, calls = _search(
        jl.zoom_search, problem.fun, x, direction, initial_step=initial_step
    )
    slope0 = grad @ direction
    slope = result.grad @ direction
    assert not result.failed and result.step > 0
    assert result.value <= value + 1e-4 * result.step * slope0
    assert abs(slope) <= 0.9 * abs(slope0)
    _assert_is_accepted_point(problem.fun, x, direction, result)
    assert int(result.fevals) == calls
    assert 1 <= calls <= 20


@pytest.mark.parametrize("search", [jl.zoom_search, jl.backtracking_search])
def test_accepted_first_trial_costs_one_evaluation(search):
    problem = problems.quadratic(8, 10.0)
    x = problem.x0
    newton_direction = problem.x_min - x  # the exact minimiser along the line is t = 1
    _, _, result, calls = _search(search, problem.fun, x, newton_direction)
    assert calls == int(result.fevals) == 1
    assert result.step == 1.0 and not result.failed
    _assert_is_accepted_point(problem.fun, x, newton_direction, result)


def test_backtracking_meets_armijo_with_few_evaluations():
    problem = problems.rosenbrock(2)
    x = problem.x0
    direction = -jax.grad(problem.fun)(x)  # |d| ~ 200: step 1 overshoots badly
    value, grad, result, calls = _search(jl.backtracking_search, problem.fun, x, direction)
    assert not result.failed and 0 < result.step < 1
    assert result.value <= value + 1e-4 * result.step * (grad @ direction)
    _assert_is_accepted_point(problem.fun, x, direction, result)
    assert int(result.fevals) == calls <= 10


@pytest.mark.parametrize("search", [jl.zoom_search, jl.backtracking_search])
def test_ascent_direction_fails_cleanly(search):
    problem = problems.rosenbrock(2)
    x = problem.x0
    ascent = jax.grad(problem.fun)(x)
    value, grad, result, calls = _search(search, problem.fun, x, ascent)
    assert result.failed and result.step == 0 and calls == 0
    assert result.value == value
    np.testing.assert_array_equal(result.grad, grad)


def test_zoom_returns_best_point_without_nan_on_overflow():
    def fun(x):  # finite only near the origin: large steps give inf/NaN
        return jnp.sum(jnp.where(jnp.abs(x) < 5, x**2, jnp.inf))

    x = jnp.array([1.0, -2.0])
    _, _, result, _ = _search(jl.zoom_search, fun, x, -x, initial_step=100.0)
    assert jnp.isfinite(result.value) and jnp.all(jnp.isfinite(result.grad))
    assert result.value < fun(x)


def test_transformation_reuses_accepted_point():
    problem = problems.rosenbrock(2)
    linesearch = jl.scale_by_zoom_linesearch()
    value_and_grad = jl.value_and_grad_from_state(problem.fun)
    x, state = problem.x0, linesearch.init(problem.x0)
    for _ in range(3):
        value, grad = value_and_grad(x, state=state)
        np.testing.assert_allclose(value, problem.fun(x), rtol=1e-6)
        direction = -grad / jnp.linalg.norm(grad)
        updates, state = linesearch.update(
            direction, state, x, value=value, grad=grad, value_fn=problem.fun
        )
        np.testing.assert_allclose(updates, state.step * direction, rtol=1e-6)
        x = jl.apply_updates(x, updates)
        assert state.value < value
    assert int(state.searches) == 3


@pytest.mark.parametrize(
    ("factory", "options", "name"),
    [
        (jl.scale_by_zoom_linesearch, {"c1": 0.0}, "c1"),
        (jl.scale_by_zoom_linesearch, {"c1": 0.5, "c2": 0.4}, "c2"),
        (jl.scale_by_zoom_linesearch, {"max_steps": 0}, "max_steps"),
        (jl.scale_by_backtracking_linesearch, {"c1": 1.5}, "c1"),
        (jl.scale_by_backtracking_linesearch, {"initial_step": -1.0}, "initial_step"),
    ],
)
def test_bad_options_raise(factory, options, name):
    with pytest.raises(ValueError, match=name):
        factory(**options)
