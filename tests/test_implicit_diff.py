"""Implicit differentiation of ``minimize`` and of a bounded minimiser, float64: the ridge
closed form, finite differences on logistic regression (penalty and data), grad / jacrev /
vmap / jit, the bounded rule on a box QP with a known active set, CG against a dense
solve, and a backward pass whose size and memory do not grow with ``maxiter``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.tree_util import Partial

import jaxopt_lab as jl
from jaxopt_lab import problems
from jaxopt_lab.optim.implicit import conjugate_gradient, free_coordinates, implicit_minimum

pytestmark = pytest.mark.usefixtures("float64")


def _fd(fun, t, h):
    """Fourth-order central difference of a scalar function of a scalar at ``t``."""
    return (-fun(t + 2 * h) + 8 * fun(t + h) - 8 * fun(t - h) + fun(t - 2 * h)) / (12 * h)


# --------------------------------------------------------------------------- ridge


def _ridge_value(a, b, lam, x):
    return 0.5 * jnp.sum((a @ x - b) ** 2) + 0.5 * lam * jnp.sum(x**2)


@pytest.fixture(scope="module")
def ridge():
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (40, 8))
    b = jax.random.normal(key_b, (40,))
    return a, b


def _ridge_solution(a, b, lam):
    return jl.minimize(Partial(_ridge_value, a, b, lam), jnp.zeros(a.shape[1]), tol=1e-12)


@pytest.mark.parametrize("lam", [1e-2, 1.0, 30.0])
def test_ridge_derivative_matches_closed_form(ridge, lam):
    a, b = ridge
    system = np.asarray(a.T @ a) + lam * np.eye(a.shape[1])
    x_star = np.linalg.solve(system, np.asarray(a.T @ b))
    jacobian = jax.jacrev(lambda t: _ridge_solution(a, b, t).x)(jnp.asarray(lam))
    expected = -np.linalg.solve(system, x_star)  # d x*/d lambda = -(A'A + lambda I)^-1 x*
    np.testing.assert_allclose(jacobian, expected, rtol=1e-8, atol=1e-12)
    # and with respect to the data: d x*/d b = (A'A + lambda I)^-1 A'
    jacobian_b = jax.jacrev(lambda bb: _ridge_solution(a, bb, lam).x)(b)
    np.testing.assert_allclose(jacobian_b, np.linalg.solve(system, np.asarray(a.T)), rtol=1e-8)


def test_ridge_optimal_value_derivative_is_the_envelope(ridge):
    a, b = ridge
    lam = 0.5
    x_star = np.linalg.solve(np.asarray(a.T @ a) + lam * np.eye(a.shape[1]), np.asarray(a.T @ b))
    slope = jax.grad(lambda t: _ridge_solution(a, b, t).fun)(jnp.asarray(lam))
    np.testing.assert_allclose(slope, 0.5 * x_star @ x_star, rtol=1e-10)


def test_value_differentiates_like_the_objective_at_the_returned_point(ridge):
    """At an inexact solution (gradient not zero) ``value`` must still move like
    ``fun(x)``: the chain rule through x is kept, not dropped by the envelope theorem."""
    a, b = ridge
    rough = _ridge_solution(a, b, 0.5).x + 0.05  # far from stationary

    def both(lam):
        fun = Partial(_ridge_value, a, b, lam)
        x, value = implicit_minimum(fun, rough, fun(rough))
        return value, fun(x)

    slope_value = jax.grad(lambda t: both(t)[0])(0.5)
    slope_composed = jax.grad(lambda t: both(t)[1])(0.5)
    np.testing.assert_allclose(slope_value, slope_composed, rtol=1e-10)
    envelope = 0.5 * jnp.sum(rough**2)  # what dropping the x term would give
    assert abs(float(slope_value) - float(envelope)) > 1e-3


def test_starting_point_gets_zero_cotangent(ridge):
    a, b = ridge
    fun = Partial(_ridge_value, a, b, 1.0)
    grad_x0 = jax.grad(lambda x0: jnp.sum(jl.minimize(fun, x0, tol=1e-10).x))(jnp.ones(8))
    np.testing.assert_array_equal(grad_x0, np.zeros(8))


# --------------------------------------------------------------------------- logistic


@pytest.fixture(scope="module")
def logistic_data():
    keys = jax.random.split(jax.random.key(1), 4)
    train_x = jax.random.normal(keys[0], (60, 6))
    train_y = jax.random.randint(keys[1], (60,), 0, 3)
    val_x = jax.random.normal(keys[2], (50, 6))
    val_y = jax.random.randint(keys[3], (50,), 0, 3)
    return train_x, train_y, val_x, val_y


# the loss of problems.logistic_regression as a function of (features, labels, l2, params)
LOSS = problems.logistic_regression(np.zeros((1, 6)), np.zeros(1, int)).fun.func
X0 = {"weights": np.zeros((6, 3)), "bias": np.zeros(3)}


def _validation_loss(data, l2, features=None, method="lbfgs", tol=1e-10, maxiter=1000):
    train_x, train_y, val_x, val_y = data
    features = train_x if features is None else features
    result = jl.minimize(Partial(LOSS, features, train_y, l2), X0, method, tol=tol, maxiter=maxiter)
    return LOSS(val_x, val_y, 0.0, result.x)


def test_logistic_hypergradient_matches_finite_differences(logistic_data):
    l2 = 0.05
    hypergradient = jax.jit(jax.grad(lambda t: _validation_loss(logistic_data, t)))(l2)
    # the finite differences solve with Newton to 1e-13, so solver error stays below 1e-9
    exact = lambda t: float(_validation_loss(logistic_data, t, method="newton", tol=1e-13))  # noqa: E731
    expected = _fd(exact, l2, 1e-3)
    np.testing.assert_allclose(hypergradient, expected, rtol=1e-6)
    assert abs(float(expected)) > 1e-3  # a derivative that is not trivially zero


def test_logistic_gradient_in_the_data_matches_finite_differences(logistic_data):
    features = logistic_data[0]
    grad = jax.jit(jax.grad(lambda f: _validation_loss(logistic_data, 0.05, features=f)))(features)
    for seed in range(2):
        direction = jax.random.normal(jax.random.key(10 + seed), features.shape)

        def along(t, direction=direction):
            moved = features + t * direction
            return float(_validation_loss(logistic_data, 0.05, moved, "newton", 1e-13))

        expected = _fd(along, 0.0, 1e-3)
        np.testing.assert_allclose(jnp.vdot(grad, direction), expected, rtol=1e-6)


def test_jacrev_vmap_and_jit_of_the_hypergradient(logistic_data):
    l2s = jnp.asarray([0.01, 0.1, 1.0])
    hypergradient = jax.jit(jax.grad(lambda t: _validation_loss(logistic_data, t)))
    one_by_one = np.asarray([hypergradient(t) for t in l2s])
    np.testing.assert_allclose(jax.vmap(hypergradient)(l2s), one_by_one, rtol=1e-8)
    # jacrev of a vector of validation losses, one per penalty, is diagonal with the grads
    losses = lambda ts: jnp.stack([_validation_loss(logistic_data, t) for t in ts])  # noqa: E731
    jacobian = jax.jit(jax.jacrev(losses))(l2s)
    np.testing.assert_allclose(jacobian, np.diag(one_by_one), rtol=1e-8, atol=0)
    # and jacrev of the solution pytree against finite differences of it
    train_x, train_y = logistic_data[:2]

    def solution(t):
        return jl.minimize(Partial(LOSS, train_x, train_y, t), X0, "newton", tol=1e-13).x

    # (the weights only: the unpenalised bias may shift by c(1, 1, 1) without changing the
    # loss, so its minimiser is not unique and H is singular along that direction)
    jacobian = jax.jit(jax.jacrev(lambda t: solution(t)["weights"]))(0.1)
    expected = _fd(lambda t: np.asarray(solution(t)["weights"]), 0.1, 1e-3)
    np.testing.assert_allclose(jacobian, expected, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- size, memory


def _logistic_hyperloss(data, maxiter):
    train_x, train_y, val_x, val_y = data

    def hyperloss(l2):
        fun = Partial(LOSS, train_x, train_y, l2)
        x = jl.minimize(fun, X0, "gd", learning_rate=0.5, tol=1e-12, maxiter=maxiter).x
        return LOSS(val_x, val_y, 0.0, x)

    return hyperloss


def _unrolled_hyperloss(data, steps, scan):
    """The same objective, differentiated through ``steps`` gradient-descent steps."""
    train_x, train_y, val_x, val_y = data

    def hyperloss(l2):
        fun = Partial(LOSS, train_x, train_y, l2)
        step = lambda x: jax.tree.map(lambda p, g: p - 0.5 * g, x, jax.grad(fun)(x))  # noqa: E731
        x = jax.tree.map(jnp.asarray, X0)
        if scan:
            x, _ = jax.lax.scan(lambda x, _: (step(x), None), x, length=steps)
        else:
            for _ in range(steps):
                x = step(x)
        return LOSS(val_x, val_y, 0.0, x)

    return hyperloss


def _equations(fn, *args) -> int:
    return len(jax.make_jaxpr(fn)(*args).eqns)


def _temp_bytes(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_backward_pass_does_not_grow_with_maxiter(logistic_data):
    l2 = jnp.asarray(0.1)
    ours = {m: jax.grad(_logistic_hyperloss(logistic_data, m)) for m in (10, 1000)}
    python_loop = {m: jax.grad(_unrolled_hyperloss(logistic_data, m, False)) for m in (10, 100)}
    scanned = {m: jax.grad(_unrolled_hyperloss(logistic_data, m, True)) for m in (10, 1000)}
    # the traced program: same size at 10 and 1000 iterations; an unrolled loop grows
    assert _equations(ours[10], l2) == _equations(ours[1000], l2)
    assert _equations(python_loop[100], l2) > 5 * _equations(python_loop[10], l2)
    # the compiled program's scratch memory: constant for ours; a scan keeps every step
    assert _temp_bytes(ours[10], l2) == _temp_bytes(ours[1000], l2)
    assert _temp_bytes(scanned[1000], l2) > 20 * _temp_bytes(scanned[10], l2)
    assert _temp_bytes(ours[1000], l2) < _temp_bytes(scanned[1000], l2)
    # and the gradients agree where the unrolled solve has converged (1000 steps here)
    np.testing.assert_allclose(ours[1000](l2), scanned[1000](l2), rtol=1e-5)


# --------------------------------------------------------------------------- bounded rule


def _box_qp_value(q, c, x):
    return 0.5 * x @ q @ x - c @ x


@pytest.fixture(scope="module")
def box_qp():
    """f(x) = x'Qx/2 - c'x on [-1, 1]^n with some coordinates pushed onto each bound."""
    n = 10
    key_q, key_c = jax.random.split(jax.random.key(2))
    m = jax.random.normal(key_q, (n, n))
    q = m @ m.T / n + 0.5 * jnp.eye(n)
    c = jax.random.normal(key_c, (n,))
    c = c.at[:3].set(6.0).at[3:5].set(-6.0)  # strong pulls: active at the upper / lower bound
    return q, c, -jnp.ones(n), jnp.ones(n)


def _box_qp_solution(q, c, lower, upper):
    """Exact solution: scipy's L-BFGS-B finds the active set, then the free block is
    solved exactly and the KKT conditions are checked."""
    q, c, lower, upper = (np.asarray(v) for v in (q, c, lower, upper))
    scipy_result = scipy.optimize.minimize(
        lambda x: (0.5 * x @ q @ x - c @ x, q @ x - c),
        np.zeros(len(c)),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={"gtol": 1e-12, "ftol": 0.0},
    )
    x = np.clip(scipy_result.x, lower, upper)
    active = (x <= lower + 1e-8) | (x >= upper - 1e-8)
    x[active] = np.where(x[active] <= lower[active] + 1e-8, lower[active], upper[active])
    free = ~active
    rhs = c[free] - q[np.ix_(free, active)] @ x[active]
    x[free] = np.linalg.solve(q[np.ix_(free, free)], rhs)
    gradient = q @ x - c
    assert np.all(lower[free] < x[free]) and np.all(x[free] < upper[free])
    assert np.all(gradient[x == lower] >= 0) and np.all(gradient[x == upper] <= 0)
    return x, free


def test_bounded_rule_matches_closed_form_and_finite_differences(box_qp):
    q, c, lower, upper = box_qp
    x_star, free = _box_qp_solution(q, c, lower, upper)
    assert 0 < free.sum() < len(free)  # both kinds of coordinates are present

    def solution(cc):
        x = jnp.asarray(_box_qp_solution(q, jax.lax.stop_gradient(cc), lower, upper)[0])
        fun = Partial(_box_qp_value, q, cc)
        return implicit_minimum(fun, x, fun(x), bounds=(lower, upper))[0]

    jacobian = np.asarray(jax.jacrev(lambda cc: solution(cc))(c))
    # closed form: d x_F / d c_F = Q_FF^-1, every other entry zero
    expected = np.zeros_like(jacobian)
    expected[np.ix_(free, free)] = np.linalg.inv(np.asarray(q)[np.ix_(free, free)])
    np.testing.assert_allclose(jacobian, expected, rtol=1e-8, atol=1e-12)
    assert np.all(jacobian[~free] == 0)  # active coordinates: exactly zero sensitivity
    # finite differences of the exact solution (small moves keep the active set)
    for seed in range(2):
        direction = np.asarray(jax.random.normal(jax.random.key(20 + seed), c.shape))
        moved = lambda t, d=direction: _box_qp_solution(q, c + t * d, lower, upper)[0]  # noqa: E731
        fd = (moved(1e-4) - moved(-1e-4)) / 2e-4  # exact for a fixed active set (linear)
        np.testing.assert_allclose(jacobian @ direction, fd, rtol=1e-6, atol=1e-9)
    # the unbounded rule would be wrong here
    unbounded = jax.jacrev(
        lambda cc: implicit_minimum(Partial(_box_qp_value, q, cc), x_star, 0.0)[0]
    )
    assert not np.allclose(unbounded(c), jacobian, atol=1e-3)


def test_bounded_rule_with_scalar_bounds_on_a_pytree():
    """Non-negative least squares with bounds (0, inf) given as scalars, x a dict."""
    key_a, key_b = jax.random.split(jax.random.key(3))
    a = jax.random.normal(key_a, (30, 6))
    b = jax.random.normal(key_b, (30,))
    x_flat, _ = scipy.optimize.nnls(np.asarray(a), np.asarray(b))
    assert 0 < np.sum(x_flat == 0) < 6

    def value(a, b, x):
        return 0.5 * jnp.sum((a @ jnp.concatenate([x["head"], x["tail"]]) - b) ** 2)

    def solution(bb):
        x = {"head": jnp.asarray(x_flat[:2]), "tail": jnp.asarray(x_flat[2:])}
        fun = Partial(value, a, bb)
        x, _ = implicit_minimum(fun, x, fun(x), bounds=(0.0, jnp.inf))
        return jnp.concatenate([x["head"], x["tail"]])

    jacobian = np.asarray(jax.jacrev(solution)(b))
    free = x_flat > 0
    a_free = np.asarray(a)[:, free]
    expected = np.zeros((6, 30))
    expected[free] = np.linalg.solve(a_free.T @ a_free, a_free.T)  # least squares on F
    np.testing.assert_allclose(jacobian, expected, rtol=1e-8, atol=1e-12)
    mask = free_coordinates({"head": jnp.asarray(x_flat[:2])}, (0.0, jnp.inf))
    np.testing.assert_array_equal(mask["head"], free[:2])


# --------------------------------------------------------------------------- CG, guards


def test_conjugate_gradient_matches_a_dense_solve():
    m = jax.random.normal(jax.random.key(4), (50, 50))
    a = m @ m.T + 0.1 * jnp.eye(50)
    b = jax.random.normal(jax.random.key(5), (50,))
    result = conjugate_gradient(lambda v: a @ v, b, rtol=1e-12, maxiter=500)
    assert result.converged and not result.breakdown
    np.testing.assert_allclose(result.x, np.linalg.solve(np.asarray(a), np.asarray(b)), rtol=1e-8)
    assert result.residual_norm <= 1e-12 * np.linalg.norm(b)
    capped = conjugate_gradient(lambda v: a @ v, b, rtol=1e-12, maxiter=3)
    assert int(capped.iterations) == 3 and not capped.converged


def test_conjugate_gradient_reports_breakdown_and_the_rule_returns_nan():
    diagonal = jnp.asarray([2.0, -1.0, 3.0])
    result = conjugate_gradient(lambda v: diagonal * v, jnp.ones(3))
    assert result.breakdown and not result.converged
    assert np.all(np.isfinite(result.x))
    # a saddle x = 0 of f(x) = sum(d x^2)/2 - theta'x at theta = 0: no strict minimum
    saddle = Partial(lambda theta, x: 0.5 * jnp.sum(diagonal * x**2) - theta @ x, jnp.zeros(3))
    grad = jax.grad(lambda f: jnp.sum(implicit_minimum(f, jnp.zeros(3), 0.0)[0]))(saddle)
    assert np.all(np.isnan(grad.args[0]))


def test_bad_arguments_raise_naming_them():
    fun = Partial(lambda t, x: jnp.sum((x - t) ** 2), jnp.ones(2))
    with pytest.raises(ValueError, match="rtol"):
        implicit_minimum(fun, jnp.ones(2), 0.0, rtol=0.0)
    with pytest.raises(ValueError, match="maxiter"):
        implicit_minimum(fun, jnp.ones(2), 0.0, maxiter=0)
    with pytest.raises(ValueError, match="bounds"):
        implicit_minimum(fun, jnp.ones(2), 0.0, bounds=(0.0,))
    with pytest.raises(ValueError, match="lower"):
        implicit_minimum(fun, jnp.ones(2), 0.0, bounds=({"a": jnp.zeros(2)}, 1.0))
