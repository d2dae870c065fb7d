"""jaxopt_lab.training.sweep: a vmapped sweep equals the same runs made one after another."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from masks_per_step import MasksDrawnPerStep

from jaxopt_lab import runtime
from jaxopt_lab.training import sweep as sweep_module
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.sweep import best_index, named_optimizer, subset, sweep


def _small_model(hyperparameters, key):
    return MLP(hidden_sizes=(32,), dropout_rate=0.1, rngs=nnx.Rngs(key))


@pytest.fixture(scope="module")
def data(mnist):
    return subset(mnist, num_train=1024, num_eval=512, num_val=512)


@pytest.fixture(scope="module")
def both(data):
    kwargs = dict(
        grid={"learning_rate": [1e-2, 1e-1, 30.0]},
        seeds=[0, 1],
        data=data,
        model_factory=_small_model,
        batch_size=32,
        num_evals=2,
        steps_per_eval=20,
    )
    factory = named_optimizer("momentum")
    return (
        sweep(factory, vectorize=True, **kwargs),
        sweep(factory, vectorize=False, **kwargs),
        sweep(factory, runs_per_batch=4, **kwargs),
        sweep(factory, runs_per_batch="auto", **kwargs),
    )


def test_vmapped_sweep_matches_separate_runs(both):
    vmapped, separate, _, _ = both
    assert vmapped.curves.val_loss.shape == (3, 2, 3)
    # the two stable learning rates; the diverging third amplifies rounding differences
    for field in ("train_loss", "val_loss", "val_accuracy"):
        a, b = getattr(vmapped.curves, field)[:2], getattr(separate.curves, field)[:2]
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_runs_in_batches_match_all_runs_at_once(both):
    """6 runs vmapped 4 at a time (a full batch and a remainder of 2) inside one program."""
    vmapped, _, batched, auto = both
    assert batched.runs_per_batch == 4 and vmapped.runs_per_batch == 6
    for other in (batched, auto):
        for field in ("train_loss", "val_loss", "val_accuracy"):
            a, b = getattr(vmapped.curves, field)[:2], getattr(other.curves, field)[:2]
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_auto_batching_keeps_the_working_set_in_half_the_cache(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_cache_bytes", lambda level=3: 32 << 20)
    assert sweep_module.auto_runs_per_batch(1 << 20, runs=100) == 8  # 16 MiB / (2 x 1 MiB)
    assert sweep_module.auto_runs_per_batch(1 << 20, runs=5) == 5
    assert sweep_module.auto_runs_per_batch(64 << 20, runs=5) == 1
    monkeypatch.setattr(runtime, "cpu_cache_bytes", lambda level=3: None)
    assert sweep_module.auto_runs_per_batch(1 << 20, runs=24) == 24


def test_sweep_learns_and_pairs_runs_by_seed(both):
    vmapped = both[0]
    loss = vmapped.curves.val_loss
    # step 0: same seed -> same initial model whatever the learning rate
    np.testing.assert_array_equal(loss[0, :, 0], loss[1, :, 0])
    assert not np.array_equal(loss[0, 0, 0], loss[0, 1, 0])  # seeds differ
    assert np.all(loss[:2, :, -1] < loss[:2, :, 0] - 0.3)  # the two stable rates learn
    assert not np.all(loss[2, :, -1] < loss[1, :, -1])  # the huge rate does not
    assert best_index(vmapped) == 1
    np.testing.assert_array_equal(vmapped.steps, [0, 20, 40])
    assert vmapped.run_seconds.shape == (3, 2)


def _one_step_sweep(data, learning_rates, **options):
    """The smallest sweep: SGD at ``learning_rates``, seed 0, one step of batch 8."""
    return sweep(
        named_optimizer("sgd"),
        {"learning_rate": learning_rates},
        [0],
        data,
        model_factory=_small_model,
        batch_size=8,
        num_evals=1,
        steps_per_eval=1,
        **options,
    )


def test_sweep_rejects_empty_grid(data):
    with pytest.raises(ValueError, match="grid"):
        _one_step_sweep(data, [])


def test_per_seed_batch_order_pairs_runs_and_evaluates_the_test_split_once(data):
    """data_seed=None: a seed draws its own batch order, shared by every run of that seed;
    a test split is evaluated once, after the last step."""
    held_out = data._replace(test_images=data.val_images, test_labels=data.val_labels)
    kwargs = dict(
        seeds=[0, 1],
        model_factory=_small_model,
        batch_size=32,
        num_evals=2,
        steps_per_eval=10,
        data_seed=None,
    )
    factory = named_optimizer("sgd")
    result = sweep(factory, {"learning_rate": [0.1]}, data=held_out, **kwargs)
    # the test split equals the validation split here, so its one evaluation equals the last
    # validation point; without a test split there is none
    np.testing.assert_allclose(result.curves.test_loss, result.curves.val_loss[..., -1], rtol=1e-6)
    assert sweep(factory, {"learning_rate": [0.1]}, data=data, **kwargs).curves.test_loss is None
    # a run of seed 1 alone sees the batches it saw beside seed 0 (the order is the seed's)
    alone = sweep(factory, {"learning_rate": [0.1]}, data=data, **{**kwargs, "seeds": [1]})
    np.testing.assert_allclose(alone.curves.val_loss[0, 0], result.curves.val_loss[0, 1], rtol=1e-5)
    # a shared data seed gives other batches than the seed's own order
    shared = sweep(factory, {"learning_rate": [0.1]}, data=data, **{**kwargs, "data_seed": 0})
    assert not np.allclose(shared.curves.train_loss[0, 1], result.curves.train_loss[0, 1])


@pytest.mark.parametrize("vectorize", [True, False])
def test_masks_drawn_ahead_give_the_curves_of_masks_drawn_step_by_step(data, vectorize):
    kwargs = dict(
        grid={"learning_rate": [1e-2, 1e-1]},
        seeds=[0, 1],
        data=data,
        batch_size=32,
        num_evals=2,
        steps_per_eval=10,
        vectorize=vectorize,
    )
    factory = named_optimizer("adam")
    ahead = sweep(factory, model_factory=_small_model, **kwargs)
    step_by_step = sweep(
        factory, model_factory=lambda h, key: MasksDrawnPerStep(_small_model(h, key)), **kwargs
    )
    for drawn_ahead, drawn_in_step in zip(ahead.curves, step_by_step.curves, strict=True):
        np.testing.assert_array_equal(drawn_ahead, drawn_in_step)


SPREAD_SCRIPT = """
import json
import jax
jax.config.update("jax_num_cpu_devices", 3)  # before the backend starts
import numpy as np
from flax import nnx
from jaxopt_lab import runtime
from jaxopt_lab.training.data import load_dataset
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.sweep import named_optimizer, subset, sweep

