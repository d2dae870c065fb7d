r"""Analytic objectives with known minima, for testing and comparing optimizers.

Each constructor returns a :class:`Problem`: the objective ``fun`` (a pure JAX function of
a pytree), a default start ``x0``, the known minimiser ``x_min`` and minimum ``f_min``
(None where unknown), and ``bounds``, the plot window of 2-D problems. Arrays are created
in JAX's default float dtype, so building a problem under ``jax_enable_x64`` gives float64.

Problems that carry data (the quadratic's matrix, the logistic regression's features) give
``fun`` as a :class:`jax.tree_util.Partial`: a callable pytree whose data are leaves, so
:func:`~jaxopt_lab.optim.solvers.minimize`, or any ``jax.jit`` taking ``fun`` as an
argument, receives the data as arguments instead of compiling them in as constants
(for MNIST that is 376 MB of float64 features: compilation drops from seconds to
a fraction of one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from jaxopt_lab.optim.base import check_non_negative, check_positive, check_positive_int

PyTree = Any


@dataclass(frozen=True)
class Problem:
    """An objective ``fun(x) -> scalar`` with a default start and its known solution."""

    name: str
    fun: Callable[[PyTree], jax.Array]
    x0: PyTree
    x_min: PyTree | None
    f_min: float | None
    bounds: tuple[tuple[float, float], ...] | None = None


def _float_dtype() -> jnp.dtype:
    return jnp.zeros(()).dtype


def quadratic(dim: int, condition_number: float, key: jax.Array | None = None) -> Problem:
    r""":math:`f(x) = \tfrac12 x^\top A x - b^\top x`, :math:`x^\star = A^{-1} b`.

    :math:`A = Q \operatorname{diag}(\lambda) Q^\top` with a random rotation :math:`Q` and
    eigenvalues log-spaced from 1 to ``condition_number``; :math:`b` is random normal
    (``key``, default ``jax.random.key(0)``). Starts at :math:`x_0 = 0`.
    """
    check_positive_int("dim", dim)
    check_positive("condition_number", condition_number)
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number!r}")
    key = jax.random.key(0) if key is None else key
    rotation_key, b_key = jax.random.split(key)
    gaussian = np.asarray(jax.random.normal(rotation_key, (dim, dim)), np.float64)
    rotation, _ = np.linalg.qr(gaussian)
    eigenvalues = np.logspace(0, np.log10(condition_number), dim)
    a64 = (rotation * eigenvalues) @ rotation.T
    a64 = 0.5 * (a64 + a64.T)
    b64 = np.asarray(jax.random.normal(b_key, (dim,)), np.float64)
    x_min64 = np.linalg.solve(a64, b64)
    dtype = _float_dtype()
    return Problem(
        name=f"quadratic{dim}_cond{condition_number:g}",
        fun=Partial(_quadratic_value, jnp.asarray(a64, dtype), jnp.asarray(b64, dtype)),
        x0=jnp.zeros(dim, dtype),
        x_min=jnp.asarray(x_min64, dtype),
        f_min=float(-0.5 * b64 @ x_min64),
    )


def _quadratic_value(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    return 0.5 * x @ (a @ x) - b @ x


def rosenbrock(dim: int = 2) -> Problem:
    r""":math:`f(x) = \sum_{i<n} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`, minimum 0 at
    :math:`(1, \dots, 1)`; starts at :math:`(-1.2, 1, -1.2, 1, \dots)`."""
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")

    def fun(x: jax.Array) -> jax.Array:
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    dtype = _float_dtype()
    return Problem(
        name=f"rosenbrock{dim}",
        fun=fun,
        x0=jnp.asarray(np.resize([-1.2, 1.0], dim), dtype),
        x_min=jnp.ones(dim, dtype),
        f_min=0.0,
        bounds=((-2.0, 2.0), (-1.0, 3.0)) if dim == 2 else None,
    )


def rastrigin(dim: int = 2) -> Problem:
    r""":math:`f(x) = 10 n + \sum_i x_i^2 - 10 \cos(2 \pi x_i)`: many local minima, the
    global one 0 at the origin; starts at :math:`(2.5, \dots)`."""
    check_positive_int("dim", dim)

    def fun(x: jax.Array) -> jax.Array:
        return 10.0 * x.size + jnp.sum(x**2 - 10.0 * jnp.cos(2 * jnp.pi * x))

    dtype = _float_dtype()
    return Problem(
        name=f"rastrigin{dim}",
        fun=fun,
        x0=jnp.full(dim, 2.5, dtype),
        x_min=jnp.zeros(dim, dtype),
        f_min=0.0,
        bounds=((-5.12, 5.12), (-5.12, 5.12)) if dim == 2 else None,
    )


def beale() -> Problem:
    r"""Beale's function :math:`(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`,
    minimum 0 at :math:`(3, 0.5)`; starts at :math:`(1, 1)`."""

    def fun(z: jax.Array) -> jax.Array:
        x, y = z[0], z[1]
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    dtype = _float_dtype()
    return Problem(
        name="beale",
        fun=fun,
        x0=jnp.asarray([1.0, 1.0], dtype),
        x_min=jnp.asarray([3.0, 0.5], dtype),
        f_min=0.0,
        bounds=((-4.5, 4.5), (-4.5, 4.5)),
    )


def saddle(quartic: float = 0.25) -> Problem:
    r""":math:`f(x, y) = x^2 - y^2 + q y^4`: a saddle at the origin, minima
    :math:`f = -1/(4q)` at :math:`(0, \pm 1/\sqrt{2q})`; starts at :math:`(1.5, 10^{-3})`,
    next to the saddle's unstable direction (``x_min`` is the minimum with :math:`y > 0`)."""
    check_positive("quartic", quartic)

    def fun(z: jax.Array) -> jax.Array:
        x, y = z[0], z[1]
        return x**2 - y**2 + quartic * y**4

    dtype = _float_dtype()
    y_star = 1.0 / np.sqrt(2 * quartic)
    return Problem(
        name="saddle",
        fun=fun,
        x0=jnp.asarray([1.5, 1e-3], dtype),
        x_min=jnp.asarray([0.0, y_star], dtype),
        f_min=-1.0 / (4 * quartic),
        bounds=((-2.0, 2.0), (-1.5 * y_star, 1.5 * y_star)),
    )


