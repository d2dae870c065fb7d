"""benchmarks/sweep_layout.py on a tiny budget: the four layouts train the same runs (the
script checks the kernels agree before it reports) and the record holds every figure."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_layout.py"


def test_the_four_layouts_train_the_same_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("sweep_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
