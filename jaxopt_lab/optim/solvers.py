r"""``minimize``: a full-batch solver whose whole run is one jitted ``lax.while_loop``.

``method`` is a name or any gradient transformation:

- ``"lbfgs"``: :func:`~jaxopt_lab.optim.lbfgs.lbfgs` (options: ``memory_size``,
  ``scale_init_precond``, ``linesearch`` = ``"hager_zhang"`` (default: Wolfe or approximate
  Wolfe), ``"more_thuente"`` (L-BFGS-B's strong-Wolfe search, judging changes below
  rounding by slopes) or ``"zoom"`` (strong Wolfe), ``linesearch_steps``, the evaluations
  allowed per search). A failed search clears the memory and is retried once along steepest descent
  before the solve stops with ``LINESEARCH_FAILED``.
- ``"newton"``: :func:`~jaxopt_lab.optim.newton.newton`, the exact Hessian with
  eigenvalues floored at ``damping``, then Armijo backtracking (options: ``damping``,
  ``max_linesearch_steps``).
- ``"gd"`` and the first-order names of
  :data:`~jaxopt_lab.optim.registry.OPTIMIZER_NAMES` (``"sgd"``, ``"adam"``, ...): the
  optimizer from :func:`~jaxopt_lab.optim.registry.make_optimizer` with
  ``learning_rate`` (default ``1e-3``) and its other options; ``"gd"`` is plain ``"sgd"``.
- a transformation, e.g. ``jl.lbfgs(memory_size=20)`` or ``optax.adam(1e-2)``: its
  ``update`` receives ``value=``, ``grad=`` and ``value_fn=`` keywords when it accepts
  them. When its state holds a line search
  (:class:`~jaxopt_lab.optim.linesearch.LineSearchState`) the accepted point's value and
  gradient are reused; otherwise the objective is evaluated once per iteration.

With ``bounds=(lower, upper)`` the solve stays in the box :math:`l \le x \le u` and the
method must honour it:

- ``"lbfgs"`` runs :func:`~jaxopt_lab.optim.lbfgsb.lbfgsb` (L-BFGS-B, options
  ``memory_size``, ``linesearch_steps``, ``c1``);
- ``"projected_gd"`` (bounds only) is projected gradient descent
  :math:`x_{k+1} = P(x_k - \eta \nabla f(x_k))` (option ``learning_rate``, default
  ``1e-3``).

Every iterate is projected onto the box (against rounding), so the objective is never
evaluated outside it; convergence and ``grad_norm`` then use the projected gradient
:math:`P(x - \nabla f(x)) - x` in the max-norm.

The loop stops with a :class:`Status`: converged (:math:`\|\nabla f(x)\|_2 \le` ``tol``,
or the projected gradient's max-norm with bounds),
the iteration budget spent, a failed line search (no decrease possible at this
precision), or a non-finite value or gradient. In the last case the result is the last
iterate whose value and gradient were finite, never the broken one. ``fevals`` counts
calls of the objective's value-and-gradient (Newton's Hessians are not counted).

Differentiation: ``jax.grad``, ``jax.jacrev`` and ``vmap`` of any function of ``result.x``
or ``result.fun`` with respect to the leaves of a ``Partial`` objective use the implicit
function theorem at the solution (:func:`~jaxopt_lab.optim.implicit.implicit_minimum`: one
conjugate-gradient solve with Hessian-vector products), never the unrolled iterations, so
memory does not grow with ``maxiter``; ``x0`` and ``tol`` get zero cotangents. Forward mode
(``jax.jvp``, ``jax.jacfwd``) is not supported.

The compiled solver is cached on ``(fun, method, maxiter, options)``: calling ``minimize``
again with the same ``fun`` object and a new ``x0`` of the same shape reuses it. ``tol``
and ``x0`` are traced, so ``minimize`` also works under ``jax.jit`` and ``jax.vmap`` over
starting points. When ``fun`` is a :class:`jax.tree_util.Partial`, its bound arguments
(a data set, a matrix) are passed to the compiled solver as arguments instead of being
embedded in it as constants, which keeps compilation fast for large data; the cache is
then keyed on the wrapped function and the arguments' shapes.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import Partial

from jaxopt_lab.optim.base import (
    PyTree,
    apply_updates,
    chain,
    check_non_negative,
    check_positive_int,
    tree_l2_norm,
)
from jaxopt_lab.optim.implicit import implicit_minimum
from jaxopt_lab.optim.lbfgs import lbfgs
from jaxopt_lab.optim.lbfgsb import lbfgsb, projected_gradient
from jaxopt_lab.optim.linesearch import (
    linesearch_state,
    scale_by_hager_zhang_linesearch,
    scale_by_more_thuente_linesearch,
    scale_by_zoom_linesearch,
)
from jaxopt_lab.optim.newton import newton
from jaxopt_lab.optim.projection import project, projection_box
from jaxopt_lab.optim.registry import OPTIMIZER_NAMES, make_optimizer, optimizer_options


class Status(enum.IntEnum):
    """Why :func:`minimize` stopped."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    LINESEARCH_FAILED = 2
    NON_FINITE = 3


