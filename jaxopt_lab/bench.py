"""The ``jaxopt-lab bench`` suites: optimizer steps against optax and a streaming
baseline, and training throughput. The timing primitives live in
:mod:`jaxopt_lab.runtime`; this module sits at the top of the package and nothing in the
package imports it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from jaxopt_lab.optim import apply_updates, make_optimizer
from jaxopt_lab.optim.base import tree_bytes, tree_size
from jaxopt_lab.optim.registry import OPTIMIZER_NAMES, optax_twin
from jaxopt_lab.runtime import compile_timed, device_info, summarise, time_call

# --------------------------------------------------------------------------- optimizer steps

MIN_SIZE = 64  # the smallest parameter count benchmark_params builds


def benchmark_params(size: int, key: jax.Array | None = None) -> dict[str, dict[str, jax.Array]]:
    """A float32 MLP-like parameter pytree with about ``size`` elements.

    Four dense layers of equal shape (``kernel`` and ``bias``), so leaves mix matrices
    and vectors as in a real model.
    """
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    width = int(min(1024, max(8, (size // 4) ** 0.5)))
    fan_in = max(1, size // (4 * width) - 1)
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, 4)
    return {
        f"layer{i}": {
            "kernel": 0.01 * jax.random.normal(k, (fan_in, width), jnp.float32),
            "bias": jnp.zeros((width,), jnp.float32),
        }
        for i, k in enumerate(keys)
    }


def _make_step(optimizer: optax.GradientTransformation, apply: Callable) -> Callable:
    """update + apply as one jitted call, params and state donated (updated in place)."""

    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return apply(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


@partial(jax.jit, donate_argnums=(0, 1))
def _copy_step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    """The memory-bound limit of a step: read params, grads and state, write params and
    state, with one multiply-add per element and nothing else."""
    scale = lambda x: x * 0.999 if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    return jax.tree.map(jnp.add, params, grads), jax.tree.map(scale, state)


def _time_threaded(
    step: Callable, carry: tuple, grads: Any, repeats: int
) -> tuple[list[float], tuple]:
    """Seconds per call of ``carry = step(*carry, grads)``, the carry threaded through
    (donated buffers cannot be reused, so each call consumes the previous output)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        carry = jax.block_until_ready(step(*carry, grads))
        times.append(time.perf_counter() - start)
    return times, carry


def step_benchmark(
    name: str,
    ours: optax.GradientTransformation,
    twin: optax.GradientTransformation,
    size: int,
    *,
    repeats: int = 10,
    rounds: int = 3,
) -> dict[str, Any]:
    """Time one jitted update+apply of ``ours`` against optax's ``twin`` and a plain copy.

    Ours and optax's are measured in alternating rounds so that machine noise hits both
    alike. Byte model (float32, per step): the update reads the gradients, the
    parameters and the optimizer state and writes the parameters and the state, so it
    moves ``3 P + 2 S`` bytes for ``P`` parameter bytes and ``S`` state bytes. The copy
    baseline streams exactly those bytes (same leaves, one multiply-add each), the
    memory-bound limit of any optimizer with this state; ``fraction_of_copy_bandwidth``
    is copy time / our time. Global-norm clipping must finish its reduction over the
    gradients before any update, so a clipped chain reads the gradients once more and
    its limit is ``(3 P + 2 S) / (4 P + 2 S)`` of the copy's bandwidth.
    """
    params = benchmark_params(size)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    param_bytes = tree_bytes(params)
    state_bytes = tree_bytes(ours.init(params))
    moved = 3 * param_bytes + 2 * state_bytes

    runs = {}
    for label, step, opt in (
        ("ours", _make_step(ours, apply_updates), ours),
        ("optax", _make_step(twin, optax.apply_updates), twin),
        ("copy", _copy_step, ours),
    ):
        p = jax.tree.map(jnp.copy, params)
        _, carry = _time_threaded(step, (p, opt.init(p)), grads, repeats=2)  # compile, warm up
        runs[label] = {"step": step, "carry": carry, "times": []}
    for _ in range(rounds):
        for run in runs.values():
            times, run["carry"] = _time_threaded(run["step"], run["carry"], grads, repeats)
            run["times"] += times

    ours_t, optax_t, copy_t = (summarise(runs[k]["times"]) for k in ("ours", "optax", "copy"))
    copy_bandwidth = moved / copy_t.median_s
    bandwidth = moved / ours_t.median_s
    return {
        "optimizer": name,
        "size": tree_size(params),
        "state_bytes_per_param": state_bytes / tree_size(params),
        "bytes_moved": moved,
        "ours": ours_t.as_dict(),
        "optax": optax_t.as_dict(),
        "copy": copy_t.as_dict(),
        "ratio_vs_optax": ours_t.median_s / optax_t.median_s,
        "bandwidth_gbs": bandwidth / 1e9,
        "copy_bandwidth_gbs": copy_bandwidth / 1e9,
        "fraction_of_copy_bandwidth": bandwidth / copy_bandwidth,
    }


