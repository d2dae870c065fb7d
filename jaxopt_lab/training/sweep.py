"""Many trainings in one compiled program: ``jax.vmap`` over seeds x hyperparameters.

A *run* trains a fresh model for ``num_evals * steps_per_eval`` optimizer steps and
records a learning curve: the training loss (on a fixed evaluation subset of the training
split, inference mode), the validation loss and accuracy at step 0 and after every
``steps_per_eval`` steps, plus whatever an optional ``probe(state)`` returns. The run is
a ``lax.scan`` over evaluation points of a ``lax.scan`` over
:func:`jaxopt_lab.training.step.train_step`, so it is one pure function of ``(hyperparameters,
seed)``.

:func:`sweep` builds the optimizer *inside* that function from traced hyperparameters (a
learning rate is just a traced scalar to :func:`~jaxopt_lab.optim.registry.make_optimizer`)
and ``jax.vmap``-s it over the flattened grid ``hyperparameters x seeds``: every run of
the grid in one compiled call; with ``devices``, the runs (grid points or seeds) are
spread over several devices, each vmapping its share. ``vectorize=False`` runs the same
compiled single run once per grid point instead (the sequential baseline, and per-run
wall times).

Batches are drawn uniformly with replacement from the training split at every step (the
textbook SGD estimator), the same sequence for every run of a sweep; ``batch_size``
equal to the split size is full-batch gradient
descent on all examples. Evaluation subsets are the caller's choice (pass the same
arrays as the training data to evaluate on all of it).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxopt_lab import runtime
from jaxopt_lab.optim.base import tree_bytes
from jaxopt_lab.optim.registry import make_optimizer
from jaxopt_lab.training.step import (
    StepDropout,
    TrainState,
    draw_dropout_ahead,
    evaluate,
    init_train_state,
    train_step,
)

# hyperparameters (traced scalars by name) and a PRNG key -> optimizer
OptimizerFactory = Callable[[Mapping[str, jax.Array], jax.Array], optax.GradientTransformation]
# (hyperparameters, PRNG key) -> freshly initialised model
ModelFactory = Callable[[Mapping[str, jax.Array], jax.Array], nnx.Module]
# (state, graphdef) -> pytree of arrays recorded at every evaluation point
Probe = Callable[[TrainState, nnx.GraphDef], Any]


class SweepData(NamedTuple):
    """Device arrays a sweep trains and evaluates on (uint8 images, int32 labels)."""

    train_images: jax.Array
    train_labels: jax.Array
    eval_images: jax.Array
    eval_labels: jax.Array
    val_images: jax.Array
    val_labels: jax.Array
    # held out for reporting: when given, each run is evaluated on it once, after training
    test_images: jax.Array | None = None
    test_labels: jax.Array | None = None

    def without_test(self) -> SweepData:
        """The same data with no test split (tuning never sees the test set)."""
        return self._replace(test_images=None, test_labels=None)


class Curve(NamedTuple):
    """Metrics at each evaluation point (step 0 first); leading axes are the grid's. The
    test metrics are measured once, after the last step, and only when the sweep's data
    holds a test split (else ``None``)."""

    train_loss: jax.Array
    val_loss: jax.Array
    val_accuracy: jax.Array
    probes: Any
    test_loss: jax.Array | None = None
    test_accuracy: jax.Array | None = None


@dataclass(frozen=True)
class SweepResult:
    """The curves of a sweep, indexed ``[h_1, ..., h_k, seed, evaluation]``.

    ``grid`` maps each hyperparameter to its values (axis ``i`` of the curves is the
    ``i``-th hyperparameter). ``run_seconds[..., seed]`` is each run's wall time without
    compilation: measured per run when ``vectorized`` is False, else the batched call's
    time divided by the number of runs.
    """

    grid: dict[str, np.ndarray]
    seeds: np.ndarray
    steps: np.ndarray
    curves: Curve
    run_seconds: np.ndarray
    compile_seconds: float
    total_seconds: float
    vectorized: bool
    runs_per_batch: int | None = None  # runs vmapped side by side (vectorized sweeps)
    num_devices: int = 1  # devices the runs were spread over (vectorized sweeps)


def named_optimizer(name: str, **options: Any) -> OptimizerFactory:
    """A factory building ``make_optimizer(name, hyperparameters["learning_rate"], ...)``."""

    def factory(hyperparameters: Mapping[str, jax.Array], key: jax.Array):
        del key  # deterministic optimizer
        return make_optimizer(name, hyperparameters["learning_rate"], **options)

    return factory


def train_curve(
    state: TrainState,
    batch_key: jax.Array,
    dropout_key: jax.Array,
    data: SweepData,
    *,
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    num_evals: int,
    steps_per_eval: int,
    probe: Probe | None = None,
) -> tuple[TrainState, Curve]:
    """Train from ``state`` and record the curve at ``num_evals + 1`` points; pure."""
    num_train = data.train_labels.shape[0]
    if not 1 <= batch_size <= num_train:
        raise ValueError(f"batch_size must be in [1, {num_train}], got {batch_size}")
    full_batch = batch_size == num_train

    def measure(state: TrainState) -> Curve:
        train = evaluate(state, data.eval_images, data.eval_labels, graphdef=graphdef)
        val = evaluate(state, data.val_images, data.val_labels, graphdef=graphdef)
        probes = None if probe is None else probe(state, graphdef)
        return Curve(train.loss, val.loss, val.accuracy, probes)

    def step(state: TrainState, inputs: tuple[jax.Array, StepDropout]) -> tuple[TrainState, None]:
        batch_key, dropout = inputs
        if full_batch:
            images, labels = data.train_images, data.train_labels
        else:
            indices = jax.random.randint(batch_key, (batch_size,), 0, num_train)
            images, labels = data.train_images[indices], data.train_labels[indices]
        state, _ = train_step(
            state,
            images,
            labels,
            dropout.key,
            graphdef=graphdef,
            optimizer=optimizer,
            dropout_masks=dropout.masks,
        )
        return state, None

    def chunk(state: TrainState, keys: tuple[jax.Array, jax.Array]) -> tuple[TrainState, Curve]:
        batch_keys, dropout_keys = (jax.random.split(k, steps_per_eval) for k in keys)
        dropout = draw_dropout_ahead(graphdef, state, dropout_keys, batch_size)
        state, _ = jax.lax.scan(step, state, (batch_keys, dropout))
        return state, measure(state)

    start = measure(state)
    chunk_keys = tuple(jax.random.split(k, num_evals) for k in (batch_key, dropout_key))
    state, later = jax.lax.scan(chunk, state, chunk_keys)
    curve = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), start, later)
    if data.test_images is not None:
        test = evaluate(state, data.test_images, data.test_labels, graphdef=graphdef)
        curve = curve._replace(test_loss=test.loss, test_accuracy=test.accuracy)
    return state, curve


def sweep(
    optimizer_factory: OptimizerFactory,
    grid: Mapping[str, Sequence[float]],
    seeds: Sequence[int],
    data: SweepData,
    *,
    model_factory: ModelFactory,
    batch_size: int,
    num_evals: int,
    steps_per_eval: int,
    probe: Probe | None = None,
    vectorize: bool = True,
    runs_per_batch: int | Literal["auto"] | None = None,
    data_seed: int | None = 0,
    devices: Sequence[jax.Device] | None = None,
) -> SweepResult:
    """Train one model per point of ``grid`` (cartesian product) and per seed.

    The seed initialises the model (``model_factory(hparams, key)``) and drives dropout
    and any randomness of the optimizer (``optimizer_factory(hparams, key)``); runs with
    the same seed and different hyperparameters are paired. With an integer ``data_seed``
    every run of the sweep sees the same sequence of batches, drawn with it (common random
    numbers: the comparison is not blurred by data order, and under ``vmap`` each batch is
    gathered once and its input-layer product is one matrix product for all runs). With
    ``data_seed=None`` the run's seed also draws its batch order, so seeds vary both
    initialisation and data order, and runs of the same seed (any optimizer or
    hyperparameter) still see the same batches. Vectorized,
    the runs of one seed share what depends on the seed alone: the initial model (when
    the model factory ignores the hyperparameters) and every dropout mask are computed
    once per seed, not once per run.

    ``runs_per_batch`` bounds how many runs are vmapped side by side: every seed, times
    a whole number of grid points (at least one); the batches follow one another inside
    the same compiled program (``lax.map`` with a batch size).
    The default, all runs at once, suits accelerators; on a CPU, batches whose
    parameters and optimizer states fit in the cache can be faster: ``"auto"`` chooses
    that size (:func:`auto_runs_per_batch`).

    ``devices`` spreads a vectorized sweep's runs over several devices
    (``jax.shard_map``): each device trains its share of the grid points for every seed,
    or, when that pads less, its share of the seeds at every point, vmapped in batches as
    above; the devices run at once (a single device given runs the whole sweep there).
    Pass ``jax.devices()`` on a machine with several accelerators, or on a CPU whose
    cores were made devices before JAX started
    (``jax.config.update("jax_num_cpu_devices", os.cpu_count())``): there each core
    trains its own runs, which scales better than splitting every small product between
    the cores. The axis spread is padded to a multiple of the device count by repeating
    its last point or seed (the padding's runs are computed and dropped).

    The compiled program is cached on the factories, probe and budget (the same function
    objects give the same program), and ``data`` is an argument of it, so sweeping
    again on other data of the same shapes (e.g. with flipped labels) does not recompile.
    """
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid needs at least one hyperparameter with at least one value")
    if not seeds:
        raise ValueError("seeds must not be empty")
    if runs_per_batch != "auto" and runs_per_batch is not None and runs_per_batch < 1:
        raise ValueError(f"runs_per_batch must be >= 1 or 'auto', got {runs_per_batch!r}")
    if num_evals < 1 or steps_per_eval < 1:
        raise ValueError(
            f"num_evals and steps_per_eval must be >= 1, got {num_evals}, {steps_per_eval}"
        )
    if devices is not None and (not vectorize or len(devices) == 0):
        raise ValueError("devices needs vectorize=True and at least one device")
    names = list(grid)
    grid_points = list(itertools.product(*(grid[name] for name in names)))
    columns = np.asarray(grid_points, dtype=np.float64).T
    hyperparameters = {n: jnp.asarray(columns[i], jnp.float32) for i, n in enumerate(names)}
    seed_array = jnp.asarray(seeds, jnp.uint32)
    num_runs = len(grid_points) * len(seeds)
    single, batched, init_state = _compiled_runs(
        optimizer_factory,
        model_factory,
        probe,
        batch_size,
        num_evals,
        steps_per_eval,
        tuple(names),
        data_seed,
    )

    if runs_per_batch == "auto":
        example = {n: v[0] for n, v in hyperparameters.items()}
        state = jax.eval_shape(init_state, example, seed_array[0])  # shapes only
        runs_per_batch = auto_runs_per_batch(tree_bytes(state), num_runs)
    num_devices = 1 if devices is None else len(devices)
    layout = _spread(len(grid_points), len(seeds), num_devices)
    # a device's seeds run side by side: a batch holds a whole number of points per seed
    points_per_batch = max(1, (runs_per_batch or num_runs) // layout.seeds_per_device)
    points_per_batch = min(points_per_batch, layout.points_per_device)
    start = time.perf_counter()
    if vectorize:
        if devices is None:
            compiled, compile_seconds = runtime.compile_timed(
                batched, hyperparameters, seed_array, data, points_per_batch=points_per_batch
            )
        else:
            mesh = jax.sharding.Mesh(np.asarray(devices), (_RUNS,))
            hyperparameters = {
                n: _pad_with_last(v, layout.point_padding) for n, v in hyperparameters.items()
            }
            seed_array = _pad_with_last(seed_array, layout.seed_padding)
            data = jax.device_put(data, jax.sharding.NamedSharding(mesh, P()))
            spread = _spread_over(batched, mesh, points_per_batch, layout.seeds_spread)
            compiled, compile_seconds = runtime.compile_timed(
                spread, hyperparameters, seed_array, data
            )
        tick = time.perf_counter()
        curves = jax.block_until_ready(compiled(hyperparameters, seed_array, data))
        # [seed, point, ...] -> runs in grid order, the seed varying fastest
        curves = jax.tree.map(
            lambda x: jnp.swapaxes(x[: len(seeds), : len(grid_points)], 0, 1).reshape(
                num_runs, *x.shape[2:]
            ),
            curves,
        )
        run_seconds = np.full(num_runs, (time.perf_counter() - tick) / num_runs)
    else:
        first = {n: v[0] for n, v in hyperparameters.items()}
        compiled, compile_seconds = runtime.compile_timed(single, first, seed_array[0], data)
        outputs, times = [], []
        for index, seed in itertools.product(range(len(grid_points)), seed_array):
            tick = time.perf_counter()
            hparams = {n: v[index] for n, v in hyperparameters.items()}
            outputs.append(jax.block_until_ready(compiled(hparams, seed, data)))
            times.append(time.perf_counter() - tick)
        curves = jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)
        run_seconds = np.asarray(times)
    total_seconds = time.perf_counter() - start

    shape = (*(len(grid[n]) for n in names), len(seeds))
    curves = jax.tree.map(lambda x: np.asarray(x).reshape(*shape, *x.shape[1:]), curves)
    return SweepResult(
        grid={n: np.asarray(grid[n], dtype=np.float64) for n in names},
        seeds=np.asarray(seeds),
        steps=np.arange(num_evals + 1) * steps_per_eval,
        curves=curves,
        run_seconds=run_seconds.reshape(shape),
        compile_seconds=compile_seconds,
        total_seconds=total_seconds,
        vectorized=vectorize,
        runs_per_batch=points_per_batch * layout.seeds_per_device if vectorize else None,
        num_devices=num_devices,
    )


def auto_runs_per_batch(state_bytes: int, runs: int) -> int:
    """How many runs to vmap side by side: all of them on an accelerator; on a CPU as many
    as keep every run's working set (its parameters, gradients and optimizer state, taken
    as 2x the bytes of its train state) within half the last-level cache, at least one."""
    if jax.default_backend() != "cpu":
        return runs
    cache = runtime.cpu_cache_bytes(3) or runtime.cpu_cache_bytes(2)
    if cache is None:
        return runs
    return max(1, min(runs, int(0.5 * cache) // max(1, 2 * state_bytes)))


@functools.lru_cache(maxsize=64)
def _compiled_runs(
    optimizer_factory: OptimizerFactory,
    model_factory: ModelFactory,
    probe: Probe | None,
    batch_size: int,
    num_evals: int,
    steps_per_eval: int,
    names: tuple[str, ...],
    data_seed: int | None,
) -> tuple[Callable, Callable, Callable]:
    """The jitted single run ``(hparams, seed, data) -> Curve``, the batched runs
    ``(hparams, seeds, data, points_per_batch)`` (every seed side by side, the grid points in
    vmapped batches), and
    ``init_state(hparams, seed) -> (TrainState, optimizer)``'s state alone, for sizing."""
    example = {n: jnp.zeros((), jnp.float32) for n in names}
    graphdef, _ = init_train_state(model_factory(example, jax.random.key(0)), optax.identity())

    def start(hparams: Mapping[str, jax.Array], seed: jax.Array):
        init_key, optimizer_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
        optimizer = optimizer_factory(hparams, optimizer_key)
        _, state = init_train_state(model_factory(hparams, init_key), optimizer)
        return state, optimizer, dropout_key

    def one_run(hparams: Mapping[str, jax.Array], seed: jax.Array, data: SweepData) -> Curve:
        state, optimizer, dropout_key = start(hparams, seed)
        if data_seed is None:  # the run's seed draws its batch order too
            batch_key = jax.random.fold_in(jax.random.key(seed), 1)
        else:
            batch_key = jax.random.key(data_seed)
        _, curve = train_curve(
            state,
            batch_key,
            dropout_key,
            data,
            graphdef=graphdef,
            optimizer=optimizer,
            batch_size=batch_size,
            num_evals=num_evals,
            steps_per_eval=steps_per_eval,
            probe=probe,
        )
        return curve

    def batched(hparams, seeds, data, points_per_batch):
        """Curves ``[seed, point, ...]``: the seeds side by side (``vmap``), and per seed
        the grid points in vmapped batches of ``points_per_batch``. Within a batch the
        seed is not batched, so what depends on it alone (initialisation, every dropout
        mask) is computed once for all the batch's points, not once per run."""

        def per_seed(seed):
            return jax.lax.map(
                lambda h: one_run(h, seed, data), hparams, batch_size=points_per_batch
            )

        return jax.vmap(per_seed)(seeds)

    def init_state(hparams: Mapping[str, jax.Array], seed: jax.Array) -> TrainState:
        return start(hparams, seed)[0]

    return jax.jit(one_run), jax.jit(batched, static_argnames="points_per_batch"), init_state


