"""Does the layout of vmapped parameters decide whether a sweep pays on a CPU?

R runs of the seed model's arithmetic (784-128-10 MLP, ReLU, dropout 0.2, softmax
cross-entropy, batch 32 drawn with replacement, the same batches for every run), each
with its own learning rate, trained for a fixed number of steps in one ``lax.scan``:

- **one run**: a single run's compiled program (R of them one after another cost R times
  this);
- **run-major**: ``jax.vmap`` over the runs with every parameter stacked on axis 0
  (``[R, 784, 128]`` for the first kernel), as :func:`jaxopt_lab.training.sweep.sweep`
  stores them;
- **feature-major**: the same, but the first kernel stored ``[784, R, 128]``, so the
  shared input product ``x @ W1`` of all runs is one matrix product over a contiguous
  ``[784, R*128]`` operand (XLA still transposes its gradient, which the product
  yields as ``[R*128, 784]``);
- **transposed kernel**: run-major, but each run's first kernel stored transposed
  (``[R, 128, 784]``, the model computes ``x @ W1.T``): the layout in which that
  gradient comes out.

The model is written in plain ``jax.numpy`` (no NNX) so that only the layout differs;
the optimizer is the project's own (``make_optimizer``), its moments stored in the same
layout as the parameters they follow.
Figures are the fastest of ``--repeats`` calls after compilation, per run and step; the
programs' first kernels are checked to agree (run-major against feature-major exactly,
against the transposed kernel and run 0 against the single run to float32 rounding).

    python benchmarks/sweep_layout.py --runs 24 --optimizer adam --out runs/bench/layout.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab.optim import apply_updates
from jaxopt_lab.optim.registry import make_optimizer
from jaxopt_lab.runtime import device_info

BATCH = 32
KEEP = 0.8  # dropout 0.2


def init(key: jax.Array) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (784, 128)) * 0.05,
        "b1": jnp.zeros(128),
        "w2": jax.random.normal(k2, (128, 10)) * 0.1,
        "b2": jnp.zeros(10),
    }


def loss(params, images, labels, dropout_key):
    # a first kernel stored transposed, [128, 784], is used as such
    w1 = params["w1"] if params["w1"].shape[0] == images.shape[1] else params["w1"].T
    hidden = jax.nn.relu(images @ w1 + params["b1"])
    hidden = jnp.where(jax.random.bernoulli(dropout_key, KEEP, hidden.shape), hidden / KEEP, 0)
    logits = hidden @ params["w2"] + params["b2"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


def step(optimizer: str, params, opt_state, images, labels, learning_rate, dropout_key):
    """One step of ``make_optimizer(optimizer, learning_rate)``, the project's own."""
    transform = make_optimizer(optimizer, learning_rate)
    grads = jax.grad(loss)(params, images, labels, dropout_key)
    updates, opt_state = transform.update(grads, opt_state, params)
    return apply_updates(params, updates), opt_state


def leaf_axes(tree, run_axes: dict):
    """Each leaf's run axis: a leaf under a parameter's key (the parameter itself, or its
    moment in an optimizer state) takes that parameter's axis; others (step counts) are
    shared by every run."""

    def axis(path, leaf):
        keys = [entry.key for entry in path if isinstance(entry, jax.tree_util.DictKey)]
        return run_axes[keys[-1]] if keys else None

    return jax.tree_util.tree_map_with_path(axis, tree)


def program(optimizer: str, steps: int, images, labels, run_axes: dict | None):
    """The jitted ``(params, learning_rates, key) -> params`` of ``steps`` steps; with
    ``run_axes`` (each parameter's run axis) vmapped over runs."""

    def run(params, learning_rates, key):
        # the state's shapes follow the parameters', whatever the learning rate
        opt_state = make_optimizer(optimizer, 1.0).init(params)
        one_step = lambda *args: step(optimizer, *args)  # noqa: E731
        if run_axes is not None:
            axes = (leaf_axes(params, run_axes), leaf_axes(opt_state, run_axes))
            one_step = jax.vmap(one_step, in_axes=(*axes, None, None, 0, None), out_axes=axes)

        def body(carry, step_key):
            params, opt_state = carry
            indices = jax.random.randint(step_key, (BATCH,), 0, labels.shape[0])
            batch = images[indices].astype(jnp.float32) / 255.0
            dropout_key = jax.random.fold_in(step_key, 1)
            carry = one_step(params, opt_state, batch, labels[indices], learning_rates, dropout_key)
            return carry, None

        (params, _), _ = jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))
        return params

    return jax.jit(run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=24, help="runs side by side (R)")
    parser.add_argument("--steps", type=int, default=500, help="steps per run")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (fastest kept)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sweep_layout.json"))
    args = parser.parse_args(argv)
    if args.runs < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--runs, --steps and --repeats must be >= 1")

    rng = np.random.default_rng(0)  # random pixels: the arithmetic, not the data, is timed
    images = jnp.asarray(rng.integers(0, 256, (60_000, 784), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, 60_000), dtype=jnp.int32)
    stacked = jax.vmap(init)(jax.random.split(jax.random.key(0), args.runs))
    rates = jnp.linspace(1e-4, 1e-2, args.runs)
    key = jax.random.key(1)
    run_major = {"w1": 0, "b1": 0, "w2": 0, "b2": 0}
    layouts = {
        "one run": (None, jax.tree.map(lambda a: a[0], stacked), rates[0], 1),
        "run-major": (run_major, stacked, rates, args.runs),
        "feature-major": (
            {**run_major, "w1": 1},
            {**stacked, "w1": jnp.moveaxis(stacked["w1"], 0, 1)},
            rates,
            args.runs,
        ),
        "transposed kernel": (
            run_major,
            {**stacked, "w1": jnp.swapaxes(stacked["w1"], 1, 2)},
            rates,
            args.runs,
        ),
    }
    results, finals = {}, {}
    for name, (axes, params, learning_rates, runs) in layouts.items():
        compiled = program(args.optimizer, args.steps, images, labels, axes).lower(
            params, learning_rates, key
        )
        compiled = compiled.compile()
        finals[name] = jax.block_until_ready(compiled(params, learning_rates, key))
        times = []
        for _ in range(args.repeats):
            tick = time.perf_counter()
            jax.block_until_ready(compiled(params, learning_rates, key))
            times.append(time.perf_counter() - tick)
        per_run_step_ms = 1e3 * min(times) / (runs * args.steps)
        results[name] = {"call_s": min(times), "per_run_step_ms": per_run_step_ms}
        print(f"{name:<14} {min(times):7.3f} s per call, {per_run_step_ms:.4f} ms per run-step")
    run_major_w1 = finals["run-major"]["w1"]
    np.testing.assert_array_equal(run_major_w1, jnp.moveaxis(finals["feature-major"]["w1"], 1, 0))
    transposed_w1 = jnp.swapaxes(finals["transposed kernel"]["w1"], 1, 2)
    np.testing.assert_allclose(run_major_w1, transposed_w1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(run_major_w1[0], finals["one run"]["w1"], rtol=0, atol=1e-5)
    single = results["one run"]["per_run_step_ms"]
    for name in ("run-major", "feature-major", "transposed kernel"):
        results[name]["speedup_over_one_after_another"] = single / results[name]["per_run_step_ms"]
        print(f"{name}: {results[name]['speedup_over_one_after_another']:.2f}x one after another")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"config": vars(args) | {"out": str(args.out)}, "device": device_info(), **results}
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
