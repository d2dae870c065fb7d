r"""L-BFGS-B: limited-memory BFGS inside a box :math:`l \le x \le u` (Byrd, Lu, Nocedal and
Zhu 1995, "A limited memory algorithm for bound constrained optimization").

The quasi-Newton matrix is kept in compact form. With the last :math:`m` accepted pairs
:math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i` as the columns of :math:`S, Y`
(oldest first) and :math:`\theta = y^\top y / s^\top y` of the newest pair,

.. math::

    B = \theta I - W M W^\top,\quad W = [\,Y \;\; \theta S\,],\quad
    M = \begin{bmatrix} -D & L^\top \\ L & \theta S^\top S \end{bmatrix}^{-1},

:math:`D = \operatorname{diag}(s_i^\top y_i)`, :math:`L_{ij} = s_i^\top y_j` for
:math:`i > j` (else 0). Each iteration minimises the model
:math:`m(z) = g^\top (z - x) + \tfrac12 (z - x)^\top B (z - x)` in three steps:

1. **Generalized Cauchy point** :math:`x^c`: the first local minimiser of :math:`m` along
   the projected steepest-descent path :math:`P(x - t g)`, :math:`t \ge 0`, a piecewise
   linear path that bends at the breakpoints :math:`t_i` where variable :math:`i` meets
   its bound. On each segment :math:`m` is a quadratic in :math:`t` with slope
   :math:`f'` and curvature :math:`f''`, updated from one breakpoint to the next by the
   paper's recursion in :math:`O(m)` per breakpoint; here the recursion is evaluated for
   all breakpoints at once with prefix sums over the sorted breakpoints.
2. **Subspace minimisation**: with the variables at a bound at :math:`x^c` fixed, the
   free variables :math:`\mathcal F` take the unconstrained Newton step of :math:`m`,
   :math:`\hat d = -\hat B^{-1} r`, :math:`r = Z^\top (g + B (x^c - x))`,
   :math:`\hat B = Z^\top B Z`, by the Sherman-Morrison-Woodbury formula
   :math:`\hat B^{-1} = \theta^{-1} I + \theta^{-2} Z^\top W (I - \theta^{-1} M W^\top Z
   Z^\top W)^{-1} M W^\top Z` (the paper's direct primal method). The point
   :math:`\bar x = P(x^c + \hat d)` is used when :math:`\bar x - x` is a descent
   direction (Morales and Nocedal 2011), otherwise :math:`x^c + \alpha^* \hat d` with the
   largest :math:`\alpha^* \le 1` that stays in the box, otherwise :math:`x^c` itself.
3. **Line search** along :math:`d = \bar x - x` on :math:`[0, t_{\max}]`, where
   :math:`t_{\max} \ge 1` is the longest step that stays in the box: from :math:`t = 1`
   (:math:`\min(1, 1/\|d\|)` on the first iteration unless every variable has two
   finite bounds, and :math:`t_{\max} = 1` on the first iteration of a constrained
   problem, as in scipy) it shrinks a step without sufficient decrease and grows a
   step along which no positive curvature shows, never past :math:`t_{\max}`. Every
   trial point therefore lies in the box, and the objective is never evaluated outside
   it (trial points are also clipped to the box against rounding).

A pair is stored only when :math:`s^\top y > \max(0, \epsilon |g_{k-1}^\top s|)`
(machine epsilon; :func:`~jaxopt_lab.optim.base.is_curvature_pair`). When
the line search fails with pairs in memory, the memory is cleared and the next iteration
starts again from the projected gradient path, as scipy's L-BFGS-B does; with an empty
memory the failure is reported. Convergence is measured on the projected gradient
:math:`P(x - g) - x` (see :func:`projected_gradient`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_lab.optim.base import (
    PyTree,
    check_positive,
    check_positive_int,
    is_curvature_pair,
    safe_increment,
    tree_accum_dtype,
    tree_add_scaled,
    tree_scale,
    tree_sub,
    tree_vdot,
    tree_zeros_like,
)
from jaxopt_lab.optim.linesearch import LineSearchResult, LineSearchState
from jaxopt_lab.optim.projection import Bound, _broadcast_bound, projection_box


class ScaleByLbfgsbState(NamedTuple):
    """Compact-form memory (rows oldest first, newest last), the previous point and the
    line search's accepted point and counters."""

    iterations: jax.Array
    params: PyTree
    grad: PyTree
    s_memory: jax.Array  # (memory_size, n) over the flattened parameters
    y_memory: jax.Array
    stored: jax.Array  # how many rows of the memory hold pairs (the last ``stored``)
    theta: jax.Array
    skipped_pairs: jax.Array
    resets: jax.Array
    search: LineSearchState


