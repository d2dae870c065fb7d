"""L-BFGS-B (``minimize(..., bounds=...)``) in float64 against scipy's L-BFGS-B (maxcor 10)
and closed forms: bounded Rosenbrock with active and inactive bounds, a quadratic whose
active set is known from its KKT conditions, vmap over 64 boxes and over starts, no
evaluation outside the box, pytree and scalar bounds, and the validation of bad bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

import jaxopt_lab as jl
from jaxopt_lab.optim.lbfgsb import (
    _cauchy_point,
    _compact,
    _subspace_point,
    lbfgsb,
    projected_gradient,
)

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("float64")


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _start(n):
    return jnp.full(n, -1.2).at[1::2].set(1.0)


def _scipy(fun, x0, lower, upper, tol=TOL):
    """scipy L-BFGS-B with maxcor 10, stopping on the projected gradient max-norm."""
    value_and_grad = jax.jit(jax.value_and_grad(fun))
    n = np.size(x0)

    def objective(z):
        value, grad = value_and_grad(z)
        return float(value), np.asarray(grad)

    box = list(zip(np.broadcast_to(lower, n), np.broadcast_to(upper, n), strict=True))
    x0 = np.clip(np.asarray(x0), *zip(*box, strict=True))
    options = {"maxcor": 10, "gtol": tol, "ftol": 0.0, "maxiter": 2000, "maxfun": 20000}
    return scipy.optimize.minimize(
        objective, x0, jac=True, method="L-BFGS-B", bounds=box, options=options
    )


# (dimension, lower, upper); the first three put some variables on a bound at the
# solution, the last box contains the unconstrained minimiser (1, ..., 1) in its interior.
ROSENBROCK_BOXES = {
    "active-2d": (2, -2.0, 0.5),
    "active-lower-10d": (10, 1.1, 3.0),
    "active-100d": (100, 0.0, 0.8),
    "inactive-10d": (10, -2.0, 2.0),
}


@pytest.mark.parametrize("case", ROSENBROCK_BOXES)
def test_bounded_rosenbrock_matches_scipy(case):
    n, lower, upper = ROSENBROCK_BOXES[case]
    x0 = _start(n)
    result = jl.minimize(rosenbrock, x0, "lbfgs", bounds=(lower, upper), tol=TOL, maxiter=2000)
    reference = _scipy(rosenbrock, x0, lower, upper)
    assert reference.success, reference.message
    assert result.converged, result.message
    x = np.asarray(result.x)
    assert np.all((x >= lower) & (x <= upper))
    pg = projected_gradient(result.x, jax.grad(rosenbrock)(result.x), lower, upper)
    assert float(jnp.max(jnp.abs(pg))) == pytest.approx(float(result.grad_norm), rel=1e-12)
    assert float(result.grad_norm) <= TOL
    np.testing.assert_allclose(x, reference.x, atol=1e-4)
    assert float(result.fun) == pytest.approx(reference.fun, rel=1e-7, abs=1e-10)
    # the same variables sit on the same bounds
    for bound in (lower, upper):
        np.testing.assert_array_equal(x == bound, reference.x == bound)
    if case.startswith("inactive"):
        np.testing.assert_allclose(x, np.ones(n), atol=1e-4)
    else:
        assert np.any((x == lower) | (x == upper))
    # comparable work: at most a third more evaluations than scipy, plus a few
    assert int(result.fevals) <= 1.35 * reference.nfev + 5, (int(result.fevals), reference.nfev)


def _kkt_quadratic(n=12, seed=0):
    """A strictly convex quadratic 1/2 x'Ax - b'x on a box, built from a chosen solution:
    x* has 4 variables on the lower bound (gradient > 0 there), 4 on the upper bound
    (gradient < 0) and 4 free (gradient 0), so by the KKT conditions it is the minimiser."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T + n * np.eye(n)
    lower, upper = -np.ones(n), 2 * np.ones(n)
    x_star = rng.uniform(-0.5, 1.5, n)
    x_star[:4], x_star[4:8] = lower[:4], upper[4:8]
    multiplier = np.zeros(n)
    multiplier[:4] = rng.uniform(0.5, 2.0, 4)  # grad f(x*) = mu >= 0 on the lower bound
    multiplier[4:8] = -rng.uniform(0.5, 2.0, 4)  # <= 0 on the upper bound
    b = a @ x_star - multiplier
    a, b = jnp.asarray(a), jnp.asarray(b)

    def fun(x):
        return 0.5 * x @ a @ x - b @ x

    return fun, jnp.asarray(lower), jnp.asarray(upper), x_star


