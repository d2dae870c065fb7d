"""Run folders are all or nothing: every fault either resumes into a complete, consistent
history or stops with one clear message, and never with a traceback."""

from __future__ import annotations

import csv
import dataclasses
import json

import msgpack
import optax
import pytest
from flax import nnx

from jaxopt_lab import cli, runtime
from jaxopt_lab.optim.registry import make_optimizer
from jaxopt_lab.training import data, loop, runs
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.runs import CHECKPOINT_FILE, HISTORY_FILE, METRICS_FILE

ARGS = ["train", "--optimizer", "adam", "--learning-rate", "1e-3", "--batch-size", "256"]


@pytest.fixture(autouse=True)
def small_data(mnist, monkeypatch):
    """2048 real MNIST training images (8 steps per epoch): fast, real."""
    small = dataclasses.replace(
        mnist, train_images=mnist.train_images[:2048], train_labels=mnist.train_labels[:2048]
    )
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: small)


def train(out, epochs: int, *extra: str) -> int:
    return cli.main([*ARGS, "--epochs", str(epochs), "--out", str(out), *extra])


def history_rows(out) -> list[dict[str, str]]:
    with open(out / HISTORY_FILE) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def straight(mnist, tmp_path_factory):
    """The uninterrupted 3-epoch run every repaired run must equal."""
    small = dataclasses.replace(
        mnist, train_images=mnist.train_images[:2048], train_labels=mnist.train_labels[:2048]
    )
    out = tmp_path_factory.mktemp("straight") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_dataset", lambda *args, **kwargs: small)
        assert train(out, 3) == 0
    return out


def assert_same_run(out, reference) -> None:
    """Complete history (1..3), identical to the uninterrupted run's, and metrics to match."""
    rows, expected = history_rows(out), history_rows(reference)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    for row, ref in zip(rows, expected, strict=True):
        for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert row[column] == ref[column]
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["epochs"] == 3
    assert (
        metrics["test_accuracy"]
        == json.loads((reference / METRICS_FILE).read_text())["test_accuracy"]
    )


def delete(path):
    path.unlink()


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [delete, truncate, empty])
def test_a_damaged_history_is_rebuilt_from_the_checkpoint(damage, tmp_path, straight):
    out = tmp_path / "run"
    assert train(out, 2) == 0
    damage(out / HISTORY_FILE)
    assert train(out, 3, "--resume") == 0
    assert_same_run(out, straight)


