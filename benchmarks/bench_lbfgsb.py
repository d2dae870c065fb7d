"""Benchmark: our L-BFGS-B (``jl.minimize(..., bounds=...)``) against scipy's L-BFGS-B and
jaxopt's LBFGSB on sif2jax's bound-constrained CUTEst problems.

Every solver runs in float64 with memory 10 and at most ``--maxiter`` iterations, and a
problem counts as solved when the projected gradient :math:`P(x - \\nabla f(x)) - x` at the
returned point has max-norm <= ``--tol`` (computed here, the same way for every solver).
scipy runs with ``maxcor=10, pgtol=tol, ftol=0`` (its own stopping rule is this max-norm)
on a jitted JAX value-and-gradient; jaxopt's ``LBFGSB(history_size=10, tol=tol)`` stops on
the same max-norm. Evaluations (one = one value-and-gradient call) and evaluations at
points outside the box are counted with a wrapped objective for every solver: for the
jitted solvers the wrapper reports each evaluation through ``jax.debug.callback`` behind a
traced switch, so the counting run and the timed runs share one compiled program.

Times: compile time, then the median over ``--repeats`` interleaved rounds of the whole
solve after compilation (wall and process CPU time; on a shared host wall time also
measures the neighbours' load). scipy's wall time includes no JAX compilation either.
OpenBLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` is set (see bench_lbfgs.py).

The JSON (one row per problem and solver) is rewritten after every problem; at the end a
summary table is printed and Dolan-More profiles (evaluations, wall time) are written.

    python benchmarks/bench_lbfgsb.py --max-size 1000 --out runs/bench/lbfgsb.json
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

SOLVERS = ("jaxopt_lab", "scipy", "jaxopt")


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=int, default=1000, help="most variables")
    parser.add_argument("--problems", default="", help="comma-separated names (default: all)")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated")
    parser.add_argument("--tol", type=float, default=1e-5, help="projected-gradient max-norm")
    parser.add_argument("--maxiter", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="timed solves per entry")
    parser.add_argument(
        "--time-budget", type=float, default=20.0, help="seconds of timed solves per problem"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/lbfgsb.json"))
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="run nothing: print the table and draw the profiles of the rows already in --out",
    )
    return parser.parse_args(argv)


def _projected_grad_norm(problem, x) -> float:
    grad = jax.grad(problem.fun)(jnp.asarray(x))
    pg = jl.projected_gradient(jnp.asarray(x), grad, problem.lower, problem.upper)
    return float(jnp.max(jnp.abs(pg)))


def _jitted_runner(problem, solve_fn, log):
    """Compile ``solve_fn(objective, x0, lower, upper)`` once; count with the switch on,
    time with it off. Returns (timed call, row of counts)."""
    solve = jax.jit(solve_fn)

    counting = cutest.counting(log, problem.fun)

    def objective(enabled):
        return Partial(counting, problem.lower, problem.upper, enabled)

    args_off = (objective(jnp.asarray(False)), problem.x0, problem.lower, problem.upper)
    args_on = (objective(jnp.asarray(True)), *args_off[1:])
    start = time.perf_counter()
    compiled = solve.lower(*args_off).compile()
    compile_s = time.perf_counter() - start
    x, iterations = jax.block_until_ready(compiled(*args_on))
    jax.effects_barrier()
    row = {
        "iterations": int(iterations),
        "fevals": log.evaluations,
        "outside": log.outside,
        "fun": float(problem.fun(x)),
        "pg_norm": _projected_grad_norm(problem, x),
        "compile_s": compile_s,
    }
    return (lambda: compiled(*args_off)), row


def _ours(problem, args):
    def solve(objective, x0, lower, upper):
        result = jl.minimize(
            objective, x0, "lbfgs", bounds=(lower, upper), tol=args.tol, maxiter=args.maxiter
        )
        return result.x, result.iterations

    return _jitted_runner(problem, solve, cutest.EvaluationLog())


def _jaxopt(problem, args):
    import jaxopt

    def solve(objective, x0, lower, upper):
        solver = jaxopt.LBFGSB(
            fun=objective, maxiter=args.maxiter, tol=args.tol, history_size=10, jit=True
        )
        x, state = solver.run(x0, bounds=(lower, upper))
        return x, state.iter_num

    return _jitted_runner(problem, solve, cutest.EvaluationLog())


def _scipy(problem, args):
    value_and_grad = jax.jit(jax.value_and_grad(lambda fun, x: fun(x), argnums=1))
    fun = Partial(problem.fun)
    x0 = np.asarray(problem.x0)
    lower, upper = np.asarray(problem.lower), np.asarray(problem.upper)
    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(fun, problem.x0))
    compile_s = time.perf_counter() - start
    log = cutest.EvaluationLog()
    box = scipy.optimize.Bounds(lower, upper)

    def objective(x):
        log.record(np.any((x < lower) | (x > upper)))
        value, grad = value_and_grad(fun, x)
        return float(value), np.asarray(grad, np.float64)

    options = {
        "maxcor": 10,
        "gtol": args.tol,
        "ftol": 0.0,
        "maxiter": args.maxiter,
        "maxfun": 100 * args.maxiter,
    }

    def solve():
        return scipy.optimize.minimize(
            objective, x0, jac=True, method="L-BFGS-B", bounds=box, options=options
        )

    result = solve()
    row = {
        "iterations": int(result.nit),
        "fevals": log.evaluations,
        "outside": log.outside,
        "fun": float(result.fun),
        "pg_norm": _projected_grad_norm(problem, result.x),
        "compile_s": compile_s,
    }
    return solve, row


RUNNERS = {"jaxopt_lab": _ours, "scipy": _scipy, "jaxopt": _jaxopt}


def _bench_problem(problem, solvers, args) -> list[dict]:
    runners = {name: functools.partial(RUNNERS[name], problem, args) for name in solvers}
    return cutest.measure_problem(
        problem, runners, "pg_norm", args.tol, args.repeats, args.time_budget
    )


def _summary(rows, solvers) -> dict:
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    by = {(r["problem"], r["solver"]): r for r in rows}
    summary = {"problems": len(problems)}
    for solver in solvers:
        mine = [by[(p, solver)] for p in problems if (p, solver) in by]
        summary[solver] = {
            "solved": sum(r["status"] == "solved" for r in mine),
            "errors": sum(r["status"] == "error" for r in mine),
            "outside_evaluations": sum(r.get("outside", 0) for r in mine),
            "fevals_total": sum(r.get("fevals", 0) for r in mine),
        }
    if {"jaxopt_lab", "scipy"} <= set(solvers):
        both = [
            p
            for p in problems
            if by[(p, "jaxopt_lab")]["status"] == "solved"
            and by[(p, "scipy")]["status"] == "solved"
        ]
        faster = [p for p in both if by[(p, "jaxopt_lab")]["wall_s"] < by[(p, "scipy")]["wall_s"]]
        faster_cpu = [p for p in both if by[(p, "jaxopt_lab")]["cpu_s"] < by[(p, "scipy")]["cpu_s"]]
        ratios = [by[(p, "jaxopt_lab")]["wall_s"] / by[(p, "scipy")]["wall_s"] for p in both]
        summary["ours_vs_scipy"] = {
            "solved_by_both": len(both),
            "ours_faster_wall": len(faster),
            "ours_faster_cpu": len(faster_cpu),
            "median_wall_ratio_ours_over_scipy": float(np.median(ratios)) if both else None,
        }
    return summary


def _print_table(rows, summary, solvers) -> None:
    header = f"{'problem':<12}{'n':>5} {'solver':<11}{'status':<8}{'iters':>6}{'fevals':>7}"
    header += f"{'out':>5}{'|pg|inf':>10}{'f':>14}{'compile s':>10}{'wall ms':>10}{'cpu ms':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["status"] == "error":
            print(f"{r['problem']:<12}{r['size']:>5} {r['solver']:<11}error   {r['error'][:60]}")
            continue
        print(
            f"{r['problem']:<12}{r['size']:>5} {r['solver']:<11}{r['status']:<8}"
            f"{r['iterations']:>6}{r['fevals']:>7}{r['outside']:>5}{r['pg_norm']:>10.1e}"
            f"{r['fun']:>14.6e}{r['compile_s']:>10.2f}{1e3 * r['wall_s']:>10.2f}"
            f"{1e3 * r['cpu_s']:>10.2f}"
        )
    print()
    for solver in solvers:
        s = summary[solver]
        print(
            f"{solver:<11} solved {s['solved']}/{summary['problems']}, errors {s['errors']}, "
            f"evaluations outside the box {s['outside_evaluations']}, "
            f"evaluations in all {s['fevals_total']}"
        )
    if "ours_vs_scipy" in summary:
        c = summary["ours_vs_scipy"]
        print(
            f"jaxopt_lab vs scipy on the {c['solved_by_both']} problems both solve: faster in "
            f"wall time on {c['ours_faster_wall']}, in CPU time on {c['ours_faster_cpu']}; "
            f"median wall-time ratio ours/scipy {c['median_wall_ratio_ours_over_scipy']}"
        )


def main(argv=None) -> int:
    args = _parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    solvers = cutest.chosen_solvers(args.solvers, SOLVERS)
    if args.from_json:
        report = json.loads(args.out.read_text())
        _finish(report["rows"], report["solvers"], report, args)
        return 0
    problems = cutest.bounded(args.max_size, args.problems)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "tol": args.tol,
        "maxiter": args.maxiter,
        "max_size": args.max_size,
        "dtype": "float64",
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
    title = f"bounded CUTEst (sif2jax, n <= {config['max_size']}), float64"
    cutest.write_report(rows, solvers, config, args.out, _summary, _print_table, title)


if __name__ == "__main__":
    sys.exit(main())
