"""A run folder: the checkpoint that makes a run resumable, and the files derived from it.

The checkpoint (``checkpoint.msgpack``) holds everything needed to continue a run: the
train state, the number of finished epochs, the PRNG key, the per-epoch history and the
run's configuration. ``history.csv``, ``metrics.json`` and the two figures are derived
from it. Every file is written to a temporary name and renamed into place, so a run
folder never holds a half-written file, and a reader after a crash sees either the old
or the new version.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxopt_lab.training import plots
from jaxopt_lab.training.step import TrainState

CHECKPOINT_FILE = "checkpoint.msgpack"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
LEARNING_CURVES_FILE = "learning_curves.png"
PREDICTIONS_FILE = "predictions.png"


@dataclass
class History:
    """Per-epoch metrics, like the ``history`` of a Keras ``fit``.

    ``loss``/``accuracy`` are means over the epoch's training steps; ``val_*`` are
    measured on the validation data after the epoch; ``seconds`` is the epoch's wall time
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

    def to_csv(self) -> str:
        columns = [f.name for f in fields(self)]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*(getattr(self, name) for name in columns), strict=True))
        return text.getvalue()


@dataclass(frozen=True)
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    state: TrainState
    epoch: int
    key: jax.Array
    history: History
    config: dict[str, Any]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read into this run (corrupt, or of another model)."""


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(payload)
    os.replace(temporary, path)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` as msgpack, atomically; arrays are keyed by their pytree path."""
    arrays = {
        jax.tree_util.keystr(path_): np.asarray(leaf)
        for path_, leaf in jax.tree_util.tree_flatten_with_path(checkpoint.state)[0]
    }
    payload = {
        "epoch": checkpoint.epoch,
        "key": np.asarray(jax.random.key_data(checkpoint.key)),
        "state": arrays,
        "history": json.dumps(checkpoint.history.as_dict()),
        "config": json.dumps(checkpoint.config),
    }
    write_atomic(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path: Path, like: TrainState) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like``.

    Raises :class:`CheckpointError` naming the file when it is unreadable, misses a part,
    or holds the arrays of another model or optimizer.
    """
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        arrays = payload["state"]
        epoch, key_data = int(payload["epoch"]), np.asarray(payload["key"])
        history = History(**json.loads(payload["history"]))
        config = json.loads(payload["config"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or incomplete ({type(error).__name__}: {error}); "
            "delete it to start the run afresh"
        ) from None
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(path_) for path_, _ in leaves_with_paths]
    if not isinstance(arrays, Mapping) or sorted(arrays) != sorted(names):
        raise CheckpointError(
            f"checkpoint {path} does not match this model and optimizer "
            f"({len(arrays)} arrays saved, {len(names)} expected)"
        )
    leaves = []
    for name, (_, template) in zip(names, leaves_with_paths, strict=True):
        if np.shape(arrays[name]) != template.shape:
            raise CheckpointError(
                f"checkpoint {path}: {name} has shape {np.shape(arrays[name])}, "
                f"expected {template.shape}"
            )
        leaves.append(jnp.asarray(arrays[name], dtype=template.dtype))
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    key = jax.random.wrap_key_data(jnp.asarray(key_data))
    return Checkpoint(state, epoch, key, history, config)


class RunFolder:
    """The output folder of one training run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def load(self, like: TrainState) -> Checkpoint:
        """The checkpoint to resume from (``FileNotFoundError`` if there is none)."""
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
        return load_checkpoint(self.checkpoint_path, like)

    def save(self, checkpoint: Checkpoint) -> None:
        """The checkpoint first, then ``history.csv`` derived from it."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint_path, checkpoint)
        write_atomic(self.path / HISTORY_FILE, checkpoint.history.to_csv().encode())

    def finish(
        self,
        metrics: Mapping[str, Any],
        history: History,
        images: np.ndarray,
        predicted: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """``metrics.json``, the learning curves and the grid of predictions."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / METRICS_FILE, (json.dumps(metrics, indent=2) + "\n").encode())
        write_atomic(self.path / LEARNING_CURVES_FILE, plots.learning_curves_png(history))
        write_atomic(self.path / PREDICTIONS_FILE, plots.predictions_png(images, predicted, labels))
