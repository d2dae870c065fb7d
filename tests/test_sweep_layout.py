"""benchmarks/sweep_layout.py on a tiny budget: the four layouts train the same runs (the
script checks the kernels agree before it reports) and the record holds every figure."""

import json

import benchmark_scripts


def test_the_four_layouts_train_the_same_runs(tmp_path):
    module = benchmark_scripts.load("sweep_layout")
    out = tmp_path / "layout.json"
    module.main(["--runs", "3", "--steps", "4", "--repeats", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    for name in ("one run", "run-major", "feature-major", "transposed kernel"):
        assert record[name]["per_run_step_ms"] > 0
    single = record["one run"]["per_run_step_ms"]
    for name in ("run-major", "feature-major", "transposed kernel"):
        assert record[name]["speedup_over_one_after_another"] == (
            single / record[name]["per_run_step_ms"]
        )
