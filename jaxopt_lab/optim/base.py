"""Foundations shared by every optimizer: composition, parameter updates, pytree
arithmetic, hyperparameter validation, and the curvature test of the quasi-Newton
memories.

Every optimizer in :mod:`jaxopt_lab.optim` is an :class:`optax.GradientTransformation`
(``init(params) -> state``, ``update(updates, state, params=None) -> (updates, state)``)
built from the small pieces here, so ours and optax's compose freely.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


# --------------------------------------------------------------------------- composition


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the integer dtype's maximum instead of wrapping."""
    return jnp.where(count < jnp.iinfo(count.dtype).max, count + 1, count)


def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Compose transformations left to right: ``u <- t_k(...t_2(t_1(g)))``.

    The state is the tuple of the inner states. Extra keyword arguments given to
    ``update`` (the objective's ``value``, ``grad``, ``value_fn`` for L-BFGS) are passed
    to the transformations that accept them and ignored by the others.
    """
    transforms = tuple(optax.with_extra_args_support(t) for t in transforms)

    def init_fn(params: PyTree) -> tuple:
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain: state holds {len(state)} inner states but the chain has "
                f"{len(transforms)} transformations"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = t.update(updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Return ``params + updates``, each leaf kept in its parameter's dtype."""
    check_same_structure(updates, params, "updates", "params")
    return jax.tree.map(
        lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )


# --------------------------------------------------------------------------- pytree arithmetic


def check_same_structure(tree: PyTree, reference: PyTree, name: str, reference_name: str) -> None:
    """Raise ``ValueError`` if ``tree`` does not have the pytree structure of ``reference``."""
    tree_def = jax.tree.structure(tree)
    ref_def = jax.tree.structure(reference)
    if tree_def != ref_def:
        raise ValueError(
            f"the structure of {name} differs from the structure of {reference_name}: "
            f"got {tree_def}, expected {ref_def}"
        )


def check_updates_match(updates: PyTree, params: PyTree | None) -> None:
    """Raise ``ValueError`` naming both structures if ``params`` is given and the
    updates (gradients) do not have its structure."""
    if params is not None:
        check_same_structure(updates, params, "the updates (gradients)", "the params")


def tree_zeros_like(tree: PyTree, dtype: jnp.dtype | None = None) -> PyTree:
    """Zeros shaped like ``tree`` (in ``dtype`` if given, else each leaf's own dtype)."""
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_full_like(tree: PyTree, fill_value: float, dtype: jnp.dtype | None = None) -> PyTree:
    """A constant ``fill_value`` shaped like ``tree``."""
    return jax.tree.map(lambda x: jnp.full_like(x, fill_value, dtype=dtype), tree)


def tree_scale(scalar: jax.Array | float, tree: PyTree) -> PyTree:
    """``scalar * tree``, leafwise, keeping each leaf's dtype."""
    return jax.tree.map(lambda x: (scalar * x).astype(x.dtype), tree)


def tree_add_scaled(tree_x: PyTree, scalar: jax.Array | float, tree_y: PyTree) -> PyTree:
    """``x + scalar * y``, leafwise, keeping the dtype of ``x``."""
    return jax.tree.map(lambda x, y: (x + scalar * y).astype(x.dtype), tree_x, tree_y)


def tree_sub(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """``x - y``, leafwise."""
    return jax.tree.map(jnp.subtract, tree_x, tree_y)


def tree_vdot(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
    """Inner product ``<x, y>`` summed over all leaves (accumulated in float32 or wider)."""
    parts = jax.tree.map(
        lambda x, y: jnp.vdot(x.astype(_accum_dtype(x)), y.astype(_accum_dtype(x))).real,
        tree_x,
        tree_y,
    )
    return sum(jax.tree.leaves(parts), jnp.zeros((), tree_accum_dtype(tree_x)))


def tree_l2_norm(tree: PyTree, squared: bool = False) -> jax.Array:
    """Euclidean norm of all leaves taken together as one vector."""
    sq = tree_vdot(tree, tree)
    return sq if squared else jnp.sqrt(sq)


def tree_size(tree: PyTree) -> int:
    """Total number of elements over all leaves."""
    return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(tree))


def tree_bytes(tree: PyTree) -> int:
    """Total bytes held by the array leaves of ``tree``."""
    return sum(
        math.prod(jnp.shape(x)) * jnp.dtype(jnp.result_type(x)).itemsize
        for x in jax.tree.leaves(tree)
    )


def tree_cast(tree: PyTree, dtype: jnp.dtype | None) -> PyTree:
    """Cast every leaf to ``dtype`` (no-op when ``dtype`` is None)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def _accum_dtype(x: jax.Array) -> jnp.dtype:
    return jnp.promote_types(x.dtype, jnp.float32)


def tree_accum_dtype(tree: PyTree) -> jnp.dtype:
    """The dtype scalars about ``tree`` are kept in: its first leaf's, at least float32."""
    leaves = jax.tree.leaves(tree)
    return _accum_dtype(leaves[0]) if leaves else jnp.dtype(jnp.float32)


def find_states(state: Any, state_type: type) -> list[Any]:
    """Every sub-state of type ``state_type`` inside ``state`` (a chain's nested tuples)."""
    found = jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, state_type))
    return [s for s in found if isinstance(s, state_type)]


# --------------------------------------------------------------------------- validation


def _concrete(name: str, value: Any) -> float | None:
    """The value as a Python float, or None when it is traced (e.g. a vmapped sweep)."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    arr = jnp.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    return float(arr)


def check_learning_rate(learning_rate: ScalarOrSchedule, name: str = "learning_rate") -> None:
    """A learning rate is a schedule (any callable) or a finite number ``0 < lr < inf``."""
    if callable(learning_rate):
        return
    check_positive(name, learning_rate)
    check_finite(name, learning_rate)


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` is infinite or NaN."""
    v = _concrete(name, value)
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value > 0``."""
    v = _concrete(name, value)
    if v is not None and not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_non_negative(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value >= 0``."""
    v = _concrete(name, value)
    if v is not None and not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_unit_interval(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``0 <= value < 1`` (betas, decays)."""
    v = _concrete(name, value)
    if v is not None and not 0 <= v < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def is_curvature_pair(
    sy: jax.Array, step_slope: jax.Array, yy: jax.Array, eps: float | jax.Array
) -> jax.Array:
    r"""Whether a pair with :math:`\langle s, y \rangle` = ``sy``, :math:`\langle y, y \rangle`
    = ``yy`` and :math:`\langle g_{\text{old}}, s \rangle` = ``step_slope`` carries usable
    curvature: finite, and :math:`0 < \langle s, y \rangle`,
    :math:`\epsilon |\langle g_{\text{old}}, s \rangle| < \langle s, y \rangle` (L-BFGS-B's
    test). Both sides of the second test are in the units of :math:`s \cdot g`; the test
    :math:`\langle s, y \rangle > \epsilon \langle y, y \rangle` it replaces skipped exact
    pairs whenever :math:`|y| \gg |s|`, e.g. the first pair of CUTEst's VARDIM
    (:math:`f \approx 10^{16}`), which then took 43 evaluations instead of scipy's 42."""
    finite = jnp.isfinite(sy) & jnp.isfinite(yy) & jnp.isfinite(step_slope)
    return finite & (sy > 0) & (sy > eps * jnp.abs(step_slope))
