"""How far rounding alone moves scipy's L-BFGS-B on the CUTEst set of ``bench_lbfgs.py``.

Scipy minimises ``c * f`` for a few factors ``c`` within 1e-9 of 1 (``--factors``).
L-BFGS-B's iterates do not depend on ``c`` in exact arithmetic (the direction ``-H g``,
the first step ``-g / ||g||`` and the Wolfe tests are all invariant to scaling ``f``),
so any change in its evaluation count, or in which problems it solves, comes from
rounding. Each factor is compared with ``c = 1`` by the rule issue 10 uses to compare
ours with scipy: the geometric mean of the evaluation ratio over the problems both
solve, and the problems that ``c = 1`` solves and the factor does not. Solved, as in
``bench_lbfgs.py``: the first evaluation whose gradient 2-norm (of ``f``, not ``c * f``)
is <= ``--tol``.

    python benchmarks/lbfgs_rounding_control.py --out runs/bench/lbfgs_rounding.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import bench_lbfgs  # noqa: E402
import cutest  # noqa: E402
from tqdm import tqdm  # noqa: E402

FACTORS = (1 + 2.0**-40, 1 - 2.0**-40, 1 + 2.0**-30, 1 - 2.0**-30)


def scipy_evaluations(problem, factor: float, tol: float, maxiter: int) -> tuple[bool, int]:
    """(solved, evaluations) of the benchmark's scipy runner on ``factor * f``."""
    _, row = bench_lbfgs._scipy(problem, argparse.Namespace(maxiter=maxiter), tol, factor)
    return row["stop"] == "converged", row["fevals"]


def compare(rows: dict[str, list[tuple[bool, int]]], index: int) -> dict:
    """Factor ``index`` against factor 0 (``c = 1``) by issue 10's rule."""
    both = [name for name, runs in rows.items() if runs[0][0] and runs[index][0]]
    log_ratios = [math.log(rows[name][index][1] / rows[name][0][1]) for name in both]
    return {
        "solved": sum(runs[index][0] for runs in rows.values()),
        "both": len(both),
        "geomean_evaluations": math.exp(sum(log_ratios) / len(log_ratios)),
        "changed": sum(rows[name][index][1] != rows[name][0][1] for name in both),
        "lost": sorted(name for name, runs in rows.items() if runs[0][0] and not runs[index][0]),
        "gained": sorted(name for name, runs in rows.items() if runs[index][0] and not runs[0][0]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-size", type=int, default=1000, help="most variables")
    parser.add_argument("--problems", default="", help="comma-separated names (default: all)")
    parser.add_argument("--tol", type=float, default=1e-5, help="gradient 2-norm tolerance")
    parser.add_argument("--maxiter", type=int, default=2000)
    parser.add_argument(
        "--factors",
        type=lambda text: [float(c) for c in text.split(",")],
        default=list(FACTORS),
        help="comma-separated factors compared with c = 1 (default 1 +- 2^-40, 1 +- 2^-30)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/lbfgs_rounding.json"))
    args = parser.parse_args(argv)

    problems = cutest.unconstrained(args.max_size, args.problems)
    factors = [1.0, *args.factors]
    rows = {}
    for problem in tqdm(problems, desc="problems"):
        rows[problem.name] = [
            scipy_evaluations(problem, c, args.tol, args.maxiter) for c in factors
        ]
    summary = {repr(factors[i]): compare(rows, i) for i in range(1, len(factors))}
    print(f"c = 1: solved {sum(runs[0][0] for runs in rows.values())} of {len(rows)}")
    for factor, line in summary.items():
        print(
            f"c = {factor}: solved {line['solved']}, evaluations {line['geomean_evaluations']:.4f}x"
            f" on the {line['both']} both solve ({line['changed']} changed),"
            f" lost {line['lost']}, gained {line['gained']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"factors": factors, "tol": args.tol, "maxiter": args.maxiter, "rows": rows}
    args.out.write_text(json.dumps({**record, "summary": summary}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
