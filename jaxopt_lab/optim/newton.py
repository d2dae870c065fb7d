r"""Newton's method as a gradient transformation: the exact Hessian, then a line search.

With the Hessian of the flattened parameters :math:`\nabla^2 f(x) = V \Lambda V^\top`,

.. math::

    d_k = -V \operatorname{diag}\bigl(1 / \max(|\lambda_i|, \delta)\bigr) V^\top g_k,
    \qquad x_{k+1} = x_k + t_k d_k,

where :math:`\delta` is ``damping`` and :math:`t_k` comes from an Armijo backtracking
search. Taking :math:`|\lambda|` and flooring it at :math:`\delta` keeps :math:`d_k` a
descent direction at saddles and near-singular points (the "saddle-free" Newton step).
The Hessian has :math:`n^2` entries and its eigendecomposition costs :math:`O(n^3)`: use
it for problems small enough to hold it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_lab.optim.base import EmptyState, PyTree, chain, check_positive
from jaxopt_lab.optim.linesearch import scale_by_backtracking_linesearch


def scale_by_newton(damping: float = 1e-6) -> optax.GradientTransformationExtraArgs:
    r"""Map the gradient :math:`g_k` to the damped Newton direction :math:`d_k` (module doc).

    ``update(g, state, params, value_fn=f)`` differentiates ``f`` twice at ``params``.
    """
    check_positive("damping", damping)

    def init_fn(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, *, value_fn, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("scale_by_newton needs params (the current point)")
        flat, unravel = ravel_pytree(params)
        gradient, _ = ravel_pytree(updates)
        hessian = jax.hessian(lambda z: value_fn(unravel(z)))(flat)
        eigenvalues, vectors = jnp.linalg.eigh(hessian)
        curvature = jnp.maximum(jnp.abs(eigenvalues), damping)
        direction = -vectors @ ((vectors.T @ gradient) / curvature)
        return unravel(direction.astype(flat.dtype)), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def newton(
    damping: float = 1e-6, max_linesearch_steps: int = 30
) -> optax.GradientTransformationExtraArgs:
    r"""Damped Newton: :func:`scale_by_newton`, then Armijo backtracking from step 1.

    ``update`` takes ``value=f(x_k)``, ``grad=g_k`` and ``value_fn=f`` as keyword
    arguments, like :func:`~jaxopt_lab.optim.lbfgs.lbfgs`.
    """
    return chain(
        scale_by_newton(damping),
        scale_by_backtracking_linesearch(max_steps=max_linesearch_steps),
    )
