"""Benchmark: our L-BFGS (``jl.minimize(method="lbfgs")``) against scipy's L-BFGS-B, optax's
L-BFGS, optimistix's LBFGS and BFGS and jaxopt's LBFGS on sif2jax's unconstrained CUTEst
problems (at most ``--max-size`` variables, default 1000).

Settings, the same for every solver: float64 (``--float32``: every solver in float32), memory
10 (the limited-memory solvers), at most ``--maxiter`` iterations (2000), and a problem
counts as solved when the gradient's 2-norm at the returned point, recomputed here the same
way for every solver, is <= ``--tol`` (1e-5; in float32 ``1e-5 * ||g(x0)||``, relative).
How each solver is stopped by that rule:

- ``jaxopt_lab`` (Hager-Zhang line search, the default), ``jaxopt_lab_mt`` (Moré-Thuente,
  L-BFGS-B's search) and ``jaxopt_lab_zoom`` (strong Wolfe zoom):
  ``minimize(tol=tol, maxiter=maxiter)``, whose rule is this one.
- ``scipy``: ``L-BFGS-B`` with ``maxcor=10``, its own tests switched off (``gtol=0,
  ftol=0``), ``maxiter`` and ``maxfun = 50 * maxiter``; the objective raises an exception
  on the first evaluation whose gradient 2-norm is <= tol (scipy's gtol is a max-norm),
  so it stops exactly there. It calls a jitted JAX value-and-gradient.
- ``optax``: ``optax.lbfgs(memory_size=10)`` (its zoom line search) in a jitted
  ``lax.while_loop`` that stops when the gradient 2-norm of the line search's accepted
  point is <= tol or after maxiter iterations.
- ``optimistix_lbfgs``, ``optimistix_bfgs``: ``optx.LBFGS(history_length=10)`` and
  ``optx.BFGS`` (backtracking Armijo search), run step by step (``solver.init`` /
  ``solver.step``) in a jitted while loop that stops when the gradient 2-norm at the
  accepted point is <= tol, after maxiter accepted steps, or after 20 * maxiter steps;
  optimistix's own Cauchy test (relative changes in f and y) is never consulted, since no
  choice of its rtol/atol means the same as a gradient tolerance.
- ``jaxopt``: ``jaxopt.LBFGS(history_size=10, maxiter=maxiter, tol=tol)`` (its stopping
  error is the gradient 2-norm; zoom line search), skipped if jaxopt does not import.

Evaluations (one = one value-and-gradient or linearisation of the objective) are counted
for every solver by a wrapped objective: for the jitted solvers the wrapper reports each
call through ``jax.debug.callback`` behind a traced switch, so the counting run and the
timed runs share one compiled program; for scipy, in the Python objective.

Times: compile time, then the median over ``--repeats`` interleaved rounds of the whole
solve after compilation (wall and process CPU time; stopped early after
``--time-budget`` seconds per problem). scipy's wall time includes no JAX compilation.
OpenBLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` is set (it made scipy 20x
slower on a shared 2-core host).

The JSON (one row per problem and solver) is rewritten after every problem; at the end a
summary is printed and written into it, and Dolan-More profiles (evaluations, wall time)
are drawn next to it as a PNG. ``--from-json`` redraws from the JSON without running.

    python benchmarks/bench_lbfgs.py --out runs/bench/lbfgs.json
    python benchmarks/bench_lbfgs.py --float32 --solvers jaxopt_lab --out runs/bench/lbfgs_f32.json
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import functools
import json
import sys
import time
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.tree_util import Partial

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cutest  # noqa: E402

import jaxopt_lab as jl
from jaxopt_lab.runtime import device_info

SOLVERS = (
    "jaxopt_lab",
    "jaxopt_lab_zoom",
    "jaxopt_lab_mt",
    "scipy",
    "optax",
    "optimistix_lbfgs",
    "optimistix_bfgs",
    "jaxopt",
)
OURS, REFERENCE = "jaxopt_lab", "scipy"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=int, default=1000, help="most variables")
    parser.add_argument("--problems", default="", help="comma-separated names (default: all)")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated")
    parser.add_argument("--tol", type=float, default=1e-5, help="gradient 2-norm tolerance")
    parser.add_argument("--maxiter", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="timed solves per entry")
    parser.add_argument(
        "--time-budget", type=float, default=20.0, help="seconds of timed solves per problem"
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="float32 (x64 off), tolerance relative: tol * ||g(x0)||",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/lbfgs.json"))
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="run nothing: print the table and draw the profiles of the rows already in --out",
    )
    return parser.parse_args(argv)


def _grad_norm(problem, x) -> tuple[float, float]:
    value, grad = jax.value_and_grad(problem.fun)(jnp.asarray(x, problem.x0.dtype))
    return float(value), float(jnp.linalg.norm(grad))


def _jitted_runner(problem, solve_fn, tol):
    """Compile ``solve_fn(objective, x0, tol) -> (x, iterations, stop)`` once; count with
    the switch on, time with it off. Returns (timed call, row)."""
    log = cutest.EvaluationLog()
    counting = cutest.counting(log, problem.fun)
    free = jnp.full(problem.x0.shape, jnp.inf, problem.x0.dtype)

    def objective(enabled):
        return Partial(counting, -free, free, enabled)

    tol = jnp.asarray(tol, problem.x0.dtype)
    args_off = (objective(jnp.asarray(False)), problem.x0, tol)
    args_on = (objective(jnp.asarray(True)), problem.x0, tol)
    start = time.perf_counter()
    compiled = jax.jit(solve_fn).lower(*args_off).compile()
    compile_s = time.perf_counter() - start
    x, iterations, stop = jax.block_until_ready(compiled(*args_on))
    jax.effects_barrier()
    value, norm = _grad_norm(problem, x)
    row = {
        "iterations": int(iterations),
        "fevals": log.evaluations,
        "fun": value,
        "grad_norm": norm,
        "stop": stop if isinstance(stop, str) else jl.Status(int(stop)).name.lower(),
        "compile_s": compile_s,
    }
    return (lambda: compiled(*args_off)), row


def _ours(linesearch):
    def runner(problem, args, tol):
        def solve(objective, x0, tol):
            result = jl.minimize(
                objective, x0, "lbfgs", tol=tol, maxiter=args.maxiter, linesearch=linesearch
            )
            return result.x, result.iterations, result.status

        return _jitted_runner(problem, solve, tol)

    return runner


def _optax(problem, args, tol):
    import optax

    optimizer = optax.lbfgs(memory_size=10)

    def solve(objective, x0, tol):
        value_and_grad = optax.value_and_grad_from_state(objective)

        def keep_going(carry):
            _, state, iterations = carry
            grad = optax.tree.get(state, "grad")
            return ((iterations == 0) | (jl.tree_l2_norm(grad) > tol)) & (iterations < args.maxiter)

        def step(carry):
            x, state, iterations = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = optimizer.update(
                grad, state, x, value=value, grad=grad, value_fn=objective
            )
            return optax.apply_updates(x, updates), state, iterations + 1

        x, state, iterations = jax.lax.while_loop(
            keep_going, step, (x0, optimizer.init(x0), jnp.zeros((), jnp.int32))
        )
        converged = jl.tree_l2_norm(optax.tree.get(state, "grad")) <= tol
        return x, iterations, jnp.where(converged, 0, 1)

    return _jitted_runner(problem, solve, tol)


def _optimistix(make_solver):
    def runner(problem, args, tol):
        import equinox as eqx
        import optimistix as optx

        solver = make_solver(optx)

        def solve(objective, x0, tol):
            def fn(y, _):
                return objective(y), None

            f_struct = jax.ShapeDtypeStruct((), x0.dtype)
            state = solver.init(fn, x0, None, {}, f_struct, None, frozenset())
            # the state holds linear operators with static parts: carry its arrays only
            dynamic, static = eqx.partition(state, eqx.is_array)

            def keep_going(carry):
                _, dynamic, steps = carry
                state = eqx.combine(dynamic, static)
                reached = ~state.first_step & (jnp.linalg.norm(state.f_info.grad) <= tol)
                budget = (state.num_accepted_steps < args.maxiter) & (steps < 20 * args.maxiter)
                return ~reached & budget

            def step(carry):
                y, dynamic, steps = carry
                state = eqx.combine(dynamic, static)
                y, state, _ = solver.step(fn, y, None, {}, state, frozenset())
                return y, eqx.filter(state, eqx.is_array), steps + 1

            y, dynamic, _ = jax.lax.while_loop(
                keep_going, step, (x0, dynamic, jnp.zeros((), jnp.int32))
            )
            state = eqx.combine(dynamic, static)
            converged = ~state.first_step & (jnp.linalg.norm(state.f_info.grad) <= tol)
            return y, state.num_accepted_steps, jnp.where(converged, 0, 1)

        return _jitted_runner(problem, solve, tol)

    return runner


def _jaxopt(problem, args, tol):
    import jaxopt

    def solve(objective, x0, tol):
        solver = jaxopt.LBFGS(fun=objective, maxiter=args.maxiter, tol=tol, history_size=10)
        x, state = solver.run(x0)
        return x, state.iter_num, jnp.where(state.error <= tol, 0, 1)

    return _jitted_runner(problem, solve, tol)


class _Reached(Exception):
    """Raised inside scipy's objective once the gradient 2-norm reaches the tolerance."""


