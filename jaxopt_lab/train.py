"""Jitted training of Flax NNX classifiers with any optax-style optimizer.

The pieces, from small to large:

- :func:`init_train_state` splits an NNX model once (``nnx.split``) into a static
  ``graphdef`` and a :class:`TrainState` pytree (step, params, other model state such as
  batch-norm statistics, optimizer state).
- :func:`train_step` is a pure function of ``(state, images, labels, dropout_key)``: it
  merges the model inside (``nnx.merge``), takes the gradient of the mean softmax
  cross-entropy and applies the optimizer (``optimizer.update`` then
  :func:`jaxopt_lab.optim.apply_updates`).
- :func:`train_epoch` is one ``lax.scan`` of :func:`train_step` over shuffled index
  batches gathered from the device-resident uint8 arrays: one compiled call per epoch,
  no host round trips. Every step gets its own dropout key from the scan inputs. An
  epoch takes ``len(labels) // batch_size`` full batches; the remainder of a permutation
  is dropped (a fresh permutation each epoch, so every example is still seen).
  ``batch_size = len(labels)`` is full-batch gradient descent, 1 is plain SGD.
- :func:`evaluate` and :func:`predict` are jitted, deterministic (no dropout) passes.
- :func:`fit` is the driver: a tqdm bar over epochs, a Keras-like :class:`History`, a
  checkpoint after every epoch (``--resume`` continues bit-identically), a stop on a
  non-finite loss, and the run folder (metrics.json, history.csv, figures).

``graphdef``, ``optimizer``, ``batch_size`` and ``compute_dtype`` are static keyword
arguments; everything else is an array pytree, so the pieces compose with ``jax.jit``
and ``jax.vmap``. A sweep over seeds and learning rates builds the optimizer inside the
vmapped function::

    graphdef, _ = init_train_state(MLP(rngs=nnx.Rngs(0)), optax.adam(1e-3))

    def one_run(seed, learning_rate):
        optimizer = make_optimizer("adam", learning_rate)
        _, state = init_train_state(MLP(rngs=nnx.Rngs(jax.random.key(seed))), optimizer)
        return train_epoch(state, jax.random.key(seed), images, labels,
                           graphdef=graphdef, optimizer=optimizer, batch_size=32)

    states, metrics = jax.jit(jax.vmap(one_run))(seeds, learning_rates)

Mixed precision: ``compute_dtype=jnp.bfloat16`` casts the parameters and inputs to
bfloat16 for the forward and backward pass only; the gradient arrives in float32 (the
dtype of the parameters it is taken with respect to), and params and optimizer state
stay float32.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization
from tqdm.auto import tqdm

from jaxopt_lab import parallel
from jaxopt_lab.bench import device_info
from jaxopt_lab.data import Dataset
from jaxopt_lab.optim import apply_updates
from jaxopt_lab.optim.base import tree_cast

CHECKPOINT_FILE = "checkpoint.msgpack"


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree."""

    step: jax.Array
    params: nnx.State
    model_state: nnx.State
    opt_state: optax.OptState


class StepMetrics(NamedTuple):
    """Mean softmax cross-entropy and accuracy over a batch (or means over an epoch)."""

    loss: jax.Array
    accuracy: jax.Array


class TrainingDivergedError(RuntimeError):
    """The training or validation loss became NaN or infinite."""


def init_train_state(
    model: nnx.Module, optimizer: optax.GradientTransformation
) -> tuple[nnx.GraphDef, TrainState]:
    """Split ``model`` into its static graph and a fresh :class:`TrainState`."""
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    state = TrainState(jnp.zeros((), jnp.int32), params, model_state, optimizer.init(params))
    return graphdef, state


def _inputs(images: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """uint8 pixels in [0, 255] -> floats in [0, 1]."""
    return images.astype(dtype) / 255


def _forward(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    model_state: nnx.State,
    images: jax.Array,
    compute_dtype: jnp.dtype,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, nnx.State]:
    """Float32 logits and the updated model state (training mode iff a key is given).

    ``copy=True`` gives the merged model fresh Variables of the current trace, so batch
    norm may update its statistics inside ``jax.grad`` without a ``TraceContextError``.
    """
    model = nnx.merge(graphdef, tree_cast(params, compute_dtype), model_state, copy=True)
    logits = model(
        _inputs(images, compute_dtype), train=dropout_key is not None, dropout_key=dropout_key
    )
    new_model_state = nnx.state(model, nnx.Not(nnx.Param))
    new_model_state = jax.tree.map(
        lambda new, old: new.astype(old.dtype), new_model_state, model_state
    )
    return logits.astype(jnp.float32), new_model_state


def _loss_and_accuracy(logits: jax.Array, labels: jax.Array) -> StepMetrics:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return StepMetrics(loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels))


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    dropout_key: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    compute_dtype: jnp.dtype = jnp.float32,
) -> tuple[TrainState, StepMetrics]:
    """One optimizer step on the batch ``(images, labels)``; pure and jittable."""

    def loss_fn(params):
        logits, model_state = _forward(
            graphdef, params, state.model_state, images, compute_dtype, dropout_key
        )
        metrics = _loss_and_accuracy(logits, labels)
        return metrics.loss, (metrics, model_state)

    grads, (metrics, model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, model_state, opt_state), metrics