_RUNS = "runs"  # the mesh axis a sweep's grid points or seeds are spread over


class _Layout(NamedTuple):
    """How a sweep's runs are laid over its devices."""

    seeds_spread: bool  # each device runs some seeds at every point (else some points)
    point_padding: int  # points repeated to fill the last device
    seed_padding: int  # seeds repeated to fill the last device
    points_per_device: int
    seeds_per_device: int


def _spread(num_points: int, num_seeds: int, num_devices: int) -> _Layout:
    """Spread the grid points, or the seeds where repeating some to fill the last device
    pads fewer runs."""
    point_padding, seed_padding = -num_points % num_devices, -num_seeds % num_devices
    if num_points * seed_padding < point_padding * num_seeds:
        per_device = (num_seeds + seed_padding) // num_devices
        return _Layout(True, 0, seed_padding, num_points, per_device)
    per_device = (num_points + point_padding) // num_devices
    return _Layout(False, point_padding, 0, per_device, num_seeds)


def _pad_with_last(values: jax.Array, count: int) -> jax.Array:
    return jnp.concatenate([values, jnp.repeat(values[-1:], count)])


@functools.lru_cache(maxsize=16)
def _spread_over(
    batched: Callable, mesh: jax.sharding.Mesh, points_per_batch: int, spread_seeds: bool
) -> Callable:
    """``batched`` with the grid points (or the seeds) split over ``mesh``'s devices, each
    running its share, the rest and the data replicated; the curves come back
    ``[seed, point, ...]``."""

    def local(hparams, seeds, data):
        return batched(hparams, seeds, data, points_per_batch=points_per_batch)

    spread = (P(), P(_RUNS)) if spread_seeds else (P(_RUNS), P())
    # every run's state starts from its (replicated) seed and turns per-device inside the
    # scans, which shard_map's varying-axes check would reject; each device is independent
    program = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(*spread, P()),
        out_specs=P(_RUNS) if spread_seeds else P(None, _RUNS),
        check_vma=False,
    )
    return jax.jit(program)


