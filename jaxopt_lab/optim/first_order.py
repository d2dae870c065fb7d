r"""First-order optimizers built from small ``scale_by_*`` transformations.

Each building block maps incoming updates :math:`g_t` (usually gradients) to outgoing
updates and carries its own NamedTuple state; the aliases (:func:`sgd`,
:func:`adagrad`, :func:`rmsprop`, :func:`adam`, :func:`adamw`) are short chains of them
ending in :func:`scale_by_learning_rate`, which multiplies by :math:`-\eta_t`. Argument
names, defaults and arithmetic follow optax's aliases of the same name, so either
library's optimizer can stand in for the other and the two agree to float32 rounding.

Apply the result with :func:`jaxopt_lab.optim.apply_updates`:
:math:`\theta_{t+1} = \theta_t + u_t`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lab.optim.base import (
    EmptyState,
    PyTree,
    ScalarOrSchedule,
    chain,
    check_learning_rate,
    check_non_negative,
    check_same_structure,
    check_unit_interval,
    check_updates_match,
    safe_increment,
    tree_full_like,
    tree_zeros_like,
)

# --------------------------------------------------------------------------- states


class ScaleByScheduleState(NamedTuple):
    """Number of updates seen so far, for a learning-rate schedule (optax's name)."""

    count: jax.Array


class MomentumState(NamedTuple):
    """Heavy-ball velocity :math:`v_t` (optax's ``TraceState``: same field)."""

    trace: PyTree


class SumOfSquaresState(NamedTuple):
    """Adagrad's running sum of squared gradients :math:`s_t` (optax's ``ScaleByRssState``)."""

    sum_of_squares: PyTree


class RmsState(NamedTuple):
    """RMSprop's moving average of squared gradients :math:`\\nu_t` (optax's
    ``ScaleByRmsState``)."""

    nu: PyTree


class RmsWithCountState(NamedTuple):
    """:class:`RmsState` with the step count bias correction needs (optax's
    ``ScaleByRmsWithCountState``)."""

    count: jax.Array
    nu: PyTree


class StddevState(NamedTuple):
    """Centered RMSprop's moving averages of gradients and squared gradients (optax's
    ``ScaleByRStdDevState``)."""

    mu: PyTree
    nu: PyTree


class StddevWithCountState(NamedTuple):
    """:class:`StddevState` with a step count (optax's ``ScaleByRStdDevWithCountState``)."""

    count: jax.Array
    mu: PyTree
    nu: PyTree


class AdamState(NamedTuple):
    """Adam's step count and first and second moment estimates (optax's
    ``ScaleByAdamState``)."""

    count: jax.Array
    mu: PyTree
    nu: PyTree


# --------------------------------------------------------------------------- helpers


def _ema(updates: PyTree, moment: PyTree, decay: Any, order: int) -> PyTree:
    """Exponential moving average of the ``order``-th power: ``(1-d) g^k + d m``."""
    return jax.tree.map(lambda g, m: (1 - decay) * (g**order) + decay * m, updates, moment)


def _debias(moment: PyTree, decay: Any, count: jax.Array) -> PyTree:
    """Bias-corrected moment ``m / (1 - decay^t)``, divided in the moment's dtype.

    The power takes a float exponent: with an integer one, eager mode multiplies out
    ``decay^t`` and loses digits that ``1 - decay^t`` (small for early ``t``) magnifies.
    """
    correction = 1 - decay ** count.astype(jnp.result_type(float))
    return jax.tree.map(lambda m: m / correction.astype(m.dtype), moment)


def _check_state(updates: PyTree, moment: PyTree) -> None:
    check_same_structure(updates, moment, "the updates (gradients)", "the optimizer state")


def _zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


# --------------------------------------------------------------------------- building blocks


def identity() -> optax.GradientTransformation:
    """Pass updates through unchanged (holds the place of an optional piece in a chain, so
    the state keeps optax's layout whichever options are set)."""

    def update_fn(updates, state, params=None):
        check_updates_match(updates, params)
        return updates, state

    return optax.GradientTransformation(lambda params: EmptyState(), update_fn)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> optax.GradientTransformation:
    r"""Multiply updates by :math:`-\eta_t` (or :math:`+\eta_t` with ``flip_sign=False``).

    ``learning_rate`` is a number (:math:`\eta_t = \eta`), a JAX scalar (which may be
    traced, e.g. when a sweep vmaps over learning rates) or a schedule
    :math:`\eta_t = \mathrm{schedule}(t)` with :math:`t` the number of updates so far.
    """
    check_learning_rate(learning_rate)
    sign = -1 if flip_sign else 1

    if callable(learning_rate):

        def init_fn(params: PyTree) -> ScaleByScheduleState:
            del params
            return ScaleByScheduleState(count=_zero_count())

        def update_fn(updates, state, params=None):
            check_updates_match(updates, params)
            step = sign * learning_rate(state.count)
            updates = jax.tree.map(lambda g: jnp.asarray(step, g.dtype) * g, updates)
            return updates, ScaleByScheduleState(count=safe_increment(state.count))

        return optax.GradientTransformation(init_fn, update_fn)

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(updates, state, params=None):
        check_updates_match(updates, params)
        step = sign * learning_rate
        return jax.tree.map(lambda g: jnp.asarray(step, g.dtype) * g, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_momentum(
    decay: float = 0.9, nesterov: bool = False, accumulator_dtype: Any | None = None
) -> optax.GradientTransformation:
    r"""Heavy-ball momentum (optax's ``trace``).

    .. math::
        v_t = g_t + \beta v_{t-1}, \qquad
        u_t = \begin{cases} g_t + \beta v_t & \text{Nesterov} \\ v_t & \text{otherwise}
        \end{cases}

    with :math:`\beta` = ``decay``; the velocity is stored in ``accumulator_dtype``
    (default: the parameters' dtype).
    """
    check_unit_interval("momentum", decay)
    dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)

    def init_fn(params: PyTree) -> MomentumState:
        return MomentumState(trace=tree_zeros_like(params, dtype))

    def update_fn(updates, state, params=None):
        del params
        _check_state(updates, state.trace)
        velocity = jax.tree.map(lambda g, v: g + decay * v, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, v: g + decay * v, updates, velocity)
        else:
            updates = velocity
        if dtype is not None:
            velocity = jax.tree.map(lambda v: v.astype(dtype), velocity)
        return updates, MomentumState(trace=velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_rss(
    initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> optax.GradientTransformation:
    r"""Adagrad's scaling by the root of the sum of all squared gradients so far.

    .. math::
        s_t = s_{t-1} + g_t^2, \quad s_0 = \text{initial\_accumulator\_value}, \qquad
        u_t = g_t / \sqrt{s_t + \epsilon} \;\; (0 \text{ where } s_t = 0)
    """
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_non_negative("eps", eps)

    def init_fn(params: PyTree) -> SumOfSquaresState:
        return SumOfSquaresState(tree_full_like(params, initial_accumulator_value))

    def update_fn(updates, state, params=None):
        del params
        _check_state(updates, state.sum_of_squares)
        sum_of_squares = jax.tree.map(lambda g, s: g * g + s, updates, state.sum_of_squares)
        updates = jax.tree.map(
            lambda g, s: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * g,
            updates,
            sum_of_squares,
        )
        return updates, SumOfSquaresState(sum_of_squares)

    return optax.GradientTransformation(init_fn, update_fn)


def _rms_denominator(second_moment: jax.Array, eps: Any, eps_in_sqrt: bool) -> jax.Array:
    """``1 / sqrt(v + eps)`` or ``1 / (sqrt(v) + eps)``."""
    if eps_in_sqrt:
        return jax.lax.rsqrt(second_moment + eps)
    return 1 / (jnp.sqrt(second_moment) + eps)


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> optax.GradientTransformation:
    r"""RMSprop's scaling by the root of a moving average of squared gradients.

    .. math::
        \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \qquad
        u_t = g_t / \sqrt{\hat\nu_t + \epsilon}
        \;\; \text{or} \;\; g_t / (\sqrt{\hat\nu_t} + \epsilon)

    with :math:`\rho` = ``decay``, :math:`\nu_0` = ``initial_scale`` and
    :math:`\hat\nu_t = \nu_t / (1-\rho^t)` when ``bias_correction`` else :math:`\nu_t`.
    """
    check_unit_interval("decay", decay)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)

    def init_fn(params: PyTree) -> RmsState | RmsWithCountState:
        nu = tree_full_like(params, initial_scale)
        return RmsWithCountState(_zero_count(), nu) if bias_correction else RmsState(nu)

    def update_fn(updates, state, params=None):
        del params
        _check_state(updates, state.nu)
        nu = _ema(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            nu_hat, new_state = _debias(nu, decay, count), RmsWithCountState(count, nu)
        else:
            nu_hat, new_state = nu, RmsState(nu)
        updates = jax.tree.map(
            lambda g, v: _rms_denominator(v, eps, eps_in_sqrt) * g, updates, nu_hat
        )
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> optax.GradientTransformation:
    r"""Centered RMSprop: scale by a moving estimate of the gradients' standard deviation.

    .. math::
        \mu_t = \rho \mu_{t-1} + (1-\rho) g_t, \quad
        \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \qquad
        u_t = g_t / \sqrt{\hat\nu_t - \hat\mu_t^2 + \epsilon}

    (or :math:`\epsilon` outside the root with ``eps_in_sqrt=False``).
    """
    check_unit_interval("decay", decay)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)

    def init_fn(params: PyTree) -> StddevState | StddevWithCountState:
        mu, nu = tree_zeros_like(params), tree_full_like(params, initial_scale)
        if bias_correction:
            return StddevWithCountState(_zero_count(), mu, nu)
        return StddevState(mu, nu)

    def update_fn(updates, state, params=None):
        del params
        _check_state(updates, state.nu)
        mu = _ema(updates, state.mu, decay, 1)
        nu = _ema(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            mu_hat, nu_hat = _debias(mu, decay, count), _debias(nu, decay, count)
            new_state = StddevWithCountState(count, mu, nu)
        else:
            mu_hat, nu_hat, new_state = mu, nu, StddevState(mu, nu)
        updates = jax.tree.map(
            lambda g, m, v: _rms_denominator(v - m * m, eps, eps_in_sqrt) * g,
            updates,
            mu_hat,
            nu_hat,
        )
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    r"""Adam's scaling by bias-corrected first and second moment estimates.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat m_t}{\sqrt{\hat v_t + \bar\epsilon} + \epsilon}

    With ``nesterov=True`` (NAdam, Dozat 2016),
    :math:`\hat m_t = \beta_1 m_t / (1-\beta_1^{t+1}) + (1-\beta_1) g_t / (1-\beta_1^t)`.
    The first moment is stored in ``mu_dtype`` (default: the parameters' dtype).
    """
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params: PyTree) -> AdamState:
        return AdamState(
            count=_zero_count(), mu=tree_zeros_like(params, mu_dtype), nu=tree_zeros_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        _check_state(updates, state.nu)
        mu = _ema(updates, state.mu, b1, 1)
        nu = _ema(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        if nesterov:
            mu_hat = jax.tree.map(
                lambda m, g: b1 * m + (1 - b1) * g,
                _debias(mu, b1, safe_increment(count)),
                _debias(updates, b1, count),
            )
        else:
            mu_hat = _debias(mu, b1, count)
        nu_hat = _debias(nu, b2, count)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
        if mu_dtype is not None:
            mu = jax.tree.map(lambda m: m.astype(mu_dtype), mu)
        nu = jax.tree.map(lambda v, old: v.astype(old.dtype), nu, state.nu)
        return updates, AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: PyTree | Callable[[PyTree], PyTree] | None = None,
) -> optax.GradientTransformation:
    r"""Decoupled weight decay: :math:`u_t = g_t + \lambda_t \theta_t`.

    ``mask`` (a pytree of booleans with the parameters' structure or a prefix of it, or a
    function of the parameters returning one) limits the decay to the leaves marked True.
    """
    if not callable(weight_decay):
        check_non_negative("weight_decay", weight_decay)

    def init_fn(params: PyTree) -> ScaleByScheduleState | EmptyState:
        del params
        return ScaleByScheduleState(count=_zero_count()) if callable(weight_decay) else EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs the current params: update(g, s, params)")
        if callable(weight_decay):
            rate = weight_decay(state.count)
            state = ScaleByScheduleState(count=safe_increment(state.count))
        else:
            rate = weight_decay
        leaf_mask = _expand_mask(mask, params)
        updates = jax.tree.map(
            lambda g, p, on: g + rate * p if on else g, updates, params, leaf_mask
        )
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def _expand_mask(mask: PyTree | Callable | None, params: PyTree) -> PyTree:
    """A boolean per parameter leaf, from a mask given as a prefix tree or a function."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    if callable(mask):
        mask = mask(params)
    return jax.tree.map(lambda on, sub: jax.tree.map(lambda _: bool(on), sub), mask, params)


# --------------------------------------------------------------------------- aliases


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    .. math::
        v_t = g_t + \beta v_{t-1}, \qquad
        \theta_{t+1} = \theta_t - \eta_t \cdot
        \begin{cases} g_t & \text{no momentum} \\ v_t & \text{heavy ball} \\
        g_t + \beta v_t & \text{Nesterov} \end{cases}

    Vanilla (full-batch), stochastic (batch 1) and mini-batch gradient descent are all
    this rule; they differ only in the batch the gradient :math:`g_t` is taken on.
    """
    check_learning_rate(learning_rate)
    velocity = (
        identity()
        if momentum is None
        else scale_by_momentum(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    )
    return chain(velocity, scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> optax.GradientTransformationExtraArgs:
    r"""Adagrad (Duchi et al., 2011): per-coordinate steps shrinking with past gradients.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad \theta_{t+1} = \theta_t - \eta_t\, g_t /
        \sqrt{s_t + \epsilon}
    """
    check_learning_rate(learning_rate)
    return chain(
        scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate)
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""RMSprop (Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    .. math::
        \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \qquad
        d_t = -\eta_t\, g_t / \sqrt{\nu_t - [\mu_t^2] + \epsilon}, \\
        \theta_{t+1} = \theta_t + \begin{cases} d_t & \text{no momentum} \\
        w_t = d_t + \beta w_{t-1} & \text{momentum (Nesterov: } d_t + \beta w_t)
        \end{cases}

    where :math:`\mu_t` (a moving average of :math:`g_t`) enters only when ``centered``.
    """
    check_learning_rate(learning_rate)
    scale = scale_by_stddev if centered else scale_by_rms
    parts = [
        scale(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        scale_by_learning_rate(learning_rate),
        identity() if momentum is None else scale_by_momentum(momentum, nesterov=nesterov),
    ]
    return chain(*parts)


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam (Kingma & Ba, 2014); NAdam with ``nesterov=True``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \theta_{t+1} = \theta_t - \eta_t \frac{m_t / (1-\beta_1^t)}
        {\sqrt{v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon}
    """
    check_learning_rate(learning_rate)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: PyTree | Callable[[PyTree], PyTree] | None = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    .. math::
        \theta_{t+1} = \theta_t - \eta_t \left( \frac{\hat m_t}{\sqrt{\hat v_t +
        \bar\epsilon} + \epsilon} + \lambda \theta_t \right)

    with :math:`\hat m_t, \hat v_t` as in :func:`adam`; the decay applies to the leaves
    selected by ``mask`` (all by default) and is multiplied by the learning rate, as in
    optax and PyTorch.
    """
    check_learning_rate(learning_rate)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
