"""benchmarks/bench_lbfgs.py end to end on two tiny CUTEst problems: every row is counted
and checked at the returned point, the summary compares with scipy, the profiles are
drawn, and --from-json redraws the same summary without running anything."""

import importlib.util
import json

import benchmark_scripts
import pytest

# sif2jax switches x64 on when imported, for the whole process: only look for it here, so
# the benchmark imports it inside the float64 fixture, which restores the flag afterwards
if importlib.util.find_spec("sif2jax") is None:
    pytest.skip("the bench extra (sif2jax) is not installed", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("float64")


def test_benchmark_on_two_tiny_problems(tmp_path, capsys):
    bench = benchmark_scripts.load("bench_lbfgs")
    out = tmp_path / "lbfgs.json"
    argv = ["--problems", "ROSENBR,BEALE", "--solvers", "jaxopt_lab,scipy"]
    argv += ["--repeats", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    rows = {(r["problem"], r["solver"]): r for r in report["rows"]}
    assert len(rows) == 4 and out.with_suffix(".png").stat().st_size > 0
    for row in rows.values():
        assert row["status"] == "solved" and row["grad_norm"] <= 1e-5
        assert row["fevals"] >= row["iterations"] >= 1 and row["wall_s"] > 0
    # ROSENBR's minimum is f = 0 at (1, 1); BEALE's f = 0 at (3, 0.5)
    assert all(rows[(p, s)]["fun"] < 1e-10 for p, s in rows)
    ours = report["summary"]["jaxopt_lab"]
    assert ours["solved"] == 2 and ours["stops"] == {"converged": 2}
    assert ours["vs_scipy"]["solved_by_both"] == 2
    assert ours["vs_scipy"]["scipy_solves_this_does_not"] == []
    # both reach each problem's minimum, f = 0: the same point
    assert ours["vs_scipy"]["same_point"] == 2
    same_point_ratio = ours["vs_scipy"]["geomean_fevals_ratio_same_point"]
    assert same_point_ratio == ours["vs_scipy"]["geomean_fevals_ratio"]
    printed = capsys.readouterr().out
    assert bench.main(["--from-json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"] == report["summary"]
    redrawn = capsys.readouterr().out
    assert redrawn.splitlines()[-8:] == printed.splitlines()[-8:]


def test_rounding_control_counts_like_the_benchmark_and_is_scale_invariant(tmp_path):
    """The control's c = 1 run is scipy under bench_lbfgs.py's protocol (its evaluation
    counts equal the benchmark's scipy runner's); on two small problems the scaled runs
    take the same number of evaluations with f scaled by 1000 and by 1/1000, as they would
    in exact arithmetic."""
    import argparse

    control = benchmark_scripts.load("lbfgs_rounding_control")
    out = tmp_path / "rounding.json"
    argv = ["--problems", "ROSENBR,BEALE", "--factors", "1000,0.001", "--out", str(out)]
    assert control.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]

    bench = benchmark_scripts.load("bench_lbfgs")
    args = argparse.Namespace(maxiter=2000)
    problems = bench.cutest.unconstrained(1000, ",".join(rows))
    assert sorted(problem.name for problem in problems) == ["BEALE", "ROSENBR"]
    for problem in problems:
        _, row = bench._scipy(problem, args, 1e-5)
        counts = {fevals for _, fevals in rows[problem.name]}
        assert counts == {row["fevals"]}
        assert all(solved for solved, _ in rows[problem.name])