def train_epoch(
    state: TrainState,
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    compute_dtype: jnp.dtype = jnp.float32,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> tuple[TrainState, StepMetrics]:
    """One pass over a fresh permutation of the data as a single ``lax.scan``.

    Returns the new state and the mean training loss and accuracy over the epoch's
    steps (measured with dropout on, as Keras reports them). With ``batch_sharding``
    each gathered batch is laid out over the devices (data parallelism, see
    :mod:`jaxopt_lab.parallel`).
    """
    num_examples = labels.shape[0]
    if not 1 <= batch_size <= num_examples:
        raise ValueError(f"batch_size must be in [1, {num_examples}], got {batch_size}")
    num_batches = num_examples // batch_size
    order_key, dropout_key = jax.random.split(key)
    batches = jax.random.permutation(order_key, num_examples)[: num_batches * batch_size]
    batches = batches.reshape(num_batches, batch_size)
    dropout_keys = jax.random.split(dropout_key, num_batches)

    def step(state, inputs):
        indices, step_key = inputs
        batch_images, batch_labels = images[indices], labels[indices]
        if batch_sharding is not None:
            batch_images, batch_labels = jax.lax.with_sharding_constraint(
                (batch_images, batch_labels), batch_sharding
            )
        return train_step(
            state,
            batch_images,
            batch_labels,
            step_key,
            graphdef=graphdef,
            optimizer=optimizer,
            compute_dtype=compute_dtype,
        )

    state, metrics = jax.lax.scan(step, state, (batches, dropout_keys))
    return state, jax.tree.map(jnp.mean, metrics)


@partial(jax.jit, static_argnames=("graphdef", "compute_dtype"))
def evaluate(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    compute_dtype: jnp.dtype = jnp.float32,
) -> StepMetrics:
    """Mean cross-entropy and accuracy on ``(images, labels)`` in inference mode."""
    logits, _ = _forward(graphdef, state.params, state.model_state, images, compute_dtype)
    return _loss_and_accuracy(logits, labels)


@partial(jax.jit, static_argnames=("graphdef", "compute_dtype"))
def predict(
    state: TrainState,
    images: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    compute_dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """Predicted class of each image (argmax of the logits), in inference mode."""
    logits, _ = _forward(graphdef, state.params, state.model_state, images, compute_dtype)
    return jnp.argmax(logits, axis=-1)


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch metrics, like the ``history`` of a Keras ``fit``.

    ``loss``/``accuracy`` are means over the epoch's training steps; ``val_*`` are
    measured on the test split after the epoch; ``seconds`` is the epoch's wall time
    (training plus validation, compilation included on the first epoch).
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, **row: float) -> None:
        for name, value in row.items():
            getattr(self, name).append(value)

    def as_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    def write_csv(self, path: Path) -> None:
        columns = [f.name for f in fields(self)]
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(zip(*(getattr(self, name) for name in columns), strict=True))

    @classmethod
    def read_csv(cls, path: Path, *, epochs: int) -> History:
        """The rows of ``path`` for epochs ``1..epochs`` (empty if the file is missing)."""
        history = cls()
        if path.exists():
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    if int(row["epoch"]) <= epochs:
                        history.append(
                            **{
                                name: int(value) if name == "epoch" else float(value)
                                for name, value in row.items()
                            }
                        )
        return history


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: TrainState, epoch: int, key: jax.Array) -> None:
    """Write state, epoch and PRNG key as msgpack, atomically (temp file + rename)."""
    arrays = {
        jax.tree_util.keystr(path_): np.asarray(leaf)
        for path_, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
    }
    payload = {"epoch": epoch, "key": np.asarray(jax.random.key_data(key)), "state": arrays}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(serialization.msgpack_serialize(payload))
    os.replace(temporary, path)


