"""Optimizers by name, for the command line and the experiments.

``make_optimizer("adam", 1e-3, clip_norm=1.0)`` is ``chain(clip_by_global_norm(1.0),
adam(1e-3))``. The learning rate may be a traced scalar, so a sweep can build the
optimizer inside ``jax.vmap`` over learning rates.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax

from jaxopt_lab.optim.base import ScalarOrSchedule, chain
from jaxopt_lab.optim.clipping import apply_if_finite, clip, clip_by_global_norm
from jaxopt_lab.optim.first_order import adagrad, adam, adamw, rmsprop, sgd

Alias = Callable[..., optax.GradientTransformation]

# name -> (our alias, optax's alias of the same name, the defaults the name sets on top)
_ALIASES: dict[str, tuple[Alias, Alias, dict[str, Any]]] = {
    "sgd": (sgd, optax.sgd, {}),
    "momentum": (sgd, optax.sgd, {"momentum": 0.9}),
    "nesterov": (sgd, optax.sgd, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (adagrad, optax.adagrad, {}),
    "rmsprop": (rmsprop, optax.rmsprop, {}),
    "adam": (adam, optax.adam, {}),
    "adamw": (adamw, optax.adamw, {}),
}

OPTIMIZER_NAMES: tuple[str, ...] = tuple(_ALIASES)
_WRAPPER_OPTIONS = ("clip_norm", "clip_value", "skip_nonfinite")


def optimizer_options(name: str) -> tuple[str, ...]:
    """The keyword options :func:`make_optimizer` accepts for optimizer ``name``."""
    alias, _, _ = _ALIASES[name]
    return (*inspect.signature(alias).parameters, *_WRAPPER_OPTIONS)


def make_optimizer(
    name: str,
    learning_rate: ScalarOrSchedule,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    skip_nonfinite: bool = False,
    **options: Any,
) -> optax.GradientTransformation:
    """Build optimizer ``name`` with its keyword ``options``.

    Clipping by global norm (``clip_norm``) and by value (``clip_value``) is chained in
    front of the optimizer; ``skip_nonfinite`` wraps the result in
    :func:`~jaxopt_lab.optim.clipping.apply_if_finite` (up to 5 skips in a row).
    """
    ours, _, defaults = _lookup(name, options)
    clipping = []
    if clip_value is not None:
        clipping.append(clip(clip_value))
    if clip_norm is not None:
        clipping.append(clip_by_global_norm(clip_norm))
    optimizer = ours(learning_rate, **{**defaults, **options})
    if clipping:
        optimizer = chain(*clipping, optimizer)
    if skip_nonfinite:
        optimizer = apply_if_finite(optimizer, max_consecutive_errors=5)
    return optimizer


def optax_twin(
    name: str,
    learning_rate: ScalarOrSchedule,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    **options: Any,
) -> optax.GradientTransformation:
    """optax's own optimizer for what ``make_optimizer(name, learning_rate, ...)`` builds:
    the reference the tests and benchmarks compare ours with."""
    _, theirs, defaults = _lookup(name, options)
    clipping = []
    if clip_value is not None:
        clipping.append(optax.clip(clip_value))
    if clip_norm is not None:
        clipping.append(optax.clip_by_global_norm(clip_norm))
    return optax.chain(*clipping, theirs(learning_rate, **{**defaults, **options}))


def _lookup(name: str, options: dict[str, Any]) -> tuple[Alias, Alias, dict[str, Any]]:
    if name not in _ALIASES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    unknown = sorted(set(options) - set(optimizer_options(name)))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(optimizer_options(name)[1:])})"
        )
    return _ALIASES[name]
