"""The convergence study as measured for the shared quick report: budgets honoured exactly,
paired seeds, held-out validation, verdicts from the rule, its figures, and the
performance-profile problems."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from experiments import convergence, protocol
from experiments.verdict import VERDICTS, Outcome
from jaxopt_lab.training.data import load_dataset

BUDGET = convergence.BUDGETS["quick"]
TIER = BUDGET.tier


@pytest.fixture(scope="module")
def results(quick_report) -> convergence.ConvergenceResults:
    return quick_report.results["convergence"]


@pytest.fixture(scope="module")
def section(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence")
    return convergence.report(results, out), out


def _runs(results) -> dict[str, convergence.Curves]:
    return results.runs[BUDGET.every_config]


def test_every_configuration_takes_exactly_its_budget(results):
    runs = _runs(results)
    assert set(runs) == {*convergence.configs(BUDGET)[BUDGET.every_config], convergence.LBFGS}
    for label, curves in runs.items():
        assert curves.steps.shape == (TIER.evals + 1,)
        if label == convergence.LBFGS:  # iterations counted by its own state
            assert curves.steps[-1] == TIER.full_batch_steps
            continue
        # the sweep's own record of the steps it ran, against the budget's arithmetic
        assert np.array_equal(curves.tuned.final.steps, curves.steps)
        batch = curves.tuned.config.batch_size
        if batch is None:
            assert curves.steps[-1] == TIER.full_batch_steps
            continue
        per_epoch = math.ceil(TIER.num_train / batch)
        assert curves.steps[-1] == math.ceil(TIER.epochs * per_epoch / TIER.evals) * TIER.evals
        assert np.all(curves.epochs[:, -1] >= TIER.epochs), label
    assert np.all(runs[convergence.GD].epochs[:, -1] == TIER.full_batch_steps)


def test_batch_one_sees_as_many_examples_as_batch_32(results):
    runs = _runs(results)
    one, mini = runs[convergence.SGD1], runs[results.sgd]
    examples_one = one.steps[-1] * 1
    examples_mini = mini.steps[-1] * TIER.batch_size
    assert examples_one >= TIER.epochs * TIER.num_train
    # equal up to the rounding of the step count to a multiple of the evaluations
    assert abs(examples_one - examples_mini) < TIER.evals * TIER.batch_size
    np.testing.assert_allclose(one.epochs[:, -1], mini.epochs[:, -1], rtol=0.05)


def test_lbfgs_counts_gradient_evaluations_and_starts_from_the_same_weights(results):
    runs = _runs(results)
    lbfgs, gd = runs[convergence.LBFGS], runs[convergence.GD]
    # at least one value-and-gradient evaluation per iteration, never decreasing
    assert np.all(lbfgs.epochs[:, 1:] >= lbfgs.steps[1:])
    assert np.all(np.diff(lbfgs.epochs, axis=1) >= 0)
    # same final seeds -> same initial weights -> the same losses before the first step
    np.testing.assert_allclose(lbfgs.train_loss[:, 0], gd.train_loss[:, 0], rtol=1e-5)
    np.testing.assert_allclose(lbfgs.val_loss[:, 0], gd.val_loss[:, 0], rtol=1e-5)


def test_validation_images_are_disjoint_from_training_images(results):
    workload = protocol.WORKLOADS[BUDGET.every_config]
    data = protocol.data(workload, TIER, protocol.CLEAN, results.seed)
    full = load_dataset(workload.dataset)
    train = np.asarray(full.train_images)
    # by position: the head of the training split trains, its tail validates
    assert np.array_equal(np.asarray(data.train_images), train[: TIER.num_train])
    assert np.array_equal(np.asarray(data.val_images), train[-TIER.num_val :])
    assert TIER.num_train + TIER.num_val <= train.shape[0]
    # by content: no validation image is also a training image
    as_bytes = lambda images: {row.tobytes() for row in np.asarray(images)}  # noqa: E731
    assert as_bytes(data.val_images).isdisjoint(as_bytes(data.train_images))


def test_report_gives_rule_verdicts_and_figures(results, section):
    section, out = section
    assert len(section.claims) == 3
    for claim in section.claims:
        assert claim.verdict in VERDICTS
        assert claim.comparisons
    runs = _runs(results)
    # claim 1: both SGD batch sizes against GD; claim 2: every accelerated optimizer
    # against SGD; claim 3: per iteration and per gradient evaluation
    assert len(section.claims[0].comparisons) == 2
    assert len(section.claims[1].comparisons) == len(
        [label for label in results.speed[BUDGET.every_config] if label != results.sgd]
    )
    assert len(section.claims[1].comparisons) == len(
        [label for label in runs if label in convergence.ACCELERATED]
    )
    assert len(section.claims[2].comparisons) == 2
    for name in ("convergence_sensitivity.png", "convergence.png"):
        assert name in section.figures
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(section.blocks)
    assert "test accuracy" in text and "effective lr" in text


@pytest.mark.parametrize(
    ("shift", "outcome"), [(0.5, Outcome.CONTRADICTS), (-0.5, Outcome.SUPPORTS)]
)
def test_claim_follows_the_sign_of_the_measurements(results, tmp_path, shift, outcome):
    """Claim 1 against an oracle of known sign: SGD's training loss set to GD's plus
    ``shift`` (and a little per-seed jitter) at every evaluation."""
    runs = dict(_runs(results))
    gd = runs[convergence.GD]
    level = 1.0 + np.linspace(0.0, 0.02, TIER.final_seeds)[:, None]
    runs[convergence.GD] = dataclasses.replace(
        gd, train_loss=np.broadcast_to(level, gd.train_loss.shape).copy()
    )
    for label in (convergence.SGD1, results.sgd):
        curves = runs[label]
        jitter = np.linspace(0.0, 0.01, TIER.final_seeds)[::-1, None]
        loss = np.broadcast_to(level + shift + jitter, curves.train_loss.shape).copy()
        runs[label] = dataclasses.replace(curves, train_loss=loss)
    changed = dataclasses.replace(results, runs={BUDGET.every_config: runs})
    claim = convergence.report(changed, tmp_path).claims[0]
    assert {c.outcome for c in claim.comparisons} == {outcome}


def test_speed_claim_reads_runs_selected_by_the_area_it_judges(results):
    for name, speed in results.speed.items():
        runs = results.runs[name]
        assert list(speed) == convergence.speed_labels(runs, results.sgd)
        assert results.sgd in speed and len(speed) > 1
        for label, curves in speed.items():
            tuned = curves.tuned
            assert tuned.selection == "area" and runs[label].tuned.selection == "final"
            assert tuned.points is runs[label].tuned.points  # one grid, two selections
            areas = {tuple(sorted(p.hyperparameters.items())): p.area for p in tuned.points}
            assert areas[tuple(sorted(tuned.best.items()))] == min(areas.values())
            # the final runs were made at the area's choice
            assert tuned.final.grid["learning_rate"].tolist() == [tuned.best["learning_rate"]]


@pytest.mark.parametrize(
    ("shift", "outcome"), [(0.5, Outcome.CONTRADICTS), (-0.5, Outcome.SUPPORTS)]
)
def test_speed_claim_follows_the_sign_of_the_area(results, tmp_path, shift, outcome):
    """Claim 2 against an oracle of known sign: the area-selected runs' validation losses
    set to SGD's level plus ``shift`` (and per-seed jitter) at every evaluation; the runs
    selected by final loss are left alone, so the verdict must come from the area."""
    speed = dict(results.speed[BUDGET.every_config])
    level = 1.0 + np.linspace(0.0, 0.02, TIER.final_seeds)[:, None]
    for label, curves in speed.items():
        jitter = np.linspace(0.0, 0.01, TIER.final_seeds)[::-1, None]
        offset = 0.0 if label == results.sgd else shift + jitter
        loss = np.broadcast_to(level + offset, curves.val_loss.shape).copy()
        speed[label] = dataclasses.replace(curves, val_loss=loss)
    changed = dataclasses.replace(results, speed={BUDGET.every_config: speed})
    claim = convergence.report(changed, tmp_path).claims[1]
    assert {c.outcome for c in claim.comparisons} == {outcome}


def test_profile_problems_have_distinct_targets_and_every_configuration(results):
    problems = convergence.profile_problems(results)
    titles = list(problems)
    assert len(titles) == 3 * len(results.runs)
    targets = [float(title.rsplit("<= ", 1)[1]) for title in titles]
    assert len(set(targets)) == len(targets)
    runs = _runs(results)
    for costs in problems.values():
        assert set(costs) == set(runs)  # full batch and L-BFGS included
        for label, cost in costs.items():
            assert cost.shape == (TIER.final_seeds,)
            assert np.all(cost > 0), label  # no target is met before the first step
    # the median configuration reaches the three targets at three different evaluations
    reached = {tuple(np.median(costs[label]) for costs in problems.values()) for label in runs}
    assert any(len(set(r)) == 3 for r in reached)


def test_profile_targets_refuse_a_plateau():
    flat = np.full((2, TIER.evals + 1), 1.0)
    flat[:, 0] = 2.3
    curves = convergence.Curves(
        "flat", np.arange(TIER.evals + 1), flat, flat, flat, np.zeros(2), None
    )
    with pytest.raises(ValueError, match="not distinct"):
        convergence.profile_targets({"flat": curves}, TIER.evals)


def test_first_at_or_after():
    positions = np.array([0.0, 10.0, 20.0, 30.0])
    assert convergence.first_at_or_after(positions, 10.0) == 1
    assert convergence.first_at_or_after(positions, 10.5) == 2
    assert convergence.first_at_or_after(positions, 0.0) == 0
    with pytest.raises(ValueError, match="no evaluation"):
        convergence.first_at_or_after(positions, 31.0)


def test_budget_rejects_unknown_tiers_and_workloads():
    with pytest.raises(ValueError, match="protocol tier"):
        convergence.ConvergenceBudget("huge")
    with pytest.raises(ValueError, match="workloads"):
        convergence.ConvergenceBudget("quick", every_config="cifar")
    with pytest.raises(ValueError, match="workloads"):
        convergence.ConvergenceBudget("quick", subset=("mnist-mlp",))
