"""Study 5 (experiments/deep.py): the step-0 gradient measurements against the ReLU
theory and an independent computation, the clipping counter against hand-computed norms,
the learning-rate search, and the quick report's measurement."""

from __future__ import annotations

import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxopt_lab as jl
from experiments import deep
from experiments.stats import Interval
from experiments.verdict import VERDICTS, Outcome, by_interval
from jaxopt_lab.optim import tree_l2_norm
from jaxopt_lab.training.sweep import Curve


def _random_batch(size: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """uint8 "images" and labels (the law does not depend on the inputs)."""
    image_key, label_key = jax.random.split(jax.random.key(seed))
    images = jax.random.randint(image_key, (size, 28, 28), 0, 256).astype(jnp.uint8)
    return images, jax.random.randint(label_key, (size,), 0, 10)


def test_layer_gradient_norms_match_an_independent_backward_pass():
    """Oracle: the same network written out by hand, with the gradient at every
    pre-activation taken through zero perturbations added to it."""
    images, labels = _random_batch(5)
    model = deep.deep_mlp(3, 7, 1.3, jax.random.key(4))
    kernels = [layer.kernel[...] for layer in [*model.hidden, model.output]]
    biases = [layer.bias[...] + 0.1 * i for i, layer in enumerate([*model.hidden, model.output])]
    for layer, bias in zip([*model.hidden, model.output], biases, strict=True):
        layer.bias[...] = bias  # non-zero biases, so the test sees them used
    x = images.reshape(5, -1).astype(jnp.float32) / 255

    def loss(kernels, perturbations, x, labels):
        h = x
        for kernel, bias, eps in zip(kernels[:-1], biases[:-1], perturbations, strict=True):
            h = jax.nn.relu(h @ kernel + bias + eps)
        logits = h @ kernels[-1] + biases[-1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    zeros = [jnp.zeros((1, 7))] * 3
    per_example = jax.jit(jax.vmap(jax.grad(loss, argnums=1), in_axes=(None, None, 0, 0)))(
        kernels, zeros, x[:, None], labels[:, None]
    )
    expected_signal = [jnp.sqrt(jnp.mean(jnp.sum(d**2, axis=(1, 2)))) for d in per_example]
    batch_grads = jax.jit(jax.grad(loss))(kernels, zeros, x, labels)
    expected_kernel = [jnp.linalg.norm(g) for g in batch_grads]
    signal, kernel = nnx.jit(deep.layer_gradient_norms)(model, images, labels)
    np.testing.assert_allclose(signal, expected_signal, rtol=1e-5)
    np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-5)


def test_gradients_at_initialisation_follow_the_relu_law():
    """A wide net at three gains: log ||dl/dz_l|| falls along the layers with slope
    -log(g^2/2)/2 per layer, while the hidden weight gradients stay nearly level (their
    slope a small fraction of it; the batch mean's cross-example terms tilt it a little)."""
    images, labels = _random_batch(32)
    init = deep.measure_init(6, 256, deep.GAINS, (1, 2, 3, 4), images, labels)
    for index, gain in enumerate(deep.GAINS):
        predicted = deep.predicted_slope(gain)
        signal = deep.layer_slopes(np.log(init.signal[index])).mean()
        kernel = deep.layer_slopes(np.log(init.kernel[index, :, 1:6]), first_layer=2).mean()
        assert signal == pytest.approx(predicted, abs=0.05), gain
        assert abs(kernel) < max(0.2 * abs(predicted), 0.1), gain
    assert deep.predicted_slope(0.5) == pytest.approx(0.5 * math.log(8))
    assert deep.predicted_slope(3.0) == pytest.approx(-0.5 * math.log(4.5))


def test_layer_slopes_recover_a_known_line():
    log_norms = np.array(
        [[1.0 + 0.5 * k for k in range(1, 6)], [2.0 - 0.25 * k for k in range(3, 8)]]
    )
    np.testing.assert_allclose(deep.layer_slopes(log_norms[:1]), [0.5])
    np.testing.assert_allclose(deep.layer_slopes(log_norms, first_layer=3), [0.5, -0.25])


def test_clip_monitor_counts_the_steps_a_hand_computation_clips():
    norms = [0.5, 2.0, 1.0, 3.0, 0.1, 7.5]
    threshold = 1.0
    optimizer = jl.chain(deep.clip_monitor(threshold), jl.clip_by_global_norm(threshold))
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
    state = optimizer.init(params)
    direction = np.array([1.0, 2.0, 2.0, 0.0, 4.0], np.float32) / 5  # unit norm
    for norm in norms:
        g = norm * direction
        updates, state = optimizer.update({"a": g[:3], "b": g[3:]}, state, params)
        assert float(tree_l2_norm(updates)) == pytest.approx(min(norm, threshold), rel=1e-5)
    # strictly above the threshold: 2.0, 3.0 and 7.5 (1.0 is left as it is)
    assert int(state[0].clipped) == 3
    assert float(state[0].log_norm_sum) == pytest.approx(float(np.log(norms).sum()), rel=1e-5)


def test_final_runs_fraction_clipped_and_interval_norms():
    steps_per_eval = 4
    log_sums = np.cumsum([0.0, 4 * math.log(2.0), 4 * math.log(8.0)])
    runs = deep.FinalRuns(
        rate=0.1,
        steps_per_eval=steps_per_eval,
        val_accuracy=np.zeros((2, 3)),
        test_accuracy=np.zeros(2),
        test_loss=np.zeros(2),
        clipped=np.array([[0, 3, 5], [0, 0, 8]]),
        log_norm_sum=np.stack([log_sums, log_sums]),
    )
    np.testing.assert_allclose(runs.fraction_clipped, [5 / 8, 1.0])
    np.testing.assert_allclose(runs.interval_norms, [[2.0, 8.0], [2.0, 8.0]])


def test_tuning_scores_best_rate_and_edges():
    rates = np.array([1e-3, 1e-2, 1e-1])
    tuning = deep.Tuning(rates, np.array([[3.0, 3.2], [2.0, np.nan], [1.0, 1.5]]), 0)
    np.testing.assert_allclose(tuning.scores, [3.1, np.inf, 1.25])
    assert (tuning.best_rate, tuning.edge_side) == (1e-1, 1)
    assert deep.Tuning(rates, np.array([[1.0], [2.0], [3.0]]), 0).edge_side == -1
    assert deep.Tuning(rates, np.array([[2.0], [1.0], [3.0]]), 0).edge_side == 0
    diverged = deep.Tuning(rates, np.full((3, 1), np.nan), 0)
    assert diverged.diverged and diverged.edge_side == -1  # all too large: look lower


def test_tune_extends_the_grid_until_the_optimum_is_bracketed(monkeypatch):
    """A fake trainer whose validation loss is (log10(rate) - log10(optimum))^2."""
    optimum = {deep.Setting(deep.HE_GAIN): 1e-4, deep.Setting(3.0, clip=100.0): 1e-2}

    def fake_train(points, budget, seeds, data):
        del budget, data
        return {
            (s, r): Curve(
                None, np.full((len(seeds), 2), math.log10(r / optimum[s]) ** 2), None, None
            )
            for s, r in points
        }

    monkeypatch.setattr(deep, "train", fake_train)
    budget = replace(deep.BUDGETS["quick"], grid_points=5, max_extensions=3)
    tuned = deep.tune(list(optimum), budget, (0,), None)
    he, clipped = tuned[deep.Setting(deep.HE_GAIN)], tuned[deep.Setting(3.0, clip=100.0)]
    # He: centre 1e-2, two one-decade extensions downwards reach and bracket 1e-4
    assert he.extensions == 2 and he.edge_side == 0
    assert he.best_rate == pytest.approx(1e-4)
    assert np.diff(np.log10(he.rates)) == pytest.approx(np.full(he.rates.size - 1, 1 / 3), abs=0.01)
    # threshold 100: centre 1e-4, so the optimum 1e-2 lies upwards
    assert clipped.extensions == 2 and clipped.best_rate == pytest.approx(1e-2)
    # capped: with no extension allowed, the edge stays and is reported
    capped = deep.tune(list(optimum), replace(budget, max_extensions=0), (0,), None)
    assert capped[deep.Setting(deep.HE_GAIN)].edge_side == -1


@pytest.mark.parametrize(
    ("low", "high", "outcome"),
    [
        (-0.05, 0.02, Outcome.SUPPORTS),  # inside the tolerance
        (0.2, 0.3, Outcome.CONTRADICTS),  # outside
        (-0.3, -0.2, Outcome.CONTRADICTS),
        (0.05, 0.15, Outcome.INCONCLUSIVE),  # straddles it
    ],
)
def test_equivalence_interval(low, high, outcome):
    interval = deep._within(Interval((low + high) / 2, low, high, 5, 5), 0.1)
    assert by_interval("x", interval, 1).outcome == outcome


def test_magnitude_interval():
    assert deep._magnitude(Interval(-0.1, -0.3, 0.1, 5, 5))[:3] == (0.1, 0.0, 0.3)
    assert deep._magnitude(Interval(-0.2, -0.3, -0.1, 5, 5))[:3] == (0.2, 0.1, 0.3)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, quick_report):
    results = quick_report.results["deep"]
    out = tmp_path_factory.mktemp("deep")
    return results, deep.report(results, out), out


def test_smoke_measure_and_report(smoke):
    results, section, out = smoke
    budget = results.budget
    assert set(results.tunings) == set(deep.settings(budget)) == set(results.finals)
    for setting, runs in results.finals.items():
        assert runs.test_accuracy.shape == (budget.final_seeds,)
        assert runs.rate == results.tunings[setting].best_rate
        assert np.all((runs.fraction_clipped >= 0) & (runs.fraction_clipped <= 1))
        if not math.isfinite(setting.clip):
            assert np.all(runs.fraction_clipped == 0)
    assert results.init.signal.shape == (3, budget.init_seeds, budget.layers)
    assert results.init.kernel.shape == (3, budget.init_seeds, budget.layers + 1)
    assert len(section.claims) == 6
    assert all(claim.verdict in VERDICTS for claim in section.claims)
    for name in section.figures:
        assert (out / name).stat().st_size > 10_000