def load_checkpoint(path: Path, like: TrainState) -> tuple[TrainState, int, jax.Array]:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like``."""
    payload = serialization.msgpack_restore(path.read_bytes())
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    arrays = payload["state"]
    names = [jax.tree_util.keystr(path_) for path_, _ in leaves_with_paths]
    if sorted(arrays) != sorted(names):
        raise ValueError(
            f"checkpoint {path} does not match this model and optimizer "
            f"({len(arrays)} arrays saved, {len(names)} expected)"
        )
    leaves = []
    for name, (_, template) in zip(names, leaves_with_paths, strict=True):
        if arrays[name].shape != template.shape:
            raise ValueError(
                f"checkpoint {path}: {name} has shape {arrays[name].shape}, "
                f"expected {template.shape}"
            )
        leaves.append(jnp.asarray(arrays[name], dtype=template.dtype))
    key = jax.random.wrap_key_data(jnp.asarray(payload["key"]))
    return jax.tree_util.tree_unflatten(treedef, leaves), int(payload["epoch"]), key


# --------------------------------------------------------------------------- fit


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
    With ``out_dir`` the run folder receives, after every epoch, ``history.csv`` and the
    checkpoint, and at the end ``metrics.json`` (``run_info`` is merged into it),
    ``learning_curves.png`` and ``predictions.png``. ``resume=True`` continues from the
    checkpoint in ``out_dir`` up to ``epochs`` epochs in total; with the same seed it
    reaches exactly the parameters of an uninterrupted run.

    Raises:
      ValueError: bad ``epochs``/``batch_size``, or a checkpoint of another model.
      FileNotFoundError: ``resume`` without a checkpoint in ``out_dir``.
      TrainingDivergedError: the training or validation loss of an epoch became NaN or
        infinite (the latter catches parameters broken by the epoch's last step); the
        last good checkpoint is kept.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    num_train = dataset.train_labels.shape[0]
    if not 1 <= batch_size <= num_train:
        raise ValueError(f"batch_size must be in [1, {num_train}], got {batch_size}")
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    graphdef, state = init_train_state(model, optimizer)
    key = jax.random.key(seed)
    start_epoch = 0
    history = History()
    if resume:
        checkpoint = out / CHECKPOINT_FILE
        if not checkpoint.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {checkpoint}")
        state, start_epoch, key = load_checkpoint(checkpoint, state)
        if start_epoch > epochs:
            raise ValueError(f"the checkpoint is at epoch {start_epoch}, past epochs={epochs}")
        history = History.read_csv(out / "history.csv", epochs=start_epoch)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    arrays = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
    batch_layout = None
    if data_parallel:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(batch_size, mesh)
        state, arrays = parallel.replicate((state, arrays), mesh)
        batch_layout = parallel.batch_sharding(mesh)
    train_images, train_labels, test_images, test_labels = arrays
    run_epoch = jax.jit(
        partial(
            train_epoch,
            graphdef=graphdef,
            optimizer=optimizer,
            batch_size=batch_size,
            compute_dtype=compute_dtype,
            batch_sharding=batch_layout,
        )
    )
    bar = tqdm(
        range(start_epoch, epochs),
        initial=start_epoch,
        total=epochs,
        desc="train",
        unit="epoch",
        disable=not progress,
    )
    for epoch in bar:
        start = time.perf_counter()
        key, epoch_key = jax.random.split(key)
        state, train_metrics = run_epoch(state, epoch_key, train_images, train_labels)
        val = evaluate(
            state, test_images, test_labels, graphdef=graphdef, compute_dtype=compute_dtype
        )
        loss, accuracy, val_loss, val_accuracy = (float(x) for x in (*train_metrics, *val))
        seconds = time.perf_counter() - start
        if not (math.isfinite(loss) and math.isfinite(val_loss)):
            kept = (
                f"the last good checkpoint (epoch {epoch}) is kept in {out}"
                if out and epoch
                else "no checkpoint was written"
            )
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss} (validation loss {val_loss}) in "
                f"epoch {epoch + 1}; stopped, {kept}. Try a smaller learning rate or --clip-norm."
            )
        history.append(
            epoch=epoch + 1,
            loss=loss,
            accuracy=accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            seconds=seconds,
        )
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", val_acc=f"{val_accuracy:.4f}")
        if out is not None:
            save_checkpoint(out / CHECKPOINT_FILE, state, epoch + 1, key)
            history.write_csv(out / "history.csv")
    bar.close()

    nnx.update(model, state.params, state.model_state)
    if out is not None:
        test = evaluate(
            state, test_images, test_labels, graphdef=graphdef, compute_dtype=compute_dtype
        )
        sample = test_images[:25]
        predicted = predict(state, sample, graphdef=graphdef, compute_dtype=compute_dtype)
        metrics = {
            "test_accuracy": float(test.accuracy),
            "test_loss": float(test.loss),
            "train_seconds": sum(history.seconds),
            "epochs": len(history.epoch),
            "batch_size": batch_size,
            "seed": seed,
            "dataset": dataset.name,
            "compute_dtype": jnp.dtype(compute_dtype).name,
            **(run_info or {}),
            "device": device_info(),
        }
        _write_run_folder(out, metrics, history, sample, predicted, test_labels[:25])
    return history


def _write_run_folder(
    out: Path,
    metrics: dict[str, Any],
    history: History,
    images: jax.Array,
    predicted: jax.Array,
    labels: jax.Array,
) -> None:
    """metrics.json and the two figures (history.csv and the checkpoint are per epoch)."""
    from jaxopt_lab import plots

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plots.plot_learning_curves(history, out / "learning_curves.png")
    plots.plot_predictions(
        np.asarray(images), np.asarray(predicted), np.asarray(labels), out / "predictions.png"
    )