LEARNING_RATE = 1e-3

# the benchmarked names: every name of the registry, plus global-norm clipping before Adam
CLIPPED_CHAIN = "clip+adam"
BENCHMARKED: tuple[str, ...] = (*OPTIMIZER_NAMES, CLIPPED_CHAIN)


def _pair(name: str) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(ours, optax's twin) for a benchmarked name."""
    if name == CLIPPED_CHAIN:
        return (
            make_optimizer("adam", LEARNING_RATE, clip_norm=1.0),
            optax_twin("adam", LEARNING_RATE, clip_norm=1.0),
        )
    return make_optimizer(name, LEARNING_RATE), optax_twin(name, LEARNING_RATE)


def optimizer_benchmark(
    names: Sequence[str] = BENCHMARKED,
    sizes: Sequence[int] = (10**5, 10**6, 10**7, 10**8),
    *,
    repeats: int = 10,
    rounds: int = 3,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`step_benchmark` for every optimizer and size; one record each."""
    unknown = [n for n in names if n not in BENCHMARKED]
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {', '.join(BENCHMARKED)}")
    jobs = [(size, name) for size in sizes for name in names]
    records = []
    for size, name in tqdm(jobs, desc="optimizer steps", disable=not progress):
        records.append(step_benchmark(name, *_pair(name), size, repeats=repeats, rounds=rounds))
    return records


def format_optimizer_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`optimizer_benchmark` records."""
    header = (
        f"{'optimizer':<10} {'params':>11} {'ours ms':>9} {'optax ms':>9} "
        f"{'ours/optax':>10} {'GB/s':>7} {'of copy':>8} {'state B/param':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r['optimizer']:<10} {r['size']:>11,} {1e3 * r['ours']['median_s']:>9.3f} "
            f"{1e3 * r['optax']['median_s']:>9.3f} {r['ratio_vs_optax']:>10.3f} "
            f"{r['bandwidth_gbs']:>7.2f} {r['fraction_of_copy_bandwidth']:>8.0%} "
            f"{r['state_bytes_per_param']:>13.1f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- training throughput


def training_throughput(
    images: jax.Array,
    labels: jax.Array,
    batch_sizes: Sequence[int] = (32, 128, 512, 1024, 4096),
    *,
    optimizer_name: str = "adam",
    repeats: int = 3,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Samples per second of whole jitted training epochs of the seed MLP, per batch size.

    Each epoch is one compiled call (:func:`jaxopt_lab.training.step.train_epoch`); its compile
    time is reported separately and excluded from the throughput.
    """
    from flax import nnx

    from jaxopt_lab.training.models import MLP
    from jaxopt_lab.training.step import init_train_state, train_epoch

    optimizer = make_optimizer(optimizer_name, LEARNING_RATE)
    records = []
    for batch_size in tqdm(batch_sizes, desc="training throughput", disable=not progress):
        graphdef, state = init_train_state(MLP(rngs=nnx.Rngs(0)), optimizer)
        epoch = jax.jit(
            partial(train_epoch, graphdef=graphdef, optimizer=optimizer, batch_size=batch_size)
        )
        key = jax.random.key(0)
        compiled, compile_s = compile_timed(epoch, state, key, images, labels)
        timing = time_call(compiled, state, key, images, labels, warmup=1, repeats=repeats)
        samples = (labels.shape[0] // batch_size) * batch_size
        records.append(
            {
                "batch_size": batch_size,
                "optimizer": optimizer_name,
                "samples_per_epoch": samples,
                "epoch": timing.as_dict(),
                "compile_s": compile_s,
                "samples_per_s": samples / timing.median_s,
            }
        )
    return records


def format_throughput_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`training_throughput` records."""
    header = f"{'batch':>6} {'epoch s':>9} {'samples/s':>11} {'compile s':>10}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r['batch_size']:>6} {r['epoch']['median_s']:>9.3f} "
            f"{r['samples_per_s']:>11,.0f} {r['compile_s']:>10.2f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the whole suite

FULL_SIZES = (10**5, 10**6, 10**7, 10**8)
QUICK_SIZES = (10**5, 10**6)
FULL_BATCH_SIZES = (32, 128, 512, 1024, 4096)
QUICK_BATCH_SIZES = (128, 1024)
# Live float32 copies per parameter while a size is measured: params, grads, two
# moments, for ours, optax's and the copy baseline at once, plus headroom.
_BYTES_PER_PARAM = 4 * 12


def available_memory_bytes() -> int:
    """Memory the default device can hold: its allocator limit on GPU/TPU, RAM on CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_suite(
    *,
    quick: bool = False,
    sizes: Sequence[int] | None = None,
    optimizers: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    dataset: Any | None = None,
    repeats: int | None = None,
    on_section: Callable[[dict[str, Any], str], None] | None = None,
) -> dict[str, Any]:
    """Optimizer steps (and, given a dataset, training throughput) with their settings.

    Sizes that would not fit in half the device's memory are skipped and listed.
    ``on_section(report, name)`` is called after each finished section (``"optimizers"``,
    then ``"training"``) with the report so far, so a caller can save it before a later
    section can fail.
    """
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    optimizers = optimizers or BENCHMARKED
    batch_sizes = batch_sizes or (QUICK_BATCH_SIZES if quick else FULL_BATCH_SIZES)
    repeats = repeats or (3 if quick else 10)
    rounds = 2 if quick else 3
    budget = available_memory_bytes() // 2
    fitting = [s for s in sizes if s * _BYTES_PER_PARAM <= budget]
    report: dict[str, Any] = {
        "device": device_info(),
        "settings": {
            "quick": quick,
            "sizes": list(fitting),
            "skipped_sizes_memory": [s for s in sizes if s not in fitting],
            "optimizers": list(optimizers),
            "learning_rate": LEARNING_RATE,
            "repeats": repeats,
            "rounds": rounds,
            "dtype": "float32",
            "batch_sizes": list(batch_sizes) if dataset is not None else [],
        },
        "optimizers": optimizer_benchmark(optimizers, fitting, repeats=repeats, rounds=rounds),
        "training": [],
    }
    if on_section is not None:
        on_section(report, "optimizers")
    if dataset is not None:
        report["training"] = training_throughput(
            dataset.train_images, dataset.train_labels, batch_sizes, repeats=max(2, repeats // 3)
        )
        if on_section is not None:
            on_section(report, "training")
    return report


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON text."""
    return json.dumps(report, indent=2) + "\n"


def plot_bench(report: dict, path: str | Path) -> None:
    """The ``jaxopt-lab bench`` report: step time against optax and against the
    memory-bound limit per parameter count, and training throughput per batch size."""
    records = report["optimizers"]
    names = list(dict.fromkeys(r["optimizer"] for r in records))
    panels = 3 if report.get("training") else 2
    fig = Figure(figsize=(5 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels)
    for name in names:
        rows = [r for r in records if r["optimizer"] == name]
        sizes = [r["size"] for r in rows]
        axes[0].plot(sizes, [r["ratio_vs_optax"] for r in rows], "o-", label=name)
        axes[1].plot(sizes, [r["fraction_of_copy_bandwidth"] for r in rows], "o-", label=name)
    axes[0].axhline(1.0, color="black", lw=0.8)
    axes[0].axhline(1.05, color="gray", ls="--", lw=0.8, label="target 1.05")
    axes[0].set(
        xscale="log",
        xlabel="parameters",
        ylabel="step time, ours / optax",
        title="jaxopt_lab vs optax (lower is faster)",
    )
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[1].set(
        xscale="log",
        xlabel="parameters",
        ylabel="fraction of streaming bandwidth",
        title="bandwidth reached vs a plain streaming step",
    )
    axes[0].legend(fontsize=7, ncol=2)
    if report.get("training"):
        rows = report["training"]
        axes[2].plot([r["batch_size"] for r in rows], [r["samples_per_s"] for r in rows], "o-")
        axes[2].set(
            xscale="log",
            xlabel="batch size",
            ylabel="samples / s",
            title="MNIST MLP training throughput",
        )
        axes[2].minorticks_off()
        axes[2].set_xticks([r["batch_size"] for r in rows], [str(r["batch_size"]) for r in rows])
        axes[2].set_ylim(bottom=0)
    info = report["device"]
    fig.suptitle(f"{info['device']} ({info['backend']}), JAX {info['jax_version']}")
    fig.savefig(path, dpi=110)
