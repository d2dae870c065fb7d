"""Study 2 (robustness): the noise it injects, the oracle it measures memorisation
against, the pairing of its rises by seed, and its verdicts on constructed effects and on
a real smoke run."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from experiments import protocol, robustness
from experiments.stats import binomial_ci, holm
from experiments.verdict import VERDICTS, verdict
from jaxopt_lab.training.sweep import Curve, SweepResult

# --- the injected noise (experiments.protocol) -------------------------------------------


def _noise_norms(gradient, sigma: float, draws: int) -> np.ndarray:
    """||noisy - g||^2 over ``draws`` successive updates of one noise transformation."""
    transform = protocol.relative_gradient_noise(jnp.float32(sigma), jax.random.key(7))

    def step(state, _):
        noisy, state = transform.update(gradient, state)
        return state, optax.tree.norm(jax.tree.map(jnp.subtract, noisy, gradient)) ** 2

    _, squares = jax.lax.scan(step, transform.init(gradient), None, length=draws)
    return np.asarray(squares, dtype=np.float64)


GRADIENT = {"kernel": jnp.linspace(-3.0, 2.0, 60).reshape(6, 10), "bias": jnp.full(40, 0.5)}
SIZE = 100  # entries of GRADIENT


def test_relative_noise_has_the_closed_form_norm():
    """z = noisy - g has i.i.d. N(0, sigma^2 ||g||^2 / d) entries, so ||z||^2 is
    (sigma^2 ||g||^2 / d) chi^2_d: mean sigma^2 ||g||^2, relative variance 2/d per draw."""
    sigma, draws = 3.0, 4000
    squares = _noise_norms(GRADIENT, sigma, draws)
    expected = sigma**2 * float(optax.tree.norm(GRADIENT)) ** 2
    relative_se = math.sqrt(2 / SIZE / draws)
    assert abs(squares.mean() / expected - 1) < 4 * relative_se
    # the spread of chi^2_d / d: variance 2/d (not a fixed-norm or a heavier-tailed draw)
    assert squares.var(ddof=1) / expected**2 == pytest.approx(2 / SIZE, rel=0.15)
    # the key advances at every step: successive draws are independent
    lag1 = np.corrcoef(squares[:-1], squares[1:])[0, 1]
    assert abs(lag1) < 4 / math.sqrt(draws)


def test_relative_noise_scales_with_the_gradient():
    """Relative noise: the same key on 10 g gives exactly 10 times the noise."""
    small = _noise_norms(GRADIENT, 2.0, 5)
    large = _noise_norms(jax.tree.map(lambda g: 10 * g, GRADIENT), 2.0, 5)
    np.testing.assert_allclose(large, 100 * small, rtol=1e-4)


def test_flipped_labels_change_in_the_requested_fraction_and_never_keep_their_class():
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 10, 50_000), jnp.int32)
    flipped = protocol.flip_labels(labels, 0.3, jax.random.key(1))
    assert flipped.dtype == labels.dtype
    changed = np.asarray(flipped != labels)
    # a flip that could keep its class would change 0.3 * 9/10 = 27%, far outside this
    assert binomial_ci(int(changed.sum()), changed.size, confidence=0.999).low < 0.3
    assert binomial_ci(int(changed.sum()), changed.size, confidence=0.999).high > 0.3
    # every selected label moves: flipping all of them changes all of them
    assert np.all(np.asarray(protocol.flip_labels(labels, 1.0, jax.random.key(2)) != labels))
    # the new class is uniform over the 9 others
    offsets = np.asarray((flipped - labels) % 10)[changed]
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0
    assert scipy.stats.chisquare(counts[1:]).pvalue > 1e-3
    np.testing.assert_array_equal(protocol.flip_labels(labels, 0.0, jax.random.key(3)), labels)


def test_flip_variant_changes_only_the_training_labels(mnist):
    workload, budget = protocol.WORKLOADS["mnist-mlp"], protocol.BUDGETS["quick"]
    clean = protocol.data(workload, budget, protocol.CLEAN, 0)
    noisy = protocol.data(workload, budget, protocol.Variant(flip=0.4), 0)
    for name in ("val_labels", "test_labels", "train_images", "val_images"):
        np.testing.assert_array_equal(getattr(noisy, name), getattr(clean, name))
    changed = np.asarray(noisy.train_labels != clean.train_labels)
    assert binomial_ci(int(changed.sum()), changed.size, confidence=0.999).low < 0.4
    assert binomial_ci(int(changed.sum()), changed.size, confidence=0.999).high > 0.4
    # the training loss is measured on the noisy labels the network trains on
    np.testing.assert_array_equal(noisy.eval_labels, noisy.train_labels[: budget.num_eval])
    other = protocol.data(workload, budget, protocol.Variant(flip=0.4), 1)
    assert np.any(other.train_labels != noisy.train_labels)  # the master seed draws the flips


# --- the memorisation oracle ---------------------------------------------------------------


def test_label_noise_entropy_of_a_small_sample():
    clean = np.array([0, 0, 0, 0, 1, 1])
    noisy = np.array([0, 0, 1, 2, 1, 1])
    # class 0: noisy labels (1/2, 1/4, 1/4); class 1: always 1 (entropy 0)
    expected = 4 / 6 * scipy.stats.entropy([0.5, 0.25, 0.25])
    assert robustness.label_noise_entropy(clean, noisy) == pytest.approx(expected)
    assert robustness.label_noise_entropy(clean, clean) == 0.0
    with pytest.raises(ValueError, match="shape"):
        robustness.label_noise_entropy(clean, noisy[:-1])


def test_label_noise_entropy_tends_to_the_closed_form():
    labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, 200_000), jnp.int32)
    f = 0.4
    noisy = protocol.flip_labels(labels, f, jax.random.key(0))
    closed_form = -(1 - f) * math.log(1 - f) - f * math.log(f / 9)
    entropy = robustness.label_noise_entropy(np.asarray(labels), np.asarray(noisy))
    assert entropy == pytest.approx(closed_form, abs=5e-3)


# --- pairing by seed ---------------------------------------------------------------------------


def test_seed_difference_matches_seeds_not_positions():
    clean = {11: 0.9, 22: 0.5, 33: 0.7}
    noisy = {33: 0.69, 11: 0.89, 22: 0.49}  # another order
    difference = robustness.seed_difference(clean, noisy)
    assert difference == pytest.approx({11: 0.01, 22: 0.01, 33: 0.01})
    with pytest.raises(ValueError, match="same seeds"):
        robustness.seed_difference(clean, {11: 0.8, 22: 0.4, 44: 0.6})


def test_rises_are_compared_paired_by_seed():
    """Validation losses spread widely between seeds, but within a seed adam's rises 0.03
    less than sgd's: pairing removes the spread, so the excess rise is pinned near -0.03
    per unit of sigma (an unpaired comparison of the noisy losses sees nothing through the
    spread)."""
    rng = np.random.default_rng(0)
    seeds = [101, 7, 55, 3, 900, 42, 8, 77, 12, 31]
    spread = dict(zip(seeds, rng.uniform(0.2, 0.6, len(seeds)), strict=True))
    clean = {
        "sgd": spread,
        "adam": {s: v + 0.02 for s, v in spread.items()},
        "momentum": {s: v - 0.01 for s, v in spread.items()},
    }
    rise = {"sgd": 0.10, "adam": 0.07, "momentum": 0.10}
    noisy = {
        sigma: {
            name: {
                s: clean[name][s] + sigma * rise[name] + rng.normal(0, 0.002)
                for s in rng.permutation(seeds)  # each in its own order
            }
            for name in clean
        }
        for sigma in (1.0, 2.0)
    }
    comparisons = robustness.compare_rises(clean, noisy, "sgd")
    adam = next(c for c in comparisons if c.optimizer == "adam" and c.setting == 2.0)
    assert adam.excess.interval.low < -0.06 < adam.excess.interval.high  # 2 * (0.07 - 0.10)
    assert adam.excess.interval.high - adam.excess.interval.low < 0.01
    sgd = next(c for c in comparisons if c.optimizer == "sgd" and c.setting == 1.0)
    assert sgd.excess is None and sgd.rise.low < 0.10 < sgd.rise.high
    assert sgd.rise.high - sgd.rise.low < 0.01
    # the four excess rises (2 optimizers x 2 settings) are one Holm family
    family = [c.excess for c in comparisons if c.excess is not None]
    assert len(family) == 4
    np.testing.assert_allclose([e.adjusted_p for e in family], holm([e.p_value for e in family]))
    unpaired = scipy.stats.ttest_ind(
        list(noisy[2.0]["adam"].values()), list(noisy[2.0]["sgd"].values())
    )
    assert unpaired.pvalue > 0.05


# --- measure + report --------------------------------------------------------------------------

# constructed effects: rise of the final validation loss from clean by optimizer
NOISE_RISE = {"sgd": 0.10, "momentum": 0.15, "adam": 0.05}  # x sigma / 10
FLIP_RISE = {"sgd": 0.12, "momentum": 0.06, "adam": 0.06}


def _fake_tune(workload, config, budget, master, variant):
    """A Tuned whose final runs carry the constructed effects: per-seed validation losses
    spread widely between seeds, the same seed effect in every variant (paired), a small
    jitter;
    training loss 2.0 on the noisy labels (above the 40% floor of about 1.5 nats: no
    memorisation); adam's first seed diverges at sigma=10."""
    seeds = protocol.seeds(master, workload, "final", budget.final_seeds)
    n, evals = len(seeds), budget.evals
    seed_effect = np.linspace(0.6, 0.95, n)
    rng = np.random.default_rng(
        [len(config.optimizer), int(10 * variant.noise), int(100 * variant.flip)]
    )
    jitter = rng.normal(0, 0.003, n)
    rise = NOISE_RISE[config.optimizer] * variant.noise / 10 if variant.noise else 0.0
    rise += FLIP_RISE[config.optimizer] if variant.flip else 0.0
    final_accuracy = seed_effect - rise + jitter
    ramp = np.linspace(0, 1, evals + 1)
    accuracy = 0.1 + (final_accuracy[:, None] - 0.1) * ramp
    val_loss = 2.3 - (1.8 - 0.1 * seed_effect[:, None] - rise - jitter[:, None]) * ramp
    train_loss = 2.3 - (0.3 if variant.flip else 2.0) * ramp + 0.05 * jitter[:, None] * ramp
    if config.optimizer == "adam" and variant.noise == 10.0:
        val_loss[0, -1] = np.nan
    curves = Curve(
        train_loss=train_loss,
        val_loss=val_loss,
        val_accuracy=accuracy,
        probes=None,
        test_loss=val_loss[:, -1],
        test_accuracy=final_accuracy,
    )
    steps = np.arange(evals + 1) * budget.steps(config) // evals
    final = SweepResult(
        grid={"learning_rate": np.array([0.1])},
        seeds=np.asarray(seeds),
        steps=steps,
        curves=curves,
        run_seconds=np.zeros((1, n)),
        compile_seconds=0.0,
        total_seconds=0.0,
        vectorized=True,
    )
    point = protocol.TuningPoint({"learning_rate": 0.1}, val_loss[:1])
    return protocol.Tuned(
        workload=workload,
        config=config,
        variant=variant,
        steps=steps,
        samples_per_step=config.batch_size,
        num_train=budget.num_train,
        points=(point,),
        selection="final",
        best={"learning_rate": 0.1},
        best_by_target={"learning_rate": 0.1},
        extensions=0,
        edge=None,
        final=final,
    )


