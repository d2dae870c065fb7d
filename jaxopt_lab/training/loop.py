"""``fit``: a short loop over the pure pieces of :mod:`jaxopt_lab.training.step`.

Each epoch is one compiled call (:func:`~jaxopt_lab.training.step.train_epoch`), then one
jitted :func:`~jaxopt_lab.training.step.evaluate`; the run folder
(:class:`~jaxopt_lab.training.runs.RunFolder`) receives a checkpoint after every epoch and
the metrics and figures at the end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxopt_lab import runtime
from jaxopt_lab.runtime import device_info
from jaxopt_lab.training import parallel
from jaxopt_lab.training.data import Dataset
from jaxopt_lab.training.runs import (
    Checkpoint,
    ConfigChangedError,
    History,
    RunFolder,
    config_changes,
    run_config,
)
from jaxopt_lab.training.step import (
    StepMetrics,
    TrainState,
    check_batch_size,
    evaluate,
    init_train_state,
    predict,
    train_epoch,
)


class TrainingDivergedError(RuntimeError):
    """The training or validation loss became NaN or infinite."""


@dataclass(frozen=True)
class _Compiled:
    """The jitted pieces of one run and the device arrays they read."""

    # (state, the run's key) -> (state, the epoch's metrics, the key of the next epoch)
    run_epoch: Callable[[TrainState, jax.Array], tuple[TrainState, StepMetrics, jax.Array]]
    validate: Callable[[TrainState], StepMetrics]
    state: TrainState
    test_images: jax.Array
    test_labels: jax.Array


def _compile(
    state: TrainState,
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    dataset: Dataset,
    batch_size: int,
    compute_dtype: jnp.dtype,
    data_parallel: bool,
    program_id: str | None,
) -> _Compiled:
    """Place state and data (replicated over a mesh for data parallelism) and bind the
    epoch and evaluation functions to them; with a ``program_id`` (one device only) the
    epoch's traced program is kept and reused across processes."""
    arrays = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
    batch_layout = None
    if data_parallel:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(batch_size, mesh)
        state, arrays = parallel.replicate((state, arrays), mesh)
        batch_layout = parallel.batch_sharding(mesh)
    else:
        # Committed to the device from the start, as every later state is (the output of
        # an epoch): arguments that change from uncommitted to committed make the stored
        # epoch program (and the evaluation after it) compile a second time.
        device = jax.devices()[0]
        state, arrays = jax.device_put((state, arrays), device)
    train_images, train_labels, test_images, test_labels = arrays
    train = partial(
        train_epoch,
        graphdef=graphdef,
        optimizer=optimizer,
        batch_size=batch_size,
        compute_dtype=compute_dtype,
        batch_sharding=batch_layout,
    )

    # The key is split inside the epoch's program: split on its own, it is one more
    # program to trace, lower and load in the first epoch (about 25 ms warm, 0.1 s cold).
    def epoch(state, key, images, labels):
        key, epoch_key = jax.random.split(key)
        return (*train(state, epoch_key, images, labels), key)

    if program_id is None or data_parallel:
        jitted = jax.jit(epoch)
        bound = lambda state, key: jitted(state, key, train_images, train_labels)  # noqa: E731
    else:
        program_id = f"{program_id}/batch {batch_size}/{jnp.dtype(compute_dtype)}"
        bound = _exported_epoch(epoch, state, train_images, train_labels, program_id)
    if data_parallel:
        run_epoch = bound
    else:  # the run's key committed too, as the keys the epochs return are
        run_epoch = lambda state, key: bound(state, jax.device_put(key, device))  # noqa: E731
    return _Compiled(
        run_epoch=run_epoch,
        validate=lambda state: evaluate(
            state, test_images, test_labels, graphdef=graphdef, compute_dtype=compute_dtype
        ),
        state=state,
        test_images=test_images,
        test_labels=test_labels,
    )


