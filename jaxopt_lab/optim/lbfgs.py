r"""L-BFGS: a limited-memory quasi-Newton direction, then a line search.

With :math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i` and
:math:`\rho_i = 1 / \langle s_i, y_i \rangle` for the last :math:`m` accepted pairs, the
two-loop recursion computes :math:`d_k = -H_k g_k` where :math:`H_k` is the BFGS inverse
Hessian built from :math:`H^0_k = \gamma_k I`,
:math:`\gamma_k = \langle s, y \rangle / \langle y, y \rangle` of the newest pair:

.. math::

    q \leftarrow g_k;\quad \alpha_i = \rho_i \langle s_i, q \rangle,\;
    q \leftarrow q - \alpha_i y_i \quad (i = k-1, \dots, k-m) \\
    r \leftarrow \gamma_k q;\quad \beta_i = \rho_i \langle y_i, r \rangle,\;
    r \leftarrow r + (\alpha_i - \beta_i) s_i \quad (i = k-m, \dots, k-1);\quad d_k = -r

A pair is stored only when it has positive curvature above rounding,
:math:`\langle s, y \rangle > \epsilon |\langle g_{k-1}, s \rangle|`
(:func:`~jaxopt_lab.optim.base.is_curvature_pair`), so :math:`H_k` stays positive definite
and :math:`d_k` is a descent direction; optax keeps negative-curvature pairs (optax#1708).
Before any pair exists, :math:`d_0 = -g_0 / \|g_0\|` (a unit-length first move, as in L-BFGS-B).

:func:`lbfgs` chains :func:`scale_by_lbfgs` with a line search (Hager-Zhang by default)
or a fixed learning rate. When the line search fails along :math:`d_k`, it is run once
more before the failure is reported (counted in ``restarts``): if the memory holds pairs,
they are cleared and the retry goes along the scaled steepest descent direction
:math:`-\gamma_k g_k`; if it is empty, along :math:`10^{-3} d_k`, so that its unit step
moves :math:`x` by :math:`10^{-3}` instead of 1 (on CUTEst's GAUSS2LS the first search
failed after its 20 trials; the retry then solves the problem). Its ``update`` takes the
objective as extra arguments::

    opt = jl.lbfgs()
    state = opt.init(x)
    value_and_grad = jl.value_and_grad_from_state(f)
    for _ in range(100):
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        x = jl.apply_updates(x, updates)
        if jl.lbfgs_info(state).grad_norm < 1e-6:
            break
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lab.optim.base import (
    PyTree,
    chain,
    check_positive,
    check_positive_int,
    find_states,
    is_curvature_pair,
    safe_increment,
    tree_accum_dtype,
    tree_add_scaled,
    tree_l2_norm,
    tree_scale,
    tree_sub,
    tree_vdot,
    tree_zeros_like,
)
from jaxopt_lab.optim.first_order import scale_by_learning_rate
from jaxopt_lab.optim.linesearch import linesearch_state, scale_by_hager_zhang_linesearch


class ScaleByLbfgsState(NamedTuple):
    """Curvature memory (circular buffers of the last ``memory_size`` pairs) and counters."""

    iterations: jax.Array
    params: PyTree
    grad: PyTree
    s_memory: PyTree
    y_memory: PyTree
    rho: jax.Array
    next_slot: jax.Array
    gamma: jax.Array
    skipped_pairs: jax.Array
    restarts: jax.Array


def _memory_slot(memory: PyTree, index: jax.Array) -> PyTree:
    return jax.tree.map(lambda m: jax.lax.dynamic_index_in_dim(m, index, keepdims=False), memory)


def _two_loop(grad: PyTree, state: ScaleByLbfgsState, memory_size: int, gamma: jax.Array) -> PyTree:
    """``H g`` by the two-loop recursion; empty slots have ``rho = 0`` and drop out."""

    def slot(k: int | jax.Array) -> jax.Array:  # k = 0 is the newest pair
        return (state.next_slot - 1 - k) % memory_size

    def newest_first(k, carry):
        q, alphas = carry
        i = slot(k)
        alpha = state.rho[i] * tree_vdot(_memory_slot(state.s_memory, i), q)
        q = tree_add_scaled(q, -alpha, _memory_slot(state.y_memory, i))
        return q, alphas.at[i].set(alpha)

    q, alphas = jax.lax.fori_loop(0, memory_size, newest_first, (grad, jnp.zeros_like(state.rho)))

    def oldest_first(k, r):
        i = slot(memory_size - 1 - k)
        beta = state.rho[i] * tree_vdot(_memory_slot(state.y_memory, i), r)
        return tree_add_scaled(r, alphas[i] - beta, _memory_slot(state.s_memory, i))

    return jax.lax.fori_loop(0, memory_size, oldest_first, tree_scale(gamma, q))


def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True, curvature_eps: float | None = None
) -> optax.GradientTransformation:
    r"""Map the gradient :math:`g_k` to the L-BFGS direction :math:`d_k = -H_k g_k`.

    ``update(g, state, params)`` first forms the pair :math:`s = x_k - x_{k-1}`,
    :math:`y = g_k - g_{k-1}` and stores it when
    :math:`\langle s, y \rangle > \epsilon |\langle g_{k-1}, s \rangle|` and
    :math:`\langle s, y \rangle > 0` (:func:`~jaxopt_lab.optim.base.is_curvature_pair`;
    :math:`\epsilon` is ``curvature_eps``, default the machine epsilon of the parameters'
    dtype); otherwise it counts it in ``skipped_pairs``. With ``scale_init_precond`` the
    initial inverse Hessian is :math:`\gamma I`,
    :math:`\gamma = \langle s, y \rangle / \langle y, y \rangle` of the newest stored
    pair, else :math:`I`. A non-finite or ascent direction falls back to
    :math:`-g / \|g\|`.
    """
    check_positive_int("memory_size", memory_size)
    if curvature_eps is not None:
        check_positive("curvature_eps", curvature_eps)

    def init_fn(params: PyTree) -> ScaleByLbfgsState:
        dtype = tree_accum_dtype(params)
        memory = jax.tree.map(lambda p: jnp.zeros((memory_size, *jnp.shape(p)), p.dtype), params)
        return ScaleByLbfgsState(
            iterations=jnp.zeros((), jnp.int32),
            params=tree_zeros_like(params),
            grad=tree_zeros_like(params),
            s_memory=memory,
            y_memory=memory,
            rho=jnp.zeros((memory_size,), dtype),
            next_slot=jnp.zeros((), jnp.int32),
            gamma=jnp.zeros((), dtype),
            skipped_pairs=jnp.zeros((), jnp.int32),
            restarts=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_lbfgs needs params (the current point)")
        grad = updates
        dtype = state.rho.dtype
        eps = jnp.finfo(dtype).eps if curvature_eps is None else curvature_eps
        s = tree_sub(params, state.params)
        y = tree_sub(grad, state.grad)
        sy, yy = tree_vdot(s, y).astype(dtype), tree_vdot(y, y).astype(dtype)
        is_pair = state.iterations > 0
        step_slope = tree_vdot(state.grad, s).astype(dtype)
        keep = is_pair & is_curvature_pair(sy, step_slope, yy, eps)
        slot = state.next_slot

        def store(memory, new):
            return jax.tree.map(lambda m, v: jnp.where(keep, m.at[slot].set(v), m), memory, new)

        state = state._replace(
            s_memory=store(state.s_memory, s),
            y_memory=store(state.y_memory, y),
            rho=jnp.where(keep, state.rho.at[slot].set(1 / jnp.where(keep, sy, 1)), state.rho),
            next_slot=jnp.where(keep, (slot + 1) % memory_size, slot),
            gamma=jnp.where(keep, sy / jnp.where(keep, yy, 1), state.gamma),
            skipped_pairs=state.skipped_pairs + (is_pair & ~keep),
        )
        grad_norm = tree_l2_norm(grad).astype(dtype)
        unit_scale = 1 / jnp.where(grad_norm > 0, grad_norm, 1)
        has_pair = jnp.any(state.rho != 0)
        gamma = jnp.where(has_pair, state.gamma if scale_init_precond else 1, unit_scale)
        direction = tree_scale(-1, _two_loop(grad, state, memory_size, gamma))
        slope = tree_vdot(direction, grad)
        is_descent = jnp.isfinite(slope) & (slope < 0)
        steepest = tree_scale(-unit_scale, grad)
        direction = jax.tree.map(lambda d, f: jnp.where(is_descent, d, f), direction, steepest)
        new_state = state._replace(
            iterations=safe_increment(state.iterations), params=params, grad=grad
        )
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)


# With an empty memory a failed search is retried along the same direction this much shorter.
_RETRY_SHRINK = 1e-3


def _restarting(
    memory: optax.GradientTransformation, linesearch: optax.GradientTransformationExtraArgs
) -> optax.GradientTransformationExtraArgs:
    """``chain(memory, linesearch)`` that retries a failed search once (counted in
    ``restarts``): when the memory holds pairs, it clears them and searches along
    :math:`-\\gamma g` (:math:`\\gamma` of the newest pair); when it is empty (the direction
    is :math:`-g / \\|g\\|`, so a unit step moves :math:`x` by 1), it searches along
    ``_RETRY_SHRINK`` :math:`\\cdot d`, whose unit step moves :math:`x` by :math:`10^{-3}`.
    An iteration thus costs at most twice the search's evaluations. The state is the
    chain's tuple."""
    linesearch = optax.with_extra_args_support(linesearch)

    def init_fn(params: PyTree) -> tuple:
        return memory.init(params), linesearch.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        grad = updates
        direction, memory_state = memory.update(grad, state[0], params)
        step, search_state = linesearch.update(direction, state[1], params, **extra_args)
        searched = linesearch_state(search_state)
        if searched is None:  # a transformation that reports no failure: nothing to retry
            return step, (memory_state, search_state)
        has_pair = jnp.any(memory_state.rho != 0)

        def restart():
            steepest = tree_scale(-memory_state.gamma, grad)
            shorter = tree_scale(_RETRY_SHRINK, direction)
            along = optax.tree.where(has_pair, steepest, shorter)
            retried, retried_state = linesearch.update(along, search_state, params, **extra_args)
            cleared = memory_state._replace(
                rho=jnp.zeros_like(memory_state.rho),
                restarts=safe_increment(memory_state.restarts),
            )
            return retried, (cleared, retried_state)

        return jax.lax.cond(searched.failed, restart, lambda: (step, (memory_state, search_state)))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lbfgs(
    learning_rate: float | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: optax.GradientTransformationExtraArgs | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS: :math:`x_{k+1} = x_k + t_k d_k`, :math:`d_k = -H_k g_k` (see module doc).

    The step :math:`t_k` comes from ``linesearch`` (default
    :func:`~jaxopt_lab.optim.linesearch.scale_by_hager_zhang_linesearch`, Wolfe or
    approximate Wolfe with :math:`\delta = 0.1, \sigma = 0.9, \epsilon = 10^{-6}`) or, when
    ``learning_rate`` is given, is that constant. A failed line search clears the memory
    and is retried once along :math:`-\gamma_k g_k`, or along :math:`10^{-3} d_k` when the
    memory was empty (module doc).
    ``update`` takes ``value=f(x_k)``, ``grad=g_k`` and ``value_fn=f`` as keyword arguments.
    """
    if learning_rate is not None:
        if linesearch is not None:
            raise ValueError("give either learning_rate or linesearch, not both")
        return chain(
            scale_by_lbfgs(memory_size, scale_init_precond),
            scale_by_learning_rate(learning_rate, flip_sign=False),
        )
    if linesearch is None:
        linesearch = scale_by_hager_zhang_linesearch()
    return _restarting(scale_by_lbfgs(memory_size, scale_init_precond), linesearch)


class LbfgsInfo(NamedTuple):
    """Progress read from an :func:`lbfgs` state (for stopping tests and logging).

    ``value`` and ``grad_norm`` are at the newest point (the line search's accepted point);
    without a line search ``value`` is NaN and ``grad_norm`` is at the point given to the
    last ``update``. ``fevals`` counts value-and-gradient evaluations: the line search's
    plus one at the start, the count of a loop that reuses the accepted point through
    :func:`~jaxopt_lab.optim.linesearch.value_and_grad_from_state`.
    """

    iterations: jax.Array
    fevals: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    linesearch_failed: jax.Array
    skipped_pairs: jax.Array
    restarts: jax.Array


def lbfgs_info(state: Any) -> LbfgsInfo:
    """The :class:`LbfgsInfo` of an :func:`lbfgs` state, found by state type, not key names."""
    found = find_states(state, ScaleByLbfgsState)
    if len(found) != 1:
        raise ValueError(f"expected one L-BFGS state inside state, found {len(found)}")
    memory = found[0]
    search = linesearch_state(state)
    if search is None:
        return LbfgsInfo(
            iterations=memory.iterations,
            fevals=memory.iterations,
            value=jnp.asarray(jnp.nan, memory.rho.dtype),
            grad_norm=tree_l2_norm(memory.grad),
            linesearch_failed=jnp.asarray(False),
            skipped_pairs=memory.skipped_pairs,
            restarts=memory.restarts,
        )
    return LbfgsInfo(
        iterations=memory.iterations,
        fevals=search.fevals + 1,
        value=search.value,
        grad_norm=tree_l2_norm(search.grad),
        linesearch_failed=search.failed,
        skipped_pairs=memory.skipped_pairs,
        restarts=memory.restarts,
    )
