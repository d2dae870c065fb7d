"""The CUTEst problems of the ``sif2jax`` package (pure-JAX ports of the SIF files), as
plain objectives for the solver benchmarks.

Each problem becomes a :class:`CutestProblem`: ``fun(x)`` with the problem's own data
bound in a :class:`jax.tree_util.Partial` (so it is an argument of a compiled solver,
not a constant), the standard start ``x0``, and for bounded problems ``lower``/``upper``
(``-inf``/``+inf`` where a variable is free). Enable float64 (``jax_enable_x64``)
before calling these, as CUTEst problems are posed in double precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.tree_util import Partial


@dataclass(frozen=True)
class CutestProblem:
    """One CUTEst problem: objective, start and (for bounded problems) the box."""

    name: str
    fun: Callable[[jax.Array], jax.Array]
    x0: jax.Array
    lower: jax.Array | None = None
    upper: jax.Array | None = None

    @property
    def size(self) -> int:
        return int(self.x0.size)


def _objective(problem, y: jax.Array) -> jax.Array:
    return problem.objective(y, problem.args)


def _convert(problem) -> CutestProblem:
    x0 = jnp.asarray(problem.y0, jnp.float64)
    fun = Partial(_objective, problem)
    bounds = getattr(problem, "bounds", None)
    if bounds is None:
        return CutestProblem(problem.name, fun, x0)
    lower, upper = (jnp.broadcast_to(jnp.asarray(b, jnp.float64), x0.shape) for b in bounds)
    return CutestProblem(problem.name, fun, x0, lower, upper)


def unconstrained(max_size: int = 1000) -> list[CutestProblem]:
    """sif2jax's unconstrained minimisation problems with at most ``max_size`` variables."""
    import sif2jax

    problems = sif2jax.unconstrained_minimisation_problems
    return [_convert(p) for p in problems if p.num_variables() <= max_size]


def bounded(max_size: int = 1000) -> list[CutestProblem]:
    """sif2jax's bound-constrained minimisation problems with at most ``max_size``
    variables."""
    import sif2jax

    problems = sif2jax.bounded_minimisation_problems
    return [_convert(p) for p in problems if p.num_variables() <= max_size]