def best_index(result: SweepResult, hyperparameter: str = "learning_rate") -> int:
    """Index of the value of ``hyperparameter`` with the lowest final validation loss,
    averaged over seeds and any other hyperparameters; a diverged run counts as
    infinitely bad."""
    axis = list(result.grid).index(hyperparameter)
    final = result.curves.val_loss[..., -1]
    final = np.where(np.isfinite(final), final, np.inf)
    per_value = np.moveaxis(final, axis, 0).reshape(final.shape[axis], -1).mean(axis=1)
    return int(np.argmin(per_value))


def subset(dataset: Any, num_train: int, num_eval: int, num_val: int) -> SweepData:
    """The first examples of a :class:`~jaxopt_lab.training.data.Dataset`'s splits as sweep data:
    ``num_train`` to train on, the first ``num_eval`` of those to measure the training
    loss, the first ``num_val`` test examples to validate."""
    return SweepData(
        _head(dataset.train_images, num_train),
        _head(dataset.train_labels, num_train),
        _head(dataset.train_images, min(num_eval, num_train)),
        _head(dataset.train_labels, min(num_eval, num_train)),
        _head(dataset.test_images, num_val),
        _head(dataset.test_labels, num_val),
    )


def _head(array: jax.Array, count: int) -> jax.Array:
    return array[: min(count, array.shape[0])]
