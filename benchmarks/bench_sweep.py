"""Benchmark: a sweep of 8 learning rates x 3 seeds of the MNIST MLP, vmapped into one
compiled program against the same 24 runs made one after another (same compiled single
run, same total work). Prints both times and the ratio; writes them as JSON.

    python benchmarks/bench_sweep.py --out runs/bench/sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from flax import nnx

from jaxopt_lab.runtime import device_info
from jaxopt_lab.training.data import load_dataset
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.sweep import named_optimizer, subset, sweep

LEARNING_RATES = tuple(np.logspace(-4, -1, 8))
SEEDS = (0, 1, 2)


def seed_mlp(hyperparameters, key):
    """The seed model: 784-128-10, ReLU, dropout 0.2."""
    return MLP(rngs=nnx.Rngs(key))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="the seed job's batch")
    parser.add_argument(
        "--runs-per-batch", type=int, default=8, help="runs vmapped side by side (chunked mode)"
    )
    parser.add_argument("--out", default="runs/bench/sweep.json")
    args = parser.parse_args()

    data = subset(load_dataset("mnist"), num_train=60000, num_eval=2000, num_val=2000)
    evals = 5
    settings = dict(
        data=data,
        model_factory=seed_mlp,
        batch_size=args.batch_size,
        num_evals=evals,
        steps_per_eval=args.steps // evals,
    )
    factory = named_optimizer(args.optimizer)
    grid = {"learning_rate": LEARNING_RATES}
    runs = {
        "vmapped": sweep(factory, grid, SEEDS, **settings),
        f"vmapped_by_{args.runs_per_batch}": sweep(
            factory, grid, SEEDS, runs_per_batch=args.runs_per_batch, **settings
        ),
        "sequential": sweep(factory, grid, SEEDS, vectorize=False, **settings),
    }
    record = {
        "device": device_info(),
        "optimizer": args.optimizer,
        "runs": len(LEARNING_RATES) * len(SEEDS),
        "steps_per_run": args.steps,
        "batch_size": args.batch_size,
    }
    for mode, result in runs.items():
        run_seconds = float(result.run_seconds.sum())
        record[mode] = {
            "compile_s": result.compile_seconds,
            "run_s": run_seconds,
            "total_s": result.total_seconds,
        }
        print(
            f"{mode:>10}: {run_seconds:7.2f} s running + {result.compile_seconds:5.2f} s "
            f"compiling = {result.total_seconds:7.2f} s"
        )
    agree = np.allclose(
        runs["vmapped"].curves.val_loss[:, :, -1],
        runs["sequential"].curves.val_loss[:, :, -1],
        rtol=1e-3,
        equal_nan=True,
    )
    record["final_val_loss_agree"] = bool(agree)
    for mode in runs:
        if mode == "sequential":
            continue
        speedup = record["sequential"]["run_s"] / record[mode]["run_s"]
        speedup_total = record["sequential"]["total_s"] / record[mode]["total_s"]
        record[f"speedup_run_{mode}"] = speedup
        record[f"speedup_total_{mode}"] = speedup_total
        print(
            f"{mode} sweep is {speedup:.2f}x faster than one run after another "
            f"({speedup_total:.2f}x with compilation)"
        )
    print(f"final validation losses agree (vmapped vs sequential): {agree}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
