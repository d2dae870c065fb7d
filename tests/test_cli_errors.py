"""Every bad input is refused before any work: one line naming the flag, no traceback,
a non-zero exit, and an existing run folder left byte-identical."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jaxopt_lab as jl
from jaxopt_lab import bench, cli
from jaxopt_lab.training import data

REPO = Path(__file__).resolve().parents[1]
# The run fixture's settings; a --resume case adds the one it changes after these.
RUN_ARGS = ("--optimizer", "adam", "--learning-rate", "1e-3", "--batch-size", "256")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def existing_run(mnist, tmp_path_factory):
    """A finished one-epoch run of ``train`` on 2048 real MNIST images."""
    small = dataclasses.replace(
        mnist, train_images=mnist.train_images[:2048], train_labels=mnist.train_labels[:2048]
    )
    out = tmp_path_factory.mktemp("existing") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_dataset", lambda *args, **kwargs: small)
        assert cli.main(["train", *RUN_ARGS, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def no_work(monkeypatch):
    """Loading data, benchmarking or solving fails the test: every check comes first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(data, "load_dataset", forbidden)
    monkeypatch.setattr(bench, "run_suite", forbidden)
    monkeypatch.setattr(jl, "minimize", forbidden)


def run_main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        return exit_.code


# (id, argv with {run} for the existing run folder and {file} for a plain file, flag
# the message must name)
# Without --resume: a value check must fire before the "folder holds a run" refusal,
# whose message names none of the value flags.
TRAIN = ["train", *RUN_ARGS, "--epochs", "1", "--out", "{run}"]
RESUME = [*TRAIN, "--resume"]
CASES = [
    ("lr-inf", [*TRAIN, "--learning-rate", "inf"], "--learning-rate"),
    ("lr-nan", [*TRAIN, "--learning-rate", "nan"], "--learning-rate"),
    ("lr-negative", [*TRAIN, "--learning-rate", "-0.1"], "--learning-rate"),
    ("epochs-0", [*TRAIN, "--epochs", "0"], "--epochs"),
    ("epochs-not-int", [*TRAIN, "--epochs", "five"], "--epochs"),
    ("batch-0", [*TRAIN, "--batch-size", "0"], "--batch-size"),
    ("batch-too-big", [*TRAIN, "--batch-size", "60001"], "--batch-size"),
    ("clip-norm-0", [*TRAIN, "--clip-norm", "0"], "--clip-norm"),
    ("clip-norm-inf", [*TRAIN, "--clip-norm", "inf"], "--clip-norm"),
    ("clip-value-negative", [*TRAIN, "--clip-value", "-1"], "--clip-value"),
    ("dropout-1", [*TRAIN, "--dropout", "1.0"], "--dropout"),
    ("schedule-unknown", [*TRAIN, "--schedule", "step"], "--schedule"),
    ("decay-without-schedule", [*TRAIN, "--decay-epochs", "2"], "--decay-epochs"),
    ("decay-epochs-0", [*TRAIN, "--schedule", "linear", "--decay-epochs", "0"], "--decay-epochs"),
    ("hidden-0", [*TRAIN, "--hidden-sizes", "128", "0"], "--hidden-sizes"),
    ("seed-negative", [*TRAIN, "--seed", "-1"], "--seed"),
    ("optimizer-unknown", [*TRAIN, "--optimizer", "lion"], "--optimizer"),
    ("dataset-unknown", [*TRAIN, "--dataset", "cifar10"], "--dataset"),
    ("option-unknown", [*TRAIN, "--momentum", "0.9"], "--momentum"),
    ("out-is-file", ["train", "--out", "{file}"], "--out"),
    ("out-inside-file", ["train", "--out", "{file}/run"], "--out"),
    ("data-dir-is-file", [*TRAIN, "--data-dir", "{file}"], "--data-dir"),
    ("manual-dir-missing", [*TRAIN, "--manual-dir", "{file}.missing"], "--manual-dir"),
    ("run-exists", ["train", *RUN_ARGS, "--out", "{run}"], "--resume"),
    ("resume-and-overwrite", [*RESUME, "--overwrite"], "--overwrite"),
    ("allow-change-alone", ["train", "--allow-config-change", "--out", "{file}.new"], "--resume"),
    ("resume-nothing", ["train", "--resume", "--out", "{file}.new"], "--resume"),
    ("resume-changed-lr", [*RESUME, "--learning-rate", "0.01"], "--learning-rate"),
    ("resume-changed-batch", [*RESUME, "--batch-size", "64"], "--batch-size"),
    ("resume-changed-seed", [*RESUME, "--seed", "1"], "--seed"),
    ("resume-changed-schedule", [*RESUME, "--schedule", "cosine"], "--schedule"),
    ("resume-changed-optimizer", [*RESUME, "--optimizer", "sgd"], "--optimizer"),
    ("resume-changed-model", [*RESUME, "--hidden-sizes", "64"], "--hidden-sizes"),
    ("resume-changed-dataset", [*RESUME, "--dataset", "fashion_mnist"], "--dataset"),
    ("bench-sizes-inf", ["bench", "--sizes", "inf", "--out", "{run}/b.json"], "--sizes"),
    ("bench-sizes-small", ["bench", "--sizes", "10", "--out", "{run}/b.json"], "--sizes"),
    ("bench-sizes-fraction", ["bench", "--sizes", "1000.5", "--out", "{run}/b.json"], "--sizes"),
    ("bench-repeats-0", ["bench", "--repeats", "0", "--out", "{run}/b.json"], "--repeats"),
    ("bench-batch-0", ["bench", "--batch-sizes", "0", "--out", "{run}/b.json"], "--batch-sizes"),
    ("bench-batch-big", ["bench", "--batch-sizes", "70000"], "--batch-sizes"),
    ("bench-optimizer", ["bench", "--optimizers", "lion"], "--optimizers"),
    ("bench-out-folder", ["bench", "--out", "{run}"], "--out"),
    ("bench-out-inside-file", ["bench", "--out", "{file}/b.json"], "--out"),
    ("minimize-lr-lbfgs", ["minimize", "--method", "lbfgs", "--learning-rate", "0.1"], "--method"),
    ("minimize-lr-newton", ["minimize", "--method", "newton", "--learning-rate", "1"], "--method"),
    ("minimize-lr-inf", ["minimize", "--method", "gd", "--learning-rate", "inf"], "--learning"),
    ("minimize-dim", ["minimize", "--problem", "rosenbrock", "--dim", "1"], "--dim"),
    ("minimize-maxiter", ["minimize", "--maxiter", "0"], "--maxiter"),
    ("minimize-tol", ["minimize", "--tol", "-1"], "--tol"),
    ("minimize-condition", ["minimize", "--condition-number", "0.5"], "--condition-number"),
    ("minimize-problem", ["minimize", "--problem", "himmelblau"], "--problem"),
]


