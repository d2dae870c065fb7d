"""The benchmark harness: well-formed, finite records and a sane byte model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lab import bench
from jaxopt_lab.optim.base import tree_size


def test_time_call_blocks_and_summarises():
    timing = bench.time_call(jax.jit(lambda x: x @ x), jnp.ones((64, 64)), repeats=5)
    assert 0 < timing.min_s <= timing.median_s and timing.iqr_s >= 0 and timing.repeats == 5
    with pytest.raises(ValueError, match="repeats"):
        bench.time_call(lambda: 0, repeats=0)


@pytest.mark.parametrize("size", [1_000, 100_000, 3_000_000])
def test_benchmark_params_have_about_the_requested_size(size):
    params = jax.eval_shape(lambda: bench.benchmark_params(size))
    assert 0.9 * size <= tree_size(params) <= 1.01 * size
    assert {leaf.ndim for leaf in jax.tree.leaves(params)} == {1, 2}


def test_step_records_are_finite_and_follow_the_byte_model():
    records = bench.optimizer_benchmark(
        ["sgd", "adam"], sizes=[20_000], repeats=3, rounds=1, progress=False
    )
    assert [r["optimizer"] for r in records] == ["sgd", "adam"]
    sgd, adam = records
    # Adam keeps two float32 moments per parameter (plus a scalar count), SGD none.
    assert sgd["state_bytes_per_param"] == 0
    assert adam["state_bytes_per_param"] == pytest.approx(8.0, rel=1e-3)
    assert adam["bytes_moved"] == pytest.approx(3 * 4 * adam["size"] + 2 * 8 * adam["size"], 1e-3)
    for r in records:
        for key in (
            "ratio_vs_optax",
            "bandwidth_gbs",
            "copy_bandwidth_gbs",
            "fraction_of_copy_bandwidth",
        ):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert r["ours"]["repeats"] == r["optax"]["repeats"] == 3
    assert "adam" in bench.format_optimizer_table(records)


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="unknown optimizers"):
        bench.optimizer_benchmark(["lion"], sizes=[1000])


def test_device_info_names_backend_and_versions():
    info = bench.device_info()
    assert info["backend"] == jax.default_backend() and info["jax_version"] == jax.__version__


def test_bench_command_writes_json_and_figure(tmp_path):
    import json

    from jaxopt_lab.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--skip-training", "--sizes", "2e4", "--optimizers", "sgd", "adam"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"]["backend"] == jax.default_backend()
    assert [r["optimizer"] for r in report["optimizers"]] == ["sgd", "adam"]
    assert all(math.isfinite(r["ratio_vs_optax"]) for r in report["optimizers"])
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_every_registered_optimizer_is_benchmarked():
    from jaxopt_lab.optim.registry import OPTIMIZER_NAMES

    assert set(OPTIMIZER_NAMES) <= set(bench.BENCHMARKED)
    assert bench.CLIPPED_CHAIN in bench.BENCHMARKED


def test_summarise_spread_is_the_interquartile_range():
    timing = bench.summarise([4.0, 1.0, 3.0, 2.0, 100.0])
    assert timing.median_s == 3.0 and timing.min_s == 1.0 and timing.repeats == 5
    # statistics.quantiles (exclusive method) of 1, 2, 3, 4, 100: q1 = 1.5, q3 = 52.
    assert timing.iqr_s == pytest.approx(50.5)
    assert bench.summarise([2.0, 5.0]).iqr_s == 3.0
    with pytest.raises(ValueError, match="times"):
        bench.summarise([])


def test_copy_baseline_streams_the_step_bytes_in_place():
    params = bench.benchmark_params(1_000)
    grads = jax.tree.map(jnp.ones_like, params)
    state = (jnp.zeros((), jnp.int32), jax.tree.map(jnp.ones_like, params))
    expected = jax.tree.map(lambda p: p + 1, params)
    new_params, (count, moment) = bench._copy_step(jax.tree.map(jnp.copy, params), state, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_params, expected)
    jax.tree.map(lambda m: np.testing.assert_allclose(m, 0.999, rtol=1e-6), moment)
    assert count.dtype == jnp.int32 and count == 0
    # Donated: the inputs were consumed in place, as a real train step's are.
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state))


def test_training_throughput_counts_whole_batches_of_real_mnist(mnist):
    images, labels = mnist.train_images[:2_000], mnist.train_labels[:2_000]
    (record,) = bench.training_throughput(images, labels, [300], repeats=1, progress=False)
    assert record["batch_size"] == 300 and record["samples_per_epoch"] == 1_800  # 6 batches
    assert record["samples_per_s"] == pytest.approx(1_800 / record["epoch"]["median_s"])
    assert record["compile_s"] > 0 and math.isfinite(record["samples_per_s"])


def test_bench_saves_each_section_before_a_later_one_fails(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from jaxopt_lab.cli import main
    from jaxopt_lab.training import data

    class TrainingBroke(Exception):
        pass

    def broken(*args, **kwargs):
        raise TrainingBroke

    stand_in = SimpleNamespace(train_images=None, train_labels=None)
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: stand_in)
    monkeypatch.setattr(bench, "training_throughput", broken)  # the second section fails
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--sizes", "2e4", "--optimizers", "sgd", "--out", str(out)]
    with pytest.raises(TrainingBroke):  # an internal failure keeps its traceback
        main(args)
    report = json.loads(out.read_text())
    assert [r["optimizer"] for r in report["optimizers"]] == ["sgd"]
    assert report["training"] == []
    assert "sgd" in capsys.readouterr().out  # the finished table was printed too
