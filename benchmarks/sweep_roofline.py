"""How fast could `make bench-sweep`'s sweep run on this machine at best? A roofline bound.

Running the runs side by side (vmapped, batched, over the cores) changes how the
arithmetic is laid out, not how much of it there is: every run multiplies its own weights
by its batches and by the evaluation images, and updates its own Adam state. Only the
gather and conversion of a batch are shared, and they are not arithmetic. So no layout of
the sweep runs faster than its matrix products alone at the best rate this machine
reaches, and, unless the products and Adam's memory traffic overlap, than

    T_min = matmul FLOPs / R + Adam's bytes / B

The FLOPs are those of the sweep's matrix products (training steps and the curve's
evaluations), counted from the model's layer sizes and checked against XLA's cost
analysis of one step and one evaluation. R is the fastest float32 matrix-product rate
measured here on all cores (the vmapped sweep's own product shapes and a large square
one). B is the fastest rate of a fused elementwise pass over arrays the size of one run's
parameters (in cache) or all runs' (not). The sequential sweep's running time (measured
here, warm, as `make bench-sweep` times it) divided by each bound is the largest speedup
any layout could reach. R and B are best cases, so both bounds are generous; the verdict
on a target speedup uses the products alone, the bound that holds without assumptions.

    python benchmarks/sweep_roofline.py --out runs/bench/sweep_roofline.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import LEARNING_RATES, SEEDS  # noqa: E402

from jaxopt_lab.optim import make_optimizer  # noqa: E402
from jaxopt_lab.runtime import device_info, time_call  # noqa: E402
from jaxopt_lab.training.data import load_dataset  # noqa: E402
from jaxopt_lab.training.models import MLP  # noqa: E402
from jaxopt_lab.training.step import evaluate, init_train_state, train_step  # noqa: E402
from jaxopt_lab.training.sweep import named_optimizer, subset, sweep  # noqa: E402

BATCH, EVALS, EVAL_IMAGES = 32, 5, 2000  # as in bench_sweep.py: 2000 eval + 2000 val images
ADAM_ARRAYS = 7  # reads parameters, gradient, two moments; writes parameters, two moments


def _fastest(function, *args, repeats: int) -> float:
    """Fastest of ``repeats`` calls after a warm-up, in seconds."""
    return time_call(function, *args, warmup=1, repeats=repeats).min_s


def layer_shapes(model: MLP) -> list[tuple[int, int]]:
    """(in_features, out_features) of each dense layer, input to output."""
    return [(layer.in_features, layer.out_features) for layer in (*model.hidden, model.output)]


def sweep_flops(shapes: list[tuple[int, int]], runs: int, steps: int) -> dict[str, float]:
    """Matrix-product FLOPs of the whole sweep. A training step multiplies forward (2 B
    in out per layer), takes every kernel's gradient (2 B in out) and passes the gradient
    back through every layer but the first (2 B in out); an evaluation of N images is the
    forward pass alone."""
    products = [inputs * outputs for inputs, outputs in shapes]
    step = 2 * BATCH * (2 * sum(products) + sum(products[1:]))
    evaluation = 2 * EVAL_IMAGES * sum(products)
    # the curve has EVALS + 1 points, each evaluating the eval and the validation images
    train, curve = runs * steps * step, runs * (EVALS + 1) * 2 * evaluation
    return {"step": step, "evaluation": evaluation, "train": train, "curve": curve}


def xla_flops(model: MLP, images: jax.Array, labels: jax.Array) -> dict[str, float]:
    """XLA's own count (all operations, not only products) for one step and one
    evaluation of the seed model: the check on :func:`sweep_flops`."""
    optimizer = make_optimizer("adam", 1e-3)
    graphdef, state = init_train_state(model, optimizer)
    step = jax.jit(
        lambda s, x, y, k: train_step(s, x, y, k, graphdef=graphdef, optimizer=optimizer)
    )
    step_cost = step.lower(state, images[:BATCH], labels[:BATCH], jax.random.key(0)).compile()
    evaluation = jax.jit(lambda s, x, y: evaluate(s, x, y, graphdef=graphdef))
    eval_cost = evaluation.lower(state, images[:EVAL_IMAGES], labels[:EVAL_IMAGES]).compile()
    return {
        "step": step_cost.cost_analysis()["flops"],
        "evaluation": eval_cost.cost_analysis()["flops"],
    }


def matmul_rates(shapes: list[tuple[int, int]], runs: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of float32 products: the vmapped sweep's first-layer products for all its
    runs (forward, kernel gradient, evaluation) and a large square one."""
    inputs, hidden = shapes[0]
    width = runs * hidden
    products = {
        f"forward {BATCH}x{inputs} @ {inputs}x{width}": (BATCH, inputs, width),
        f"gradient {width}x{BATCH} @ {BATCH}x{inputs}": (width, BATCH, inputs),
        f"evaluation {EVAL_IMAGES}x{inputs} @ {inputs}x{width}": (EVAL_IMAGES, inputs, width),
        "square 2048x2048 @ 2048x2048": (2048, 2048, 2048),
    }
    rates = {}
    for name, (m, k, n) in products.items():
        a = jax.random.normal(jax.random.key(1), (m, k))
        b = jax.random.normal(jax.random.key(2), (k, n))
        seconds = _fastest(jax.jit(jnp.matmul), a, b, repeats=repeats)
        rates[name] = 2 * m * k * n / seconds / 1e9
    return rates


