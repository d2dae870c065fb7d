r"""Gradient clipping and non-finite update guards.

Chain these before an optimizer, e.g. ``chain(clip_by_global_norm(1.0), adam(1e-3))``,
to bound the step a single exploding gradient can cause. :func:`apply_if_finite` wraps
a whole optimizer and drops updates that contain NaN or Inf.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lab.optim.base import (
    EmptyState,
    PyTree,
    check_positive,
    check_updates_match,
    safe_increment,
    tree_l2_norm,
    tree_zeros_like,
)


def _stateless(update_fn) -> optax.GradientTransformation:
    return optax.GradientTransformation(lambda params: EmptyState(), update_fn)


def clip(max_delta: float) -> optax.GradientTransformation:
    r"""Clip every coordinate: :math:`u_i = \min(\max(g_i, -\delta), \delta)`."""
    check_positive("max_delta", max_delta)

    def update_fn(updates, state, params=None):
        check_updates_match(updates, params)
        return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), updates), state

    return _stateless(update_fn)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Rescale the whole update when its global norm exceeds ``max_norm``.

    .. math::
        u = \begin{cases} g & \lVert g \rVert_2 < c \\ c\, g / \lVert g \rVert_2 &
        \text{otherwise} \end{cases}

    where :math:`\lVert g \rVert_2` is the Euclidean norm over all leaves together
    (Pascanu et al., 2013): the direction is kept, only the length is bounded.
    """
    check_positive("max_norm", max_norm)

    def update_fn(updates, state, params=None):
        check_updates_match(updates, params)
        norm = tree_l2_norm(updates)
        keep = norm < max_norm
        updates = jax.tree.map(
            lambda g: jax.lax.select(keep, g, (g / norm.astype(g.dtype)) * max_norm), updates
        )
        return updates, state

    return _stateless(update_fn)


def _unit_norms(x: jax.Array) -> jax.Array:
    """L2 norm of each output unit (a column of a dense kernel; the whole of a vector)."""
    if jnp.squeeze(x).ndim <= 1:
        axes = None
    elif x.ndim in (2, 3):
        axes = (0,)
    elif x.ndim in (4, 5):
        axes = tuple(range(x.ndim - 1))
    else:
        raise ValueError(f"adaptive_grad_clip: unsupported parameter shape {x.shape}")
    norms = jnp.sqrt(jnp.sum(x * x, axis=axes, keepdims=True))
    return jnp.broadcast_to(norms, x.shape)


def adaptive_grad_clip(clipping: float, eps: float = 1e-3) -> optax.GradientTransformation:
    r"""Adaptive gradient clipping (Brock et al., 2021), unit-wise.

    For each unit :math:`i` (a column of a dense kernel, a filter of a convolution),
    with :math:`c` = ``clipping``:

    .. math::
        u_i = \begin{cases} g_i & \lVert g_i \rVert < c \max(\lVert \theta_i \rVert,
        \epsilon) \\ c \max(\lVert \theta_i \rVert, \epsilon)\, g_i / \lVert g_i \rVert
        & \text{otherwise} \end{cases}
    """
    check_positive("clipping", clipping)
    check_positive("eps", eps)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("adaptive_grad_clip needs the current params: update(g, s, params)")
        check_updates_match(updates, params)

        def clip_leaf(g, p):
            g_norm = _unit_norms(g)
            max_norm = clipping * jnp.maximum(_unit_norms(p), eps)
            clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
            return jnp.where(g_norm < max_norm, g, clipped)

        return jax.tree.map(clip_leaf, updates, params), state

    return _stateless(update_fn)


class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite`.

    ``notfinite_count``: consecutive non-finite updates so far; ``last_finite``: whether
    the last update was finite; ``total_notfinite``: non-finite updates ever seen;
    ``inner_state``: the wrapped optimizer's state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def apply_if_finite(
    inner: optax.GradientTransformation, max_consecutive_errors: int
) -> optax.GradientTransformationExtraArgs:
    r"""Skip updates whose gradients hold NaN or Inf.

    If any leaf of :math:`g_t` is not finite, the update is zero and the inner state is
    left as it was; the skip is counted. After more than ``max_consecutive_errors``
    non-finite updates in a row the inner update is applied anyway (so a run that is
    truly diverging is not hidden forever).
    """
    if (
        isinstance(max_consecutive_errors, bool)
        or not isinstance(max_consecutive_errors, numbers.Integral)
        or max_consecutive_errors < 0
    ):
        raise ValueError(
            f"max_consecutive_errors must be an integer >= 0, got {max_consecutive_errors!r}"
        )
    inner = optax.with_extra_args_support(inner)

    def init_fn(params: PyTree) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.array(True),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)]))
        notfinite_count = jnp.where(finite, 0, safe_increment(state.notfinite_count))
        apply = finite | (notfinite_count > max_consecutive_errors)
        new_updates, inner_state = jax.lax.cond(
            apply,
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (tree_zeros_like(updates), state.inner_state),
        )
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return new_updates, ApplyIfFiniteState(notfinite_count, finite, total, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