def test_a_damaged_history_is_rebuilt_even_with_no_epoch_left(tmp_path):
    out = tmp_path / "run"
    assert train(out, 2) == 0
    expected = (out / HISTORY_FILE).read_text()
    delete(out / HISTORY_FILE)
    assert train(out, 2, "--resume") == 0
    assert (out / HISTORY_FILE).read_text() == expected


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler catches it."""


def test_a_kill_between_the_checkpoint_and_its_derived_files(tmp_path, straight):
    out = tmp_path / "run"
    writes = []
    real_write = runs.RunFolder.write_history

    def killed_on_second_epoch(self, history):
        writes.append(len(history.epoch))
        if len(history.epoch) == 2:
            raise Killed
        real_write(self, history)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(runs.RunFolder, "write_history", killed_on_second_epoch)
        train(out, 3)
    # The checkpoint holds epoch 2, history.csv still epoch 1, no metrics.json.
    assert [row["epoch"] for row in history_rows(out)] == ["1"]
    assert runs.read_summary(out / CHECKPOINT_FILE).epoch == 2
    assert not (out / METRICS_FILE).exists()
    assert train(out, 3, "--resume") == 0
    assert_same_run(out, straight)


def test_a_kill_while_the_checkpoint_is_written_keeps_the_previous_one(tmp_path, straight):
    out = tmp_path / "run"
    real_replace = runtime.os.replace  # the rename of write_atomic

    def killed_renaming_epoch_2(source, target):
        if str(target).endswith(CHECKPOINT_FILE) and runs.read_summary(source).epoch == 2:
            raise Killed
        real_replace(source, target)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(runtime.os, "replace", killed_renaming_epoch_2)
        train(out, 3)
    assert runs.read_summary(out / CHECKPOINT_FILE).epoch == 1
    assert train(out, 3, "--resume") == 0
    assert_same_run(out, straight)


def garbage(path):
    path.write_bytes(b"\x00")


def missing_keys(path):
    path.write_bytes(msgpack.packb({"epoch": 2, "state": {}}))


def half(path):
    truncate(path)


def random_bytes(path):
    path.write_bytes(bytes(range(256)) * 64)


def inconsistent_history(path):
    payload = msgpack.unpackb(path.read_bytes(), strict_map_key=False)
    payload["epoch"] = 5  # says 5 epochs, holds a history of 2
    path.write_bytes(msgpack.packb(payload))


@pytest.mark.parametrize(
    "corrupt", [garbage, missing_keys, half, random_bytes, inconsistent_history]
)
def test_a_corrupt_checkpoint_stops_with_one_message(corrupt, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, 2) == 0
    corrupt(out / CHECKPOINT_FILE)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert train(out, 6, "--resume") == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(out / CHECKPOINT_FILE) in lines[0]
    assert "delete it (or pass --overwrite)" in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_checkpoint_of_another_model_stops_with_one_message(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, 1) == 0
    capsys.readouterr()
    code = train(out, 2, "--resume", "--allow-config-change", "--hidden-sizes", "64")
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "does not match this model" in err and str(out / CHECKPOINT_FILE) in err


def test_overwrite_starts_afresh_and_changed_settings_resume_only_when_allowed(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, 1) == 0
    assert train(out, 2, "--resume", "--learning-rate", "2e-3") == 1
    assert "--learning-rate was 0.001, now 0.002" in capsys.readouterr().err
    assert train(out, 2, "--resume", "--learning-rate", "2e-3", "--allow-config-change") == 0
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["learning_rate"] == 2e-3 and metrics["epochs"] == 2
    assert train(out, 1, "--overwrite") == 0
    assert [row["epoch"] for row in history_rows(out)] == ["1"]
    assert json.loads((out / METRICS_FILE).read_text())["learning_rate"] == 1e-3


def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(
    tmp_path, monkeypatch, capsys, straight
):
    out = tmp_path / "run"
    real_compile = loop._compile

    def interrupted_in_epoch_2(*args, **kwargs):
        compiled = real_compile(*args, **kwargs)
        calls = []

        def run_epoch(state, key):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return compiled.run_epoch(state, key)

        return dataclasses.replace(compiled, run_epoch=run_epoch)

    monkeypatch.setattr(loop, "_compile", interrupted_in_epoch_2)
    assert train(out, 3) == cli.EXIT_INTERRUPTED
    monkeypatch.setattr(loop, "_compile", real_compile)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted; epoch 1 is kept in" in err
    command = err.split("continue with: ")[1].strip()
    assert command.startswith("jaxopt-lab train") and command.endswith("--resume")
    assert [row["epoch"] for row in history_rows(out)] == ["1"]
    assert cli.main(command.split()[1:]) == 0  # the printed command, as given
    assert_same_run(out, straight)


def test_a_diverging_run_exits_non_zero_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--optimizer", "sgd", "--learning-rate", "0.1"]
    assert train(out, 1, *args) == 0
    good = (out / CHECKPOINT_FILE).read_bytes()
    capsys.readouterr()
    code = train(
        out, 3, "--resume", "--allow-config-change", "--optimizer", "sgd", "--learning-rate", "1e3"
    )
    err = capsys.readouterr().err
    assert code == 1 and "training diverged" in err and "epoch 2" in err
    assert "last good checkpoint (epoch 1)" in err and "Traceback" not in err
    assert (out / CHECKPOINT_FILE).read_bytes() == good
    assert [row["epoch"] for row in history_rows(out)] == ["1"]


@pytest.mark.slow
def test_a_real_sigint_keeps_the_last_epoch(tmp_path):
    """Ctrl-C as a user sends it: SIGINT to the process once the first epoch is saved."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "run"
    command = [sys.executable, "-m", "jaxopt_lab.cli", "train", "--batch-size", "4096"]
    command += ["--epochs", "200"]  # far more than run before the signal
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # a shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition a terminal gives
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    last_line = err.decode().replace("\r", "\n").strip().splitlines()[-1]
    assert process.returncode == cli.EXIT_INTERRUPTED
    epoch = runs.read_summary(out / CHECKPOINT_FILE).epoch
    assert 1 <= epoch < 200
    assert last_line.startswith(f"jaxopt-lab train: interrupted; epoch {epoch} is kept in {out}")
    assert last_line.endswith("--resume")
    assert [int(row["epoch"]) for row in history_rows(out)] == list(range(1, epoch + 1))


@pytest.mark.parametrize(
    "schedule, optax_schedule",
    [
        ("linear", lambda peak, steps: optax.linear_schedule(peak, 0.0, steps)),
        ("cosine", optax.cosine_decay_schedule),
    ],
)
def test_a_decaying_schedule_spans_its_epochs_and_then_stops_learning(
    schedule, optax_schedule, tmp_path, mnist
):
    """--schedule decays over --decay-epochs x the steps of an epoch of the data used (8
    here): epoch 1 equals fit with optax's schedule over 8 steps, and epoch 2, at rate 0,
    leaves the parameters (so the validation loss) exactly where they were."""
    out = tmp_path / "run"
    assert train(out, 2, "--schedule", schedule, "--decay-epochs", "1") == 0
    rows = history_rows(out)
    assert rows[1]["val_loss"] == rows[0]["val_loss"]
    assert rows[1]["loss"] != rows[0]["loss"]  # epoch 2 did run, on new batches
    model = MLP(hidden_sizes=(128,), num_classes=10, dropout_rate=0.2, rngs=nnx.Rngs(0))
    optimizer = make_optimizer("adam", optax_schedule(1e-3, 8))
    small = data.load_dataset("mnist")  # the 2048 images of the small_data fixture
    history = loop.fit(model, optimizer, small, epochs=1, batch_size=256, progress=False)
    assert float(rows[0]["val_loss"]) == history.val_loss[0]
    assert float(rows[0]["loss"]) == history.loss[0]
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert (metrics["schedule"], metrics["decay_epochs"]) == (schedule, 1)


def test_a_checkpoint_saved_before_schedules_existed_resumes_as_constant():
    old = {"epochs": 1, "learning_rate": 1e-3}  # no schedule keys: a constant rate
    constant = {"epochs": 2, "learning_rate": 1e-3, "schedule": "constant", "decay_epochs": None}
    assert runs.config_changes(old, constant) == {}
    linear = {**constant, "schedule": "linear", "decay_epochs": 2}
    assert runs.config_changes(old, linear) == {
        "schedule": ("constant", "linear"),
        "decay_epochs": (None, 2),
    }
