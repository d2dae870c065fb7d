r"""Line searches along a descent direction :math:`d` from a point :math:`x`.

The searches look at :math:`\phi(t) = f(x + t d)` and its slope
:math:`\phi'(t) = \langle \nabla f(x + t d), d \rangle`, where :math:`\phi'(0) < 0`.

- :func:`zoom_search` finds a step satisfying the strong Wolfe conditions

  .. math:: \phi(t) \le \phi(0) + c_1 t \phi'(0), \qquad |\phi'(t)| \le c_2 |\phi'(0)|

  by expanding the trial step until a bracket is found, then shrinking the bracket
  ("zoom") with safeguarded cubic interpolation.
- :func:`hager_zhang_search` (Hager and Zhang 2005, 2006) accepts a step satisfying the
  Wolfe conditions or the approximate Wolfe conditions
  :math:`(2\delta - 1) \phi'(0) \ge \phi'(t) \ge \sigma \phi'(0)`,
  :math:`\phi(t) \le \phi(0) + \epsilon |\phi(0)|`, which test the slope instead of a
  decrease that rounding can hide; it brackets, then shrinks the bracket by double
  secant steps and bisection.
- :func:`more_thuente_search` (Moré and Thuente 1994), the search of L-BFGS-B (it takes
  the trial steps scipy's ``dcsrch`` takes), finds a step satisfying the strong Wolfe
  conditions by safeguarded cubic and quadratic interpolation; values within rounding of
  :math:`\phi(0)` are judged by the slopes.
- :func:`backtracking_search` finds a step satisfying the Armijo (sufficient decrease)
  condition alone, shrinking the step by quadratic interpolation.

One evaluation is one call of ``value_and_grad_fn``. The accepted point's value and
gradient are returned, so an optimizer never evaluates it again: a search whose first
trial is accepted costs exactly one evaluation. Each search is one ``lax.while_loop`` with
a bounded number of evaluations; when it finds no sufficient decrease it returns step 0
(the starting point) and ``failed=True``, never NaN.

:func:`scale_by_zoom_linesearch`, :func:`scale_by_hager_zhang_linesearch`,
:func:`scale_by_more_thuente_linesearch` and :func:`scale_by_backtracking_linesearch`
wrap the searches as gradient transformations that scale the incoming direction by the
step and keep the accepted value and gradient in their state (see
:func:`value_and_grad_from_state`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lab.optim.base import (
    PyTree,
    check_non_negative,
    check_positive,
    check_positive_int,
    find_states,
    tree_accum_dtype,
    tree_add_scaled,
    tree_scale,
    tree_vdot,
    tree_zeros_like,
)

ValueAndGradFn = Callable[[PyTree], tuple[jax.Array, PyTree]]


class LineSearchResult(NamedTuple):
    """Outcome of one line search: the accepted step and the objective there."""

    step: jax.Array
    value: jax.Array
    grad: PyTree
    fevals: jax.Array
    failed: jax.Array


class _Point(NamedTuple):
    step: jax.Array
    value: jax.Array
    slope: jax.Array
    grad: PyTree


def _select(condition: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def _check_wolfe_constants(c1: float, c2: float | None = None) -> None:
    if not 0 < c1 < 1:
        raise ValueError(f"c1 must lie in (0, 1), got {c1!r}")
    if c2 is not None and not c1 < c2 < 1:
        raise ValueError(f"c2 must lie in (c1, 1) = ({c1}, 1), got {c2!r}")


def _evaluate(
    value_and_grad_fn: ValueAndGradFn, params: PyTree, direction: PyTree, step: jax.Array
) -> _Point:
    value, grad = value_and_grad_fn(tree_add_scaled(params, step, direction))
    slope = tree_vdot(grad, direction).astype(step.dtype)
    return _Point(step, jnp.asarray(value, step.dtype), slope, grad)


def _start(value: jax.Array, grad: PyTree, direction: PyTree) -> _Point:
    slope = tree_vdot(grad, direction)
    value = jnp.asarray(value, slope.dtype)
    return _Point(jnp.zeros((), slope.dtype), value, slope, grad)


def _cubic_step(lo: _Point, hi: _Point) -> tuple[jax.Array, jax.Array]:
    """Minimiser of the cubic through ``(t, phi, phi')`` at both ends, and whether it exists."""
    width = hi.step - lo.step
    d1 = lo.slope + hi.slope - 3 * (lo.value - hi.value) / (lo.step - hi.step)
    radicand = d1**2 - lo.slope * hi.slope
    d2 = jnp.sign(width) * jnp.sqrt(jnp.maximum(radicand, 0))
    step = hi.step - width * (hi.slope + d2 - d1) / (hi.slope - lo.slope + 2 * d2)
    return step, (radicand >= 0) & jnp.isfinite(step)


def _cubic_minimizer(lo: _Point, hi: _Point) -> jax.Array:
    """The cubic's minimiser (:func:`_cubic_step`) when it lies 10% of the bracket inside
    it, else bisection."""
    step, exists = _cubic_step(lo, hi)
    width = hi.step - lo.step
    low, high = jnp.minimum(lo.step, hi.step), jnp.maximum(lo.step, hi.step)
    margin = 0.1 * jnp.abs(width)
    safe = exists & (step >= low + margin) & (step <= high - margin)
    return jnp.where(safe, step, lo.step + 0.5 * width)


_ROUNDING_NOISE = 100  # in units of eps * |f(x)|


class _ZoomCarry(NamedTuple):
    lo: _Point
    hi: _Point
    bracketed: jax.Array
    next_step: jax.Array
    accepted: jax.Array
    fevals: jax.Array


def zoom_search(
    value_and_grad_fn: ValueAndGradFn,
    params: PyTree,
    value: jax.Array,
    grad: PyTree,
    direction: PyTree,
    *,
    initial_step: float | jax.Array = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_steps: int = 20,
    expansion: float = 4.0,
) -> LineSearchResult:
    r"""Strong-Wolfe line search (bracketing, then zoom by cubic interpolation).

    Trial steps grow by ``expansion`` from ``initial_step`` until a step violates
    sufficient decrease, fails to decrease below the best point, or has
    :math:`\phi' \ge 0`; the bracket ``[lo, hi]`` then shrinks by safeguarded cubic
    interpolation. Once the decrease :math:`\phi(0) - \phi(t)` is below rounding
    (:math:`\phi(t) \le \phi(0) + 100 \epsilon |\phi(0)|`), the curvature condition alone
    accepts the step, as in Hager and Zhang's approximate Wolfe conditions, so the search
    does not stall near a minimum. ``lo`` is the lowest point satisfying sufficient decrease, so
    when ``max_steps`` evaluations pass without meeting the curvature condition the
    search returns ``lo`` (``failed`` only when ``lo`` is still the starting point).
    """
    origin = _start(value, grad, direction)
    dtype = origin.slope.dtype
    noise = _ROUNDING_NOISE * jnp.finfo(dtype).eps * jnp.abs(origin.value)

    def is_running(carry: _ZoomCarry) -> jax.Array:
        return ~carry.accepted & (carry.fevals < max_steps) & (origin.slope < 0)

    def search_step(carry: _ZoomCarry) -> _ZoomCarry:
        lo, hi = carry.lo, carry.hi
        step = jnp.where(carry.bracketed, _cubic_minimizer(lo, hi), carry.next_step)
        trial = _evaluate(value_and_grad_fn, params, direction, step)
        decreases = (
            jnp.isfinite(trial.value)
            & (trial.value <= origin.value + c1 * step * origin.slope)
            & (trial.value < lo.value)
        )
        flat_enough = jnp.abs(trial.slope) <= c2 * jnp.abs(origin.slope)
        # Near a minimum the decrease drops below rounding: accept a flat enough step
        # whose value is within rounding noise of the start (approximate Wolfe).
        within_noise = jnp.isfinite(trial.value) & (trial.value <= origin.value + noise)
        accepted = (decreases | within_noise) & flat_enough
        # With the minimum between lo and the trial, the old lo bounds the bracket.
        turned = jnp.where(
            carry.bracketed, trial.slope * (hi.step - lo.step) >= 0, trial.slope >= 0
        )
        # hi keeps no gradient: it is never the accepted point.
        new_hi = _select(
            decreases, _select(turned, lo._replace(grad=None), hi), trial._replace(grad=None)
        )
        return _ZoomCarry(
            lo=_select(decreases | accepted, trial, lo),
            hi=new_hi,
            bracketed=carry.bracketed | ~decreases | turned,
            next_step=step * expansion,
            accepted=accepted,
            fevals=carry.fevals + 1,
        )

    init = _ZoomCarry(
        lo=origin,
        hi=_Point(jnp.asarray(jnp.inf, dtype), origin.value, origin.slope, None),
        bracketed=jnp.asarray(False),
        next_step=jnp.asarray(initial_step, dtype),
        accepted=jnp.asarray(False),
        fevals=jnp.zeros((), jnp.int32),
    )
    final = jax.lax.while_loop(is_running, search_step, init)
    best = final.lo
    return LineSearchResult(best.step, best.value, best.grad, final.fevals, best.step == 0)


class _MoreThuenteCarry(NamedTuple):
    best: _Point  # the lowest point so far (of the modified function in stage 1)
    other: _Point  # the bracket's other end (no gradient)
    result: _Point  # the point returned once the search ends
    next_step: jax.Array
    bracketed: jax.Array
    stage_two: jax.Array
    lower: jax.Array  # the interval the next trial must lie in
    upper: jax.Array
    width: jax.Array  # the bracket's width one and two trials ago
    older_width: jax.Array
    done: jax.Array
    accepted: jax.Array
    fevals: jax.Array


def _cubic_terms(
    t: jax.Array, ft: jax.Array, dt: jax.Array, u: jax.Array, fu: jax.Array, du: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``theta`` and ``|gamma|`` of the cubic with values and slopes ``(ft, dt)`` at ``t``
    and ``(fu, du)`` at ``u`` (``t``'s slope added first, in dcstep's order when ``t`` is
    its ``stx``); with ``gamma = -|gamma|`` where ``t > u``, the minimiser is
    ``t + r (u - t)``, ``r = (gamma - dt + theta) / (2 gamma - dt + du)``. The square
    root's radicand is floored at 0 (no minimiser: ``gamma = 0``), never NaN."""
    theta = 3 * (fu - ft) / (t - u) + dt + du
    scale = jnp.maximum(jnp.maximum(jnp.abs(theta), jnp.abs(dt)), jnp.abs(du))
    scale = jnp.where(scale > 0, scale, 1)
    radicand = (theta / scale) ** 2 - (dt / scale) * (du / scale)
    gamma = scale * jnp.sqrt(jnp.maximum(radicand, 0))
    return theta, gamma


def _cubic_through(
    t: jax.Array, ft: jax.Array, dt: jax.Array, u: jax.Array, fu: jax.Array, du: jax.Array
) -> jax.Array:
    """Minimiser of the cubic with values and slopes ``(ft, dt)`` at ``t`` and
    ``(fu, du)`` at ``u`` (:func:`_cubic_terms`)."""
    theta, gamma = _cubic_terms(t, ft, dt, u, fu, du)
    gamma = jnp.where(t > u, -gamma, gamma)
    ratio = ((gamma - dt) + theta) / (((gamma - dt) + gamma) + du)
    return t + ratio * (u - t)


def _safeguarded_step(
    best: _Point,
    other: _Point,
    trial: _Point,
    bracketed: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Moré and Thuente's next trial step from the bracket ``[best, other]`` and the
    newest ``trial``, kept in ``[lower, upper]`` while nothing is bracketed.

    Returns the step, whether the trial is higher than ``best`` (it then replaces
    ``other``) and whether the slopes at ``best`` and the trial have opposite signs (the
    old ``best`` then becomes ``other``). The four cases of their section 4:

    1. the trial is higher: the cubic's minimiser if it is nearer ``best`` than the
       quadratic's (through both values and ``best``'s slope), else halfway to it;
    2. lower, slopes of opposite sign: the cubic's or the secant's step, whichever is
       farther from the trial;
    3. lower, same sign, smaller slope: the cubic's or the secant's step, the nearer one
       once bracketed (at most 66% of the way to ``other``), else the farther one, or
       the interval's end when the cubic has no minimiser that way;
    4. lower, same sign, no smaller slope: the cubic through the trial and ``other``
       once bracketed, else the interval's end.
    """
    t, ft, dt = trial.step, trial.value, trial.slope
    x, fx, dx = best.step, best.value, best.slope
    y, fy, dy = other.step, other.value, other.slope
    higher = ft > fx
    opposite = dt * jnp.sign(dx) < 0
    smaller_slope = jnp.abs(dt) < jnp.abs(dx)
    secant = t + dt / (dt - dx) * (x - t)
    far_end = jnp.where(t > x, upper, lower)

    # case 1
    cubic_x = _cubic_through(x, fx, dx, t, ft, dt)
    quadratic_x = x + dx / ((fx - ft) / (t - x) + dx) / 2 * (t - x)
    case1 = jnp.where(
        jnp.abs(cubic_x - x) < jnp.abs(quadratic_x - x),
        cubic_x,
        cubic_x + (quadratic_x - cubic_x) / 2,
    )
    # cases 2 and 3 interpolate from the trial towards best
    cubic_t = _cubic_through(t, ft, dt, x, fx, dx)
    case2 = jnp.where(jnp.abs(cubic_t - t) > jnp.abs(secant - t), cubic_t, secant)
    # case 3: the cubic's minimiser only when it lies beyond the trial, away from best
    theta, gamma = _cubic_terms(x, fx, dx, t, ft, dt)
    gamma = jnp.where(t > x, -gamma, gamma)
    ratio = ((gamma - dt) + theta) / ((gamma + (dx - dt)) + gamma)
    beyond = jnp.where((ratio < 0) & (gamma != 0), t + ratio * (x - t), far_end)
    nearer = jnp.where(jnp.abs(beyond - t) < jnp.abs(secant - t), beyond, secant)
    reach = t + 0.66 * (y - t)
    case3_bracketed = jnp.where(t > x, jnp.minimum(reach, nearer), jnp.maximum(reach, nearer))
    farther = jnp.where(jnp.abs(beyond - t) > jnp.abs(secant - t), beyond, secant)
    case3 = jnp.where(bracketed, case3_bracketed, jnp.clip(farther, lower, upper))
    # case 4
    case4 = jnp.where(bracketed, _cubic_through(t, ft, dt, y, fy, dy), far_end)

    step = jnp.select([higher, opposite, smaller_slope], [case1, case2, case3], case4)
    return step, higher, opposite


def more_thuente_search(
    value_and_grad_fn: ValueAndGradFn,
    params: PyTree,
    value: jax.Array,
    grad: PyTree,
    direction: PyTree,
    *,
    initial_step: float | jax.Array = 1.0,
    c1: float = 1e-3,
    c2: float = 0.9,
    xtol: float = 0.1,
    epsilon: float = 1e-6,
    max_step: float = 1e10,
    max_steps: int = 20,
) -> LineSearchResult:
    r"""Moré and Thuente's (1994) strong-Wolfe line search, the one L-BFGS-B uses, made
    robust where the objective's changes fall below its rounding.

    A trial step :math:`t` is accepted when it meets the strong Wolfe conditions

    .. math:: \phi(t) \le \phi(0) + c_1 t \phi'(0), \qquad |\phi'(t)| \le c_2 |\phi'(0)|

    (L-BFGS-B's :math:`c_1 = 10^{-3}`, :math:`c_2 = 0.9`). Every comparison of values
    (this test and the step selection below) uses, for a value within
    :math:`\epsilon |\phi(0)|` of :math:`\phi(0)`, the value of the quadratic through
    :math:`\phi(0)` with slopes :math:`\phi'(0)` and :math:`\phi'(t)`,
    :math:`\phi(0) + t (\phi'(0) + \phi'(t)) / 2`. Where :math:`\phi` barely changes,
    rounding can hide its decrease: CUTEst's PALMER1C near its minimum varies by
    :math:`10^{-12}` relative along a direction of slope :math:`-3 \cdot 10^{-13}`, and a
    100-D quadratic of condition :math:`10^5` stalls at :math:`\|g\| \approx 10^{-4}`
    without this. The sufficient decrease test on that model is Hager and Zhang's
    approximate Wolfe condition :math:`\phi'(t) \le (2 c_1 - 1) \phi'(0)`
    (:func:`hager_zhang_search`; :math:`\epsilon = 10^{-6}` is theirs too). With
    :math:`\epsilon = 0` the search is L-BFGS-B's.

    Otherwise the next trial comes from the safeguarded cubic and quadratic steps of their
    section 4 (:func:`_safeguarded_step`), applied, until some trial has sufficient
    decrease and :math:`\phi' \ge 0`, to the modified function
    :math:`\phi(t) - c_1 t \phi'(0)`. Before a minimiser is bracketed the trial grows to
    within :math:`[1.1, 4]` times the last step beyond the best point; once it is, a
    bracket that did not shrink to 66% of its width in two trials is bisected. The search
    ends early, returning the lower of the last trial and the best point, when the bracket
    shrinks below ``xtol`` relative to its upper end, rounding leaves no step inside it,
    or the step reaches ``max_step``. After ``max_steps`` evaluations it returns the best
    point. If that is not below :math:`\phi(0)`: step 0 and ``failed=True``; never NaN.
    """
    origin = _start(value, grad, direction)
    dtype = origin.slope.dtype
    slope0 = origin.slope
    decrease_slope = c1 * slope0
    band = epsilon * jnp.abs(origin.value)

    def judged(point: _Point) -> _Point:
        # within the band, the quadratic model's value, integrated from the two slopes
        model = origin.value + point.step * (slope0 + point.slope) / 2
        in_band = jnp.abs(point.value - origin.value) <= band
        return point._replace(value=jnp.where(in_band, model, point.value))

    def is_running(carry: _MoreThuenteCarry) -> jax.Array:
        return ~carry.done & (carry.fevals < max_steps) & (slope0 < 0)

    def search_step(carry: _MoreThuenteCarry) -> _MoreThuenteCarry:
        step = carry.next_step
        trial = _evaluate(value_and_grad_fn, params, direction, step)
        seen, best_seen = judged(trial), judged(carry.best)
        finite = jnp.isfinite(trial.value) & jnp.isfinite(trial.slope)
        sufficient = finite & (seen.value <= origin.value + step * decrease_slope)
        accepted = sufficient & (jnp.abs(trial.slope) <= c2 * jnp.abs(slope0))
        stage_two = carry.stage_two | (sufficient & (trial.slope >= 0))
        # Moré and Thuente's warnings: rounding leaves no step inside the bracket, the
        # bracket is below xtol, or the longest step still descends steeply.
        stuck = (
            carry.bracketed
            & (
                (step <= carry.lower)
                | (step >= carry.upper)
                | (carry.upper - carry.lower <= xtol * carry.upper)
            )
        ) | ((step >= max_step) & sufficient & (trial.slope <= decrease_slope))

        # In stage 1 a trial below best but above the sufficient-decrease line is
        # judged on the modified function phi(t) - c1 t phi'(0).
        modified = ~stage_two & (seen.value <= best_seen.value) & ~sufficient & finite
        shift = jnp.where(modified, decrease_slope, 0)

        def shifted(point: _Point) -> _Point:
            return point._replace(
                value=point.value - point.step * shift, slope=point.slope - shift, grad=None
            )

        interpolated, higher, opposite = _safeguarded_step(
            shifted(best_seen),
            shifted(judged(carry.other)),
            shifted(seen),
            carry.bracketed,
            carry.lower,
            carry.upper,
        )
        # a non-finite trial is treated as higher than best, and bisected towards it
        higher = higher | ~finite
        interpolated = jnp.where(finite, interpolated, 0.5 * (carry.best.step + step))
        bracketed = carry.bracketed | higher | (finite & opposite)
        other = _select(
            higher,
            trial._replace(grad=None),
            _select(opposite, carry.best._replace(grad=None), carry.other),
        )
        best = _select(higher, carry.best, trial)

        span = jnp.abs(other.step - best.step)
        bisect = bracketed & (span >= 0.66 * carry.older_width)
        next_step = jnp.where(bisect, best.step + 0.5 * (other.step - best.step), interpolated)
        older_width = jnp.where(bracketed, carry.width, carry.older_width)
        width = jnp.where(bracketed, span, carry.width)
        lower = jnp.where(
            bracketed,
            jnp.minimum(best.step, other.step),
            next_step + 1.1 * (next_step - best.step),
        )
        upper = jnp.where(
            bracketed,
            jnp.maximum(best.step, other.step),
            next_step + 4.0 * (next_step - best.step),
        )
        next_step = jnp.clip(next_step, 0, max_step)
        outside = bracketed & (
            (next_step <= lower) | (next_step >= upper) | (upper - lower <= xtol * upper)
        )
        next_step = jnp.where(outside, best.step, next_step)

        done = accepted | stuck
        trial_wins = finite & (accepted | (seen.value <= best_seen.value))
        return _MoreThuenteCarry(
            best=best,
            other=other,
            result=_select(trial_wins, trial, carry.best),
            next_step=next_step,
            bracketed=bracketed,
            stage_two=stage_two,
            lower=lower,
            upper=upper,
            width=width,
            older_width=older_width,
            done=done,
            accepted=accepted,
            fevals=carry.fevals + 1,
        )

    first = jnp.asarray(initial_step, dtype)
    width = jnp.asarray(max_step, dtype)
    init = _MoreThuenteCarry(
        best=origin,
        other=origin._replace(grad=None),
        result=origin,
        next_step=first,
        bracketed=jnp.asarray(False),
        stage_two=jnp.asarray(False),
        lower=jnp.zeros((), dtype),
        upper=first * 5,
        width=width,
        older_width=2 * width,
        done=jnp.asarray(False),
        accepted=jnp.asarray(False),
        fevals=jnp.zeros((), jnp.int32),
    )
    final = jax.lax.while_loop(is_running, search_step, init)
    found = _select(final.done, final.result, final.best)
    failed = ~final.accepted & ~(judged(found).value < origin.value)
    found = _select(failed, origin, found)
    return LineSearchResult(found.step, found.value, found.grad, final.fevals, failed)


# Phases of the Hager-Zhang search; one evaluation per loop iteration. CHECK is resolved
# without an evaluation (step L2 of the paper: bisect unless the bracket shrank enough).
_EXPAND, _SECANT, _SECANT2, _BISECT, _SHRINK, _CHECK = range(6)


class _HagerZhangCarry(NamedTuple):
    a: _Point  # phi(a) <= phi(0) + eps_k, phi'(a) < 0 (the origin at first)
    b: _Point  # phi'(b) >= 0 once bracketed (step inf while expanding)
    best: _Point  # the accepted trial, else the lowest finite point so far
    phase: jax.Array
    resume: jax.Array  # the phase after a _SHRINK loop ends
    width: jax.Array  # b - a when the current double secant step began
    next_step: jax.Array
    accepted: jax.Array
    fevals: jax.Array


def _secant(a: _Point, b: _Point) -> jax.Array:
    """Zero of the line through ``(a, phi'(a))`` and ``(b, phi'(b))``."""
    return (a.step * b.slope - b.step * a.slope) / (b.slope - a.slope)


def _strictly_inside(step: jax.Array, a: _Point, b: _Point) -> jax.Array:
    return jnp.isfinite(step) & (step > a.step) & (step < b.step)


def _interpolation_step(a: _Point, b: _Point) -> jax.Array:
    """Inside ``(a, b)``: the cubic's minimiser, else the secant of the slopes, else the
    midpoint."""
    cubic, exists = _cubic_step(a, b)
    secant = _secant(a, b)
    return jnp.where(
        exists & _strictly_inside(cubic, a, b),
        cubic,
        jnp.where(_strictly_inside(secant, a, b), secant, 0.5 * (a.step + b.step)),
    )


def _shrink_step(a: _Point, b: _Point) -> jax.Array:
    """Minimiser of the cubic through ``(t, phi, phi')`` at ``a`` and ``b``, else of the
    quadratic through ``phi(a), phi'(a), phi(b)``, kept within ``[a + 0.1 w, a + 0.5 w]``
    (``w = b - a``); the midpoint when ``phi(b)`` is not finite."""
    width = b.step - a.step
    curvature = b.value - a.value - a.slope * width
    step = a.step - a.slope * width**2 / (2 * curvature)
    cubic, exists = _cubic_step(a, b)
    step = jnp.where(exists & _strictly_inside(cubic, a, b), cubic, step)
    step = jnp.clip(step, a.step + 0.1 * width, a.step + 0.5 * width)
    return jnp.where(jnp.isfinite(step), step, a.step + 0.5 * width)


def hager_zhang_search(
    value_and_grad_fn: ValueAndGradFn,
    params: PyTree,
    value: jax.Array,
    grad: PyTree,
    direction: PyTree,
    *,
    initial_step: float | jax.Array = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    delta: float = 0.1,
    epsilon: float = 1e-6,
    shrinkage: float = 0.66,
    expansion: float = 5.0,
    max_steps: int = 20,
) -> LineSearchResult:
    r"""Hager-Zhang line search: Wolfe or approximate Wolfe, by bracketing and secants.

    With :math:`\epsilon_k = \epsilon |\phi(0)|`, a trial step :math:`t` is accepted when

    .. math::

        \text{Wolfe:}\quad \phi(t) - \phi(0) \le c_1 t \phi'(0),\quad
        \phi'(t) \ge c_2 \phi'(0) \\
        \text{approximate Wolfe:}\quad (2\delta - 1)\phi'(0) \ge \phi'(t) \ge
        c_2 \phi'(0),\quad \phi(t) \le \phi(0) + \epsilon_k

    (Hager and Zhang 2005, 2006, with their :math:`\sigma = c_2 = 0.9`,
    :math:`\delta = 0.1`, :math:`\epsilon = 10^{-6}`). The approximate conditions are
    what the Wolfe conditions with :math:`c_1 = \delta` become for a quadratic, written
    in slopes alone: near a minimum, where :math:`\phi(0) - \phi(t)` is below rounding,
    they still accept a step that reduces the slope. The Wolfe test uses its own
    :math:`c_1 = 10^{-4}` (scipy's and the zoom search's): with the paper's
    :math:`c_1 = \delta = 0.1`, L-BFGS needed 624 evaluations instead of 604 on 100-D
    Rosenbrock.

    The search keeps a bracket :math:`[a, b]` with :math:`\phi'(a) < 0`,
    :math:`\phi(a) \le \phi(0) + \epsilon_k` and :math:`\phi'(b) \ge 0`. Every evaluated
    point :math:`c` updates it the same way: :math:`\phi'(c) \ge 0` makes :math:`c` the
    new :math:`b`; :math:`\phi'(c) < 0` with :math:`\phi(c) \le \phi(0) + \epsilon_k` makes
    it the new :math:`a`; otherwise (too high, or not finite) :math:`b = c` and the
    search shrinks :math:`[a, b]` towards :math:`a` until a trial with
    :math:`\phi' \ge 0` closes it (the paper bisects; here the trial is the minimiser
    of the cubic through the values and slopes at :math:`a` and :math:`b`, or where that
    has none inside, of the quadratic through :math:`\phi(a), \phi'(a), \phi(b)`, kept
    within :math:`[a + 0.1 w, a + 0.5 w]`, :math:`w = b - a`; the midpoint if
    :math:`\phi(b)` is not finite).

    1. Bracket: trial steps ``initial_step`` times ``expansion`` :math:`^j` until one has
       :math:`\phi' \ge 0` or is too high.
    2. Two interpolation steps: first the minimiser of the cubic through the values and
       slopes at :math:`a` and :math:`b` (the paper takes the secant of the slopes,
       :math:`(a \phi'(b) - b \phi'(a)) / (\phi'(b) - \phi'(a))`; the cubic uses the
       values too and saved 33 of 657 evaluations on 100-D Rosenbrock) wherever it falls
       strictly inside the bracket, else the secant, else the midpoint. Step 3 guards
       against a trial next to an end. A 10% margin that bisected instead cost a third
       evaluation whenever a parabola's minimum lay within 10% of an end; dropping it
       (and the cubic in the shrink step above) took the CUTEst set from 1.033x to
       1.024x scipy's evaluations. After the update, if :math:`c`
       became the new :math:`b`, the second trial is the secant through the old
       :math:`b` and :math:`c`; if it became :math:`a`, the secant through the old
       :math:`a` and :math:`c` (the paper's double secant step), evaluated only when it
       falls inside the new bracket.
    3. If the bracket did not shrink to ``shrinkage`` of its width before step 2, one
       bisection; then step 2 again.

    The loop stops at the first accepted trial, after ``max_steps`` evaluations, or when
    the bracket has shrunk to rounding. Without an accepted step it returns the lowest
    finite point evaluated if that is below :math:`\phi(0)`, else step 0 and
    ``failed=True``; never NaN.
    """
    origin = _start(value, grad, direction)
    dtype = origin.slope.dtype
    slope0 = origin.slope
    ceiling = origin.value + epsilon * jnp.abs(origin.value)
    eps = jnp.finfo(dtype).eps

    def is_running(carry: _HagerZhangCarry) -> jax.Array:
        collapsed = (carry.phase != _EXPAND) & (carry.b.step - carry.a.step <= eps * carry.b.step)
        return ~carry.accepted & (carry.fevals < max_steps) & (slope0 < 0) & ~collapsed

    def search_step(carry: _HagerZhangCarry) -> _HagerZhangCarry:
        step, phase = carry.next_step, carry.phase
        trial = _evaluate(value_and_grad_fn, params, direction, step)
        finite = jnp.isfinite(trial.value) & jnp.isfinite(trial.slope)
        curvature = trial.slope >= c2 * slope0
        wolfe = (trial.value - origin.value <= c1 * step * slope0) & curvature
        approximate = (
            (trial.value <= ceiling) & curvature & (trial.slope <= (2 * delta - 1) * slope0)
        )
        accepted = finite & (wolfe | approximate)
        rising = finite & (trial.slope >= 0)
        low = finite & ~rising & (trial.value <= ceiling)
        high = ~rising & ~low
        point = trial._replace(grad=None)
        a = _select(low, point, carry.a)
        b = _select(low, carry.b, point)

        # the second secant step goes through the end that c replaced
        replaced = _select(rising, carry.b, carry.a)
        second = _secant(replaced, point)
        second_ok = _strictly_inside(second, a, b)
        target = jnp.select(
            [
                phase == _SHRINK,
                high,
                phase == _EXPAND,
                phase == _SECANT,
                phase == _SECANT2,
            ],
            [
                jnp.where(rising, carry.resume, _SHRINK),
                _SHRINK,
                jnp.where(rising, _SECANT, _EXPAND),
                jnp.where(second_ok, _SECANT2, _CHECK),
                _CHECK,
            ],
            _SECANT,  # after a bisection (_BISECT)
        )
        resume = jnp.where(
            high & (phase != _SHRINK),
            jnp.where((phase == _EXPAND) | (phase == _BISECT), _SECANT, _CHECK),
            carry.resume,
        )
        shrank = b.step - a.step <= shrinkage * carry.width
        target = jnp.where(target == _CHECK, jnp.where(shrank, _SECANT, _BISECT), target)
        midpoint = 0.5 * (a.step + b.step)
        next_step = jnp.select(
            [target == _EXPAND, target == _SECANT, target == _SECANT2, target == _SHRINK],
            [
                step * expansion,
                _interpolation_step(a, b),
                second,
                _shrink_step(a, b),
            ],
            midpoint,
        )
        better = finite & (trial.value < carry.best.value)
        return _HagerZhangCarry(
            a=a,
            b=b,
            best=_select(accepted | better, trial, carry.best),
            phase=target,
            resume=resume,
            width=jnp.where(target == _SECANT, b.step - a.step, carry.width),
            next_step=next_step,
            accepted=accepted,
            fevals=carry.fevals + 1,
        )

    init = _HagerZhangCarry(
        a=origin._replace(grad=None),
        b=_Point(jnp.asarray(jnp.inf, dtype), origin.value, origin.slope, None),
        best=origin,
        phase=jnp.asarray(_EXPAND, jnp.int32),
        resume=jnp.asarray(_SECANT, jnp.int32),
        width=jnp.asarray(jnp.inf, dtype),
        next_step=jnp.asarray(initial_step, dtype),
        accepted=jnp.asarray(False),
        fevals=jnp.zeros((), jnp.int32),
    )
    final = jax.lax.while_loop(is_running, search_step, init)
    best = final.best
    failed = ~final.accepted & ~(best.value < origin.value)
    best = _select(failed, origin, best)
    return LineSearchResult(best.step, best.value, best.grad, final.fevals, failed)


def backtracking_search(
    value_and_grad_fn: ValueAndGradFn,
    params: PyTree,
    value: jax.Array,
    grad: PyTree,
    direction: PyTree,
    *,
    initial_step: float | jax.Array = 1.0,
    c1: float = 1e-4,
    max_steps: int = 30,
) -> LineSearchResult:
    r"""Armijo backtracking: shrink :math:`t` until :math:`\phi(t) \le \phi(0) + c_1 t \phi'(0)`.

    Each rejected step :math:`t` is replaced by the minimiser of the quadratic through
    :math:`\phi(0), \phi'(0), \phi(t)`, kept within :math:`[0.1 t, 0.5 t]`.
    """
    origin = _start(value, grad, direction)
    dtype = origin.slope.dtype

    def sufficient(point: _Point) -> jax.Array:
        return jnp.isfinite(point.value) & (
            point.value <= origin.value + c1 * point.step * origin.slope
        )

    def is_running(carry: tuple[_Point, jax.Array]) -> jax.Array:
        trial, fevals = carry
        return (fevals < max_steps) & ~((fevals > 0) & sufficient(trial)) & (origin.slope < 0)

    def search_step(carry: tuple[_Point, jax.Array]) -> tuple[_Point, jax.Array]:
        trial, fevals = carry
        t = trial.step
        curvature = trial.value - origin.value - origin.slope * t
        shrunk = -origin.slope * t**2 / (2 * curvature)
        shrunk = jnp.where(jnp.isfinite(shrunk), shrunk, 0.5 * t)
        step = jnp.where(fevals == 0, t, jnp.clip(shrunk, 0.1 * t, 0.5 * t))
        return _evaluate(value_and_grad_fn, params, direction, step), fevals + 1

    first = origin._replace(step=jnp.asarray(initial_step, dtype))
    trial, fevals = jax.lax.while_loop(is_running, search_step, (first, jnp.zeros((), jnp.int32)))
    ok = (fevals > 0) & sufficient(trial)
    best = _select(ok, trial, origin)
    return LineSearchResult(best.step, best.value, best.grad, fevals, ~ok)


# --------------------------------------------------------------------------- transformations


class LineSearchState(NamedTuple):
    """The last accepted step, the objective's value and gradient there, and counters."""

    step: jax.Array
    value: jax.Array
    grad: PyTree
    fevals: jax.Array
    searches: jax.Array
    failed: jax.Array


def _linesearch_transformation(
    search: Callable[..., LineSearchResult],
) -> optax.GradientTransformationExtraArgs:
    def init_fn(params: PyTree) -> LineSearchState:
        dtype = tree_accum_dtype(params)
        return LineSearchState(
            step=jnp.zeros((), dtype),
            value=jnp.asarray(jnp.inf, dtype),
            grad=tree_zeros_like(params),
            fevals=jnp.zeros((), jnp.int32),
            searches=jnp.zeros((), jnp.int32),
            failed=jnp.asarray(False),
        )

    def update_fn(updates, state, params=None, *, value, grad, value_fn, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("a line search needs params (the current point)")
        result = search(jax.value_and_grad(value_fn), params, value, grad, updates)
        new_state = LineSearchState(
            step=result.step,
            value=result.value,
            grad=result.grad,
            fevals=state.fevals + result.fevals,
            searches=state.searches + 1,
            failed=result.failed,
        )
        return tree_scale(result.step, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_zoom_linesearch(
    c1: float = 1e-4, c2: float = 0.9, max_steps: int = 20, initial_step: float = 1.0
) -> optax.GradientTransformationExtraArgs:
    r"""Scale the direction :math:`d` by a strong-Wolfe step :math:`t` (:func:`zoom_search`).

    ``update(d, state, params, value=f(x), grad=g, value_fn=f)`` returns :math:`t d`; the
    state keeps :math:`f(x + t d)` and :math:`\nabla f(x + t d)` for the next iteration.
    """
    _check_wolfe_constants(c1, c2)
    check_positive_int("max_steps", max_steps)
    check_positive("initial_step", initial_step)

    search = functools.partial(
        zoom_search, initial_step=initial_step, c1=c1, c2=c2, max_steps=max_steps
    )
    return _linesearch_transformation(search)


def scale_by_hager_zhang_linesearch(
    c1: float = 1e-4,
    c2: float = 0.9,
    delta: float = 0.1,
    epsilon: float = 1e-6,
    max_steps: int = 20,
    initial_step: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    r"""Scale the direction :math:`d` by a Wolfe or approximate-Wolfe step :math:`t`
    (:func:`hager_zhang_search`).

    Same calling convention and state as :func:`scale_by_zoom_linesearch`.
    """
    _check_wolfe_constants(c1, c2)
    if not 0 < delta < 0.5 or delta > c2:
        raise ValueError(f"delta must lie in (0, min(0.5, c2)), got {delta!r}")
    check_non_negative("epsilon", epsilon)
    check_positive_int("max_steps", max_steps)
    check_positive("initial_step", initial_step)

    search = functools.partial(
        hager_zhang_search,
        initial_step=initial_step,
        c1=c1,
        c2=c2,
        delta=delta,
        epsilon=epsilon,
        max_steps=max_steps,
    )
    return _linesearch_transformation(search)


def scale_by_more_thuente_linesearch(
    c1: float = 1e-3,
    c2: float = 0.9,
    xtol: float = 0.1,
    epsilon: float = 1e-6,
    max_steps: int = 20,
    initial_step: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    r"""Scale the direction :math:`d` by a strong-Wolfe step :math:`t` found as L-BFGS-B
    finds it (:func:`more_thuente_search`).

    Same calling convention and state as :func:`scale_by_zoom_linesearch`.
    """
    _check_wolfe_constants(c1, c2)
    check_positive("xtol", xtol)
    check_non_negative("epsilon", epsilon)
    check_positive_int("max_steps", max_steps)
    check_positive("initial_step", initial_step)

    search = functools.partial(
        more_thuente_search,
        initial_step=initial_step,
        c1=c1,
        c2=c2,
        xtol=xtol,
        epsilon=epsilon,
        max_steps=max_steps,
    )
    return _linesearch_transformation(search)


def scale_by_backtracking_linesearch(
    c1: float = 1e-4, max_steps: int = 30, initial_step: float = 1.0
) -> optax.GradientTransformationExtraArgs:
    r"""Scale the direction :math:`d` by an Armijo step :math:`t` (:func:`backtracking_search`).

    Same calling convention and state as :func:`scale_by_zoom_linesearch`.
    """
    _check_wolfe_constants(c1)
    check_positive_int("max_steps", max_steps)
    check_positive("initial_step", initial_step)

    search = functools.partial(
        backtracking_search, initial_step=initial_step, c1=c1, max_steps=max_steps
    )
    return _linesearch_transformation(search)


def linesearch_state(state: Any) -> LineSearchState | None:
    """The :class:`LineSearchState` inside an optimizer state (a chain's tuple), or None."""
    found = find_states(state, LineSearchState)
    if len(found) > 1:
        raise ValueError(f"the optimizer state holds {len(found)} line-search states, expected 1")
    return found[0] if found else None


def value_and_grad_from_state(
    fun: Callable[[PyTree], jax.Array],
) -> Callable[..., tuple[jax.Array, PyTree]]:
    """Like ``jax.value_and_grad(fun)``, but reuses the line search's accepted point.

    ``value_and_grad_from_state(f)(params, state=opt_state)`` evaluates ``f`` only before
    the first line search; afterwards it returns the value and gradient the line search
    already computed at ``params``, so a user loop pays no extra evaluation per step.
    """
    value_and_grad = jax.value_and_grad(fun)

    def fetch(params: PyTree, *, state: Any) -> tuple[jax.Array, PyTree]:
        stored = linesearch_state(state)
        if stored is None:
            raise ValueError("state holds no line-search state; use jax.value_and_grad instead")
        return jax.lax.cond(
            stored.searches > 0,
            lambda: (stored.value, stored.grad),
            lambda: _value_as(value_and_grad(params), stored.value.dtype),
        )

    return fetch


def _value_as(value_and_grad: tuple[jax.Array, PyTree], dtype) -> tuple[jax.Array, PyTree]:
    value, grad = value_and_grad
    return jnp.asarray(value, dtype), grad