def stream_rate(elements: int, repeats: int, passes: int = 50) -> float:
    """GB/s of a fused elementwise pass that reads four arrays of ``elements`` float32
    values and writes one (Adam's pass over the parameters, in its cheapest form),
    repeated ``passes`` times inside one program so that small, cache-resident arrays
    are not timed as dispatch overhead."""
    b, c, d = (jax.random.normal(jax.random.key(i), (elements,)) for i in range(3))

    @jax.jit
    def passes_over(x):
        return jax.lax.fori_loop(0, passes, lambda _, x: x * b + c * d, x)

    seconds = _fastest(passes_over, jnp.zeros(elements), repeats=repeats)
    return passes * 5 * 4 * elements / seconds / 1e9


def sequential_seconds(data, steps: int) -> float:
    """Running time of the sequential sweep, warm (its first call compiles it)."""
    result = None
    for _ in range(2):
        result = sweep(
            named_optimizer("adam"),
            {"learning_rate": LEARNING_RATES},
            SEEDS,
            data,
            model_factory=lambda hyperparameters, key: MLP(rngs=nnx.Rngs(key)),
            batch_size=BATCH,
            num_evals=EVALS,
            steps_per_eval=steps // EVALS,
            vectorize=False,
        )
    return float(result.run_seconds.sum())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=20, help="calls per kernel timing")
    parser.add_argument("--target", type=float, default=2.5, help="the speedup asked for")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sweep_roofline.json"))
    args = parser.parse_args(argv)
    runs = len(LEARNING_RATES) * len(SEEDS)
    data = subset(load_dataset("mnist"), num_train=60000, num_eval=EVAL_IMAGES, num_val=EVAL_IMAGES)
    model = MLP(rngs=nnx.Rngs(0))
    shapes = layer_shapes(model)
    parameters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    flops = sweep_flops(shapes, runs, args.steps)
    xla = xla_flops(model, data.eval_images, data.eval_labels)
    rates = matmul_rates(shapes, runs, args.repeats)
    # one run's parameters stay in cache, all runs' do not: the faster is the bound's
    streams = {
        "one run": stream_rate(parameters, args.repeats),
        f"{runs} runs": stream_rate(runs * parameters, args.repeats),
    }
    bandwidth = max(streams.values())
    sequential = sequential_seconds(data, args.steps)

    best_rate = max(rates.values())
    matmul_s = (flops["train"] + flops["curve"]) / (best_rate * 1e9)
    adam_s = runs * args.steps * ADAM_ARRAYS * 4 * parameters / (bandwidth * 1e9)
    bound = matmul_s + adam_s
    report = {
        "runs": runs,
        "steps_per_run": args.steps,
        "matmul_gflop": {k: v / 1e9 for k, v in flops.items()},
        "xla_gflop_per_step_and_evaluation": {k: v / 1e9 for k, v in xla.items()},
        "matmul_gflops_per_s": rates,
        "stream_gb_per_s": streams,
        "lower_bound_s": {"matmul": matmul_s, "adam": adam_s, "total": bound},
        "sequential_run_s": sequential,
        "largest_speedup": sequential / bound,
        "largest_speedup_matmul_only": sequential / matmul_s,
        "target": args.target,
        # by the bound that assumes nothing about overlap: the products alone
        "target_reachable": sequential / matmul_s >= args.target,
        "device": device_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    gflop = report["matmul_gflop"]
    print(f"{runs} runs x {args.steps} steps: {gflop['train']:.1f} GFLOP of training products")
    print(
        f"  + {gflop['curve']:.1f} GFLOP of evaluations "
        f"({EVALS + 1} points x 2 x {EVAL_IMAGES} images)"
    )
    print(
        f"  per step {gflop['step'] * 1e3:.2f} MFLOP (XLA, all ops: "
        f"{report['xla_gflop_per_step_and_evaluation']['step'] * 1e3:.2f}); per evaluation "
        f"{gflop['evaluation'] * 1e3:.1f} (XLA {xla['evaluation'] / 1e6:.1f})"
    )
    for name, rate in rates.items():
        print(f"  {name}: {rate:.1f} GFLOP/s")
    for name, rate in streams.items():
        print(f"  a fused pass over the parameters of {name}: {rate:.1f} GB/s")
    print(
        f"lower bound {bound:.2f} s (products {matmul_s:.2f} s at {best_rate:.0f} GFLOP/s, "
        f"Adam {adam_s:.2f} s); sequential {sequential:.2f} s running"
    )
    print(
        f"largest possible speedup {report['largest_speedup']:.2f}x "
        f"({report['largest_speedup_matmul_only']:.2f}x counting the products alone); "
        f"target {args.target}x {'within' if report['target_reachable'] else 'beyond'} reach"
    )
    return report


if __name__ == "__main__":
    main()
