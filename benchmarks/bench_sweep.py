"""Benchmark: a sweep of 8 learning rates x 3 seeds of the MNIST MLP, vmapped into one
compiled program (all runs at once; in cache-sized batches chosen automatically; and
spread over the CPU's cores made JAX devices, each core vmapping its share of the runs
in those cache-sized batches) against the same 24 runs made one after another (same
compiled single run, same work).

Each mode runs in its own process, twice per repeat: **cold** (an empty compilation
cache: everything compiled) and **warm** (the cache the cold process filled). Repeats
interleave the modes; the figures are medians over repeats, with running time (the runs
themselves) and compile time reported apart. The final validation losses of every mode
are checked against the sequential runs for every learning rate that does not diverge.

How closely can they agree? A vmapped program rounds differently (its matrix products
group the runs' sums differently), and at a large learning rate training can amplify a
1e-7 difference into a different final loss. Eight *rounding controls* measure that
sensitivity: the same sequential runs with every float of the initial parameters, and
of every step's update, rounded the other way (moved to a neighbouring float32, up or
down at random, other random choices in each control; see :func:`round_other_way` and
:func:`round_each_step_other_way`). Each such run is as valid a float32 computation as
the first. Two controls were too few: where a rate's final loss branches on rounding
(on an AMD EPYC Zen 4 at 1.4e-2, one seed ends at 0.3178 or at 0.2928), 3 of 8 controls
took the other branch and both of the first two did not, so a vmapped mode that took it
read as *disagrees*. Rounding only the start
was too weak a control: a perturbation at the start can die out, while a program that
rounds differently does so at every step (on an AMD EPYC at learning rate 1.4e-2,
start-only controls ended within 2e-6 of the sequential runs, while every vmapped mode,
whose curves matched them to 1e-6 for 300 steps, ended 8-9% away). Rounding every new
parameter the other way was too strong: that moves each parameter by an ulp of the
parameter, not of the update, and moved the final loss by 2e-3 at a rate (1.9e-3) where
every vmapped mode agrees to 3e-7. The rule, per learning rate (:func:`agreement`):

- *diverged*: a sequential run ends above its starting loss or not finite;
- *inconclusive*: a control ends more than ``AGREEMENT_RTOL`` (relative) from the
  sequential run, so float32 rounding alone moves the final loss past the tolerance
  and agreement cannot be tested there;
- otherwise a mode *agrees* when every seed's final loss is within ``AGREEMENT_RTOL`` of
  the sequential run's, and *disagrees* if not.

    python benchmarks/bench_sweep.py --out runs/bench/sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LEARNING_RATES = tuple(float(lr) for lr in np.logspace(-4, -1, 8))
SEEDS = (0, 1, 2)
MODES = ("sequential", "vmapped", "vmapped_auto", "vmapped_cores")
# final validation losses of a vmapped mode agree with the sequential runs' within this
# relative difference, on every learning rate that does not diverge
AGREEMENT_RTOL = 1e-3
# sequential runs from the initial parameters, and with every update, rounded the other
# way (untimed, run once each, each with its own random roundings)
CONTROLS = tuple(f"rounding_control_{i}" for i in range(1, 9))


def round_other_way(tree, key):
    """Every floating-point array of ``tree`` with each element moved to a neighbouring
    float (``nextafter`` towards +inf or -inf, at random from ``key``): the same values
    rounded the other way, as valid a result of float rounding as the original."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree.flatten(tree)
    moved = []
    for leaf, leaf_key in zip(leaves, jax.random.split(key, len(leaves)), strict=True):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            moved.append(leaf)
            continue
        up = jax.random.bernoulli(leaf_key, 0.5, leaf.shape)
        moved.append(jnp.nextafter(leaf, jnp.where(up, jnp.inf, -jnp.inf).astype(leaf.dtype)))
    return jax.tree.unflatten(treedef, moved)


def round_each_step_other_way(key):
    """An optimizer's last link that rounds each step's update the other way
    (:func:`round_other_way` with a fresh key per step): what a program that sums in
    another order does to the update, at every step."""
    import jax
    import optax

    def init(params):
        del params
        return key

    def update(updates, state, params=None):
        del params
        step_key, next_key = jax.random.split(state)
        return round_other_way(updates, step_key), next_key

    return optax.GradientTransformation(init, update)


def worker(mode: str, cache: str, steps: int, batch_size: int, optimizer: str) -> dict:
    """One sweep in this process, with the compilation cache at ``cache``; a rounding
    control runs the sequential mode with the initial parameters, and every step's
    update, rounded the other way."""
    from jaxopt_lab.runtime import device_info, enable_compilation_cache

    enable_compilation_cache(cache)
    import jax

    if mode == "vmapped_cores":  # before the backend starts: one CPU device per core
        jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))
    from flax import nnx

    from jaxopt_lab.optim import chain
    from jaxopt_lab.training.data import load_dataset
    from jaxopt_lab.training.models import MLP
    from jaxopt_lab.training.sweep import named_optimizer, subset, sweep

    control = CONTROLS.index(mode) + 1 if mode in CONTROLS else None
    optimizer_factory = named_optimizer(optimizer)

    def rounded_each_step(hyperparameters, key):
        each_step_key = jax.random.fold_in(jax.random.fold_in(key, control), 1)
        base = optimizer_factory(hyperparameters, key)
        return chain(base, round_each_step_other_way(each_step_key))

    def seed_mlp(hyperparameters, key):
        model = MLP(rngs=nnx.Rngs(key))  # the seed model: 784-128-10, ReLU, dropout 0.2
        if control is not None:
            params = nnx.state(model, nnx.Param)
            nnx.update(model, round_other_way(params, jax.random.fold_in(key, control)))
        return model

    data = subset(load_dataset("mnist"), num_train=60000, num_eval=2000, num_val=2000)
    evals = 5
    result = sweep(
        optimizer_factory if control is None else rounded_each_step,
        {"learning_rate": LEARNING_RATES},
        SEEDS,
        data,
        model_factory=seed_mlp,
        batch_size=batch_size,
        num_evals=evals,
        steps_per_eval=steps // evals,
        vectorize=mode not in ("sequential", *CONTROLS),
        runs_per_batch="auto" if mode in ("vmapped_auto", "vmapped_cores") else None,
        devices=jax.devices() if mode == "vmapped_cores" else None,
    )
    return {
        "compile_s": result.compile_seconds,
        "run_s": float(result.run_seconds.sum()),
        "total_s": result.total_seconds,
        "runs_per_batch": result.runs_per_batch,
        "devices": result.num_devices,
        "start_val_loss": result.curves.val_loss[:, :, 0].tolist(),
        "final_val_loss": result.curves.val_loss[:, :, -1].tolist(),
        "device": device_info(),
    }