def test_bounded_quadratic_finds_the_known_active_set():
    fun, lower, upper, x_star = _kkt_quadratic()
    x0 = jnp.zeros_like(lower)
    result = jl.minimize(fun, x0, "lbfgs", bounds=(lower, upper), tol=1e-10, maxiter=500)
    assert result.converged, result.message
    x = np.asarray(result.x)
    np.testing.assert_allclose(x, x_star, atol=1e-9)
    # the active variables are exactly on their bounds, the free ones strictly inside
    np.testing.assert_array_equal(x[:4], np.asarray(lower[:4]))
    np.testing.assert_array_equal(x[4:8], np.asarray(upper[4:8]))
    assert np.all((x[8:] > np.asarray(lower[8:])) & (x[8:] < np.asarray(upper[8:])))
    reference = _scipy(fun, x0, lower, upper, tol=1e-10)
    np.testing.assert_allclose(reference.x, x_star, atol=1e-7)


def test_vmap_over_64_boxes_matches_scipy_box_by_box():
    """A strictly convex quadratic has one minimiser per box, so scipy's is the oracle."""
    fun, _, _, _ = _kkt_quadratic(n=8, seed=4)
    rng = np.random.default_rng(1)
    lower = jnp.asarray(rng.uniform(-1.5, 0.5, (64, 8)))
    upper = lower + jnp.asarray(rng.uniform(0.1, 1.5, (64, 8)))
    x0 = jnp.zeros(8)

    @jax.jit
    @jax.vmap
    def solve(low, up):
        return jl.minimize(fun, x0, "lbfgs", bounds=(low, up), tol=1e-9, maxiter=500)

    results = solve(lower, upper)
    assert results.x.shape == (64, 8)
    assert bool(jnp.all(results.converged)), results.message
    assert bool(jnp.all((results.x >= lower) & (results.x <= upper)))
    active = 0
    for k in range(64):
        reference = _scipy(fun, x0, np.asarray(lower[k]), np.asarray(upper[k]), tol=1e-9)
        np.testing.assert_allclose(results.x[k], reference.x, atol=1e-7, err_msg=str(k))
        single = jl.minimize(fun, x0, "lbfgs", bounds=(lower[k], upper[k]), tol=1e-9)
        np.testing.assert_allclose(results.x[k], single.x, atol=1e-10)
        active += int(np.sum((results.x[k] == lower[k]) | (results.x[k] == upper[k])))
    assert active > 64  # the boxes do bind: on average more than one active bound per box


def test_vmap_over_starting_points():
    fun, lower, upper, x_star = _kkt_quadratic(seed=3)
    starts = jnp.asarray(np.random.default_rng(2).uniform(-3, 3, (16, x_star.size)))
    results = jax.vmap(lambda x0: jl.minimize(fun, x0, "lbfgs", bounds=(lower, upper), tol=1e-9))(
        starts
    )
    assert bool(jnp.all(results.converged))
    np.testing.assert_allclose(results.x, np.broadcast_to(x_star, results.x.shape), atol=1e-8)


def _recording(fun, lower, upper, log):
    """``fun`` that records, for every call, whether its point lay outside the box, and
    returns NaN there (so a solver using such a point would also break visibly)."""

    def record(outside):
        log.append(bool(outside))

    def wrapped(x):
        outside = jnp.any((x < lower) | (x > upper))
        jax.debug.callback(record, outside)
        return jnp.where(outside, jnp.nan, fun(x))

    return wrapped


@pytest.mark.parametrize("case", ["active-2d", "active-lower-10d", "active-100d"])
def test_never_evaluates_outside_the_box(case):
    n, lower, upper = ROSENBROCK_BOXES[case]
    log = []
    fun = _recording(rosenbrock, lower, upper, log)
    result = jl.minimize(fun, _start(n), "lbfgs", bounds=(lower, upper), tol=TOL, maxiter=2000)
    jax.effects_barrier()
    assert result.converged, result.message
    assert len(log) >= int(result.fevals) > 3
    assert not any(log)
    # the recorder does see the points an unbounded solve visits outside the box
    unbounded_log = []
    jl.minimize(_recording(rosenbrock, lower, upper, unbounded_log), _start(n), "lbfgs", maxiter=50)
    jax.effects_barrier()
    assert any(unbounded_log)


def test_pytree_x0_with_pytree_and_scalar_bounds():
    def fun(params):
        w, b = params["w"], params["b"]
        return rosenbrock(jnp.concatenate([w, b[None]]))

    x0 = {"w": _start(5), "b": jnp.asarray(1.0)}
    lower = {"w": jnp.asarray([-2.0, 0.0, -2.0, 0.0, 1.2]), "b": -1.0}
    result = jl.minimize(fun, x0, "lbfgs", bounds=(lower, 1.5), tol=TOL)
    assert result.converged, result.message
    assert jax.tree.structure(result.x) == jax.tree.structure(x0)
    flat_lower, _ = ravel_pytree({"w": lower["w"], "b": jnp.asarray(-1.0)})
    flat0, unravel = ravel_pytree(x0)
    reference = _scipy(lambda z: fun(unravel(z)), flat0, np.asarray(flat_lower), 1.5)
    np.testing.assert_allclose(ravel_pytree(result.x)[0], reference.x, atol=1e-4)


