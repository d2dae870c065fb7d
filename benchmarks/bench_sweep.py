"""Benchmark: a sweep of 8 learning rates x 3 seeds of the MNIST MLP, vmapped into one
compiled program (all runs at once, and in cache-sized batches chosen automatically)
against the same 24 runs made one after another (same compiled single run, same work).

Each mode runs in its own process, twice per repeat: **cold** (an empty compilation
cache: everything compiled) and **warm** (the cache the cold process filled). Repeats
interleave the modes; the figures are medians over repeats, with running time (the runs
themselves) and compile time reported apart. The final validation losses of every mode
are checked against the sequential runs for every learning rate that does not diverge.

    python benchmarks/bench_sweep.py --out runs/bench/sweep.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LEARNING_RATES = tuple(float(lr) for lr in np.logspace(-4, -1, 8))
SEEDS = (0, 1, 2)
MODES = ("sequential", "vmapped", "vmapped_auto")
# final validation losses of a vmapped mode agree with the sequential runs' within this
# relative difference, on every learning rate that does not diverge
AGREEMENT_RTOL = 1e-3


def worker(mode: str, cache: str, steps: int, batch_size: int, optimizer: str) -> dict:
    """One sweep in this process, with the compilation cache at ``cache``."""
    from jaxopt_lab.runtime import device_info, enable_compilation_cache

    enable_compilation_cache(cache)
    from flax import nnx

    from jaxopt_lab.training.data import load_dataset
    from jaxopt_lab.training.models import MLP
    from jaxopt_lab.training.sweep import named_optimizer, subset, sweep

    def seed_mlp(hyperparameters, key):
        return MLP(rngs=nnx.Rngs(key))  # the seed model: 784-128-10, ReLU, dropout 0.2

    data = subset(load_dataset("mnist"), num_train=60000, num_eval=2000, num_val=2000)
    evals = 5
    result = sweep(
        named_optimizer(optimizer),
        {"learning_rate": LEARNING_RATES},
        SEEDS,
        data,
        model_factory=seed_mlp,
        batch_size=batch_size,
        num_evals=evals,
        steps_per_eval=steps // evals,
        vectorize=mode != "sequential",
        runs_per_batch="auto" if mode == "vmapped_auto" else None,
    )
    return {
        "compile_s": result.compile_seconds,
        "run_s": float(result.run_seconds.sum()),
        "total_s": result.total_seconds,
        "runs_per_batch": result.runs_per_batch,
        "start_val_loss": result.curves.val_loss[:, :, 0].tolist(),
        "final_val_loss": result.curves.val_loss[:, :, -1].tolist(),
        "device": device_info(),
    }


def run_worker(mode: str, cache: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", mode, str(cache)]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--optimizer", args.optimizer]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench_sweep: the {mode} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="the seed job's batch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--out", default="runs/bench/sweep.json")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, cache = args.worker
        print(json.dumps(worker(mode, cache, args.steps, args.batch_size, args.optimizer)))
        return 0
    if args.repeats < 1 or args.steps < 5:
        parser.error("need --repeats >= 1 and --steps >= 5")

    measured: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode in MODES:
                cache = Path(tmp) / f"cache-{repeat}-{mode}"  # empty: a cold start
                for temperature in ("cold", "warm"):
                    record = run_worker(mode, cache, args)
                    measured.setdefault(f"{mode} [{temperature}]", []).append(record)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    summary = {
        label: {
            key: statistics.median(r[key] for r in records)
            for key in ("compile_s", "run_s", "total_s")
        }
        | {"runs_per_batch": records[0]["runs_per_batch"]}
        for label, records in measured.items()
    }
    reference = measured["sequential [warm]"][0]
    sequential = np.asarray(reference["final_val_loss"])  # [learning rate, seed]
    # a rate diverges when any seed ends above its starting loss (or not finite)
    stable = np.all(
        np.isfinite(sequential) & (sequential < np.asarray(reference["start_val_loss"])), axis=1
    )
    relative_difference = {
        label: np.max(
            np.abs(np.asarray(records[0]["final_val_loss"]) - sequential) / sequential, axis=1
        ).tolist()
        for label, records in measured.items()
    }
    agree = {
        label: bool(np.all(np.asarray(diff)[stable] <= AGREEMENT_RTOL))
        for label, diff in relative_difference.items()
    }
    report = {
        "device": measured["sequential [warm]"][0]["device"],
        "optimizer": args.optimizer,
        "runs": len(LEARNING_RATES) * len(SEEDS),
        "steps_per_run": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "median": summary,
        "final_val_loss_agree_on_stable_rates": agree,
        "agreement_rtol": AGREEMENT_RTOL,
        "stable_learning_rates": [lr for lr, ok in zip(LEARNING_RATES, stable, strict=True) if ok],
        "final_val_loss_max_relative_difference_per_rate": relative_difference,
    }
    print(f"\nmedians of {args.repeats} interleaved repeats, {report['runs']} runs x {args.steps}")
    print(f"{'mode':<24} {'run s':>8} {'compile s':>10} {'total s':>8} {'runs/batch':>10}")
    for label, row in summary.items():
        print(
            f"{label:<24} {row['run_s']:>8.2f} {row['compile_s']:>10.2f} {row['total_s']:>8.2f} "
            f"{row['runs_per_batch'] or '-':>10}"
        )
    for temperature in ("cold", "warm"):
        base = summary[f"sequential [{temperature}]"]
        for mode in MODES[1:]:
            row = summary[f"{mode} [{temperature}]"]
            run_speedup, total_speedup = (
                base["run_s"] / row["run_s"],
                base["total_s"] / row["total_s"],
            )
            report[f"speedup_{mode}_{temperature}"] = {"run": run_speedup, "total": total_speedup}
            print(
                f"{mode} [{temperature}]: {run_speedup:.2f}x faster running, "
                f"{total_speedup:.2f}x counting compilation"
            )
    print("largest relative difference of the final validation loss to the sequential run:")
    print(f"{'mode':<24} " + " ".join(f"{lr:>8.1e}" for lr in LEARNING_RATES))
    for label, diff in relative_difference.items():
        print(f"{label:<24} " + " ".join(f"{d:>8.1e}" for d in diff))
    print(
        f"stable rates (no seed ends above its starting loss): {report['stable_learning_rates']}; "
        f"agree within {AGREEMENT_RTOL:g} on all of them: {agree}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