@dataclass(frozen=True)
class Agreement:
    """How the final validation losses of other modes compare with the sequential runs,
    per learning rate (see the module docstring for the rule)."""

    control_spread: list[float]  # largest relative difference of any control, any seed
    relative_difference: dict[str, list[float]]  # mode -> largest over seeds, per rate
    verdicts: dict[str, list[str]]  # mode -> agrees/disagrees/inconclusive/diverged

    def agrees_where_testable(self, mode: str) -> bool:
        """No learning rate where ``mode`` disagrees (diverged and inconclusive rates
        cannot be tested)."""
        return "disagrees" not in self.verdicts[mode]


def largest_relative_difference(final: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``max over seeds |final - reference| / |reference|`` per learning rate, from
    ``[rate, seed]`` arrays (NaN where either is not finite)."""
    with np.errstate(invalid="ignore"):
        difference = np.abs(final - reference) / np.abs(reference)
    return np.max(np.where(np.isfinite(final) & np.isfinite(reference), difference, np.nan), 1)


def agreement(
    start: np.ndarray,
    sequential: np.ndarray,
    controls: list[np.ndarray],
    modes: dict[str, np.ndarray],
    rtol: float = AGREEMENT_RTOL,
) -> Agreement:
    """Apply the module docstring's rule to final losses ``[rate, seed]``: ``start`` and
    ``sequential`` from the sequential runs, ``controls`` from the rounding controls,
    ``modes`` by name."""
    stable = np.all(np.isfinite(sequential) & (sequential < start), axis=1)
    spread = np.max([largest_relative_difference(c, sequential) for c in controls], axis=0)
    testable = spread <= rtol  # False where a control is not finite
    differences = {m: largest_relative_difference(f, sequential) for m, f in modes.items()}
    verdicts = {
        mode: [_verdict(*row, rtol) for row in zip(stable, testable, difference, strict=True)]
        for mode, difference in differences.items()
    }
    return Agreement(
        control_spread=spread.tolist(),
        relative_difference={m: d.tolist() for m, d in differences.items()},
        verdicts=verdicts,
    )


def _verdict(stable: bool, testable: bool, difference: float, rtol: float) -> str:
    if not stable:
        return "diverged"
    if not testable:
        return "inconclusive"
    return "agrees" if difference <= rtol else "disagrees"


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
        controls = [run_worker(control, Path(tmp) / control, args) for control in CONTROLS]

    summary = {
        label: {
            key: statistics.median(r[key] for r in records)
            for key in ("compile_s", "run_s", "total_s")
        }
        | {key: records[0][key] for key in ("runs_per_batch", "devices")}
        for label, records in measured.items()
    }
    reference = measured["sequential [warm]"][0]
    final = {label: np.asarray(records[0]["final_val_loss"]) for label, records in measured.items()}
    sequential = final.pop("sequential [warm]")
    result = agreement(
        np.asarray(reference["start_val_loss"]),
        sequential,
        [np.asarray(control["final_val_loss"]) for control in controls],
        final,
    )
    report = {
        "device": measured["sequential [warm]"][0]["device"],
        "optimizer": args.optimizer,
        "runs": len(LEARNING_RATES) * len(SEEDS),
        "steps_per_run": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "median": summary,
        "learning_rates": list(LEARNING_RATES),
        "agreement_rtol": AGREEMENT_RTOL,
        "final_val_loss_agreement": asdict(result),
        "agrees_where_testable": {m: result.agrees_where_testable(m) for m in final},
    }
    print(f"\nmedians of {args.repeats} interleaved repeats, {report['runs']} runs x {args.steps}")
    print(
        f"{'mode':<24} {'run s':>8} {'compile s':>10} {'total s':>8} {'runs/batch':>10} "
        f"{'devices':>8}"
    )
    for label, row in summary.items():
        print(
            f"{label:<24} {row['run_s']:>8.2f} {row['compile_s']:>10.2f} {row['total_s']:>8.2f} "
            f"{row['runs_per_batch'] or '-':>10} {row['devices']:>8}"
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
    print(f"{'':<24} " + " ".join(f"{lr:>12.1e}" for lr in LEARNING_RATES))
    print(f"{'rounding controls':<24} " + " ".join(f"{d:>12.1e}" for d in result.control_spread))
    for label, differences in result.relative_difference.items():
        print(f"{label:<24} " + " ".join(f"{d:>12.1e}" for d in differences))
        print(f"{'':<24} " + " ".join(f"{v:>12}" for v in result.verdicts[label]))
    print(
        f"(rule: within {AGREEMENT_RTOL:g} where the rounding controls are; inconclusive where "
        "they are not; diverged where a sequential seed ends above its starting loss)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
