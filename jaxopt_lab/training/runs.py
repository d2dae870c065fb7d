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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
from flax import serialization

from jaxopt_lab.runtime import write_atomic
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


RUN_FILES: tuple[str, ...] = (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    LEARNING_CURVES_FILE,
    PREDICTIONS_FILE,
)


@dataclass(frozen=True)
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped.

    ``reference_loss`` is the loss divergence is measured against (see
    :func:`jaxopt_lab.training.loop.fit`), fixed when the run started.
    """

    state: TrainState
    epoch: int
    key: jax.Array
    history: History
    config: dict[str, Any]
    reference_loss: float


class CheckpointError(ValueError):
    """A checkpoint that cannot be read into this run (corrupt, or of another model)."""


class ConfigChangedError(ValueError):
    """Resuming with settings other than the checkpoint's.

    ``changes`` maps each changed setting to ``(saved value, requested value)``.
    """

    def __init__(self, changes: dict[str, tuple[Any, Any]]):
        self.changes = changes
        described = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
        super().__init__(f"the run was started with other settings ({described})")


# Settings that may change on resume: the number of epochs to reach, and how the work is
# laid out over devices.
RESUMABLE_CHANGES: tuple[str, ...] = ("epochs", "data_parallel")

# Settings added after the first checkpoints were written, with the value every run that
# saved no such setting used (a checkpoint without ``schedule`` had a constant rate).
SETTING_DEFAULTS: dict[str, Any] = {"schedule": "constant", "decay_epochs": None}


def config_changes(saved: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple]:
    """Settings of ``requested`` whose value differs from ``saved`` (JSON-normalised, so a
    tuple equals the list it was saved as), except :data:`RESUMABLE_CHANGES`; a setting
    ``saved`` lacks counts as its :data:`SETTING_DEFAULTS` value."""
    normal = lambda value: json.loads(json.dumps(value))  # noqa: E731
    before = {name: saved.get(name, SETTING_DEFAULTS.get(name)) for name in requested}
    return {
        name: (before[name], value)
        for name, value in requested.items()
        if name not in RESUMABLE_CHANGES and normal(before[name]) != normal(value)
    }


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
        "reference_loss": float(checkpoint.reference_loss),
    }
    write_atomic(path, serialization.msgpack_serialize(payload))


_START_AFRESH = "delete it (or pass --overwrite) to start the run afresh"


def _read_payload(path: Path) -> dict[str, Any]:
    """The checkpoint's parts, checked for presence and type; arrays still unchecked."""
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    except (ValueError, TypeError, msgpack.UnpackException) as error:  # garbage bytes
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({type(error).__name__}: {error}); {_START_AFRESH}"
        ) from None
    expected = {"epoch": int, "key": np.ndarray, "state": dict, "history": str, "config": str}
    expected["reference_loss"] = float
    problems = [
        name
        for name, kind in expected.items()
        if not (isinstance(payload, dict) and isinstance(payload.get(name), kind))
    ]
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or incomplete (missing or malformed: "
            f"{', '.join(problems)}); {_START_AFRESH}"
        )
    try:
        payload["history"] = History(**json.loads(payload["history"]))
        payload["config"] = json.loads(payload["config"])
    except (ValueError, TypeError) as error:  # bad JSON, or other history columns
        raise CheckpointError(f"checkpoint {path} is corrupt ({error}); {_START_AFRESH}") from None
    return payload


@dataclass(frozen=True)
class CheckpointSummary:
    """What a checkpoint says about its run, read without building the model."""

    epoch: int
    config: dict[str, Any]
    history: History


def read_summary(path: Path) -> CheckpointSummary:
    """The epoch, configuration and history saved in the checkpoint at ``path``.

    Raises :class:`CheckpointError` naming the file when it cannot be read.
    """
    payload = _read_payload(path)
    return CheckpointSummary(payload["epoch"], payload["config"], payload["history"])


def run_config(
    epochs: int, batch_size: int, seed: int, run_info: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The configuration a run saves in its checkpoint and compares on resume."""
    return {"epochs": epochs, "batch_size": batch_size, "seed": seed, **(run_info or {})}


def load_checkpoint(path: Path, like: TrainState) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like``.

    Raises :class:`CheckpointError` naming the file when it is unreadable, misses a part,
    or holds the arrays of another model or optimizer.
    """
    payload = _read_payload(path)
    arrays, epoch, history = payload["state"], payload["epoch"], payload["history"]
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(path_) for path_, _ in leaves_with_paths]
    if sorted(arrays) != sorted(names):
        raise CheckpointError(
            f"checkpoint {path} does not match this model and optimizer "
            f"({len(arrays)} arrays saved, {len(names)} expected); {_START_AFRESH}"
        )
    leaves = []
    for name, (_, template) in zip(names, leaves_with_paths, strict=True):
        if np.shape(arrays[name]) != template.shape:
            raise CheckpointError(
                f"checkpoint {path} does not match this model: {name} has shape "
                f"{np.shape(arrays[name])}, expected {template.shape}; {_START_AFRESH}"
            )
        leaves.append(jnp.asarray(arrays[name], dtype=template.dtype))
    if len(history.epoch) != epoch:
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: epoch {epoch} with a history of "
            f"{len(history.epoch)} epochs; {_START_AFRESH}"
        )
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    key = jax.random.wrap_key_data(jnp.asarray(payload["key"]))
    return Checkpoint(state, epoch, key, history, payload["config"], payload["reference_loss"])


class RunFolder:
    """The output folder of one training run.

    In a multi-process run every process holds the same state, and only process 0 writes
    (``writes``); the others read the same folder when resuming.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.writes = jax.process_index() == 0

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def holds_a_run(self) -> bool:
        """Whether any file of a run is already in the folder."""
        return any((self.path / name).exists() for name in RUN_FILES)

    def clear(self) -> None:
        """Remove the files of a previous run (only those; other files are left alone)."""
        if not self.writes:
            return
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def load(self, like: TrainState) -> Checkpoint:
        """The checkpoint to resume from (``FileNotFoundError`` if there is none)."""
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
        return load_checkpoint(self.checkpoint_path, like)

    def save(self, checkpoint: Checkpoint) -> None:
        """The checkpoint first, then ``history.csv`` derived from it."""
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint_path, checkpoint)
        self.write_history(checkpoint.history)

    def write_history(self, history: History) -> None:
        """``history.csv``, derived from the checkpoint's history."""
        if not self.writes:
            return
        write_atomic(self.path / HISTORY_FILE, history.to_csv().encode())

    def finish(
        self,
        metrics: Mapping[str, Any],
        history: History,
        images: np.ndarray,
        predicted: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """``history.csv``, ``metrics.json``, the learning curves and the grid of predictions."""
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_history(history)
        write_atomic(self.path / METRICS_FILE, (json.dumps(metrics, indent=2) + "\n").encode())
        write_atomic(self.path / LEARNING_CURVES_FILE, plots.learning_curves_png(history))
        write_atomic(self.path / PREDICTIONS_FILE, plots.predictions_png(images, predicted, labels))
