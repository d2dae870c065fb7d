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


@pytest.mark.parametrize(
    "search",
    [jl.zoom_search, jl.hager_zhang_search, jl.more_thuente_search, jl.backtracking_search],
)
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


@pytest.mark.parametrize(
    "search",
    [jl.zoom_search, jl.hager_zhang_search, jl.more_thuente_search, jl.backtracking_search],
)
def test_ascent_direction_fails_cleanly(search):
    problem = problems.rosenbrock(2)
    x = problem.x0
    ascent = jax.grad(problem.fun)(x)
    value, grad, result, calls = _search(search, problem.fun, x, ascent)
    assert result.failed and result.step == 0 and calls == 0
    assert result.value == value
    np.testing.assert_array_equal(result.grad, grad)


@pytest.mark.parametrize("search", [jl.zoom_search, jl.hager_zhang_search, jl.more_thuente_search])
def test_returns_best_point_without_nan_on_overflow(search):
    def fun(x):  # finite only near the origin: large steps give inf/NaN
        return jnp.sum(jnp.where(jnp.abs(x) < 5, x**2, jnp.inf))

    x = jnp.array([1.0, -2.0])
    _, _, result, _ = _search(search, fun, x, -x, initial_step=100.0)
    assert jnp.isfinite(result.value) and jnp.all(jnp.isfinite(result.grad))
    assert result.value < fun(x)


@pytest.mark.parametrize(
    "factory",
    [
        jl.scale_by_zoom_linesearch,
        jl.scale_by_hager_zhang_linesearch,
        jl.scale_by_more_thuente_linesearch,
    ],
)
def test_transformation_reuses_accepted_point(factory):
    problem = problems.rosenbrock(2)
    linesearch = factory()
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
        (jl.scale_by_hager_zhang_linesearch, {"delta": 0.6}, "delta"),
        (jl.scale_by_hager_zhang_linesearch, {"c2": 0.05}, "c2"),
        (jl.scale_by_hager_zhang_linesearch, {"epsilon": -1.0}, "epsilon"),
        (jl.scale_by_more_thuente_linesearch, {"c1": 0.95}, "c2"),
        (jl.scale_by_more_thuente_linesearch, {"xtol": 0.0}, "xtol"),
        (jl.scale_by_more_thuente_linesearch, {"epsilon": -1e-6}, "epsilon"),
        (jl.scale_by_backtracking_linesearch, {"c1": 1.5}, "c1"),
        (jl.scale_by_backtracking_linesearch, {"initial_step": -1.0}, "initial_step"),
    ],
)
def test_bad_options_raise(factory, options, name):
    with pytest.raises(ValueError, match=name):
        factory(**options)


# --------------------------------------------------------------------- Hager-Zhang on 1-D


def _more_thuente_phi0(t, beta=0.01):
    return jnp.where(
        t <= 1 - beta,
        1 - t,
        jnp.where(t >= 1 + beta, t - 1, (t - 1) ** 2 / (2 * beta) + beta / 2),
    )


def _yanai(beta1, beta2):
    def gamma(beta):
        return jnp.sqrt(1 + beta**2) - beta

    return lambda t: (
        gamma(beta1) * jnp.sqrt((1 - t) ** 2 + beta2**2) + gamma(beta2) * jnp.sqrt(t**2 + beta1**2)
    )


# phi(t) along t >= 0 with phi'(0) < 0: scaled quadratics, the six test functions of
# More and Thuente (1994, table 1-6), and a quadratic whose decrease near its minimum is
# below float64 rounding (f ~ 1e8, change ~ 1e-10): flat in the last digits.
ONE_D = {
    "quadratic": lambda t: (t - 3.0) ** 2,
    "quadratic_steep": lambda t: 1e6 * (t - 1e-3) ** 2,
    "quadratic_shallow": lambda t: 1e-6 * (t - 1e3) ** 2,
    "more_thuente1": lambda t: -t / (t**2 + 2.0),
    "more_thuente2": lambda t: (t + 0.004) ** 5 - 2 * (t + 0.004) ** 4,
    "more_thuente3": lambda t: (
        _more_thuente_phi0(t) + 2 * (1 - 0.01) / (39 * jnp.pi) * jnp.sin(39 * jnp.pi * t / 2)
    ),
    "more_thuente4": _yanai(0.001, 0.001),
    "more_thuente5": _yanai(0.01, 0.001),
    "more_thuente6": _yanai(0.001, 0.01),
    "flat_last_digits": lambda t: 1e8 + 0.5 * (t - 1e-5) ** 2,
}


