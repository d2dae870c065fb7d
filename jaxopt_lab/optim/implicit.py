r"""Implicit differentiation of a minimiser: derivatives of :math:`x^\star(\theta)` from the
implicit function theorem at the solution, never by unrolling the solver's iterations.

Let :math:`x^\star(\theta) = \arg\min_x f(x, \theta)`, where :math:`\theta` are the array
leaves of a :class:`jax.tree_util.Partial` objective (its data, its penalty). At a strict
minimum :math:`\nabla_x f(x^\star, \theta) = 0` and :math:`H = \nabla^2_{xx} f(x^\star,
\theta)` is symmetric positive definite, so differentiating the optimality condition gives

.. math::

    H \, \frac{\partial x^\star}{\partial \theta} = -\nabla^2_{x\theta} f(x^\star, \theta).

The vector-Jacobian product of a cotangent :math:`\bar x` therefore costs one linear solve
and one VJP:

.. math::

    H v = \bar x, \qquad
    \bar\theta = -\bigl(\nabla^2_{x\theta} f\bigr)^\top v
               = -\frac{\partial}{\partial\theta}\bigl\langle \nabla_x f(x^\star, \theta),
                 v \bigr\rangle .

:func:`conjugate_gradient` solves :math:`H v = \bar x` with Hessian-vector products only
(:math:`H` is never formed), so the memory of the backward pass is a few copies of
:math:`x` whatever the number of solver iterations.

With box constraints :math:`l \le x \le u`, :math:`x^\star` is a fixed point of the
projected-gradient map :math:`x = P_{[l,u]}(x - \nabla_x f(x, \theta))`. Coordinates at a
bound (the active set :math:`A`) stay there under small changes of :math:`\theta`, so
:math:`\partial x^\star_A / \partial\theta = 0`; on the free coordinates :math:`F` the rule
above holds with the Hessian restricted to them, :math:`H_{FF} v_F = \bar x_F`,
:math:`v_A = 0`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jaxopt_lab.optim.base import (
    PyTree,
    check_positive,
    check_positive_int,
    check_same_structure,
    tree_add_scaled,
    tree_l2_norm,
    tree_size,
    tree_vdot,
    tree_zeros_like,
)


class CGResult(NamedTuple):
    """Outcome of :func:`conjugate_gradient`.

    ``breakdown`` is true when a search direction had non-positive (or non-finite)
    curvature :math:`p^\\top A p \\le 0`: the operator is not positive definite, and
    ``x`` is the last iterate before that direction.
    """

    x: PyTree
    iterations: jax.Array
    residual_norm: jax.Array
    converged: jax.Array
    breakdown: jax.Array


class _CGState(NamedTuple):
    x: PyTree
    residual: PyTree
    direction: PyTree
    residual_sq: jax.Array
    iterations: jax.Array
    breakdown: jax.Array


def default_cg_rtol(dtype: jnp.dtype) -> float:
    r"""The relative residual CG stops at by default: :math:`\varepsilon^{2/3}` of ``dtype``
    (3.7e-11 in float64, 1.4e-5 in float32), well above the rounding floor of a
    well-conditioned solve and tight enough that the solve's error is the solver's, not CG's."""
    return float(jnp.finfo(dtype).eps) ** (2.0 / 3.0)


def conjugate_gradient(
    operator: Callable[[PyTree], PyTree],
    b: PyTree,
    *,
    rtol: float | None = None,
    maxiter: int | None = None,
) -> CGResult:
    r"""Solve :math:`A x = b` for a symmetric positive definite linear ``operator``
    (:math:`v \mapsto Av` on pytrees shaped like ``b``) by conjugate gradients from
    :math:`x_0 = 0`:

    .. math::

        \alpha_k = \frac{r_k^\top r_k}{p_k^\top A p_k},\quad
        x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k A p_k,\quad
        p_{k+1} = r_{k+1} + \frac{r_{k+1}^\top r_{k+1}}{r_k^\top r_k} p_k,

    with :math:`r_0 = p_0 = b`, until :math:`\|r_k\|_2 \le` ``rtol`` :math:`\|b\|_2`
    (default :func:`default_cg_rtol` of ``b``'s dtype) or ``maxiter`` iterations (default
    twice the dimension). A direction with :math:`p_k^\top A p_k \le 0` stops the loop with
    ``breakdown`` set (the operator is not positive definite) before the division by it.
    One ``lax.while_loop``: jit, vmap and grad of the caller all work.
    """
    dtype = jnp.result_type(*jax.tree.leaves(b))
    rtol = default_cg_rtol(dtype) if rtol is None else rtol
    maxiter = 2 * tree_size(b) if maxiter is None else maxiter
    check_positive("rtol", rtol)
    check_positive_int("maxiter", maxiter)
    threshold_sq = (rtol * tree_l2_norm(b)) ** 2

    def keep_going(state: _CGState) -> jax.Array:
        return (state.residual_sq > threshold_sq) & (state.iterations < maxiter) & ~state.breakdown

    def step(state: _CGState) -> _CGState:
        applied = operator(state.direction)
        curvature = tree_vdot(state.direction, applied)
        breakdown = ~(curvature > 0) | ~jnp.isfinite(curvature)
        alpha = jnp.where(breakdown, 0.0, state.residual_sq / jnp.where(breakdown, 1.0, curvature))
        x = tree_add_scaled(state.x, alpha, state.direction)
        residual = tree_add_scaled(state.residual, -alpha, applied)
        residual_sq = tree_vdot(residual, residual)
        beta = residual_sq / state.residual_sq
        direction = tree_add_scaled(residual, beta, state.direction)
        return _CGState(x, residual, direction, residual_sq, state.iterations + 1, breakdown)

    start = _CGState(
        x=tree_zeros_like(b),
        residual=b,
        direction=b,
        residual_sq=tree_vdot(b, b),
        iterations=jnp.zeros((), jnp.int32),
        breakdown=jnp.zeros((), bool),
    )
    final = jax.lax.while_loop(keep_going, step, start)
    return CGResult(
        x=final.x,
        iterations=final.iterations,
        residual_norm=jnp.sqrt(final.residual_sq),
        converged=final.residual_sq <= threshold_sq,
        breakdown=final.breakdown,
    )