def projected_gradient(params: PyTree, grad: PyTree, lower: Bound, upper: Bound) -> PyTree:
    r"""The projected gradient step :math:`P(x - g) - x` of the box :math:`[l, u]`; it is zero
    exactly at the first-order (KKT) points of :math:`\min f` over the box."""
    moved = jax.tree.map(lambda x, g: x - g, params, grad)
    return tree_sub(projection_box(moved, lower, upper), params)


class _Compact(NamedTuple):
    """:math:`B = \\theta I - W M W^\\top` (``w``: n x 2m, ``m``: 2m x 2m)."""

    theta: jax.Array
    w: jax.Array
    m: jax.Array


def _compact(s_memory: jax.Array, y_memory: jax.Array, stored: jax.Array, theta) -> _Compact:
    memory_size = s_memory.shape[0]
    sy = s_memory @ y_memory.T  # sy[i, j] = s_i' y_j
    empty = jnp.arange(memory_size) < memory_size - stored
    # Empty rows of S and Y are zero, so they add nothing to W; a unit diagonal keeps the
    # middle matrix invertible without touching the stored pairs' block.
    middle = jnp.block(
        [
            [-jnp.diag(jnp.diag(sy)), jnp.tril(sy, -1).T],
            [jnp.tril(sy, -1), theta * (s_memory @ s_memory.T)],
        ]
    ) + jnp.diag(jnp.concatenate([empty, empty]).astype(sy.dtype))
    w = jnp.concatenate([y_memory.T, theta * s_memory.T], axis=1)
    return _Compact(theta, w, jnp.linalg.inv(middle))


class _CauchyPoint(NamedTuple):
    x: jax.Array
    c: jax.Array  # W' (x^c - x)
    free: jax.Array  # variables strictly inside their bounds at x^c


def _exclusive(first: jax.Array, inclusive: jax.Array) -> jax.Array:
    """``[first, inclusive[0], ..., inclusive[-2]]``: the value before each breakpoint."""
    return jnp.concatenate([first[None], inclusive[:-1]])


def _cauchy_point(x, g, lower, upper, model: _Compact) -> _CauchyPoint:
    """The generalized Cauchy point (step 1 of the module doc), all breakpoints at once."""
    n = x.shape[0]
    theta, w, m = model
    towards = jnp.where(g < 0, upper, lower)  # the bound x - t g heads for
    breaks = jnp.where(g != 0, (x - towards) / jnp.where(g != 0, g, 1), jnp.inf)
    moving = breaks > 0
    d = jnp.where(moving, -g, 0)
    order = jnp.argsort(breaks)
    t = breaks[order]
    passed = (t > 0) & jnp.isfinite(t)  # breakpoints met along the path, in order
    gb = jnp.where(passed, g[order], 0)
    zb = jnp.where(passed, towards[order] - x[order], 0)
    wb = w[order]
    # where segment k starts: the last finite breakpoint before it (index n: after all)
    t_start = jax.lax.cummax(jnp.concatenate([jnp.zeros(1, x.dtype), jnp.where(passed, t, 0)]))
    dt = jnp.where(passed, t - t_start[:n], 0)

    p0 = w.T @ d
    fp0 = -(d @ d)
    fpp0 = -theta * fp0 - p0 @ m @ p0
    gw = gb[:, None] * wb
    p = p0 + jnp.cumsum(gw, axis=0) - gw  # p before each breakpoint
    c_after = jnp.cumsum(dt[:, None] * p, axis=0)
    wmp = jnp.sum((p @ m) * wb, axis=1)
    wmw = jnp.sum((wb @ m) * wb, axis=1)
    fpp_after = fpp0 - jnp.cumsum(theta * gb**2 + 2 * gb * wmp + gb**2 * wmw)
    fpp = _exclusive(fpp0, fpp_after)
    wmc = jnp.sum((c_after @ m) * wb, axis=1)
    fp_after = fp0 + jnp.cumsum(dt * fpp + gb**2 + theta * gb * zb - gb * wmc)
    fp = _exclusive(fp0, fp_after)

    # Segment k runs from t_before[k] to t[k]; index n is past the last breakpoint.
    fp = jnp.concatenate([fp, fp_after[-1:]])
    fpp = jnp.concatenate([fpp, fpp_after[-1:]])
    p = jnp.concatenate([p, (p[-1] + gw[-1])[None]])
    c = jnp.concatenate([jnp.zeros_like(p0)[None], c_after])
    length = jnp.concatenate([jnp.where(jnp.isfinite(t), t - t_start[:n], jnp.inf), jnp.zeros(1)])
    curved = fpp > 0
    dt_min = jnp.where(curved, jnp.maximum(-fp / jnp.where(curved, fpp, 1), 0), 0)
    stop = ~curved | (dt_min < length)
    stop = stop.at[n].set(True)
    k = jnp.argmax(stop)
    t_star = t_start[k] + dt_min[k]
    x_cauchy = jnp.clip(x - t_star * g, lower, upper)
    return _CauchyPoint(x_cauchy, c[k] + dt_min[k] * p[k], breaks > t_star)