def _approximate_wolfe_or_wolfe(phi0, slope0, value, slope, step, c1=1e-4, delta=0.1):
    c2, ceiling = 0.9, phi0 + 1e-6 * abs(phi0)
    wolfe = value - phi0 <= c1 * step * slope0 and slope >= c2 * slope0
    approximate = (2 * delta - 1) * slope0 >= slope >= c2 * slope0 and value <= ceiling
    return wolfe or approximate


@pytest.mark.parametrize("initial_step", [1e-3, 1.0, 1e3], ids=["small", "unit", "large"])
@pytest.mark.parametrize("name", sorted(ONE_D))
def test_hager_zhang_accepts_only_wolfe_or_approximate_wolfe_steps(float64, name, initial_step):
    phi = ONE_D[name]

    def fun(x):
        return jnp.sum(phi(x))

    x, direction = jnp.zeros(1), jnp.ones(1)
    phi0, slope0 = float(phi(0.0)), float(jax.grad(phi)(0.0))
    assert slope0 < 0
    _, _, result, calls = _search(
        jl.hager_zhang_search, fun, x, direction, initial_step=initial_step
    )
    step = float(result.step)
    # the oracle: phi and phi' evaluated afresh at the accepted step
    value, slope = float(phi(step)), float(jax.grad(phi)(step))
    assert not result.failed and step > 0
    assert _approximate_wolfe_or_wolfe(phi0, slope0, value, slope, step), (value, slope)
    _assert_is_accepted_point(fun, x, direction, result)
    assert int(result.fevals) == calls <= 20


def test_hager_zhang_makes_progress_where_the_decrease_is_below_rounding(float64):
    """Along a line where f changes below rounding, the slope still says where the minimum
    is (t = 1e-5): from an overshooting first step the secant lands next to it, and the
    approximate Wolfe conditions accept it although f did not decrease."""
    phi = ONE_D["flat_last_digits"]

    def fun(x):
        return jnp.sum(phi(x))

    x, direction = jnp.zeros(1), jnp.ones(1)
    assert float(phi(1e-5)) == float(phi(0.0))  # the whole decrease is lost to rounding
    value, _, result, _ = _search(jl.hager_zhang_search, fun, x, direction, initial_step=1.0)
    assert not result.failed and float(result.value) == float(value)
    np.testing.assert_allclose(float(result.step), 1e-5, rtol=0.1)
    assert abs(float(result.grad[0])) <= 0.1 * abs(float(jax.grad(phi)(0.0)))


@pytest.mark.parametrize("minimizer", [1e-6, 1e-3, 0.02])
def test_hager_zhang_finds_a_quadratics_minimum_on_the_second_evaluation(float64, minimizer):
    """The unit step overshoots a parabola's minimum at ``minimizer``: the interpolation
    through the two slopes is exact however close to the bracket's end it falls (with a
    10% margin it bisected instead, and needed a third evaluation)."""

    def fun(x):
        return jnp.sum((x - minimizer) ** 2)

    x, direction = jnp.zeros(1), jnp.ones(1)
    _, _, result, calls = _search(jl.hager_zhang_search, fun, x, direction, initial_step=1.0)
    assert not result.failed and calls == int(result.fevals) == 2
    np.testing.assert_allclose(float(result.step), minimizer, rtol=1e-9)


@pytest.mark.parametrize("max_steps", [1, 3, 7])
def test_hager_zhang_evaluations_are_bounded(float64, max_steps):
    """The rippled More-Thuente function 3 from a huge first step: the search may give up,
    but never evaluates more than max_steps times and never returns NaN."""
    phi = ONE_D["more_thuente3"]

    def fun(x):
        return jnp.sum(phi(x))

    x, direction = jnp.zeros(1), jnp.ones(1)
    value, _, result, calls = _search(
        jl.hager_zhang_search, fun, x, direction, initial_step=1e6, max_steps=max_steps
    )
    assert int(result.fevals) == calls <= max_steps
    assert np.isfinite(float(result.value)) and np.isfinite(float(result.grad[0]))
    assert float(result.value) <= float(value)
    if result.failed:
        assert float(result.step) == 0


# --------------------------------------------------------------------- More-Thuente


