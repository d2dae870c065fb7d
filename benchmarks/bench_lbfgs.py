"""Benchmark: our L-BFGS (``jl.minimize``) against optax's L-BFGS and scipy's L-BFGS-B.

All three stop when the gradient's 2-norm first reaches ``--tol`` (scipy through a
callback on every evaluation, since its own rule uses the max-norm), with memory 10, in
float64 unless ``--float32``. For each solver and problem the table gives iterations,
function evaluations (one = one value-and-gradient call), compile time, and the median
wall time of the whole solve after compilation (``jaxopt_lab.runtime.time_call``) with the
process CPU time beside it (on a shared host the wall time also measures the neighbours'
load; CPU time measures the work). Timing rounds alternate between the solvers. scipy
calls a jitted JAX value-and-gradient, so its wall time includes no compilation either.
Every jitted function takes the objective as a :class:`jax.tree_util.Partial` argument,
so a problem's data (MNIST's features) are arguments, never compiled-in constants.

scipy's L-BFGS-B works on one vector at a time, where OpenBLAS threads only add
synchronisation: on a shared 2-core host they made it about 20 times slower (2.5 s
instead of 0.12 s on 100-D Rosenbrock). So OpenBLAS runs single-threaded unless
``OPENBLAS_NUM_THREADS`` is already set; this must happen before NumPy is imported.

    python benchmarks/bench_lbfgs.py --out runs/bench/lbfgs.json
"""

# ruff: noqa: E402  (the environment is set before the imports that read it)
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import scipy.optimize
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial
from tqdm import tqdm

import jaxopt_lab as jl
from jaxopt_lab import problems
from jaxopt_lab.runtime import device_info, summarise, time_call, time_compile


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tol", type=float, default=1e-5, help="gradient 2-norm tolerance")
    parser.add_argument("--maxiter", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5, help="timed solves per entry")
    parser.add_argument("--float32", action="store_true", help="run in float32, not float64")
    parser.add_argument("--skip-mnist", action="store_true", help="leave out MNIST")
    parser.add_argument("--mnist-l2", type=float, default=1e-3, help="L2 penalty for MNIST")
    parser.add_argument("--mnist-repeats", type=int, default=1, help="timed MNIST solves")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/lbfgs.json"))
    return parser.parse_args(argv)


def _problems(args):
    built = [problems.rosenbrock(2), problems.rosenbrock(100), problems.quadratic(200, 1e3)]
    if args.skip_mnist:
        return built
    try:
        from jaxopt_lab.training.data import load_dataset

        data = load_dataset("mnist")
    except Exception as error:  # noqa: BLE001  (any failure to get the data skips the row)
        print(f"skipping MNIST logistic regression: data unavailable ({error})", file=sys.stderr)
        return built
    features = data.train_images.reshape(data.train_images.shape[0], -1) / 255.0
    built.append(
        problems.logistic_regression(features, data.train_labels, l2=args.mnist_l2, num_classes=10)
    )
    return built


# Each runner returns (solve, its arguments, iterations, fevals, grad_norm, compile_s).


def _ours(problem, tol, maxiter):
    fun = Partial(problem.fun)
    solve = jax.jit(lambda fun, x0: jl.minimize(fun, x0, "lbfgs", tol=tol, maxiter=maxiter))
    compile_s = time_compile(solve, fun, problem.x0)
    result = solve(fun, problem.x0)
    counts = int(result.iterations), int(result.fevals), float(result.grad_norm)
    return solve, (fun, problem.x0), *counts, compile_s


def _optax_solver(tol, maxiter, count_calls):
    calls = []
    optimizer = optax.lbfgs(memory_size=10)

    def solve(objective, x0):
        def fun(x):
            if count_calls:
                jax.debug.callback(lambda: calls.append(1))
            return objective(x)

        value_and_grad = optax.value_and_grad_from_state(fun)

        def keep_going(carry):
            _, state, iterations = carry
            grad = optax.tree.get(state, "grad")
            first = iterations == 0
            return (first | (jl.tree_l2_norm(grad) > tol)) & (iterations < maxiter)

        def step(carry):
            x, state, iterations = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=fun)
            return optax.apply_updates(x, updates), state, iterations + 1

        carry = (x0, optimizer.init(x0), 0)
        return jax.lax.while_loop(keep_going, step, carry)

    return jax.jit(solve), calls