def logistic_regression(
    features: jax.Array, labels: jax.Array, l2: float = 1e-4, num_classes: int | None = None
) -> Problem:
    r"""Multinomial logistic regression, full batch, with an L2 penalty on the weights:

    .. math:: f(W, b) = \frac1N \sum_n -\log \operatorname{softmax}(W^\top x_n + b)_{y_n}
              + \tfrac{\ell_2}{2} \|W\|^2

    Parameters are the pytree ``{"weights": (d, k), "bias": (k,)}``, starting at zero.
    ``features`` is ``(N, d)`` (e.g. flattened MNIST pixels / 255), ``labels`` ``(N,)``
    integers. The minimiser has no closed form (``x_min = f_min = None``).
    """
    features = jnp.asarray(features)
    labels = jnp.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be a (samples, dims) matrix, got shape {features.shape}")
    if labels.shape != features.shape[:1]:
        raise ValueError(
            f"labels must have shape ({features.shape[0]},) to match features, got {labels.shape}"
        )
    check_non_negative("l2", l2)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    check_positive_int("num_classes", num_classes)
    dtype = _float_dtype()
    fun = Partial(_logistic_loss, features.astype(dtype), labels, jnp.asarray(l2, dtype))
    x0 = {
        "weights": jnp.zeros((features.shape[1], num_classes), dtype),
        "bias": jnp.zeros((num_classes,), dtype),
    }
    return Problem(name="logistic_regression", fun=fun, x0=x0, x_min=None, f_min=None)


def _logistic_loss(
    features: jax.Array, labels: jax.Array, l2: jax.Array, params: dict[str, jax.Array]
) -> jax.Array:
    logits = features @ params["weights"] + params["bias"]
    log_probs = jax.nn.log_softmax(logits)
    nll = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
    return nll + 0.5 * l2 * jnp.sum(params["weights"] ** 2)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "rastrigin": rastrigin,
    "beale": beale,
    "saddle": saddle,
}
