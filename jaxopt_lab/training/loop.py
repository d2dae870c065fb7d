"""``fit``: a short loop over the pure pieces of :mod:`jaxopt_lab.training.step`.

Each epoch is one compiled call (:func:`~jaxopt_lab.training.step.train_epoch`), then one
jitted :func:`~jaxopt_lab.training.step.evaluate`; the run folder
(:class:`~jaxopt_lab.training.runs.RunFolder`) receives a checkpoint after every epoch and
the metrics and figures at the end.
"""

from __future__ import annotations

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

from jaxopt_lab.runtime import device_info
from jaxopt_lab.training import parallel
from jaxopt_lab.training.data import Dataset
from jaxopt_lab.training.runs import Checkpoint, History, RunFolder
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

    run_epoch: Callable[[TrainState, jax.Array], tuple[TrainState, StepMetrics]]
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
) -> _Compiled:
    """Place state and data (replicated over a mesh for data parallelism) and bind the
    epoch and evaluation functions to them."""
    arrays = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
    batch_layout = None
    if data_parallel:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(batch_size, mesh)
        state, arrays = parallel.replicate((state, arrays), mesh)
        batch_layout = parallel.batch_sharding(mesh)
    train_images, train_labels, test_images, test_labels = arrays
    epoch = jax.jit(
        partial(
            train_epoch,
            graphdef=graphdef,
            optimizer=optimizer,
            batch_size=batch_size,
            compute_dtype=compute_dtype,
            batch_sharding=batch_layout,
        )
    )
    return _Compiled(
        run_epoch=lambda state, key: epoch(state, key, train_images, train_labels),
        validate=lambda state: evaluate(
            state, test_images, test_labels, graphdef=graphdef, compute_dtype=compute_dtype
        ),
        state=state,
        test_images=test_images,
        test_labels=test_labels,
    )


def _diverged(epoch: int, loss: float, val_loss: float, run: RunFolder | None) -> Exception:
    kept = (
        f"the last good checkpoint (epoch {epoch}) is kept in {run.path}"
        if run is not None and epoch
        else "no checkpoint was written"
    )
    return TrainingDivergedError(
        f"training diverged: the loss became {loss} (validation loss {val_loss}) in "
        f"epoch {epoch + 1}; stopped, {kept}. Try a smaller learning rate or --clip-norm."
    )


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
    data_parallel: bool = False,
    compute_dtype: jnp.dtype = jnp.float32,
    run_info: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs and return the history.

    ``model`` is updated in place with the trained parameters (as Keras's ``fit`` does).
    With ``out_dir`` the run folder receives a checkpoint (state, epoch, key, history,
    configuration) and ``history.csv`` after every epoch, and at the end ``metrics.json``
    (``run_info`` is merged into it), ``learning_curves.png`` and ``predictions.png``.
    ``resume=True`` continues from the checkpoint in ``out_dir`` up to ``epochs`` epochs
    in total; with the same seed it reaches exactly the parameters of an uninterrupted run.

    Raises:
      ValueError: bad ``epochs``/``batch_size``, or a checkpoint of another model
        (:class:`~jaxopt_lab.training.runs.CheckpointError`).
      FileNotFoundError: ``resume`` without a checkpoint in ``out_dir``.
      TrainingDivergedError: the training or validation loss of an epoch became NaN or
        infinite (the latter catches parameters broken by the epoch's last step); the
        last good checkpoint is kept.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    check_batch_size(batch_size, dataset.train_labels.shape[0])
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    run = RunFolder(out_dir) if out_dir is not None else None
    config = {"epochs": epochs, "batch_size": batch_size, "seed": seed, **(run_info or {})}
    graphdef, state = init_train_state(model, optimizer)
    checkpoint = Checkpoint(state, 0, jax.random.key(seed), History(), config)
    if resume:
        checkpoint = run.load(state)
        if checkpoint.epoch > epochs:
            raise ValueError(f"the checkpoint is at epoch {checkpoint.epoch}, past epochs={epochs}")
    compiled = _compile(
        checkpoint.state, graphdef, optimizer, dataset, batch_size, compute_dtype, data_parallel
    )
    state, key, history = compiled.state, checkpoint.key, checkpoint.history
    bar = tqdm(
        range(checkpoint.epoch, epochs),
        initial=checkpoint.epoch,
        total=epochs,
        desc="train",
        unit="epoch",
        disable=not progress,
    )
    for epoch in bar:
        start = time.perf_counter()
        key, epoch_key = jax.random.split(key)
        state, train = compiled.run_epoch(state, epoch_key)
        val = compiled.validate(state)
        loss, accuracy, val_loss, val_accuracy = (float(x) for x in (*train, *val))
        if not (math.isfinite(loss) and math.isfinite(val_loss)):
            raise _diverged(epoch, loss, val_loss, run)
        history.append(
            epoch=epoch + 1,
            loss=loss,
            accuracy=accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            seconds=time.perf_counter() - start,
        )
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", val_acc=f"{val_accuracy:.4f}")
        if run is not None:
            run.save(Checkpoint(state, epoch + 1, key, history, config))
    bar.close()

    nnx.update(model, state.params, state.model_state)
    if run is not None:
        _finish(run, compiled, state, graphdef, history, config, dataset.name, compute_dtype)
    return history


def _finish(
    run: RunFolder,
    compiled: _Compiled,
    state: TrainState,
    graphdef: nnx.GraphDef,
    history: History,
    config: Mapping[str, Any],
    dataset_name: str,
    compute_dtype: jnp.dtype,
) -> None:
    """Final test metrics, the 5x5 prediction grid and the figures."""
    test = compiled.validate(state)
    sample = compiled.test_images[:25]
    predicted = predict(state, sample, graphdef=graphdef, compute_dtype=compute_dtype)
    metrics = {
        "test_accuracy": float(test.accuracy),
        "test_loss": float(test.loss),
        "train_seconds": sum(history.seconds),
        **config,
        "epochs": len(history.epoch),
        "dataset": dataset_name,
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
