"""Functional optimizers: pure ``(init, update)`` gradient transformations.

Everything here is an :class:`optax.GradientTransformation` (or ``...ExtraArgs``) and
depends on JAX and optax's base types only: no Flax, TFDS or matplotlib.
"""

from jaxopt_lab.optim.base import (
    apply_updates,
    chain,
    tree_l2_norm,
    tree_vdot,
)

__all__ = [
    "apply_updates",
    "chain",
    "tree_l2_norm",
    "tree_vdot",
]
