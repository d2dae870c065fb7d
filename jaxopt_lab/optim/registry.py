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

# name -> (alias, the defaults the name sets on top of the alias's own)
_ALIASES: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "sgd": (sgd, {}),
    "momentum": (sgd, {"momentum": 0.9}),
    "nesterov": (sgd, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (adagrad, {}),
    "rmsprop": (rmsprop, {}),
    "adam": (adam, {}),
    "adamw": (adamw, {}),
}

OPTIMIZER_NAMES: tuple[str, ...] = tuple(_ALIASES)
_WRAPPER_OPTIONS = ("clip_norm", "clip_value", "skip_nonfinite")


def optimizer_options(name: str) -> tuple[str, ...]:
    """The keyword options :func:`make_optimizer` accepts for optimizer ``name``."""
    alias, _ = _ALIASES[name]
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
    if name not in _ALIASES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    unknown = sorted(set(options) - set(optimizer_options(name)))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(optimizer_options(name)[1:])})"
        )
    parts = []
    if clip_value is not None:
        parts.append(clip(clip_value))
    if clip_norm is not None:
        parts.append(clip_by_global_norm(clip_norm))
    alias, defaults = _ALIASES[name]
    optimizer = alias(learning_rate, **{**defaults, **options})
    if parts:
        optimizer = chain(*parts, optimizer)
    if skip_nonfinite:
        optimizer = apply_if_finite(optimizer, max_consecutive_errors=5)
    return optimizer