def test_infinite_bounds_give_the_unconstrained_minimum():
    lower, upper = -jnp.inf, jnp.full(8, jnp.inf)
    result = jl.minimize(rosenbrock, _start(8), "lbfgs", bounds=(lower, upper), tol=1e-8)
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, np.ones(8), atol=1e-6)


def test_x0_outside_the_box_is_projected():
    log = []
    fun = _recording(rosenbrock, 0.0, 0.8, log)
    x0 = jnp.asarray([-3.0, 5.0, 0.5, 2.0])
    result = jl.minimize(fun, x0, "lbfgs", bounds=(0.0, 0.8), tol=TOL)
    jax.effects_barrier()
    assert result.converged and not any(log)
    reference = _scipy(rosenbrock, x0, 0.0, 0.8)
    np.testing.assert_allclose(result.x, reference.x, atol=1e-4)


def test_bounds_are_traced_under_jit_without_recompiling():
    solve = jax.jit(lambda up: jl.minimize(rosenbrock, _start(4), "lbfgs", bounds=(-2.0, up)))
    first, second = solve(jnp.asarray(0.5)), solve(jnp.asarray(0.7))
    assert solve._cache_size() == 1
    assert float(jnp.max(first.x)) == 0.5 and float(jnp.max(second.x)) == 0.7


@pytest.mark.parametrize(
    ("bounds", "method", "match"),
    [
        ((1.0, 0.0), "lbfgs", "lower > upper"),
        ((jnp.asarray([0.0, 2.0, 0.0]), 1.0), "lbfgs", "lower > upper"),
        ((jnp.nan, 1.0), "lbfgs", "NaN"),
        ((0.0,), "lbfgs", "pair"),
        (({"a": 0.0}, 1.0), "lbfgs", "lower must be a scalar or a pytree"),
        ((jnp.zeros(2), 1.0), "lbfgs", "does not match the shapes"),
        ((0.0, 1.0), "newton", "method 'newton' cannot honour them"),
        ((0.0, 1.0), "adam", "method 'adam' cannot honour them"),
        ((0.0, 1.0), jl.lbfgs(), "transformation"),
        (None, "projected_gd", "needs bounds"),
    ],
)
def test_bad_bounds_raise(bounds, method, match):
    with pytest.raises(ValueError, match=match):
        jl.minimize(rosenbrock, jnp.zeros(3), method, bounds=bounds)


def test_options_and_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="scale_init_precond"):
        jl.minimize(rosenbrock, jnp.zeros(3), "lbfgs", bounds=(0, 1), scale_init_precond=False)
    with pytest.raises(ValueError, match="memory_size"):
        lbfgsb(0.0, 1.0, memory_size=0)
    with pytest.raises(ValueError, match="c1"):
        lbfgsb(0.0, 1.0, c1=1.5)
    result = jl.minimize(rosenbrock, _start(6), "lbfgs", bounds=(0.0, 0.8), memory_size=3)
    assert result.converged


def _random_model(n, pairs, seed):
    """Box, point, gradient and compact memory (pairs with s'y > 0) for the model tests,
    and the dense B = theta I - W M W' they stand for."""
    rng = np.random.default_rng(seed)
    lower, upper = rng.uniform(-2, -0.5, n), rng.uniform(0.5, 2, n)
    lower[0], upper[1] = -np.inf, np.inf
    x = rng.uniform(lower.clip(-2), upper.clip(max=2))
    x[2], x[3] = lower[2], upper[3]  # two variables start on a bound
    g = rng.standard_normal(n)
    q = rng.standard_normal((n, n))
    hessian = q @ q.T / n + 0.5 * np.eye(n)
    s = rng.standard_normal((pairs, n))
    y = s @ hessian  # s'y > 0
    memory = np.zeros((4, n))
    s_memory, y_memory = memory.copy(), memory.copy()
    s_memory[4 - pairs :], y_memory[4 - pairs :] = s, y
    theta = y[-1] @ y[-1] / (s[-1] @ y[-1]) if pairs else 1.0
    model = _compact(jnp.asarray(s_memory), jnp.asarray(y_memory), jnp.asarray(pairs), theta)
    dense = theta * np.eye(n) - np.asarray(model.w @ model.m @ model.w.T)
    return x, g, lower, upper, model, dense