MESSAGES: dict[Status, str] = {
    Status.CONVERGED: "converged: the gradient norm (projected, with bounds) reached the tolerance",
    Status.MAX_ITERATIONS: "stopped: the iteration budget (maxiter) was spent",
    Status.LINESEARCH_FAILED: (
        "stopped: the line search found no decrease (the objective no longer changes at "
        "this precision; float64 may get further)"
    ),
    Status.NON_FINITE: (
        "stopped: the objective or its gradient became NaN or infinite; x is the last "
        "iterate where both were finite"
    ),
}
# NON_FINITE before the first iteration: there is no finite iterate to return
NON_FINITE_AT_START = (
    "stopped at once: the objective or its gradient is NaN or infinite at x0 (x is x0)"
)


class OptimizeResult(NamedTuple):
    """Outcome of :func:`minimize`; ``status`` is a :class:`Status` code (an array, so a
    vmapped solve has one per start)."""

    x: PyTree
    fun: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    fevals: jax.Array
    converged: jax.Array
    status: jax.Array

    @property
    def message(self) -> str:
        """Why the solve stopped, in words (one line per start for a vmapped solve)."""
        codes = jnp.ravel(jnp.asarray(self.status))
        iterations = jnp.ravel(jnp.broadcast_to(jnp.asarray(self.iterations), codes.shape))
        return "\n".join(
            NON_FINITE_AT_START
            if int(code) == Status.NON_FINITE and int(count) == 0
            else MESSAGES[Status(int(code))]
            for code, count in zip(codes, iterations, strict=True)
        )


# line search name -> its transformation, built from the evaluations allowed per search
LINESEARCHES: dict[str, Callable[..., optax.GradientTransformationExtraArgs]] = {
    "hager_zhang": scale_by_hager_zhang_linesearch,
    "zoom": scale_by_zoom_linesearch,
    "more_thuente": scale_by_more_thuente_linesearch,
}


def _lbfgs(
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: str = "hager_zhang",
    linesearch_steps: int = 20,
) -> optax.GradientTransformationExtraArgs:
    if linesearch not in LINESEARCHES:
        raise ValueError(
            f"unknown linesearch {linesearch!r}; choose one of {', '.join(LINESEARCHES)}"
        )
    return lbfgs(
        memory_size=memory_size,
        scale_init_precond=scale_init_precond,
        linesearch=LINESEARCHES[linesearch](max_steps=linesearch_steps),
    )


def _first_order(name: str) -> Callable[..., optax.GradientTransformation]:
    def build(learning_rate: float = 1e-3, **options: Any) -> optax.GradientTransformation:
        return make_optimizer(name, learning_rate, **options)

    build.options = optimizer_options(name)
    return build


# method name -> builder of its transformation from the method's options
METHOD_BUILDERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "lbfgs": _lbfgs,
    "newton": newton,
    "gd": _first_order("sgd"),
    **{name: _first_order(name) for name in OPTIMIZER_NAMES},
}
METHODS: tuple[str, ...] = tuple(METHOD_BUILDERS)


def _projected_gd(lower: PyTree, upper: PyTree, learning_rate: float = 1e-3):
    projection = functools.partial(projection_box, lower=lower, upper=upper)
    return chain(make_optimizer("sgd", learning_rate), project(projection))


# method name -> builder of its transformation from the box and the method's options
BOUNDED_BUILDERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "lbfgs": lbfgsb,
    "projected_gd": _projected_gd,
}
BOUNDED_METHODS: tuple[str, ...] = tuple(BOUNDED_BUILDERS)


def _check_options(method: str, options: dict[str, Any], bounded: bool) -> None:
    """Reject options the method does not take, naming them and the ones it does."""
    builder = (BOUNDED_BUILDERS if bounded else METHOD_BUILDERS)[method]
    accepted = getattr(builder, "options", None) or tuple(inspect.signature(builder).parameters)
    if bounded:
        accepted = tuple(name for name in accepted if name not in ("lower", "upper"))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        accepted = ", ".join(accepted)
        raise ValueError(
            f"method {method!r} takes no option {', '.join(map(repr, unknown))} "
            f"(its options: {accepted})"
        )