def _optax(problem, tol, maxiter):
    args = (Partial(problem.fun), problem.x0)
    counting, calls = _optax_solver(tol, maxiter, count_calls=True)
    _, state, iterations = jax.block_until_ready(counting(*args))
    jax.effects_barrier()
    grad_norm = float(jl.tree_l2_norm(optax.tree.get(state, "grad")))
    solve, _ = _optax_solver(tol, maxiter, count_calls=False)
    compile_s = time_compile(solve, *args)
    jax.block_until_ready(solve(*args))  # warm-up of the timed (non-counting) solver
    return solve, args, int(iterations), len(calls), grad_norm, compile_s


class _Reached(Exception):
    """Raised inside scipy's objective once the gradient 2-norm reaches the tolerance."""


def _scipy(problem, tol, maxiter):
    flat0, unravel = ravel_pytree(problem.x0)
    fun = Partial(problem.fun)
    value_and_grad = jax.jit(lambda fun, z: jax.value_and_grad(lambda flat: fun(unravel(flat)))(z))
    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(fun, flat0))  # compile outside the timings
    compile_s = time.perf_counter() - start
    x0 = np.asarray(flat0, np.float64)
    record = {}

    def objective(z):
        value, grad = value_and_grad(fun, z)
        grad = np.asarray(grad, np.float64)
        record["fevals"] += 1
        norm = float(np.linalg.norm(grad))
        record["grad_norm"] = norm
        if norm <= tol:
            raise _Reached
        return float(value), grad

    def solve():
        record.update(fevals=0, iterations=0)

        def callback(intermediate_result):
            record["iterations"] += 1

        options = {
            "maxcor": 10,
            "gtol": 0.0,
            "ftol": 0.0,
            "maxiter": maxiter,
            "maxfun": 50 * maxiter,
        }
        try:
            scipy.optimize.minimize(
                objective, x0, jac=True, method="L-BFGS-B", options=options, callback=callback
            )
        except _Reached:
            pass
        return record["fevals"]

    solve()
    return solve, (), record["iterations"], record["fevals"], record["grad_norm"], compile_s


SOLVERS = {"jaxopt_lab": _ours, "optax": _optax, "scipy": _scipy}


def _bench_problem(problem, args) -> list[dict]:
    """Set up and count each solver, then time them in interleaved rounds, so a change in
    the machine's load during the run affects all three alike."""
    calls, rows = {}, {}
    for name, runner in SOLVERS.items():
        solve, solve_args, iterations, fevals, grad_norm, compile_s = runner(
            problem, args.tol, args.maxiter
        )
        calls[name] = (solve, solve_args)
        rows[name] = {
            "problem": problem.name,
            "solver": name,
            "iterations": iterations,
            "fevals": fevals,
            "grad_norm": grad_norm,
            "converged": grad_norm <= args.tol,
            "compile_s": compile_s,
        }
    # every solver has already run once after compilation, so no further warm-up
    repeats = args.mnist_repeats if problem.x_min is None else args.repeats
    times = {name: [] for name in SOLVERS}
    cpu_times = {name: [] for name in SOLVERS}
    for _ in range(repeats):
        for name, (solve, solve_args) in calls.items():
            cpu_start = time.process_time()
            times[name].append(time_call(solve, *solve_args, warmup=0, repeats=1).median_s)
            cpu_times[name].append(time.process_time() - cpu_start)
    for name, row in rows.items():
        timing = summarise(times[name])
        cpu_s = summarise(cpu_times[name]).median_s
        row.update(wall_s=timing.median_s, wall_iqr_s=timing.iqr_s, cpu_s=cpu_s)
    return list(rows.values())


def main(argv=None) -> int:
    args = _parse_args(argv)
    jax.config.update("jax_enable_x64", not args.float32)
    rows = []
    for problem in tqdm(_problems(args), desc="problems", unit="problem"):
        rows.extend(_bench_problem(problem, args))

    header = f"{'problem':<26}{'solver':<12}{'iters':>7}{'fevals':>8}{'|grad|':>10}"
    header += f"{'compile s':>11}{'wall ms':>11}{'cpu ms':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['problem']:<26}{row['solver']:<12}{row['iterations']:>7}{row['fevals']:>8}"
            f"{row['grad_norm']:>10.1e}{row['compile_s']:>11.2f}{1e3 * row['wall_s']:>11.2f}"
            f"{1e3 * row['cpu_s']:>11.2f}"
        )
    report = {
        "tol": args.tol,
        "dtype": "float32" if args.float32 else "float64",
        "device": device_info(),
        "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