devices_of_programs = []
compile_timed = runtime.compile_timed
def recording(*args, **kwargs):  # the devices each compiled sweep runs on
    compiled, seconds = compile_timed(*args, **kwargs)
    devices = jax.tree.leaves(compiled.output_shardings)[0].device_set
    devices_of_programs.append(sorted(device.id for device in devices))
    return compiled, seconds
runtime.compile_timed = recording

def small_model(hyperparameters, key):
    return MLP(hidden_sizes=(32,), dropout_rate=0.1, rngs=nnx.Rngs(key))

data = subset(load_dataset("mnist"), num_train=1024, num_eval=512, num_val=512)
def run(rates, seeds, devices):
    return sweep(named_optimizer("momentum"), {"learning_rate": rates}, seeds, data,
                 model_factory=small_model, batch_size=32, num_evals=2, steps_per_eval=20,
                 devices=devices)
# 4 points x 2 seeds: spreading either pads 4 runs, so the points are spread
four_points = [1e-2, 3e-2, 1e-1, 30.0]
results = [run(four_points, [0, 1], d) for d in (None, jax.devices(), jax.devices()[2:])]
# 1 point x 2 seeds: spreading the points pads 4 runs, the seeds 1
results += [run([3e-2], [0, 1], d) for d in (None, jax.devices())]
print(json.dumps({
    "devices_of_programs": devices_of_programs,
    "num_devices": [r.num_devices for r in results],
    "runs_per_batch": [r.runs_per_batch for r in results],
    "curves": [{f: np.asarray(getattr(r.curves, f)).tolist()
                for f in ("train_loss", "val_loss", "val_accuracy")} for r in results],
}))
"""


def test_sweep_spread_over_devices_matches_one_device():
    """4 grid points over 3 CPU devices (padded to 6, 2 per device) in a fresh process:
    the same curves as one device, from a program that runs on all three; a single device
    given runs the sweep there; 2 seeds are spread (padded to 3) instead of 1 point."""
    result = subprocess.run(
        [sys.executable, "-c", SPREAD_SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # the third: the single device given
    assert out["devices_of_programs"] == [[0], [0, 1, 2], [2], [0], [0, 1, 2]]
    assert out["num_devices"] == [1, 3, 1, 1, 3]
    # runs side by side on a device: 2 seeds x 4 points, x 2 points, ...; 2 seeds x 1
    # point, then 1 seed x 1 point
    assert out["runs_per_batch"] == [8, 4, 8, 2, 1]
    one, spread, elsewhere, one_of_three, seeds_spread = out["curves"]
    for field in ("train_loss", "val_loss", "val_accuracy"):
        a, b, c = (np.asarray(curves[field]) for curves in (one, spread, elsewhere))
        assert a.shape == b.shape == (4, 2, 3)  # the padding's runs are dropped
        # the three stable rates; the diverging 30.0 amplifies rounding differences
        np.testing.assert_allclose(a[:3], b[:3], rtol=2e-4, atol=2e-5)
        np.testing.assert_array_equal(a, c)  # the same program on another device
        d, e = (np.asarray(curves[field]) for curves in (one_of_three, seeds_spread))
        assert d.shape == e.shape == (1, 2, 3)  # the repeated seed's run is dropped
        np.testing.assert_allclose(d, e, rtol=2e-4, atol=2e-5)


def test_sweep_devices_need_a_vectorized_sweep(data):
    for vectorize, devices in ((False, jax.devices()), (True, [])):
        with pytest.raises(ValueError, match="devices"):
            _one_step_sweep(data, [0.1], vectorize=vectorize, devices=devices)
