"""The CUTEst problems of the ``sif2jax`` package (pure-JAX ports of the SIF files), as
plain objectives for the solver benchmarks.

Each problem becomes a :class:`CutestProblem`: ``fun(x)`` with the problem's own data
bound in a :class:`jax.tree_util.Partial` (so it is an argument of a compiled solver,
not a constant), the standard start ``x0``, and for bounded problems ``lower``/``upper``
(``-inf``/``+inf`` where a variable is free). Enable float64 (``jax_enable_x64``)
before calling these, as CUTEst problems are posed in double precision.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.tree_util import Partial
from profiles import cost_panels, plot_profiles

from jaxopt_lab.runtime import summarise


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


def _chosen(problems, max_size: int, names: str | None) -> list[CutestProblem]:
    # filter before converting: converting all 200 problems takes about a minute
    wanted = set(names.split(",")) if names else None
    return [
        _convert(p)
        for p in problems
        if (wanted is None or p.name in wanted) and p.num_variables() <= max_size
    ]


def unconstrained(max_size: int = 1000, names: str | None = None) -> list[CutestProblem]:
    """sif2jax's unconstrained minimisation problems with at most ``max_size`` variables,
    only those a comma-separated ``names`` lists when it is given."""
    import sif2jax

    return _chosen(sif2jax.unconstrained_minimisation_problems, max_size, names)


def bounded(max_size: int = 1000, names: str | None = None) -> list[CutestProblem]:
    """sif2jax's bound-constrained minimisation problems with at most ``max_size``
    variables, only those a comma-separated ``names`` lists when it is given."""
    import sif2jax

    return _chosen(sif2jax.bounded_minimisation_problems, max_size, names)


def chosen_solvers(text: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated solver names of a ``--solvers`` option, all of them known."""
    solvers = [name for name in text.split(",") if name]
    unknown = set(solvers) - set(known)
    if unknown:
        raise SystemExit(f"unknown solvers {sorted(unknown)}; choose from {', '.join(known)}")
    return solvers


def run_all(
    problems: list[CutestProblem],
    bench_problem: Callable[[CutestProblem], list[dict]],
    config: dict,
    out: Path,
) -> list[dict]:
    """Each problem's rows (one per solver, with its ``status``) from ``bench_problem``,
    one progress line per problem, and ``out`` rewritten after each problem with
    ``config`` and the rows so far (a stopped run keeps what it measured)."""
    rows: list[dict] = []
    for index, problem in enumerate(problems):
        start = time.perf_counter()
        new = bench_problem(problem)
        rows.extend(new)
        status = ", ".join(f"{row['solver']} {row['status']}" for row in new)
        print(
            f"[{index + 1}/{len(problems)}] {problem.name} (n={problem.size}): {status} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        out.write_text(json.dumps({**config, "rows": rows}, indent=2))
    return rows


class EvaluationLog:
    """Evaluations and out-of-box evaluations, filled by the wrapped objectives."""

    def __init__(self):
        self.evaluations = 0
        self.outside = 0

    def record(self, outside) -> None:
        self.evaluations += 1
        self.outside += int(outside)


def counting(log: EvaluationLog, fun: Callable) -> Callable:
    """An objective wrapper (a plain function, so a static part of a ``Partial``) that
    reports each evaluation to ``log`` when the traced switch ``enabled`` is on. ``fun``
    is closed over: a sif2jax problem holds non-array fields, so it cannot be a traced
    argument."""

    def counting(lower, upper, enabled, x):
        outside = jnp.any((x < lower) | (x > upper))
        jax.lax.cond(enabled, lambda: jax.debug.callback(log.record, outside), lambda: None)
        return fun(x)

    return counting


def time_interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, time_budget: float
) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds of each compiled solve in ``calls``, timed in
    rounds that alternate between the solvers (machine noise hits all alike); rounds stop
    after ``repeats`` or once ``time_budget`` seconds of solving are spent."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu_times: dict[str, list[float]] = {name: [] for name in calls}
    spent = 0.0
    for _ in range(repeats):
        for name, call in calls.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
            spent += times[name][-1]
        if spent > time_budget:
            break
    return {
        name: {
            "wall_s": summarise(times[name]).median_s,
            "cpu_s": summarise(cpu_times[name]).median_s,
            "timed_runs": len(times[name]),
        }
        for name in calls
    }


def measure_problem(
    problem: CutestProblem,
    runners: Mapping[str, Callable[[], tuple[Callable[[], object], dict]]],
    measure: str,
    tol: float,
    repeats: int,
    time_budget: float,
) -> list[dict]:
    """One row per solver on ``problem``: each runner compiles its solve and returns the
    timed call and its counted row; the row is "solved" when its ``measure`` (a gradient
    norm at the returned point) is finite and at most ``tol``, and "error" (with the
    message) when the solver cannot run. The calls are then timed by
    :func:`time_interleaved`."""
    calls, rows = {}, {}
    for name, runner in runners.items():
        row = {"problem": problem.name, "size": problem.size, "solver": name, "tol": tol}
        try:
            call, counts = runner()
        except Exception as error:  # noqa: BLE001  (a solver that cannot run is recorded)
            row.update(status="error", error=f"{type(error).__name__}: {error}"[:300])
            rows[name] = row
            continue
        row.update(counts)
        solved = math.isfinite(row[measure]) and row[measure] <= tol
        row["status"] = "solved" if solved else "failed"
        calls[name], rows[name] = call, row
    for name, timing in time_interleaved(calls, repeats, time_budget).items():
        rows[name].update(timing)
    return list(rows.values())


def write_report(
    rows: list[dict],
    solvers: Sequence[str],
    config: dict,
    out: Path,
    summarise_rows: Callable[[list[dict], Sequence[str]], dict],
    print_tables: Callable[[list[dict], dict, Sequence[str]], None],
    title: str,
) -> None:
    """Write ``config``, the summary and the rows to ``out`` (JSON), print the tables and
    draw the evaluation and wall-time profiles next to it (``out`` with ``.png``)."""
    summary = summarise_rows(rows, solvers)
    config = {key: value for key, value in config.items() if key not in ("summary", "rows")}
    out.write_text(json.dumps({**config, "summary": summary, "rows": rows}, indent=2))
    print_tables(rows, summary, solvers)
    figure = out.with_suffix(".png")
    plot_profiles(cost_panels(rows, solvers), figure, title=title)
    print(f"wrote {out} and {figure}")