def _check_section(section, out) -> None:
    """Every verdict is the rule applied to its comparisons; every figure was written."""
    assert len(section.claims) == 3
    for claim in section.claims:
        assert claim.verdict in VERDICTS
        assert claim.verdict == verdict(claim.comparisons)
    for name in section.figures:
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_report_verdicts_follow_constructed_effects(monkeypatch, tmp_path, mnist):
    monkeypatch.setattr(protocol, "tune", _fake_tune)
    budget = robustness.BUDGETS["medium"]
    results = robustness.measure(budget, seed=0)
    section = robustness.report(results, tmp_path)
    _check_section(section, tmp_path)
    noise, memorised, labels = section.claims
    # momentum's loss rises more than sgd's, adam's less: the claim holds for one, fails for
    # the other
    assert noise.verdict == "depends"
    assert "(9/10)" in noise.evidence  # adam's diverged seed is counted, not averaged
    assert memorised.verdict == "refuted"  # training loss 2.0 stays above the floor
    assert labels.verdict == "confirmed"  # adam's rises 0.06 less (momentum: no verdict)
    problems = robustness.profile_problems(results)
    assert len(problems) == len(budget.noise_scales) + len(budget.flip_fractions)
    targets = {float(title.rsplit("<= ", 1)[1]) for title in problems}
    assert len(targets) == len(problems)  # a distinct target per problem
    for costs in problems.values():
        assert set(costs) == {"sgd (batch 32)", "momentum", "adam"}
        for epochs in costs.values():
            assert epochs.shape == (protocol.BUDGETS["medium"].final_seeds,)
            assert np.all((epochs > 0) | np.isinf(epochs))