def test_the_matrix_covers_every_subcommand_with_at_least_25_cases():
    assert len(CASES) >= 25
    assert {argv[0] for _, argv, _ in CASES} == {"train", "bench", "minimize"}
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "flag"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_up_front(argv, flag, existing_run, tmp_path, no_work, capsys):
    plain_file = tmp_path / "plain.txt"
    plain_file.write_text("not a folder")
    before = snapshot(existing_run)
    argv = [a.format(run=existing_run, file=plain_file) for a in argv]
    code = run_main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code not in (0, None)
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and flag in lines[0]
    assert captured.out == ""
    assert snapshot(existing_run) == before
    assert not (existing_run / "b.json").exists()


def test_a_user_error_shows_no_traceback_in_a_real_process(tmp_path):
    """The console a user sees: one line on stderr, nothing from TensorFlow or absl."""
    result = subprocess.run(
        [sys.executable, "-m", "jaxopt_lab.cli", "train", "--learning-rate", "inf"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == "jaxopt-lab train: error: --learning-rate must be finite, got inf\n"
    assert not (tmp_path / "runs").exists()


def test_help_shows_each_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--learning-rate LEARNING_RATE learning rate (> 0) (default: 0.001)" in text
    assert "--batch-size BATCH_SIZE examples per step (default: 32)" in text
    assert "--clip-norm CLIP_NORM clip by global norm (default: None)" in text


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), -1.0, 0.0])
@pytest.mark.parametrize("alias", [jl.sgd, jl.adam, jl.adagrad, jl.rmsprop, jl.adamw])
def test_a_non_finite_or_non_positive_learning_rate_is_refused_by_every_alias(alias, rate):
    with pytest.raises(ValueError, match="learning_rate must be"):
        alias(rate)