def free_coordinates(x: PyTree, bounds: tuple[PyTree, PyTree]) -> PyTree:
    r"""Boolean pytree like ``x``: true where :math:`l < x < u` strictly (the free set).

    ``bounds = (lower, upper)``: pytrees like ``x`` or scalars, :math:`\pm\infty` allowed.
    A coordinate on (or beyond) one of its bounds is active."""
    lower, upper = _box(x, bounds)
    return jax.tree.map(lambda xi, lo, hi: (xi > lo) & (xi < hi), x, lower, upper)


def _box(x: PyTree, bounds: tuple[PyTree, PyTree]) -> tuple[PyTree, PyTree]:
    """``(lower, upper)`` as pytrees like ``x`` (a scalar bound is broadcast to every leaf)."""
    if len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lower, upper), got {len(bounds)} items")
    return tuple(
        _like(x, bound, name) for bound, name in zip(bounds, ("lower", "upper"), strict=True)
    )


def _like(x: PyTree, bound: PyTree, name: str) -> PyTree:
    leaves = jax.tree.leaves(bound)
    if len(leaves) == 1 and jnp.ndim(leaves[0]) == 0:
        return jax.tree.map(lambda xi: jnp.full(jnp.shape(xi), leaves[0], jnp.result_type(xi)), x)
    check_same_structure(bound, x, name, "x")
    return jax.tree.map(
        lambda b, xi: jnp.broadcast_to(jnp.asarray(b, jnp.result_type(xi)), jnp.shape(xi)),
        bound,
        x,
    )


def implicit_minimum(
    fun: Partial,
    x: PyTree,
    value: jax.Array,
    bounds: tuple[PyTree, PyTree] | None = None,
    *,
    rtol: float | None = None,
    maxiter: int | None = None,
) -> tuple[PyTree, jax.Array]:
    r"""Return ``(x, value)`` unchanged, differentiable with respect to the array leaves
    :math:`\theta` of ``fun`` by the implicit function theorem (module doc).

    ``x`` is a minimiser of ``fun`` (found by any means: :func:`~jaxopt_lab.minimize`,
    scipy, a closed form) and ``value`` is ``fun(x)``. Reverse mode (``jax.grad``,
    ``jax.vjp``, ``jax.jacrev``, and ``vmap`` of them) gives, for cotangents
    :math:`(\bar x, \bar f)`,

    .. math::

        H_{FF} v_F = \bar x_F + \bar f\, g_F, \quad v_A = 0, \qquad
        \bar\theta = -\bigl(\nabla^2_{x\theta} f\bigr)^\top v
                      + \bar f\, \nabla_\theta f(x, \theta),

    with :math:`g = \nabla_x f(x, \theta)` (zero at an unconstrained minimum, kept so that
    ``value`` differentiates like ``fun(x)``), :math:`F` the free coordinates and :math:`A`
    the active ones (all free when ``bounds`` is None; see :func:`free_coordinates`).
    :math:`H_{FF} v_F = \cdot` is solved by :func:`conjugate_gradient` on Hessian-vector
    products (``rtol``, ``maxiter`` as there). If CG meets non-positive curvature (``x`` is
    not a strict minimum on its free coordinates) the cotangents are NaN rather than
    silently wrong. ``x``, ``value`` and the bounds get zero cotangents: they are treated
    as the solution and the problem's constants. Forward mode (``jax.jvp``) is not defined.
    """
    if rtol is not None:
        check_positive("rtol", rtol)
    if maxiter is not None:
        check_positive_int("maxiter", maxiter)
    box = None if bounds is None else _box(x, bounds)

    @jax.custom_vjp
    def attach(fun: Partial, x: PyTree, value: jax.Array, box) -> tuple[PyTree, jax.Array]:
        del fun, box
        return x, value

    def forward(fun, x, value, box):
        return (x, value), (fun, x, value, box)

    def backward(residuals, cotangents):
        fun, x, value, box = residuals
        x_bar, value_bar = cotangents
        (_, grad), pullback = jax.vjp(lambda theta: jax.value_and_grad(theta)(x), fun)
        rhs = tree_add_scaled(x_bar, value_bar, grad)
        hvp = jax.linearize(jax.grad(fun), x)[1]
        if box is None:
            operator = hvp
        else:
            free = free_coordinates(x, box)
            rhs = _keep(free, rhs)

            def operator(v: PyTree) -> PyTree:  # H on the free block, identity on the active
                return jax.tree.map(jnp.where, free, hvp(_keep(free, v)), v)

        solved = conjugate_gradient(operator, rhs, rtol=rtol, maxiter=maxiter)
        v = jax.tree.map(lambda vi: jnp.where(solved.breakdown, jnp.nan, vi), solved.x)
        (fun_bar,) = pullback((value_bar, jax.tree.map(jnp.negative, v)))
        zeros = tree_zeros_like((x, value, box))
        return (fun_bar, *zeros)

    attach.defvjp(forward, backward)
    return attach(fun, x, value, box)


def _keep(mask: PyTree, tree: PyTree) -> PyTree:
    """``tree`` where ``mask`` is true, zero elsewhere."""
    return jax.tree.map(lambda m, t: jnp.where(m, t, jnp.zeros_like(t)), mask, tree)