def _cauchy_oracle(x, g, lower, upper, dense):
    """The first local minimiser of m(z) = g'(z - x) + 1/2 (z - x)'B(z - x) along
    P(x - t g), found segment by segment with the dense B."""
    with np.errstate(divide="ignore", invalid="ignore"):
        breaks = np.where(g < 0, (x - upper) / g, np.where(g > 0, (x - lower) / g, np.inf))
    start = 0.0
    for end in np.unique(np.append(breaks[breaks > 0], np.inf)):
        d = np.where(breaks > start, -g, 0.0)
        z = np.clip(x - start * g, lower, upper) - x
        slope, curvature = g @ d + z @ dense @ d, d @ dense @ d
        if slope >= 0:
            return x + z
        if curvature > 0 and start - slope / curvature < end:
            return np.clip(x - (start - slope / curvature) * g, lower, upper)
        start = end
    raise AssertionError("the model is unbounded along the path")


@pytest.mark.parametrize(("pairs", "seed"), [(0, 0), (1, 1), (4, 2), (4, 3), (2, 4)])
def test_cauchy_point_and_subspace_step_match_a_dense_oracle(pairs, seed):
    n = 30
    x, g, lower, upper, model, dense = _random_model(n, pairs, seed)
    if pairs == 0:
        np.testing.assert_allclose(dense, np.eye(n))
    args = (jnp.asarray(x), jnp.asarray(g), jnp.asarray(lower), jnp.asarray(upper), model)
    cauchy = _cauchy_point(*args)
    expected = _cauchy_oracle(x, g, lower, upper, dense)
    np.testing.assert_allclose(cauchy.x, expected, atol=1e-10)
    np.testing.assert_allclose(cauchy.c, np.asarray(model.w).T @ (expected - x), atol=1e-10)
    at_bound = (expected == lower) | (expected == upper)
    np.testing.assert_array_equal(np.asarray(cauchy.free), ~at_bound)
    assert 0 < at_bound.sum() < n  # the path bends at some breakpoints, not all
    # subspace step: the free variables minimise the model with the others fixed
    free = ~at_bound
    reduced = dense[np.ix_(free, free)]
    gradient = g + dense @ (expected - x)
    newton = expected.copy()
    newton[free] -= np.linalg.solve(reduced, gradient[free])
    target = np.asarray(_subspace_point(*args[:4], model, cauchy))
    if np.all((newton >= lower) & (newton <= upper)):
        np.testing.assert_allclose(target, newton, atol=1e-9)
    else:
        np.testing.assert_allclose(target, np.clip(newton, lower, upper), atol=1e-9)
    assert (target - x) @ g < 0


def test_concave_separable_quadratic_runs_to_the_best_vertex():
    """f = sum_i (h_i x_i^2 / 2 + x_i) with h < 0 (DIAGNQB of CUTEst, n = 50): each term is
    concave, so from x_i = 1 the descent runs to the bound the gradient h_i + 1 points at,
    a local minimiser (KKT point); the curvature pairs all have s'y < 0, so only the line
    search's growth of a step without positive curvature reaches the far bounds quickly."""
    n = 50
    h = jnp.arange(1, n + 1) ** 2 / n - n - 1 / n

    def fun(x):
        return jnp.sum(0.5 * h * x**2 + x)

    lower, upper = -1e5, 1e6
    expected = np.where(h + 1 < 0, upper, lower)
    result = jl.minimize(fun, jnp.ones(n), "lbfgs", bounds=(lower, upper), tol=TOL)
    assert result.converged, result.message
    np.testing.assert_array_equal(result.x, expected)
    reference = _scipy(fun, jnp.ones(n), lower, upper)
    np.testing.assert_array_equal(reference.x, expected)
    assert int(result.fevals) <= reference.nfev + 5, (int(result.fevals), reference.nfev)


def test_bounded_solution_is_differentiable_with_zero_sensitivity_on_active_bounds():
    """x*(b) = argmin_{x >= 0} 1/2 x'Ax - b'x: on the free coordinates F the KKT system gives
    dx*_F/db_F = (A_FF)^-1, and the active coordinates stay on their bound (derivative 0)."""
    a = jnp.asarray([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.5]])

    def fun(x, b):
        return 0.5 * x @ a @ x - b @ x

    def solution(b):
        objective = Partial(fun, b=b)
        return jl.minimize(objective, jnp.zeros(3), "lbfgs", bounds=(0.0, jnp.inf), tol=1e-12).x

    b = jnp.asarray([1.0, -2.0, 1.0])
    x = np.asarray(solution(b))
    free = x > 0
    assert free.tolist() == [True, False, True]
    expected = np.zeros((3, 3))
    expected[np.ix_(free, free)] = np.linalg.inv(np.asarray(a)[np.ix_(free, free)])
    np.testing.assert_allclose(jax.jacrev(solution)(b), expected, atol=1e-10)
