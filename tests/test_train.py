"""Training on real MNIST: the seed job, resume, divergence, full batch, vmap, bfloat16."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, serialization
from masks_per_step import MasksDrawnPerStep

from jaxopt_lab import cli, runtime
from jaxopt_lab.optim import make_optimizer
from jaxopt_lab.training import data
from jaxopt_lab.training import step as step_module
from jaxopt_lab.training.loop import TrainingDivergedError, fit
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.runs import CHECKPOINT_FILE, load_checkpoint
from jaxopt_lab.training.step import draw_dropout_ahead, evaluate, init_train_state, train_epoch

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_mnist(mnist):
    """The first 4096 training images (and the full test split): fast but real."""
    return dataclasses.replace(
        mnist, train_images=mnist.train_images[:4096], train_labels=mnist.train_labels[:4096]
    )


def params_of(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def run_cli(tmp_path, *extra: str) -> dict:
    """``jaxopt-lab train`` with the seed job's settings; returns its metrics.json."""
    out = tmp_path / "run"
    argv = ["train", "--optimizer", "adam", "--learning-rate", "1e-3", "--batch-size", "32"]
    assert cli.main([*argv, "--seed", "0", "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_one_epoch_of_the_seed_job_writes_the_run_folder(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: mnist)  # loaded once
    metrics = run_cli(tmp_path, "--epochs", "1")
    assert metrics["test_accuracy"] >= 0.945
    assert metrics["epochs"] == 1 and metrics["batch_size"] == 32
    assert metrics["optimizer"] == "adam" and metrics["learning_rate"] == 1e-3
    assert metrics["train_seconds"] > 0 and metrics["device"]["backend"] == jax.default_backend()
    out = tmp_path / "run"
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert float(rows[0]["val_accuracy"]) == pytest.approx(metrics["test_accuracy"])
    for figure in ("learning_curves.png", "predictions.png"):
        assert (out / figure).read_bytes()[:8] == PNG_SIGNATURE
    assert (out / CHECKPOINT_FILE).stat().st_size > 4 * 101_770  # params plus Adam moments


def test_cli_mixed_precision_data_parallel_and_clipping(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: small_mnist)
    metrics = run_cli(
        tmp_path, "--epochs", "2", "--mixed-precision", "--data-parallel", "--clip-norm", "1.0"
    )
    assert metrics["compute_dtype"] == "bfloat16" and metrics["data_parallel"] is True
    assert metrics["clip_norm"] == 1.0 and metrics["epochs"] == 2
    assert metrics["test_accuracy"] >= 0.88  # 2 epochs on 4096 images, bfloat16 compute
    _, like = init_train_state(MLP(rngs=nnx.Rngs(0)), make_optimizer("adam", 1e-3, clip_norm=1.0))
    checkpoint = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE, like)
    state, epoch = checkpoint.state, checkpoint.epoch
    assert epoch == 2 and int(state.step) == 2 * (4096 // 32)
    saved = serialization.msgpack_restore((tmp_path / "run" / CHECKPOINT_FILE).read_bytes())
    saved_dtypes = {array.dtype for array in saved["state"].values() if array.ndim}
    assert saved_dtypes == {np.dtype(np.float32)}  # parameters and Adam moments stay float32


@pytest.mark.slow
def test_seed_job_reaches_keras_accuracy_in_five_epochs(mnist):
    model = MLP(rngs=nnx.Rngs(0))
    history = fit(
        model, make_optimizer("adam", 1e-3), mnist, epochs=5, batch_size=32, progress=False
    )
    assert history.epoch == [1, 2, 3, 4, 5]
    assert history.loss[-1] < history.loss[0]
    assert history.val_accuracy[-1] >= 0.975
    # fit leaves the trained weights in the model, as Keras does.
    _, state = init_train_state(model, make_optimizer("adam", 1e-3))
    graphdef = nnx.graphdef(model)
    accuracy = evaluate(state, mnist.test_images, mnist.test_labels, graphdef=graphdef).accuracy
    assert float(accuracy) == pytest.approx(history.val_accuracy[-1])


def test_resume_reaches_the_same_parameters_as_an_uninterrupted_run(small_mnist, tmp_path):
    def train(epochs, out, resume=False):
        model = MLP(rngs=nnx.Rngs(7))
        history = fit(
            model,
            make_optimizer("adam", 1e-3),
            small_mnist,
            epochs=epochs,
            batch_size=64,
            seed=7,
            out_dir=out,
            resume=resume,
            progress=False,
        )
        return model, history

    train(2, tmp_path / "interrupted")
    resumed, resumed_history = train(3, tmp_path / "interrupted", resume=True)
    straight, straight_history = train(3, tmp_path / "straight")
    for a, b in zip(params_of(resumed), params_of(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed_history.epoch == [1, 2, 3]
    assert resumed_history.val_loss == straight_history.val_loss
    model = MLP(rngs=nnx.Rngs(0))
    _, like = init_train_state(model, make_optimizer("adam", 1e-3))
    assert load_checkpoint(tmp_path / "interrupted" / CHECKPOINT_FILE, like).epoch == 3


def test_resume_without_checkpoint_is_a_clear_error(small_mnist, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(
            MLP(rngs=nnx.Rngs(0)),
            make_optimizer("sgd", 0.1),
            small_mnist,
            epochs=1,
            batch_size=32,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(small_mnist, tmp_path):
    fit(
        MLP(rngs=nnx.Rngs(0)),
        make_optimizer("sgd", 0.1),
        small_mnist,
        epochs=1,
        batch_size=64,
        out_dir=tmp_path,
        progress=False,
    )
    good = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(TrainingDivergedError, match="epoch 2.*last good checkpoint \\(epoch 1\\)"):
        fit(
            MLP(rngs=nnx.Rngs(0)),
            make_optimizer("sgd", 1e12),
            small_mnist,
            epochs=3,
            batch_size=64,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == good
    with open(tmp_path / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]


def test_parameters_broken_by_the_last_step_of_an_epoch_stop_training(small_mnist, tmp_path):
    # Full batch: one step per epoch, so the epoch's training loss is the (finite) loss of
    # the initial parameters; the step itself overflows them and only validation sees it.
    with pytest.raises(TrainingDivergedError, match=r"validation loss nan;.* in epoch 1"):
        fit(
            MLP(rngs=nnx.Rngs(0)),
            make_optimizer("sgd", 1e38),
            small_mnist,
            epochs=2,
            batch_size=4096,
            out_dir=tmp_path,
            progress=False,
        )
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_an_exploding_finite_loss_stops_training_and_fit_keeps_the_last_good_state(
    small_mnist, tmp_path
):
    # Rule: diverged when a loss exceeds 10 x max(L0, log 10), L0 the starting validation
    # loss. SGD at 1e3 blows the loss up to huge but finite values in its first epoch.
    optimizer = make_optimizer("sgd", 0.1)
    model = MLP(rngs=nnx.Rngs(0))
    fit(model, optimizer, small_mnist, epochs=1, batch_size=64, out_dir=tmp_path, progress=False)
    after_one_epoch = params_of(model)
    good = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(TrainingDivergedError, match="limit is 23") as error:
        fit(
            model,
            make_optimizer("sgd", 1e3),
            small_mnist,
            epochs=2,
            batch_size=64,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    reported = float(str(error.value).split("the loss became ")[1].split(" ")[0])
    assert reported > 23.0  # the loss that tripped the rule is above the limit
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == good
    # The model holds the last good epoch, neither its initial nor its diverged state.
    for kept, expected in zip(params_of(model), after_one_epoch, strict=True):
        np.testing.assert_array_equal(kept, expected)
    initial = params_of(MLP(rngs=nnx.Rngs(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(initial, after_one_epoch, strict=True))


def test_metrics_record_the_data_provenance(mnist, tmp_path):
    fit(
        MLP(rngs=nnx.Rngs(0)),
        make_optimizer("sgd", 0.1),
        dataclasses.replace(
            mnist, train_images=mnist.train_images[:512], train_labels=mnist.train_labels[:512]
        ),
        epochs=1,
        batch_size=256,
        out_dir=tmp_path,
        progress=False,
    )
    record = json.loads((tmp_path / "metrics.json").read_text())["data"]
    assert record["name"] == "mnist" and record["version"] == "3.0.1"
    assert record["split_sizes"] == {"train": 60000, "test": 10000}
    assert record["used_split_sizes"] == {"train": 512, "test": 10000}
    # The test split's hash, recomputed here from the arrays the run evaluated on.
    digest = hashlib.sha256(np.asarray(mnist.test_images).tobytes())
    digest.update(np.asarray(mnist.test_labels).astype("<i4").tobytes())
    assert record["split_sha256"]["test"] == digest.hexdigest()
    # TFDS's registered checksum of each original file (MNIST's published sha256).
    assert record["source_sha256"]["train-labels-idx1-ubyte.gz"] == (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    )


def test_full_batch_gradient_descent_takes_one_step_per_epoch(small_mnist):
    optimizer = make_optimizer("sgd", 0.5)
    graphdef, state = init_train_state(MLP(dropout_rate=0.0, rngs=nnx.Rngs(0)), optimizer)
    epoch = jax.jit(partial(train_epoch, graphdef=graphdef, optimizer=optimizer, batch_size=4096))
    losses = []
    for seed in range(5):
        state, metrics = epoch(
            state, jax.random.key(seed), small_mnist.train_images, small_mnist.train_labels
        )
        losses.append(float(metrics.loss))
    assert int(state.step) == 5
    assert losses == sorted(losses, reverse=True)  # gradient descent: monotone on the full batch


@pytest.mark.parametrize("batch_size", [0, 4097])
def test_bad_batch_size_is_rejected(small_mnist, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        fit(
            MLP(rngs=nnx.Rngs(0)),
            make_optimizer("sgd", 0.1),
            small_mnist,
            epochs=1,
            batch_size=batch_size,
            progress=False,
        )


def test_train_epoch_vmaps_over_seeds_and_learning_rates(small_mnist):
    images, labels = small_mnist.train_images[:1024], small_mnist.train_labels[:1024]
    graphdef, _ = init_train_state(MLP(rngs=nnx.Rngs(0)), make_optimizer("adam", 1e-3))

    def one_run(seed, learning_rate):
        optimizer = make_optimizer("adam", learning_rate)
        _, state = init_train_state(MLP(rngs=nnx.Rngs(jax.random.key(seed))), optimizer)
        return train_epoch(
            state,
            jax.random.key(seed),
            images,
            labels,
            graphdef=graphdef,
            optimizer=optimizer,
            batch_size=64,
        )

    seeds, learning_rates = jnp.array([0, 1]), jnp.array([1e-3, 3e-3])
    states, metrics = jax.jit(jax.vmap(one_run))(seeds, learning_rates)
    assert metrics.loss.shape == (2,)
    for index in range(2):
        state, single = jax.jit(one_run)(seeds[index], learning_rates[index])
        np.testing.assert_allclose(metrics.loss[index], single.loss, rtol=1e-5)
        for batched, alone in zip(
            jax.tree.leaves(states.params), jax.tree.leaves(state.params), strict=True
        ):
            np.testing.assert_allclose(batched[index], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "optimizer_name"),
    [({}, "adam"), ({"hidden_sizes": (64, 32), "batch_norm": True}, "sgd")],
)
def test_an_epoch_with_masks_drawn_ahead_equals_drawing_them_step_by_step(
    small_mnist, options, optimizer_name
):
    """The same masks, so the same epoch up to float32 rounding: the two programs fuse
    differently, and which rounding XLA gets depends on the CPU (on an AMD EPYC they
    differ by about 1e-8, on an Intel Xeon not at all). Behind batch norm the hidden
    biases get a gradient that is rounding noise only (batch norm subtracts them). Adam
    would scale that noise up to its step size, and the running means that follow the
    biases with it, so the batch-norm model trains with SGD and is compared by what it
    computes; the seed model is also compared leaf by leaf."""
    images, labels = small_mnist.train_images[:1024], small_mnist.train_labels[:1024]
    optimizer = make_optimizer(optimizer_name, 1e-2 if optimizer_name == "sgd" else 1e-3)
    results = []
    for wrap in (lambda model: model, MasksDrawnPerStep):
        graphdef, state = init_train_state(wrap(MLP(**options, rngs=nnx.Rngs(0))), optimizer)
        epoch = jax.jit(partial(train_epoch, graphdef=graphdef, optimizer=optimizer, batch_size=32))
        state, metrics = epoch(state, jax.random.key(4), images, labels)
        test = evaluate(state, small_mnist.test_images, small_mnist.test_labels, graphdef=graphdef)
        results.append((state, metrics, test))
    (ahead, ahead_metrics, ahead_test), (in_step, in_step_metrics, in_step_test) = results
    for drawn_ahead, drawn_in_step in (
        (ahead_metrics, in_step_metrics),
        (ahead_test, in_step_test),
    ):
        np.testing.assert_allclose(drawn_ahead.loss, drawn_in_step.loss, rtol=1e-5)
        np.testing.assert_allclose(drawn_ahead.accuracy, drawn_in_step.accuracy, atol=2e-4)
    if not options:
        for drawn_ahead, drawn_in_step in zip(
            jax.tree.leaves(ahead), jax.tree.leaves(in_step), strict=True
        ):
            scale = np.max(np.abs(drawn_in_step)) if np.size(drawn_in_step) else 0.0
            np.testing.assert_allclose(drawn_ahead, drawn_in_step, rtol=1e-5, atol=1e-5 * scale)


def test_batch_norm_statistics_are_carried_through_the_scan(small_mnist):
    model = MLP(batch_norm=True, rngs=nnx.Rngs(0))
    history = fit(
        model, make_optimizer("adam", 1e-3), small_mnist, epochs=2, batch_size=64, progress=False
    )
    running_mean = nnx.state(model, nnx.BatchStat)["norms"][0]["mean"].get_value()
    assert float(jnp.abs(running_mean).max()) > 0.01  # updated from its zero init
    assert history.val_accuracy[-1] >= 0.88  # and used, sensibly, at evaluation


def test_masks_too_large_to_draw_ahead_are_drawn_step_by_step(small_mnist, monkeypatch):
    """Past the byte limit the epoch reads keys, not masks drawn ahead, with the same
    result: masks of 1024 examples x 128 units (131 kB) against limits on either side."""
    images, labels = small_mnist.train_images[:1024], small_mnist.train_labels[:1024]
    optimizer = make_optimizer("adam", 1e-3)
    graphdef, state = init_train_state(MLP(rngs=nnx.Rngs(0)), optimizer)
    keys = jax.random.split(jax.random.key(4), 32)
    results = []
    for limit, drawn_ahead in ((1024 * 128, True), (1024 * 128 - 1, False)):
        monkeypatch.setattr(step_module, "MAX_MASK_BYTES_AHEAD", limit)
        dropout = draw_dropout_ahead(graphdef, state, keys, 32)
        assert (dropout.masks is not None, dropout.key is None) == (drawn_ahead, drawn_ahead)
        epoch = jax.jit(partial(train_epoch, graphdef=graphdef, optimizer=optimizer, batch_size=32))
        results.append(epoch(state, jax.random.key(4), images, labels))
    for ahead, step_by_step in zip(*map(jax.tree.leaves, results), strict=True):
        np.testing.assert_array_equal(ahead, step_by_step)


def test_an_exported_epoch_program_trains_exactly_as_the_traced_one(
    small_mnist, tmp_path, monkeypatch, caplog
):
    from jaxopt_lab.training import loop

    traces = []

    def counted_epoch(*args, **kwargs):
        traces.append(1)  # runs only while an epoch is traced
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", counted_epoch)

    def train(program_id):
        model = MLP(rngs=nnx.Rngs(0))
        optimizer = make_optimizer("adam", 1e-3)
        caplog.clear()
        jax.config.update("jax_log_compiles", True)
        try:
            history = fit(
                model, optimizer, small_mnist, epochs=2, batch_size=64, program_id=program_id
            )
        finally:
            jax.config.update("jax_log_compiles", False)
        # the epoch's program is compiled (or loaded) once, not again for the second epoch
        compiled = [r.message.split(" with ")[0] for r in caplog.records]
        assert (
            compiled.count("Compiling jit(epoch)" if program_id is None else "Compiling jit(call)")
            == 1
        )
        curves = (history.loss, history.accuracy, history.val_loss, history.val_accuracy)
        return curves, params_of(model)

    traced = train(None)
    assert len(traces) == 1
    cache = tmp_path / "xla"
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(cache))
    try:
        exported = train("adam 1e-3")  # traces, and keeps the program
        assert len(traces) == 2 and len(list((cache / "exported").iterdir())) == 1
        loaded = train("adam 1e-3")  # a later run: loads it, traces nothing
        assert len(traces) == 2
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    for run in (exported, loaded):
        assert run[0] == traced[0]  # the same losses and accuracies, bit for bit
        assert all(np.array_equal(a, b) for a, b in zip(run[1], traced[1], strict=True))


def test_the_cli_keeps_one_epoch_program_per_setting(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: small_mnist)
    cache = tmp_path / "xla"
    options = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in options}

    def run(name: str, learning_rate: str, *extra: str) -> dict:
        out = tmp_path / name
        argv = ["train", "--epochs", "1", "--learning-rate", learning_rate, "--out", str(out)]
        assert cli.main([*argv, *extra]) == 0
        return json.loads((out / "metrics.json").read_text())

    exported = runtime.host_cache_folder(cache) / "exported"
    try:
        run("first", "1e-3", "--compilation-cache", str(cache))
        run("second", "3e-3", "--compilation-cache", str(cache))
        assert len(list(exported.iterdir())) == 2  # a rate is part of the key
        loaded = run("other seed", "3e-3", "--seed", "1", "--compilation-cache", str(cache))
        assert len(list(exported.iterdir())) == 2  # a seed is not
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
    traced = run("uncached", "3e-3", "--seed", "1", "--no-compilation-cache")
    assert loaded["test_loss"] == traced["test_loss"]
