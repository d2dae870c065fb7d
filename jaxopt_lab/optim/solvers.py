r"""``minimize``: a full-batch solver whose whole run is one jitted ``lax.while_loop``.

Methods:

- ``"lbfgs"``: :func:`~jaxopt_lab.optim.lbfgs.lbfgs` with the strong-Wolfe zoom line search
  (options: ``memory_size``, ``scale_init_precond``, ``linesearch_steps``).
- ``"newton"``: :math:`x_{k+1} = x_k - t_k \, V \operatorname{diag}(1 / \max(|\lambda_i|,
  \delta)) V^\top g_k` with the exact Hessian :math:`\nabla^2 f = V \Lambda V^\top`
  (``jax.hessian`` of the flattened parameters) and an Armijo backtracking step
  :math:`t_k`. Taking :math:`|\lambda|` and flooring it at ``damping`` :math:`\delta`
  keeps the direction a descent direction at saddles and near-singular points. The
  Hessian has :math:`n^2` entries: use it for problems small enough to hold it.
- ``"gd"`` and the first-order names of
  :data:`~jaxopt_lab.optim.registry.OPTIMIZER_NAMES` (``"sgd"``, ``"adam"``, ...): the
  optimizer from :func:`~jaxopt_lab.optim.registry.make_optimizer` with
  ``learning_rate`` (default ``1e-3``) and its other options; ``"gd"`` is plain ``"sgd"``.

The loop stops when :math:`\|\nabla f(x)\|_2 \le` ``tol``, after ``maxiter`` iterations, or
when no progress is possible (a failed line search, a non-finite value). ``fevals`` counts
calls of the objective's value-and-gradient (Newton's Hessians are not counted).

The compiled solver is cached on ``(fun, method, maxiter, options)``: calling ``minimize``
again with the same ``fun`` object and a new ``x0`` of the same shape reuses it. ``tol``
and ``x0`` are traced, so ``minimize`` also works under ``jax.jit`` and ``jax.vmap`` over
starting points. When ``fun`` is a :class:`jax.tree_util.Partial`, its bound arguments
(a data set, a matrix) are passed to the compiled solver as arguments instead of being
embedded in it as constants, which keeps compilation fast for large data; the cache is
then keyed on the wrapped function and the arguments' shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from jaxopt_lab.optim.base import (
    PyTree,
    apply_updates,
    check_non_negative,
    check_positive,
    check_positive_int,
    tree_l2_norm,
)
from jaxopt_lab.optim.lbfgs import lbfgs
from jaxopt_lab.optim.linesearch import (
    backtracking_search,
    linesearch_state,
    scale_by_zoom_linesearch,
)
from jaxopt_lab.optim.registry import OPTIMIZER_NAMES, make_optimizer

METHODS: tuple[str, ...] = ("lbfgs", "newton", "gd", *OPTIMIZER_NAMES)


class OptimizeResult(NamedTuple):
    """Outcome of :func:`minimize`."""

    x: PyTree
    fun: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    fevals: jax.Array
    converged: jax.Array


class _Iterate(NamedTuple):
    x: PyTree
    value: jax.Array
    grad: PyTree
    aux: Any
    iterations: jax.Array
    fevals: jax.Array
    stalled: jax.Array


def _lbfgs_method(fun, x0, memory_size=10, scale_init_precond=True, linesearch_steps=20):
    optimizer = lbfgs(
        memory_size=memory_size,
        scale_init_precond=scale_init_precond,
        linesearch=scale_by_zoom_linesearch(max_steps=linesearch_steps),
    )

    def step(x, value, grad, state):
        before = linesearch_state(state).fevals
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        search = linesearch_state(state)
        x = apply_updates(x, updates)
        return x, search.value, search.grad, state, search.fevals - before, search.failed

    return optimizer.init(x0), step


def _newton_method(fun, x0, damping=1e-6):
    check_positive("damping", damping)
    _, unravel = ravel_pytree(x0)

    def flat_fun(z):
        return fun(unravel(z))

    flat_value_and_grad = jax.value_and_grad(flat_fun)
    hessian = jax.hessian(flat_fun)

    def step(x, value, grad, aux):
        z, _ = ravel_pytree(x)
        g, _ = ravel_pytree(grad)
        eigenvalues, vectors = jnp.linalg.eigh(hessian(z))
        curvature = jnp.maximum(jnp.abs(eigenvalues), damping)
        direction = -vectors @ ((vectors.T @ g) / curvature)
        search = backtracking_search(flat_value_and_grad, z, value, g, direction)
        z = z + search.step * direction
        return unravel(z), search.value, unravel(search.grad), aux, search.fevals, search.failed

    return (), step


def _first_order_method(fun, x0, name, learning_rate=1e-3, **options):
    optimizer = make_optimizer(name, learning_rate, **options)
    value_and_grad = jax.value_and_grad(fun)

    def step(x, value, grad, state):
        updates, state = optimizer.update(grad, state, x)
        x = apply_updates(x, updates)
        value, grad = value_and_grad(x)
        return x, value, grad, state, jnp.ones((), jnp.int32), ~jnp.isfinite(value)

    return optimizer.init(x0), step


def _build_method(method: str, fun, x0, options: dict[str, Any]) -> tuple[Any, Callable]:
    """``(initial state, step)`` of a method, where ``step(x, value, grad, state)`` returns
    ``(x, value, grad, state, evaluations used, stalled)`` for the next iterate."""
    if method == "lbfgs":
        return _lbfgs_method(fun, x0, **options)
    if method == "newton":
        return _newton_method(fun, x0, **options)
    name = "sgd" if method == "gd" else method
    return _first_order_method(fun, x0, name, **options)


def _solve(fun, x0, tol, method, maxiter, options):
    aux, step = _build_method(method, fun, x0, dict(options))
    value, grad = jax.value_and_grad(fun)(x0)

    def keep_going(it: _Iterate) -> jax.Array:
        return (tree_l2_norm(it.grad) > tol) & (it.iterations < maxiter) & ~it.stalled

    def iterate(it: _Iterate) -> _Iterate:
        x, value, grad, aux, used, stalled = step(it.x, it.value, it.grad, it.aux)
        return _Iterate(x, value, grad, aux, it.iterations + 1, it.fevals + used, stalled)

    start = _Iterate(
        x0,
        value,
        grad,
        aux,
        jnp.zeros((), jnp.int32),
        jnp.ones((), jnp.int32),
        ~jnp.isfinite(value),
    )
    final = jax.lax.while_loop(keep_going, iterate, start)
    grad_norm = tree_l2_norm(final.grad)
    return OptimizeResult(
        x=final.x,
        fun=final.value,
        grad_norm=grad_norm,
        iterations=final.iterations,
        fevals=final.fevals,
        converged=grad_norm <= tol,
    )


_jitted_solve = jax.jit(_solve, static_argnames=("method", "maxiter", "options"))


def minimize(
    fun: Callable[[PyTree], jax.Array],
    x0: PyTree,
    method: str = "lbfgs",
    *,
    tol: float = 1e-5,
    maxiter: int = 1000,
    **options: Any,
) -> OptimizeResult:
    r"""Minimise ``fun`` from ``x0`` (any pytree) until :math:`\|\nabla f\|_2 \le` ``tol``.

    One jitted ``lax.while_loop`` runs the whole solve (see the module doc for the methods
    and their ``options``, which must be hashable). Returns
    ``OptimizeResult(x, fun, grad_norm, iterations, fevals, converged)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_non_negative("tol", tol)
    check_positive_int("maxiter", maxiter)
    leaves = jax.tree.leaves(x0)
    if not leaves:
        raise ValueError("x0 must hold at least one array")
    if not all(jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves):
        raise ValueError("x0 must hold floating-point arrays (integers have no gradient)")
    frozen = tuple(sorted(options.items()))
    try:
        hash(frozen)
    except TypeError as error:
        raise ValueError(
            f"options must be hashable Python values (they key the compiled solver): {error}"
        ) from None
    # A Partial is a pytree: its bound arguments are traced, its function is static.
    objective = fun if isinstance(fun, Partial) else Partial(fun)
    return _jitted_solve(objective, x0, tol, method=method, maxiter=maxiter, options=frozen)