def _exported_epoch(
    epoch: Callable[..., tuple[TrainState, StepMetrics, jax.Array]],
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    program_id: str,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, StepMetrics, jax.Array]]:
    """``epoch`` bound to the training arrays, through
    :func:`~jaxopt_lab.runtime.exported_program`: the program sees flat arrays (the
    key as its raw data, the state as its leaves) and this wrapper rebuilds the pytrees,
    whose structure the epoch keeps."""
    leaves, structure = jax.tree.flatten(state)
    example_key = jax.random.key(0)
    key_impl = jax.random.key_impl(example_key)

    def flat_epoch(key_data, images, labels, *leaves):
        key = jax.random.wrap_key_data(key_data, impl=key_impl)
        new_state, metrics, key = epoch(jax.tree.unflatten(structure, leaves), key, images, labels)
        return (jax.random.key_data(key), *metrics, *jax.tree.leaves(new_state))

    example_args = (jax.random.key_data(example_key), images, labels, *leaves)
    program = runtime.exported_program(
        flat_epoch, example_args, f"{program_id}/{key_impl}/{structure}"
    )

    def run_epoch(state, key):
        key_data, loss, accuracy, *leaves = program(
            jax.random.key_data(key), images, labels, *jax.tree.leaves(state)
        )
        new_key = jax.random.wrap_key_data(key_data, impl=key_impl)
        return jax.tree.unflatten(structure, leaves), StepMetrics(loss, accuracy), new_key

    return run_epoch


# An epoch diverges when its training or validation loss is not finite or exceeds this
# many times the run's reference loss (see fit).
DIVERGENCE_FACTOR = 10.0


class RunExistsError(FileExistsError):
    """The output folder already holds a run, and neither resume nor overwrite was asked."""


def _diverged(
    epoch: int, loss: float, val_loss: float, limit: float, run: RunFolder | None
) -> TrainingDivergedError:
    kept = (
        f"the last good checkpoint (epoch {epoch}) is kept in {run.path}"
        if run is not None and epoch
        else "no checkpoint was written"
    )
    return TrainingDivergedError(
        f"training diverged: the loss became {loss:.4g} (validation loss {val_loss:.4g}; "
        f"the limit is {limit:.4g}, {DIVERGENCE_FACTOR:g}x the starting loss) in "
        f"epoch {epoch + 1}; stopped, {kept}. Try a smaller learning rate or --clip-norm."
    )


def _is_diverged(losses: tuple[float, ...], limit: float) -> bool:
    return not all(math.isfinite(loss) and loss <= limit for loss in losses)


