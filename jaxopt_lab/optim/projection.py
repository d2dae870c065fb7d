r"""Euclidean projections onto convex sets, and projected gradient steps.

Each ``projection_*`` maps a pytree :math:`x` to
:math:`P_C(x) = \arg\min_{z \in C} \|z - x\|_2`, all leaves taken together as one vector
(for the box and the orthant, which are products of intervals, that is leaf by leaf):

- :func:`projection_box`: :math:`C = \{l \le z \le u\}`, :math:`P(x) = \min(\max(x, l), u)`;
- :func:`projection_non_negative`: :math:`C = \{z \ge 0\}`, :math:`P(x) = \max(x, 0)`;
- :func:`projection_simplex`: :math:`C = \{z \ge 0, \sum_i z_i = s\}`;
- :func:`projection_l2_ball`: :math:`C = \{\|z\|_2 \le r\}`.

:func:`project` turns a projection into a gradient transformation, so that
``chain(sgd(lr), project(P))`` is projected gradient descent
:math:`x_{k+1} = P(x_k - \eta \nabla f(x_k))`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_lab.optim.base import (
    EmptyState,
    PyTree,
    check_positive,
    tree_l2_norm,
    tree_scale,
    tree_sub,
)

Bound = PyTree | float


def _broadcast_bound(bound: Bound, tree: PyTree) -> PyTree:
    """A bound given as a scalar becomes a pytree shaped like ``tree``."""
    if jax.tree.structure(bound) == jax.tree.structure(0.0):
        return jax.tree.map(lambda x: jnp.full_like(x, bound), tree)
    return bound


def projection_box(x: PyTree, lower: Bound, upper: Bound) -> PyTree:
    r"""Project onto the box :math:`\{l \le z \le u\}`: :math:`z_i = \min(\max(x_i, l_i), u_i)`.

    ``lower`` and ``upper`` are pytrees shaped like ``x`` or scalars; :math:`\pm\infty`
    leaves a side open.
    """
    lower, upper = _broadcast_bound(lower, x), _broadcast_bound(upper, x)
    return jax.tree.map(lambda v, lo, up: jnp.clip(v, lo, up).astype(v.dtype), x, lower, upper)


def projection_non_negative(x: PyTree) -> PyTree:
    r"""Project onto the non-negative orthant: :math:`z_i = \max(x_i, 0)`."""
    return jax.tree.map(lambda v: jnp.maximum(v, 0), x)


def projection_simplex(x: PyTree, scale: float = 1.0) -> PyTree:
    r"""Project onto the simplex :math:`\{z \ge 0, \sum_i z_i = s\}` (``scale`` :math:`= s`).

    With :math:`u` the entries of :math:`x` sorted in decreasing order,
    :math:`\rho = \max\{j : u_j - (\sum_{i \le j} u_i - s) / j > 0\}` and
    :math:`\tau = (\sum_{i \le \rho} u_i - s) / \rho`, the projection is
    :math:`z = \max(x - \tau, 0)` (Held, Wolfe and Crowder 1974). All leaves together
    form one simplex.
    """
    check_positive("scale", scale)
    flat, unravel = ravel_pytree(x)
    ordered = -jnp.sort(-flat)
    excess = jnp.cumsum(ordered) - scale
    ranks = jnp.arange(1, flat.size + 1, dtype=flat.dtype)
    rho = jnp.sum(ordered - excess / ranks > 0)  # the condition holds exactly for j <= rho
    tau = excess[rho - 1] / rho.astype(flat.dtype)
    return unravel(jnp.maximum(flat - tau, 0))


def projection_l2_ball(x: PyTree, radius: float = 1.0) -> PyTree:
    r"""Project onto the ball :math:`\{\|z\|_2 \le r\}`: :math:`z = x \min(1, r / \|x\|_2)`,
    all leaves together as one vector."""
    check_positive("radius", radius)
    norm = tree_l2_norm(x)
    factor = jnp.where(norm > radius, radius / jnp.where(norm > 0, norm, 1), 1)
    return tree_scale(factor, x)


def project(projection: Callable[[PyTree], PyTree]) -> optax.GradientTransformation:
    r"""Map a step :math:`u` at :math:`x` to :math:`P(x + u) - x`, so that applying it lands on
    :math:`P(x + u)` (up to rounding in the addition).

    ``projection`` is any map onto a convex set, e.g.
    ``functools.partial(projection_box, lower=0.0, upper=1.0)``; chained after a
    first-order optimizer it gives the projected method, e.g.
    ``chain(sgd(lr), project(projection_non_negative))`` is
    :math:`x_{k+1} = \max(x_k - \eta \nabla f(x_k), 0)`.
    """

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("project needs params (the current point)")
        moved = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        return tree_sub(projection(moved), params), state

    return optax.GradientTransformation(init_fn, update_fn)
