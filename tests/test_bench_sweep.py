"""benchmarks/bench_sweep.py: its rounding controls and its agreement rule."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from benchmark_scripts import load

bench_sweep = load("bench_sweep")


def assert_one_float_away_both_ways(before, after):
    """Every element of ``after`` is its ``before`` moved to the next float up or down,
    each direction about half the time."""
    before, after = np.asarray(before), np.asarray(after)
    up, down = np.nextafter(before, np.inf), np.nextafter(before, -np.inf)
    assert np.all((after == up) | (after == down))
    assert 0.4 < np.mean(after == up) < 0.6


def test_round_other_way_moves_every_float_by_exactly_one_ulp_both_ways():
    tree = {
        "w": jax.random.normal(jax.random.key(0), (64, 32)),
        "b": jnp.zeros(32),
        "step": jnp.arange(3),
    }
    moved = bench_sweep.round_other_way(tree, jax.random.key(1))
    np.testing.assert_array_equal(moved["step"], tree["step"])  # integers untouched
    for name in ("w", "b"):
        assert_one_float_away_both_ways(tree[name], moved[name])
    again = bench_sweep.round_other_way(tree, jax.random.key(1))
    np.testing.assert_array_equal(again["w"], moved["w"])  # the key decides


def test_each_step_control_rounds_every_update_the_other_way():
    params = {"w": jax.random.normal(jax.random.key(0), (64, 32)), "b": jnp.ones(32)}
    updates = jax.tree.map(lambda p: 1e-3 * jnp.sin(7 * p), params)
    control = bench_sweep.round_each_step_other_way(jax.random.key(2))
    state = control.init(params)
    moves = []
    for _ in range(2):
        moved, state = control.update(updates, state, params)
        for name in params:
            assert_one_float_away_both_ways(updates[name], moved[name])
        moves.append(np.asarray(moved["w"]))
    assert np.any(moves[0] != moves[1])  # a fresh key every step


def test_agreement_rule_per_learning_rate():
    # 5 rates x 2 seeds; start losses 2.3, the sequential runs end at 0.5
    start = np.full((5, 2), 2.3)
    sequential = np.full((5, 2), 0.5)
    sequential[0, 1] = 2.4  # rate 0: a seed ends above its start
    control = sequential * (1 + np.array([[1e-6], [1e-2], [1e-6], [1e-6], [np.nan]]))
    quiet = sequential.copy()
    vmapped = sequential * (1 + np.array([[0], [0.3], [2e-4], [5e-3], [0]]))
    result = bench_sweep.agreement(start, sequential, [quiet, control], {"vmapped": vmapped})
    assert result.verdicts["vmapped"] == [
        "diverged",
        "inconclusive",  # rounding alone moves the final loss by 1e-2
        "agrees",
        "disagrees",  # 5e-3 where rounding moves it by 1e-6
        "inconclusive",  # a control that is not finite tests nothing
    ]
    assert not result.agrees_where_testable("vmapped")
    np.testing.assert_allclose(result.control_spread[1], 1e-2, rtol=1e-9)
    np.testing.assert_allclose(result.relative_difference["vmapped"][3], 5e-3, rtol=1e-9)
    # a mode that is not finite where the rate is testable disagrees
    broken = sequential.copy()
    broken[2, 0] = np.nan
    verdicts = bench_sweep.agreement(start, sequential, [quiet], {"m": broken}).verdicts["m"]
    assert verdicts[2] == "disagrees"


def test_rounding_control_starts_within_rounding_of_the_sequential_runs(tmp_path):
    # the benchmark's own worker processes (each switches on a compilation cache)
    args = argparse.Namespace(steps=5, batch_size=32, optimizer="adam")
    runs = {
        mode: bench_sweep.run_worker(mode, tmp_path / mode, args)
        for mode in ("sequential", bench_sweep.CONTROLS[0], bench_sweep.CONTROLS[-1])
    }
    sequential, first, last = (np.asarray(runs[m]["start_val_loss"]) for m in runs)
    assert sequential.shape == (len(bench_sweep.LEARNING_RATES), len(bench_sweep.SEEDS))
    for control in (first, last):
        assert np.any(control != sequential)  # the control's parameters were moved
        np.testing.assert_allclose(control, sequential, rtol=1e-5)  # by rounding only
    assert np.any(first != last)  # each control rounds its own way