def _subspace_point(x, g, lower, upper, model: _Compact, cauchy: _CauchyPoint) -> jax.Array:
    """The point :math:`\\bar x` of step 2 of the module doc."""
    theta, w, m = model
    free = cauchy.free.astype(x.dtype)
    r = free * (g + theta * (cauchy.x - x) - w @ (m @ cauchy.c))
    wf = w * free[:, None]
    inner = jnp.eye(m.shape[0], dtype=x.dtype) - (m @ (wf.T @ wf)) / theta
    v = jnp.linalg.solve(inner, m @ (wf.T @ r))
    step = -r / theta - (wf @ v) / theta**2
    projected = jnp.clip(cauchy.x + step, lower, upper)
    # largest alpha <= 1 with x^c + alpha * step inside the box
    room = jnp.where(step > 0, upper - cauchy.x, jnp.where(step < 0, lower - cauchy.x, jnp.inf))
    ratio = jnp.where(step != 0, room / jnp.where(step != 0, step, 1), jnp.inf)
    alpha = jnp.clip(jnp.min(ratio, initial=1.0), 0, 1)
    truncated = jnp.clip(cauchy.x + alpha * step, lower, upper)
    finite = jnp.all(jnp.isfinite(step))

    def descends(point):
        return finite & ((point - x) @ g < 0)

    return jnp.where(
        descends(projected), projected, jnp.where(descends(truncated), truncated, cauchy.x)
    )


class _Trial(NamedTuple):
    step: jax.Array
    value: jax.Array
    grad: PyTree
    slope: jax.Array


class _SearchCarry(NamedTuple):
    trial: _Trial  # the last point evaluated
    best: _Trial  # the best acceptable point so far (step 0: none yet)
    shrinking: jax.Array
    done: jax.Array
    fevals: jax.Array


_ROUNDING_NOISE = 100  # in units of eps * |f(x)|
_EXPANSION = 4.0
_MAX_STEP = 1e10  # the cap on a step along a direction no bound stops