def _scipy_dcsrch(phi, initial_step, c1, c2, xtol=None):
    """scipy's DCSRCH (MINPACK-2's dcsrch, the search inside L-BFGS-B): the accepted step,
    the steps it evaluated and how it ended."""
    from scipy.optimize._dcsrch import DCSRCH

    trials = []

    def value(t):
        trials.append(t)
        return float(phi(t))

    def slope(t):
        return float(jax.grad(phi)(t))

    search = DCSRCH(value, slope, c1, c2, XTOL if xtol is None else xtol, 0.0, 1e10)
    step, _, _, task = search(initial_step, phi0=float(phi(0.0)), derphi0=slope(0.0), maxiter=50)
    return step, trials, task


XTOL = 1e-10  # L-BFGS-B's 0.1 ends some of these searches before the Wolfe conditions hold

# Moré and Thuente's (1994) table: the constants each of their functions is solved with.
MORE_THUENTE_TABLE = [
    ("more_thuente1", 1e-3, 0.1),
    ("more_thuente2", 1e-3, 0.1),
    ("more_thuente3", 0.1, 0.1),
    ("more_thuente4", 1e-3, 1e-3),
    ("more_thuente5", 1e-3, 1e-3),
    ("more_thuente6", 1e-3, 1e-3),
]


@pytest.mark.parametrize("initial_step", [1e-3, 1e-1, 10.0, 1e3])
@pytest.mark.parametrize(("name", "c1", "c2"), MORE_THUENTE_TABLE)
def test_more_thuente_evaluates_the_steps_scipys_dcsrch_evaluates(
    float64, name, c1, c2, initial_step
):
    """The oracle is scipy's own dcsrch on the paper's six functions from its four
    starting steps: the same trial steps in the same order, the same accepted step."""
    phi = ONE_D[name]
    expected_step, expected_trials, task = _scipy_dcsrch(phi, initial_step, c1, c2)
    assert task.startswith(b"CONV")

    trials = []

    def value_and_grad(x):
        jax.debug.callback(lambda t: trials.append(float(t)), x[0], ordered=True)
        return jax.value_and_grad(lambda x: jnp.sum(phi(x)))(x)

    x, direction = jnp.zeros(1), jnp.ones(1)
    value, grad = value_and_grad(x)
    trials.clear()
    result = jax.jit(
        lambda x: jl.more_thuente_search(
            value_and_grad,
            x,
            value,
            grad,
            direction,
            initial_step=initial_step,
            c1=c1,
            c2=c2,
            xtol=XTOL,
            max_steps=50,
        )
    )(x)
    jax.block_until_ready(result)
    jax.effects_barrier()
    assert not result.failed
    np.testing.assert_allclose(trials, expected_trials, rtol=1e-7)
    np.testing.assert_allclose(float(result.step), expected_step, rtol=1e-7)
    assert int(result.fevals) == len(expected_trials)


@jax.custom_jvp
def _ripple(t):
    """A value error of up to 1e-11 that the gradient does not see, like the rounding of
    a sum of large terms (CUTEst's PALMER1C near its minimum)."""
    return 1e-11 * jnp.sin(1e4 * t) ** 2


@_ripple.defjvp
def _ripple_jvp(primals, tangents):
    return _ripple(primals[0]), jnp.zeros_like(tangents[0])


def _rippled_parabola(t):
    return 1.0 + 0.5e-12 * (t - 1.0) ** 2 + _ripple(t)  # decrease to t = 1: 5e-13


@pytest.mark.parametrize("initial_step", [1e-3, 0.1, 10.0])
def test_more_thuente_judges_changes_below_the_value_noise_by_slopes(float64, initial_step):
    """The value's error (1e-11) dwarfs the whole decrease along the line (5e-13): scipy's
    dcsrch, judging by values, gives up, and so does ours with epsilon=0. By default ours
    judges such values by the quadratic through the slopes and accepts a step whose slope
    is flat by the strong Wolfe and approximate Wolfe conditions."""
    phi = _rippled_parabola
    _, _, task = _scipy_dcsrch(phi, initial_step, 1e-3, 0.9, xtol=0.1)
    assert task.startswith(b"WARN")

    def fun(x):
        return jnp.sum(phi(x))

    x, direction = jnp.zeros(1), jnp.ones(1)
    slope0 = float(jax.grad(phi)(0.0))
    _, _, result, calls = _search(
        jl.more_thuente_search, fun, x, direction, initial_step=initial_step
    )
    slope = float(jax.grad(phi)(float(result.step)))
    assert not result.failed and int(result.fevals) == calls <= 6
    assert abs(slope) <= 0.9 * abs(slope0) and slope <= (2 * 1e-3 - 1) * slope0
    _, _, strict, _ = _search(
        jl.more_thuente_search, fun, x, direction, initial_step=initial_step, epsilon=0.0
    )
    assert strict.failed and float(strict.step) == 0
