"""Dolan-More performance profiles (Dolan and More 2002, "Benchmarking optimization
software with performance profiles") for the solver benchmarks.

With :math:`t_{p,s}` the cost (evaluations or seconds) solver :math:`s` needs on problem
:math:`p` (``inf`` when it fails),
:math:`\\rho_s(\\tau) = |\\{p : t_{p,s} \\le \\tau \\min_{s'} t_{p,s'}\\}| / |P|`:
the fraction of problems solver :math:`s` solves within a factor :math:`\\tau` of the
best solver on each. :math:`\\rho_s(1)` is how often it is the best; the limit for large
:math:`\\tau` is how often it solves at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def performance_profile(
    costs: Mapping[str, Sequence[float]], taus: np.ndarray
) -> dict[str, np.ndarray]:
    """:math:`\\rho_s(\\tau)` per solver; ``costs[s][p]`` is solver s's cost on problem p.

    Problems no solver solves count as unsolved for all.
    """
    names = list(costs)
    table = np.asarray([np.asarray(costs[n], dtype=np.float64) for n in names])
    if table.ndim != 2 or table.shape[1] == 0:
        raise ValueError("costs must map every solver to the same non-empty list of problems")
    table = np.where(table > 0, table, np.finfo(np.float64).tiny)  # a zero cost is the best
    best = table.min(axis=0)
    with np.errstate(invalid="ignore"):
        ratios = table / best  # inf/inf = nan: unsolved by everyone
    solved = ratios[:, :, None] <= np.asarray(taus, dtype=np.float64)[None, None, :]
    return {name: solved[i].mean(axis=0) for i, name in enumerate(names)}


def plot_profiles(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    max_tau: float = 100.0,
) -> None:
    """One panel per cost measure (e.g. ``{"function evaluations": ..., "wall time": ...}``),
    each a performance profile of every solver, written as a PNG."""
    taus = np.logspace(0, np.log10(max_tau), 400)
    figure = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for ax, (measure, costs) in zip(axes, panels.items(), strict=True):
        for name, fractions in performance_profile(costs, taus).items():
            ax.step(taus, fractions, where="post", label=name)
        count = len(next(iter(costs.values())))
        ax.set(
            xscale="log",
            xlabel=f"tau: {measure} relative to the best solver on each problem",
            ylabel=f"fraction of the {count} problems solved within tau",
            ylim=(0, 1.02),
            xlim=(1, max_tau),
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def cost_panels(rows: list[dict], solvers: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """The two panels of a CUTEst benchmark's profile figure: function evaluations and
    wall time per solver, over the problems in the order of ``rows``."""
    names = list(dict.fromkeys(row["problem"] for row in rows))
    return {
        label: {solver: solved_costs(rows, names, solver, measure) for solver in solvers}
        for label, measure in (("function evaluations", "fevals"), ("wall time", "wall_s"))
    }


def solved_costs(rows: list[dict], problems: list[str], solver: str, measure: str) -> list[float]:
    """``measure`` of ``solver`` on each problem, ``inf`` where it did not solve it (rows
    from the CUTEst benchmarks: one per problem and solver, with a ``status``)."""
    by_problem = {(r["problem"], r["solver"]): r for r in rows}
    costs = []
    for name in problems:
        row = by_problem.get((name, solver))
        ok = row is not None and row["status"] == "solved"
        costs.append(float(row[measure]) if ok else math.inf)
    return costs
