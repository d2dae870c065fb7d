"""Analytic problems: the stated minima are stationary points with the stated values,
the objectives match independent formulas (scipy's Rosenbrock, log k at zero logits)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxopt_lab import problems

WITH_MINIMA = {
    "quadratic": lambda: problems.quadratic(12, 50.0),
    "rosenbrock2": lambda: problems.rosenbrock(2),
    "rosenbrock7": lambda: problems.rosenbrock(7),
    "rastrigin3": lambda: problems.rastrigin(3),
    "beale": problems.beale,
    "saddle": problems.saddle,
}


@pytest.mark.parametrize("case", sorted(WITH_MINIMA))
def test_known_minimum_is_stationary_with_stated_value(case):
    problem = WITH_MINIMA[case]()
    value, grad = jax.jit(jax.value_and_grad(problem.fun))(problem.x_min)
    np.testing.assert_allclose(value, problem.f_min, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, jnp.zeros_like(grad), atol=2e-4)
    assert problem.fun(problem.x0) > problem.f_min
    eigenvalues = jnp.linalg.eigvalsh(jax.jit(jax.hessian(problem.fun))(problem.x_min))
    assert jnp.all(eigenvalues > 0)  # a strict local minimum, not a saddle


def test_rosenbrock_matches_scipy():
    x = np.random.default_rng(0).normal(size=9).astype(np.float32)
    problem = problems.rosenbrock(9)
    np.testing.assert_allclose(problem.fun(jnp.asarray(x)), scipy.optimize.rosen(x), rtol=1e-5)
    np.testing.assert_allclose(problem.x0[:4], [-1.2, 1.0, -1.2, 1.0])


def test_quadratic_has_requested_condition_number():
    problem = problems.quadratic(40, 1e3, key=jax.random.key(1))
    hessian = np.asarray(jax.jit(jax.hessian(problem.fun))(problem.x0), np.float64)
    eigenvalues = np.linalg.eigvalsh(hessian)
    np.testing.assert_allclose(eigenvalues.max() / eigenvalues.min(), 1e3, rtol=1e-2)


def test_saddle_origin_is_a_saddle():
    problem = problems.saddle()
    origin = jnp.zeros(2)
    np.testing.assert_allclose(jax.grad(problem.fun)(origin), 0.0)
    eigenvalues = jnp.linalg.eigvalsh(jax.hessian(problem.fun)(origin))
    assert eigenvalues.min() < 0 < eigenvalues.max()


def test_logistic_regression_value_and_gradient():
    features = jax.random.normal(jax.random.key(0), (50, 4))
    labels = jnp.arange(50) % 3
    problem = problems.logistic_regression(features, labels, l2=0.1)
    np.testing.assert_allclose(problem.fun(problem.x0), np.log(3), rtol=1e-6)
    weights = jax.random.normal(jax.random.key(1), (4, 3))
    params = {"weights": weights, "bias": jnp.array([0.1, -0.2, 0.3])}
    logits = np.asarray(features @ weights + params["bias"], np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(50), np.asarray(labels)].mean()
    expected += 0.05 * float(jnp.sum(weights**2))
    np.testing.assert_allclose(problem.fun(params), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: problems.quadratic(0, 10.0), "dim"),
        (lambda: problems.quadratic(5, 0.5), "condition_number"),
        (lambda: problems.rosenbrock(1), "dim"),
        (lambda: problems.rastrigin(0), "dim"),
        (lambda: problems.saddle(quartic=0.0), "quartic"),
        (lambda: problems.logistic_regression(jnp.ones((4, 2)), jnp.zeros(3, int)), "labels"),
        (lambda: problems.logistic_regression(jnp.ones(4), jnp.zeros(4, int)), "features"),
        (lambda: problems.logistic_regression(jnp.ones((4, 2)), jnp.zeros(4, int), -1), "l2"),
    ],
)
def test_bad_arguments_raise(build, name):
    with pytest.raises(ValueError, match=name):
        build()