def _box_search(
    value_and_grad_fn, params, value, grad, direction, initial_step, max_step, c1, max_steps
):
    r"""A line search on :math:`[0, t_{\max}]` (``max_step``, the longest step that stays in
    the box), so no trial point leaves it.

    A step is acceptable when :math:`\phi(t) \le \phi(0) + c_1 t \phi'(0)` (Armijo) or,
    once the decrease is below rounding (:math:`\phi(t) \le \phi(0) + 100 \epsilon
    |\phi(0)|`), when :math:`|\phi'(t)| \le 0.9 |\phi'(0)|` (approximate Wolfe, Hager and
    Zhang 2005). From ``initial_step``: while the trials are acceptable and show no positive
    curvature (:math:`\phi'(t) \le \phi'(0)`), the step grows by 4 up to :math:`t_{\max}`
    (a concave or linear direction runs to the boundary, as scipy's More-Thuente search
    with its maximal step does); an unacceptable first trial is shrunk to the minimiser of
    the quadratic through :math:`\phi(0), \phi'(0), \phi(t)`, kept within
    :math:`[0.1 t, 0.5 t]`. The best acceptable step wins; none is a failure (step 0)."""
    slope0 = tree_vdot(grad, direction)
    dtype = slope0.dtype
    value0 = jnp.asarray(value, dtype)
    noise = _ROUNDING_NOISE * jnp.finfo(dtype).eps * jnp.abs(value0)
    origin = _Trial(jnp.zeros((), dtype), value0, grad, slope0)

    def evaluate(step: jax.Array) -> _Trial:
        new_value, new_grad = value_and_grad_fn(tree_add_scaled(params, step, direction))
        slope = tree_vdot(new_grad, direction).astype(dtype)
        return _Trial(step, jnp.asarray(new_value, dtype), new_grad, slope)

    def keep_going(carry: _SearchCarry) -> jax.Array:
        return ~carry.done & (carry.fevals < max_steps) & (slope0 < 0)

    def search_step(carry: _SearchCarry) -> _SearchCarry:
        last, best = carry.trial, carry.best
        t = last.step
        curvature = last.value - value0 - slope0 * t
        shrunk = -slope0 * t**2 / (2 * curvature)
        shrunk = jnp.clip(jnp.where(jnp.isfinite(shrunk), shrunk, 0.5 * t), 0.1 * t, 0.5 * t)
        grown = jnp.minimum(_EXPANSION * best.step, max_step)
        step = jnp.where(carry.fevals == 0, t, jnp.where(carry.shrinking, shrunk, grown))
        trial = evaluate(step)
        armijo = trial.value <= value0 + c1 * step * slope0
        flat = (trial.value <= value0 + noise) & (jnp.abs(trial.slope) <= 0.9 * jnp.abs(slope0))
        acceptable = jnp.isfinite(trial.value) & (armijo | flat)
        improved = acceptable & ((best.step == 0) | (trial.value <= best.value))
        steep = trial.slope <= slope0  # no positive curvature seen along d
        can_grow = steep & (step < max_step) & ~carry.shrinking
        done = jnp.where(improved, ~can_grow, best.step > 0)
        return _SearchCarry(
            trial=trial,
            best=jax.tree.map(functools.partial(jnp.where, improved), trial, best),
            shrinking=carry.shrinking | ~acceptable,
            done=done,
            fevals=carry.fevals + 1,
        )

    first = origin._replace(step=jnp.minimum(jnp.asarray(initial_step, dtype), max_step))
    init = _SearchCarry(
        first, origin, jnp.asarray(False), jnp.asarray(False), jnp.zeros((), jnp.int32)
    )
    final = jax.lax.while_loop(keep_going, search_step, init)
    best = final.best
    return LineSearchResult(best.step, best.value, best.grad, final.fevals, best.step == 0)