class _Iterate(NamedTuple):
    x: PyTree
    value: jax.Array
    grad: PyTree
    opt_state: Any
    iterations: jax.Array
    fevals: jax.Array
    status: jax.Array  # Status code, or -1 while running


def _finite(value: jax.Array, grad: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]
    return jnp.isfinite(value) & jnp.all(jnp.stack(leaves))


def _max_abs(tree: PyTree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)]))


def _solve(fun, x0, tol, bounds, method, maxiter, options):
    if bounds is None:
        builder = METHOD_BUILDERS[method] if isinstance(method, str) else None

        def stationarity(x, grad):
            return tree_l2_norm(grad)

        def into_box(x):
            return x
    else:
        lower, upper = bounds
        builder = functools.partial(BOUNDED_BUILDERS[method], lower, upper)

        def stationarity(x, grad):
            return _max_abs(projected_gradient(x, grad, lower, upper))

        def into_box(x):
            return projection_box(x, lower, upper)

    optimizer = method if builder is None else builder(**dict(options))
    optimizer = optax.with_extra_args_support(optimizer)
    value_and_grad = jax.value_and_grad(fun)
    value, grad = value_and_grad(x0)
    opt_state = optimizer.init(x0)
    searches = linesearch_state(opt_state) is not None
    running = jnp.asarray(-1, jnp.int32)

    def keep_going(it: _Iterate) -> jax.Array:
        return it.status < 0

    def iterate(it: _Iterate) -> _Iterate:
        updates, opt_state = optimizer.update(
            it.grad, it.opt_state, it.x, value=it.value, grad=it.grad, value_fn=fun
        )
        x = into_box(apply_updates(it.x, updates))
        if searches:
            before, search = linesearch_state(it.opt_state), linesearch_state(opt_state)
            value, grad, used = search.value, search.grad, search.fevals - before.fevals
            failed = search.failed
        else:
            value, grad = value_and_grad(x)
            used, failed = jnp.ones((), jnp.int32), jnp.zeros((), bool)
        finite = _finite(value, grad)
        # keep the last finite iterate: a broken step is reported, never returned
        x, value, grad = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (x, value, grad),
            (it.x, it.value, it.grad),
        )
        iterations = it.iterations + 1
        status = jnp.select(
            [~finite, stationarity(x, grad) <= tol, failed, iterations >= maxiter],
            [Status.NON_FINITE, Status.CONVERGED, Status.LINESEARCH_FAILED, Status.MAX_ITERATIONS],
            running,
        )
        return _Iterate(x, value, grad, opt_state, iterations, it.fevals + used, status)

    start_status = jnp.select(
        [~_finite(value, grad), stationarity(x0, grad) <= tol],
        [Status.NON_FINITE, Status.CONVERGED],
        running,
    )
    start = _Iterate(
        x0, value, grad, opt_state, jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32), start_status
    )
    final = jax.lax.while_loop(keep_going, iterate, start)
    grad_norm = stationarity(final.x, final.grad)
    return OptimizeResult(
        x=final.x,
        fun=final.value,
        grad_norm=grad_norm,
        iterations=final.iterations,
        fevals=final.fevals,
        converged=final.status == Status.CONVERGED,
        status=final.status.astype(jnp.int32),
    )


_jitted_solve = jax.jit(_solve, static_argnames=("method", "maxiter", "options"))


def _check_bounds(bounds: Any, x0: PyTree) -> tuple[PyTree, PyTree]:
    """``(lower, upper)`` as pytrees of arrays shaped and typed like ``x0``; raise
    ``ValueError`` on a malformed pair, NaN, or ``lower > upper`` anywhere."""
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lower, upper), got {type(bounds).__name__}")
    structure = jax.tree.structure(x0)
    pair = []
    for name, bound in zip(("lower", "upper"), bounds, strict=True):
        if jax.tree.structure(bound) == jax.tree.structure(0.0):
            bound = jax.tree.map(lambda _, b=bound: b, x0)
        if jax.tree.structure(bound) != structure:
            raise ValueError(
                f"bounds: {name} must be a scalar or a pytree shaped like x0 "
                f"({structure}), got {jax.tree.structure(bound)}"
            )
        try:
            bound = jax.tree.map(
                lambda b, x: jnp.broadcast_to(jnp.asarray(b, jnp.result_type(x)), jnp.shape(x)),
                bound,
                x0,
            )
        except ValueError as error:
            raise ValueError(f"bounds: {name} does not match the shapes of x0: {error}") from None
        pair.append(bound)
    lower, upper = pair
    for low, up in zip(jax.tree.leaves(lower), jax.tree.leaves(upper), strict=True):
        if isinstance(low, jax.core.Tracer) or isinstance(up, jax.core.Tracer):
            continue  # traced bounds (under jit or vmap) cannot be checked here
        if bool(jnp.any(jnp.isnan(low) | jnp.isnan(up))):
            raise ValueError("bounds: lower and upper must not be NaN")
        if bool(jnp.any(low > up)):
            raise ValueError("bounds: lower > upper for some element (an empty box)")
    return lower, upper