# one jitted function for every problem: the objective is an argument, so each problem
# compiles once however often it is solved (lbfgs_rounding_control.py solves each 5 times)
_scipy_value_and_grad = jax.jit(jax.value_and_grad(lambda fun, x: fun(x), argnums=1))


def _scipy(problem, args, tol, factor: float = 1.0):
    """scipy's L-BFGS-B on ``problem`` (the protocol in the module doc); with ``factor``,
    on ``factor * f`` (values and gradients scaled, the tolerance still on f's gradient)."""
    fun = Partial(problem.fun)
    x0 = np.asarray(problem.x0, np.float64)
    start = time.perf_counter()
    jax.block_until_ready(_scipy_value_and_grad(fun, problem.x0))
    compile_s = time.perf_counter() - start
    record = {}

    def objective(x):
        value, grad = _scipy_value_and_grad(fun, x)
        grad = np.asarray(grad, np.float64)
        record["fevals"] += 1
        record["x"] = x
        if np.linalg.norm(grad) <= tol:
            raise _Reached
        return factor * float(value), factor * grad

    def callback(intermediate_result):
        record["iterations"] += 1

    options = {
        "maxcor": 10,
        "gtol": 0.0,
        "ftol": 0.0,
        "maxiter": args.maxiter,
        "maxfun": 50 * args.maxiter,
    }

    def solve():
        record.update(fevals=0, iterations=0)
        try:
            result = scipy.optimize.minimize(
                objective, x0, jac=True, method="L-BFGS-B", options=options, callback=callback
            )
        except _Reached:
            return "converged"
        return str(result.message)

    stop = solve()
    value, norm = _grad_norm(problem, record["x"])
    row = {
        "iterations": record["iterations"],
        "fevals": record["fevals"],
        "fun": value,
        "grad_norm": norm,
        "stop": stop,
        "compile_s": compile_s,
    }
    return solve, row