def test_measure_and_report_at_the_quick_tier(tmp_path, quick_report):
    results = quick_report.results["robustness"]
    section = robustness.report(results, tmp_path)
    _check_section(section, tmp_path)
    assert {"robustness_noise.png", "robustness_labels.png"} <= set(section.figures)
    for tuned in [*results.noise.values(), *results.flip.values()]:
        assert np.all((tuned.final_test_accuracy() >= 0) & (tuned.final_test_accuracy() <= 1))
    for costs in robustness.profile_problems(results).values():
        assert all(c.shape == (protocol.BUDGETS["quick"].final_seeds,) for c in costs.values())


def test_budget_rejects_bad_settings():
    with pytest.raises(ValueError, match="noise scale"):
        robustness.RobustnessBudget("quick", (0.0,), (0.4,), 256, 2)
    with pytest.raises(ValueError, match="flip fractions"):
        robustness.RobustnessBudget("quick", (1.0,), (1.0,), 256, 2)
    with pytest.raises(ValueError, match="adaptive"):
        robustness.RobustnessBudget("quick", (1.0,), (0.4,), 256, 2, optimizers=("sgd", "momentum"))
    with pytest.raises(ValueError, match="tier"):
        robustness.RobustnessBudget("huge", (1.0,), (0.4,), 256, 2)
    assert set(robustness.BUDGETS) == {"quick", "medium", "full"}