def minimize(
    fun: Callable[[PyTree], jax.Array],
    x0: PyTree,
    method: str | optax.GradientTransformation = "lbfgs",
    *,
    bounds: tuple[PyTree | float, PyTree | float] | None = None,
    tol: float = 1e-5,
    maxiter: int = 1000,
    **options: Any,
) -> OptimizeResult:
    r"""Minimise ``fun`` from ``x0`` (any pytree) until :math:`\|\nabla f\|_2 \le` ``tol``,
    or over the box ``bounds=(lower, upper)`` until the projected gradient
    :math:`P(x - \nabla f(x)) - x` has max-norm :math:`\le` ``tol``.

    One jitted ``lax.while_loop`` runs the whole solve (see the module doc for the methods
    and their ``options``, which must be hashable). ``lower`` and ``upper`` are each a
    pytree shaped like ``x0`` or a scalar, :math:`\pm\infty` leaving a side open; an
    ``x0`` outside the box is projected onto it first. Returns
    ``OptimizeResult(x, fun, grad_norm, iterations, fevals, converged, status)``
    (``grad_norm`` is the projected gradient's max-norm with bounds, the gradient's 2-norm
    without); its ``message`` says why the solve stopped.
    """
    if isinstance(method, str):
        known = (*METHODS, *(name for name in BOUNDED_METHODS if name not in METHOD_BUILDERS))
        if method not in known:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(known)}")
        if bounds is None and method not in METHOD_BUILDERS:
            raise ValueError(f"method {method!r} needs bounds=(lower, upper)")
        if bounds is not None and method not in BOUNDED_BUILDERS:
            raise ValueError(
                f"bounds were given but method {method!r} cannot honour them; with bounds "
                f"use one of {', '.join(BOUNDED_METHODS)}"
            )
        _check_options(method, options, bounded=bounds is not None)
    elif isinstance(method, optax.GradientTransformation | optax.GradientTransformationExtraArgs):
        if bounds is not None:
            raise ValueError(
                "bounds were given but method (a transformation) cannot honour them; with "
                f"bounds use one of {', '.join(BOUNDED_METHODS)}"
            )
        if options:
            raise ValueError(
                f"options {sorted(options)} apply to named methods; configure the "
                "transformation itself instead"
            )
    else:
        raise ValueError(
            f"method must be a name ({', '.join(METHODS)}) or a gradient transformation, "
            f"got {type(method).__name__}"
        )
    check_non_negative("tol", tol)
    check_positive_int("maxiter", maxiter)
    leaves = jax.tree.leaves(x0)
    if not leaves:
        raise ValueError("x0 must hold at least one array")
    if not all(jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves):
        raise ValueError("x0 must hold floating-point arrays (integers have no gradient)")
    if bounds is not None:
        bounds = _check_bounds(bounds, x0)
        x0 = projection_box(x0, *bounds)
    frozen = tuple(sorted(options.items()))
    try:
        hash(frozen)
    except TypeError as error:
        raise ValueError(
            f"options must be hashable Python values (they key the compiled solver): {error}"
        ) from None
    # A Partial is a pytree: its bound arguments are traced, its function is static.
    objective = fun if isinstance(fun, Partial) else Partial(fun)
    # The loop runs on constants; the result is differentiable in the objective's leaves
    # by the implicit function theorem at the solution (implicit.py), x0 gets no gradient;
    # with bounds, the active coordinates get zero sensitivity.
    result = _jitted_solve(
        *jax.lax.stop_gradient((objective, x0, tol, bounds)),
        method=method,
        maxiter=maxiter,
        options=frozen,
    )
    x, value = implicit_minimum(objective, result.x, result.fun, bounds)
    return result._replace(x=x, fun=value)