RUNNERS = {
    "jaxopt_lab": _ours("hager_zhang"),
    "jaxopt_lab_zoom": _ours("zoom"),
    "jaxopt_lab_mt": _ours("more_thuente"),
    "scipy": _scipy,
    "optax": _optax,
    "optimistix_lbfgs": _optimistix(lambda optx: optx.LBFGS(rtol=0.0, atol=0.0, history_length=10)),
    "optimistix_bfgs": _optimistix(lambda optx: optx.BFGS(rtol=0.0, atol=0.0)),
    "jaxopt": _jaxopt,
}


def _bench_problem(problem, solvers, args) -> list[dict]:
    _, start_norm = _grad_norm(problem, problem.x0)
    tol = args.tol * start_norm if args.float32 else args.tol
    runners = {name: functools.partial(RUNNERS[name], problem, args, tol) for name in solvers}
    return cutest.measure_problem(
        problem, runners, "grad_norm", tol, args.repeats, args.time_budget
    )


def _geomean(values) -> float | None:
    return float(np.exp(np.mean(np.log(values)))) if values else None


# Relative agreement of the final f below which two solvers ended at the same point.
SAME_POINT = 1e-8


def _summary(rows, solvers) -> dict:
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    by = {(r["problem"], r["solver"]): r for r in rows}

    def solved(problem, solver):
        row = by.get((problem, solver))
        return row is not None and row["status"] == "solved"

    summary = {"problems": len(problems)}
    for solver in solvers:
        mine = [by[(p, solver)] for p in problems if (p, solver) in by]
        summary[solver] = {
            "solved": sum(r["status"] == "solved" for r in mine),
            "errors": sum(r["status"] == "error" for r in mine),
            "stops": dict(Counter(r.get("stop", "error") for r in mine)),
            "median_compile_s": float(np.median([r["compile_s"] for r in mine if "compile_s" in r]))
            if any("compile_s" in r for r in mine)
            else None,
        }
        if solver == REFERENCE or REFERENCE not in solvers:
            continue
        both = [p for p in problems if solved(p, solver) and solved(p, REFERENCE)]
        fevals = [by[(p, solver)]["fevals"] / by[(p, REFERENCE)]["fevals"] for p in both]
        # both stop at the same stationary point: f agrees to SAME_POINT relative
        same = [
            ratio
            for p, ratio in zip(both, fevals, strict=True)
            if abs(by[(p, solver)]["fun"] - by[(p, REFERENCE)]["fun"])
            <= SAME_POINT * max(1.0, abs(by[(p, REFERENCE)]["fun"]))
        ]
        faster = [p for p in both if by[(p, solver)]["wall_s"] < by[(p, REFERENCE)]["wall_s"]]
        wall = [by[(p, solver)]["wall_s"] / by[(p, REFERENCE)]["wall_s"] for p in both]
        summary[solver]["vs_scipy"] = {
            "solved_by_both": len(both),
            "geomean_fevals_ratio": _geomean(fevals),
            "same_point": len(same),
            "geomean_fevals_ratio_same_point": _geomean(same),
            "faster_wall": len(faster),
            "fraction_faster_wall": len(faster) / len(both) if both else None,
            "geomean_wall_ratio": _geomean(wall),
            "scipy_solves_this_does_not": [
                p for p in problems if solved(p, REFERENCE) and not solved(p, solver)
            ],
            "this_solves_scipy_does_not": [
                p for p in problems if solved(p, solver) and not solved(p, REFERENCE)
            ],
        }
    return summary


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_table(rows, summary, solvers) -> None:
    header = f"{'problem':<12}{'n':>5} {'solver':<17}{'status':<8}{'stop':<20}{'iters':>6}"
    header += f"{'fevals':>7}{'|g|':>10}{'f':>14}{'compile s':>10}{'wall ms':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["status"] == "error":
            print(f"{r['problem']:<12}{r['size']:>5} {r['solver']:<17}error   {r['error'][:60]}")
            continue
        print(
            f"{r['problem']:<12}{r['size']:>5} {r['solver']:<17}{r['status']:<8}"
            f"{r['stop'][:19]:<20}{r['iterations']:>6}{r['fevals']:>7}{r['grad_norm']:>10.1e}"
            f"{r['fun']:>14.6e}{r['compile_s']:>10.2f}{1e3 * r['wall_s']:>10.2f}"
        )
    print()
    count = summary["problems"]
    header = f"{'solver':<17}{'solved':>10}{'both':>6}{'fevals/scipy':>14}{'faster':>12}"
    header += f"{'wall/scipy':>12}{'compile s':>11}  scipy solves, this does not"
    print(header)
    print("-" * len(header))
    for solver in solvers:
        s = summary[solver]
        v = s.get("vs_scipy")
        line = f"{solver:<17}{s['solved']:>6}/{count:<3}"
        if v is None:
            line += f"{'':>6}{'':>14}{'':>12}{'':>12}"
        else:
            line += f"{v['solved_by_both']:>6}{_number(v['geomean_fevals_ratio'], 3):>14}"
            line += f"{v['faster_wall']:>6}/{v['solved_by_both']:<5}"
            line += f"{_number(v['geomean_wall_ratio'], 3):>12}"
        line += f"{_number(s['median_compile_s'], 2):>11}"
        if v is not None:
            names = v["scipy_solves_this_does_not"]
            line += f"  {len(names)}: {', '.join(names)}"
        print(line)
    print()
    for solver in solvers:
        print(f"{solver:<17} stops: {summary[solver]['stops']}")
    for solver in solvers:
        v = summary[solver].get("vs_scipy")
        if v is not None and v["solved_by_both"]:
            print(
                f"{solver:<17} fevals/scipy {_number(v['geomean_fevals_ratio_same_point'], 3)} "
                f"on the {v['same_point']} problems whose final f agrees with scipy's to "
                f"{SAME_POINT:g} (relative); the other {v['solved_by_both'] - v['same_point']} "
                "end at another stationary point"
            )


def main(argv=None) -> int:
    args = _parse_args(argv)
    jax.config.update("jax_enable_x64", not args.float32)
    solvers = cutest.chosen_solvers(args.solvers, SOLVERS)
    if args.from_json:
        report = json.loads(args.out.read_text())
        _finish(report["rows"], report["solvers"], report, args)
        return 0
    problems = cutest.unconstrained(args.max_size, args.problems)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "tol": args.tol,
        "tol_rule": "relative: tol * |g(x0)|" if args.float32 else "absolute",
        "maxiter": args.maxiter,
        "max_size": args.max_size,
        "memory": 10,
        "dtype": "float32" if args.float32 else "float64",
        "device": device_info(),
        "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "solvers": solvers,
    }
    rows = cutest.run_all(
        problems, lambda problem: _bench_problem(problem, solvers, args), config, args.out
    )
    _finish(rows, solvers, config, args)
    return 0


def _finish(rows, solvers, config, args) -> None:
    title = f"unconstrained CUTEst (sif2jax, n <= {config['max_size']}), {config['dtype']}"
    cutest.write_report(rows, solvers, config, args.out, _summary, _print_table, title)


if __name__ == "__main__":
    sys.exit(main())