def fit(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    dataset: Dataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_config_change: bool = False,
    data_parallel: bool = False,
    compute_dtype: jnp.dtype = jnp.float32,
    run_info: Mapping[str, Any] | None = None,
    progress: bool = True,
    program_id: str | None = None,
) -> History:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs and return the history.

    ``model`` is updated in place with the trained parameters (as Keras's ``fit`` does);
    when training stops early (divergence, ``KeyboardInterrupt``) it holds the state of
    the last completed good epoch. With ``out_dir`` the run folder receives a checkpoint
    (state, epoch, key, history, configuration) and ``history.csv`` after every epoch, and
    at the end ``metrics.json`` (``run_info`` and the data's provenance are merged into
    it), ``learning_curves.png`` and ``predictions.png``. ``resume=True`` continues from
    the checkpoint in ``out_dir`` up to ``epochs`` epochs in total; with the same seed it
    reaches exactly the parameters of an uninterrupted run. A folder that already holds
    a run is only started afresh with ``overwrite=True``.

    ``program_id`` (a string naming the model, the optimizer with its schedule, and
    anything else the epoch's program depends on besides the batch size, the compute
    dtype and the data's shapes) keeps the traced epoch on disk next to the persistent
    compilation cache, when that is on, so that a later process with the same
    ``program_id`` skips tracing and lowering it
    (:func:`~jaxopt_lab.runtime.exported_program`); ``jaxopt-lab train`` passes its
    settings. Not used with ``data_parallel``.

    Divergence rule: with ``L0`` the validation loss of the starting parameters and
    ``K`` the number of classes, the reference loss is ``L_ref = max(L0, log K)`` (``log
    K`` is the loss of a uniform prediction); an epoch diverges when its mean training
    loss or its validation loss is NaN, infinite or above ``DIVERGENCE_FACTOR * L_ref``.
    ``L_ref`` is saved in the checkpoint, so a resumed run keeps its rule.

    Raises:
      ValueError: bad ``epochs``/``batch_size``, a checkpoint of another model
        (:class:`~jaxopt_lab.training.runs.CheckpointError`), or ``resume`` with settings
        other than the checkpoint's (:class:`~jaxopt_lab.training.runs.ConfigChangedError`,
        unless ``allow_config_change``).
      FileNotFoundError: ``resume`` without a checkpoint in ``out_dir``.
      RunExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
      TrainingDivergedError: an epoch diverged (the validation loss catches parameters
        broken by the epoch's last step); the last good checkpoint is kept.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    check_batch_size(batch_size, dataset.train_labels.shape[0])
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    run = RunFolder(out_dir) if out_dir is not None else None
    if run is not None and not resume and run.holds_a_run():
        if not overwrite:
            raise RunExistsError(
                f"{run.path} already holds a run; pass --resume to continue it, --overwrite "
                "to start it afresh, or choose another --out"
            )
        run.clear()
    config = run_config(epochs, batch_size, seed, run_info)
    graphdef, state = init_train_state(model, optimizer)
    checkpoint = None
    if resume:
        checkpoint = run.load(state)
        changes = config_changes(checkpoint.config, config)
        if changes and not allow_config_change:
            raise ConfigChangedError(changes)
        if checkpoint.epoch > epochs:
            raise ValueError(f"the checkpoint is at epoch {checkpoint.epoch}, past epochs={epochs}")
        state = checkpoint.state
    compiled = _compile(
        state, graphdef, optimizer, dataset, batch_size, compute_dtype, data_parallel, program_id
    )
    state = compiled.state
    if checkpoint is None:
        start_loss = float(compiled.validate(state).loss)
        reference = max(start_loss, math.log(dataset.num_classes))
        checkpoint = Checkpoint(state, 0, jax.random.key(seed), History(), config, reference)
    checkpoint = dataclasses.replace(checkpoint, config=config)
    limit = DIVERGENCE_FACTOR * checkpoint.reference_loss
    key, history = checkpoint.key, checkpoint.history
    bar = tqdm(
        range(checkpoint.epoch, epochs),
        initial=checkpoint.epoch,
        total=epochs,
        desc="train",
        unit="epoch",
        disable=not progress,
    )
    try:
        for epoch in bar:
            start = time.perf_counter()
            new_state, train, key = compiled.run_epoch(state, key)
            val = compiled.validate(new_state)
            loss, accuracy, val_loss, val_accuracy = (float(x) for x in (*train, *val))
            if _is_diverged((loss, val_loss), limit):
                raise _diverged(epoch, loss, val_loss, limit, run)
            state = new_state
            history.append(
                epoch=epoch + 1,
                loss=loss,
                accuracy=accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                seconds=time.perf_counter() - start,
            )
            bar.set_postfix(
                loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", val_acc=f"{val_accuracy:.4f}"
            )
            if run is not None:
                run.save(dataclasses.replace(checkpoint, state=state, epoch=epoch + 1, key=key))
    finally:  # divergence or Ctrl-C: the model keeps the last completed good epoch
        bar.close()
        nnx.update(model, state.params, state.model_state)

    if run is not None:
        _finish(run, compiled, state, graphdef, history, config, dataset, compute_dtype)
    return history


def _finish(
    run: RunFolder,
    compiled: _Compiled,
    state: TrainState,
    graphdef: nnx.GraphDef,
    history: History,
    config: Mapping[str, Any],
    dataset: Dataset,
    compute_dtype: jnp.dtype,
) -> None:
    """Final test metrics, the data's provenance, the 5x5 prediction grid and the figures."""
    test = compiled.validate(state)
    sample = compiled.test_images[:25]
    predicted = predict(state, sample, graphdef=graphdef, compute_dtype=compute_dtype)
    metrics = {
        "test_accuracy": float(test.accuracy),
        "test_loss": float(test.loss),
        "train_seconds": sum(history.seconds),
        **config,
        "epochs": len(history.epoch),
        "dataset": dataset.name,
        "data": _data_record(dataset),
        "compute_dtype": jnp.dtype(compute_dtype).name,
        "device": device_info(),
    }
    run.finish(
        metrics,
        history,
        np.asarray(sample),
        np.asarray(predicted),
        np.asarray(compiled.test_labels[:25]),
    )


def _data_record(dataset: Dataset) -> dict[str, Any]:
    """The provenance of the data a run used, with the sizes of the splits it really used
    (a subset keeps its dataset's provenance, so its sizes are measured here)."""
    used = {"train": int(dataset.train_labels.shape[0]), "test": int(dataset.test_labels.shape[0])}
    provenance = {} if dataset.provenance is None else dataclasses.asdict(dataset.provenance)
    return {**provenance, "name": dataset.name, "used_split_sizes": used}
