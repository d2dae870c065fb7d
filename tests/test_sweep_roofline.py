"""benchmarks/sweep_roofline.py: its count of the sweep's products against XLA's cost
analysis, and a run on a tiny budget."""

import json

import benchmark_scripts
import pytest
from flax import nnx

from jaxopt_lab.training.models import MLP


def test_the_counted_products_are_what_xla_counts_for_a_step_and_an_evaluation(mnist):
    roofline = benchmark_scripts.load("sweep_roofline")
    model = MLP(rngs=nnx.Rngs(0))
    counted = roofline.sweep_flops(roofline.layer_shapes(model), runs=1, steps=1)
    xla = roofline.xla_flops(model, mnist.test_images, mnist.test_labels)
    # XLA also counts the elementwise work (ReLU, dropout, softmax; Adam's update of
    # 101,770 parameters is most of it): 11.5% of a step on top of the products here.
    # Leaving out the forward or the kernel-gradient products, or counting either twice,
    # would move the ratio by a half or more.
    assert counted["step"] <= xla["step"] <= 1.15 * counted["step"]
    assert counted["evaluation"] <= xla["evaluation"] <= 1.02 * counted["evaluation"]
    assert counted["train"] == counted["step"]
    assert counted["curve"] == (roofline.EVALS + 1) * 2 * counted["evaluation"]


def test_a_tiny_run_reports_a_bound_below_the_measured_sequential_time(tmp_path):
    out = tmp_path / "roofline.json"
    benchmark_scripts.load("sweep_roofline").main(
        ["--steps", "5", "--repeats", "2", "--out", str(out)]
    )
    record = json.loads(out.read_text())
    assert record["runs"] == 24 and record["steps_per_run"] == 5
    bound = record["lower_bound_s"]
    assert bound["total"] == pytest.approx(bound["matmul"] + bound["adam"])
    # a bound from best-case rates cannot exceed what the sweep really took
    assert 0 < bound["total"] < record["sequential_run_s"]
    assert record["largest_speedup"] == pytest.approx(record["sequential_run_s"] / bound["total"])