def lbfgsb(
    lower: Bound,
    upper: Bound,
    memory_size: int = 10,
    linesearch_steps: int = 20,
    c1: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS-B in the box ``[lower, upper]`` (module doc): :math:`x_{k+1} = x_k + t_k d_k`,
    :math:`d_k = \bar x_k - x_k`, :math:`t_k \in (0, t_{\max}]` a step with sufficient
    decrease (:math:`f(x_k + t d_k) \le f(x_k) + c_1 t \nabla f(x_k)^\top d_k`), grown while
    the slope does not rise above :math:`\nabla f(x_k)^\top d_k` (no positive curvature).

    ``lower`` and ``upper`` are pytrees shaped like the parameters or scalars, with
    :math:`\pm\infty` for open sides; the parameters must lie in the box. ``update(g, state,
    params, value=f(x), grad=g, value_fn=f)`` returns :math:`t_k d_k`; apply it with
    :func:`~jaxopt_lab.optim.projection.projection_box` around
    :func:`~jaxopt_lab.optim.base.apply_updates` to land exactly in the box despite rounding
    (:func:`~jaxopt_lab.optim.solvers.minimize` does). The state's ``search`` is a
    :class:`~jaxopt_lab.optim.linesearch.LineSearchState` holding the accepted point's
    value and gradient.
    """
    check_positive_int("memory_size", memory_size)
    check_positive_int("linesearch_steps", linesearch_steps)
    check_positive("c1", c1)
    if not c1 < 1:
        raise ValueError(f"c1 must lie in (0, 1), got {c1!r}")

    def init_fn(params: PyTree) -> ScaleByLbfgsbState:
        flat, _ = ravel_pytree(params)
        dtype = tree_accum_dtype(params)
        memory = jnp.zeros((memory_size, flat.size), flat.dtype)
        return ScaleByLbfgsbState(
            iterations=jnp.zeros((), jnp.int32),
            params=tree_zeros_like(params),
            grad=tree_zeros_like(params),
            s_memory=memory,
            y_memory=memory,
            stored=jnp.zeros((), jnp.int32),
            theta=jnp.ones((), dtype),
            skipped_pairs=jnp.zeros((), jnp.int32),
            resets=jnp.zeros((), jnp.int32),
            search=LineSearchState(
                step=jnp.zeros((), dtype),
                value=jnp.asarray(jnp.inf, dtype),
                grad=tree_zeros_like(params),
                fevals=jnp.zeros((), jnp.int32),
                searches=jnp.zeros((), jnp.int32),
                failed=jnp.asarray(False),
            ),
        )

    def update_fn(updates, state, params=None, *, value, grad, value_fn, **extra_args):
        del updates, extra_args  # the step is built from the gradient and the box
        if params is None:
            raise ValueError("lbfgsb needs params (the current point)")
        x, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(grad)
        low, _ = ravel_pytree(_broadcast_bound(lower, params))
        up, _ = ravel_pytree(_broadcast_bound(upper, params))
        low, up = low.astype(x.dtype), up.astype(x.dtype)

        # the pair from the previous step
        s = x - ravel_pytree(state.params)[0]
        g_old, _ = ravel_pytree(state.grad)
        y = g - g_old
        sy, yy = s @ y, y @ y
        is_pair = state.iterations > 0
        keep = is_pair & is_curvature_pair(sy, s @ g_old, yy, jnp.finfo(x.dtype).eps)

        def push(memory, row):
            return jnp.where(keep, jnp.roll(memory, -1, axis=0).at[-1].set(row), memory)

        s_memory, y_memory = push(state.s_memory, s), push(state.y_memory, y)
        stored = jnp.where(keep, jnp.minimum(state.stored + 1, memory_size), state.stored)
        theta = jnp.where(keep, yy / jnp.where(keep, sy, 1), state.theta).astype(state.theta.dtype)

        model = _compact(s_memory, y_memory, stored, theta.astype(x.dtype))
        cauchy = _cauchy_point(x, g, low, up, model)
        target = _subspace_point(x, g, low, up, model, cauchy)
        direction = target - x
        boxed = jnp.all(jnp.isfinite(low) & jnp.isfinite(up))
        norm = jnp.sqrt(direction @ direction)
        first = (state.iterations == 0) & ~boxed & (norm > 0)
        initial_step = jnp.where(first, jnp.minimum(1, 1 / jnp.where(norm > 0, norm, 1)), 1)

        value_and_grad = jax.value_and_grad(value_fn)

        def inside(z: PyTree) -> tuple[jax.Array, PyTree]:
            return value_and_grad(projection_box(z, unravel(low), unravel(up)))

        direction_tree = unravel(direction)
        # the longest step along d that stays in the box (>= 1, as x + d is in it); on the
        # first iteration of a constrained problem the step is capped at 1, as in scipy
        room = jnp.where(direction > 0, up - x, jnp.where(direction < 0, low - x, jnp.inf))
        ratios = jnp.where(direction != 0, room / jnp.where(direction != 0, direction, 1), jnp.inf)
        max_step = jnp.clip(jnp.min(ratios), 1, _MAX_STEP)
        constrained = jnp.any(jnp.isfinite(low) | jnp.isfinite(up))
        max_step = jnp.where((state.iterations == 0) & constrained, 1, max_step)
        result = _box_search(
            inside,
            params,
            value,
            grad,
            direction_tree,
            initial_step,
            max_step,
            c1,
            linesearch_steps,
        )
        # A failed search with pairs in memory restarts from an empty memory.
        reset = result.failed & (stored > 0)
        s_memory, y_memory = (jnp.where(reset, 0, mem) for mem in (s_memory, y_memory))
        new_state = ScaleByLbfgsbState(
            iterations=safe_increment(state.iterations),
            params=params,
            grad=grad,
            s_memory=s_memory,
            y_memory=y_memory,
            stored=jnp.where(reset, 0, stored),
            theta=jnp.where(reset, 1, theta).astype(state.theta.dtype),
            skipped_pairs=state.skipped_pairs + (is_pair & ~keep),
            resets=state.resets + reset,
            search=LineSearchState(
                step=result.step,
                value=result.value,
                grad=result.grad,
                fevals=state.search.fevals + result.fevals,
                searches=state.search.searches + 1,
                failed=result.failed & ~reset,
            ),
        )
        return tree_scale(result.step, direction_tree), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
