"""L-BFGS as a transformation: the two-loop direction against the dense BFGS update,
curvature-pair skipping, a user's own jitted loop with the stopping helper, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lab as jl
from jaxopt_lab import problems


def _dense_bfgs_direction(grad, pairs):
    """``-H g`` with ``H`` built explicitly: ``H <- V^T H V + rho s s^T``, ``V = I - rho y s^T``."""
    grad = np.asarray(grad, np.float64)
    if not pairs:
        return -grad / np.linalg.norm(grad)
    s_new, y_new = pairs[-1]
    inverse_hessian = (s_new @ y_new) / (y_new @ y_new) * np.eye(grad.size)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(grad.size) - rho * np.outer(y, s)
        inverse_hessian = v.T @ inverse_hessian @ v + rho * np.outer(s, s)
    return -inverse_hessian @ grad


def test_two_loop_direction_matches_dense_bfgs():
    memory_size = 3
    problem = problems.quadratic(6, 20.0)
    grad_fn = jax.jit(jax.grad(problem.fun))
    transform = jl.scale_by_lbfgs(memory_size=memory_size)
    update = jax.jit(transform.update)
    x = problem.x0
    state = transform.init(x)
    history = []  # (x, g) in float64
    for _ in range(8):
        grad = grad_fn(x)
        history.append((np.asarray(x, np.float64), np.asarray(grad, np.float64)))
        pairs = [
            (x1 - x0, g1 - g0) for (x0, g0), (x1, g1) in zip(history[:-1], history[1:], strict=True)
        ][-memory_size:]
        direction, state = update(grad, state, x)
        np.testing.assert_allclose(
            direction, _dense_bfgs_direction(grad, pairs), rtol=2e-3, atol=1e-5
        )
        x = x + 0.3 * direction
    assert int(state.skipped_pairs) == 0


def test_negative_curvature_pair_is_skipped_without_nan():
    transform = jl.scale_by_lbfgs()
    update = jax.jit(transform.update)
    x0, x1 = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    state = transform.init(x0)
    _, state = update(jnp.array([1.0, 0.0]), state, x0)
    # s = (1, 0), y = (-0.5, 0): s'y < 0, a pair optax would keep (optax#1708).
    direction, state = update(jnp.array([0.5, 0.0]), state, x1)
    assert int(state.skipped_pairs) == 1
    assert not jnp.any(state.rho != 0)
    np.testing.assert_allclose(direction, [-1.0, 0.0])  # unit steepest descent
    direction, _ = update(jnp.zeros(2), state, x1)
    assert jnp.all(jnp.isfinite(direction)) and jnp.all(direction == 0)


def test_a_pair_is_kept_however_large_the_curvature():
    # f = h x^2 / 2 with h = 1e8 in float32: s'y / y'y = 1 / h is below the machine epsilon,
    # yet the pair is exact; with it the next direction is the Newton step to the minimum.
    # The former test s'y > eps y'y skipped it and fell back to a unit step.
    h = 1e8
    transform = jl.scale_by_lbfgs()
    update = jax.jit(transform.update)
    x0, x1 = jnp.array([3.0]), jnp.array([2.0])
    state = transform.init(x0)
    _, state = update(h * x0, state, x0)
    direction, state = update(h * x1, state, x1)
    assert int(state.skipped_pairs) == 0
    np.testing.assert_allclose(x1 + direction, [0.0], atol=1e-6)


def test_user_loop_with_stopping_helper():
    problem = problems.rosenbrock(2)
    calls = []

    def fun(x):
        jax.debug.callback(lambda: calls.append(1))
        return problem.fun(x)

    optimizer = jl.lbfgs()
    value_and_grad = jl.value_and_grad_from_state(fun)

    def step(carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return jl.apply_updates(x, updates), state

    def keep_going(carry):
        info = jl.lbfgs_info(carry[1])
        return ((info.iterations == 0) | (info.grad_norm > 1e-3)) & (info.iterations < 200)

    x, state = jax.jit(lambda x: jax.lax.while_loop(keep_going, step, (x, optimizer.init(x))))(
        problem.x0
    )
    jax.effects_barrier()
    info = jl.lbfgs_info(state)
    assert info.grad_norm <= 1e-3 and not info.linesearch_failed
    np.testing.assert_allclose(x, problem.x_min, atol=1e-3)
    np.testing.assert_allclose(info.value, problem.fun(x), rtol=1e-5, atol=1e-9)
    assert int(info.fevals) == len(calls)
    assert int(info.iterations) < 60


def test_info_found_inside_a_nested_chain():
    optimizer = jl.chain(jl.clip_by_global_norm(10.0), jl.lbfgs(memory_size=4))
    state = optimizer.init({"w": jnp.ones(3)})
    info = jl.lbfgs_info(state)
    assert int(info.iterations) == 0 and int(info.fevals) == 1


def test_fixed_learning_rate_converges_on_a_quadratic():
    problem = problems.quadratic(10, 10.0)
    optimizer = jl.lbfgs(learning_rate=0.5)
    x, state = problem.x0, optimizer.init(problem.x0)
    update = jax.jit(optimizer.update)
    grad_fn = jax.jit(jax.grad(problem.fun))
    for _ in range(100):
        updates, state = update(grad_fn(x), state, x)
        x = jl.apply_updates(x, updates)
    np.testing.assert_allclose(x, problem.x_min, rtol=1e-3, atol=1e-3)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="memory_size"):
        jl.lbfgs(memory_size=0)
    with pytest.raises(ValueError, match="curvature_eps"):
        jl.scale_by_lbfgs(curvature_eps=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        jl.lbfgs(learning_rate=-1.0)
    with pytest.raises(ValueError, match="linesearch"):
        jl.lbfgs(learning_rate=1.0, linesearch=jl.scale_by_zoom_linesearch())


def _with_bad_memory(state, x, grad):
    """An L-BFGS memory whose one pair (s = e1, y = 1e-12 e1) claims almost no curvature
    along e1: its direction overshoots by a factor of about 1e12 there."""
    memory = state[0]
    bad = memory._replace(
        iterations=jnp.ones((), jnp.int32),
        params=x,
        grad=grad,  # the next update forms s = y = 0, a pair it skips
        s_memory=memory.s_memory.at[0].set(jnp.array([1.0, 0.0])),
        y_memory=memory.y_memory.at[0].set(jnp.array([1e-12, 0.0])),
        rho=memory.rho.at[0].set(1e12),
        next_slot=jnp.ones((), jnp.int32),
        gamma=jnp.asarray(0.5, memory.gamma.dtype),
    )
    return (bad, *state[1:])


def test_failed_search_clears_the_memory_and_retries_along_steepest_descent(float64):
    """f = |x|^2: the bad memory's direction overshoots, and a one-evaluation search finds
    no decrease along it (the plain chain, without the retry, fails). The retry along
    -gamma g = -x (gamma = 0.5) lands on the minimum."""

    def fun(x):
        return jnp.sum(x**2)

    x = jnp.array([1.0, 2.0])
    value, grad = jax.value_and_grad(fun)(x)
    search = jl.scale_by_hager_zhang_linesearch(max_steps=1)
    plain = jl.chain(jl.scale_by_lbfgs(), search)
    state = _with_bad_memory(plain.init(x), x, grad)
    updates, failed_state = plain.update(grad, state, x, value=value, grad=grad, value_fn=fun)
    assert bool(jl.lbfgs_info(failed_state).linesearch_failed) and jnp.all(updates == 0)

    optimizer = jl.lbfgs(linesearch=search)
    state = _with_bad_memory(optimizer.init(x), x, grad)
    updates, new_state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=fun)
    info = jl.lbfgs_info(new_state)
    assert int(info.restarts) == 1 and not bool(info.linesearch_failed)
    assert not jnp.any(new_state[0].rho != 0)  # memory cleared
    assert int(info.fevals) == 1 + 2  # the start, the failed trial, the retry's one trial
    np.testing.assert_allclose(jl.apply_updates(x, updates), jnp.zeros(2), atol=1e-12)
    np.testing.assert_allclose(info.value, 0.0, atol=1e-20)


def test_failed_first_search_retries_a_thousand_times_shorter(float64):
    """With an empty memory the direction is -g / ||g||, whose unit step moves x by 1. On
    f = |x|^2 from |x0| = 1e-3 that overshoots to |x| ~ 1, so a one-evaluation search
    fails; the retry along 1e-3 times the same direction moves x by 1e-3 and lands on the
    minimum. Without the retry the iteration reports the failure and stays put."""

    def fun(x):
        return jnp.sum(x**2)

    x = jnp.array([6e-4, 8e-4])
    value, grad = jax.value_and_grad(fun)(x)
    search = jl.scale_by_hager_zhang_linesearch(max_steps=1)
    plain = jl.chain(jl.scale_by_lbfgs(), search)
    updates, failed_state = plain.update(
        grad, plain.init(x), x, value=value, grad=grad, value_fn=fun
    )
    assert bool(jl.lbfgs_info(failed_state).linesearch_failed) and jnp.all(updates == 0)

    optimizer = jl.lbfgs(linesearch=search)
    updates, state = optimizer.update(
        grad, optimizer.init(x), x, value=value, grad=grad, value_fn=fun
    )
    info = jl.lbfgs_info(state)
    assert int(info.restarts) == 1 and not bool(info.linesearch_failed)
    assert int(info.fevals) == 1 + 2  # the start, the failed trial, the retry's one trial
    np.testing.assert_allclose(jl.apply_updates(x, updates), jnp.zeros(2), atol=1e-15)
