"""Study 4's timer and statistics against fake clocks with known costs, its state bytes
against closed forms, and its verdicts on synthetic timings."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import scipy.stats

from experiments import efficiency, protocol
from experiments.efficiency import (
    EfficiencyBudget,
    EfficiencyResults,
    interleaved_times,
    log_ratios,
    state_bytes,
)
from jaxopt_lab.optim.base import tree_size
from jaxopt_lab.training.step import init_train_state


class FakeMachine:
    """A clock that only moves when a block "runs": block ``name`` costs
    ``cost[name] * load``, where the load changes from round to round (calls are counted:
    with ``repeats`` calls per block, a round is ``len(cost) * repeats`` calls after the
    warm-up calls)."""

    def __init__(self, cost: dict[str, float], loads: list[float], repeats: int = 1):
        self.cost, self.loads, self.repeats = cost, loads, repeats
        self.now, self.calls, self.log = 0.0, 0, []

    def clock(self) -> float:
        return self.now

    def block(self, name: str):
        def run():
            per_round = len(self.cost) * self.repeats
            round_ = (self.calls - len(self.cost)) // per_round  # -1 during warm-up
            self.now += self.cost[name] * (self.loads[round_] if round_ >= 0 else 100.0)
            self.log.append((round_, name))
            self.calls += 1

        return run


def test_interleaved_times_gives_one_paired_sample_per_round_and_cancels_the_load():
    cost = {"sgd": 1.0, "momentum": 1.25, "adam": 1.5}
    loads = [1.0, 10.0, 2.0, 7.0, 1.0]  # the machine gets 10x slower in some rounds
    machine = FakeMachine(cost, loads)
    times = interleaved_times(
        {n: machine.block(n) for n in cost}, len(loads), seed=3, clock=machine.clock
    )
    assert set(times) == set(cost)
    for name in cost:  # one sample per round, each the block's cost under that round's load
        np.testing.assert_allclose(times[name], cost[name] * np.asarray(loads))
    # warm-up first (one untimed call each), then every round runs every block exactly once
    assert sorted(name for r, name in machine.log if r == -1) == sorted(cost)
    for r in range(len(loads)):
        assert sorted(name for rr, name in machine.log if rr == r) == sorted(cost)
    orders = {tuple(name for rr, name in machine.log if rr == r) for r in range(len(loads))}
    assert len(orders) > 1  # the order within a round is shuffled
    # paired by round: the load cancels in the log ratio, so the interval has no width
    ratios = log_ratios(times, "sgd")
    for name in ("momentum", "adam"):
        assert ratios[name].mean == pytest.approx(math.log(cost[name]))
        assert ratios[name].high - ratios[name].low == pytest.approx(0.0, abs=1e-12)


def test_interleaved_times_keeps_the_fastest_of_the_repeats():
    state = {"now": 0.0, "calls": 0}

    def clock():
        return state["now"]

    def block():  # every other call is interrupted and takes 5 s instead of 1
        state["now"] += 5.0 if state["calls"] % 2 else 1.0
        state["calls"] += 1

    times = interleaved_times({"a": block}, 4, repeats=2, clock=clock)
    np.testing.assert_array_equal(times["a"], np.ones(4))
    assert state["calls"] == 1 + 4 * 2
    with pytest.raises(ValueError, match="rounds"):
        interleaved_times({"a": block}, 0, clock=clock)
    with pytest.raises(ValueError, match="at least one block"):
        interleaved_times({}, 3, clock=clock)


def test_log_ratio_is_the_t_interval_of_the_mean_log_ratio():
    sgd = np.array([1.0, 2.0, 1.0, 3.0, 2.0])
    ratio = np.array([1.0, 4.0, 1.0, 4.0, 2.0])  # arithmetic mean 2.4, geometric 2
    adam = sgd * ratio
    (only,) = log_ratios({"sgd": sgd, "adam": adam}, "sgd").values()  # one comparison: no Holm
    logs = np.log(ratio)
    low, high = scipy.stats.t.interval(0.95, logs.size - 1, logs.mean(), scipy.stats.sem(logs))
    assert math.exp(only.mean) == pytest.approx(2.0)  # geometric, not arithmetic, mean
    assert (only.low, only.high) == pytest.approx((low, high))
    # with a second comparison Holm widens the more significant one's interval
    both = log_ratios({"sgd": sgd, "adam": adam, "slow": sgd * 8 * ratio / 2}, "sgd")
    assert both["slow"].high - both["slow"].low > high - low


def test_state_bytes_match_closed_forms():
    model = protocol.model_factory(efficiency.HIDDEN_SIZES)({}, jax.random.key(0))
    _, state = init_train_state(model, efficiency.build("sgd"))
    params, size = state.params, tree_size(state.params)
    assert size == (784 + 1) * 128 + (128 + 1) * 10
    assert state_bytes("sgd", params) == 0
    for one_buffer in ("momentum", "nesterov", "adagrad", "rmsprop"):
        assert state_bytes(one_buffer, params) == 4 * size
    for two_buffers in ("adam", "adamw"):  # mu and nu in float32, plus an int32 step count
        assert state_bytes(two_buffers, params) == 2 * 4 * size + 4
    assert state_bytes("lbfgs", params) >= 2 * 10 * 4 * size  # ten (s, y) pairs at least


def _results(ratio_samples: np.ndarray) -> EfficiencyResults:
    """Synthetic timings: SGD 0.2 ms per step with a drifting load, Adam ``ratio`` x it."""
    rounds = ratio_samples.size
    load = 1.0 + np.random.default_rng(0).uniform(0, 3, rounds)
    sgd = 2e-4 * load
    step = {name: sgd * (1.1 if name != "sgd" else 1.0) for name in efficiency.FIRST_ORDER}
    step["adam"] = sgd * ratio_samples
    step["adamw"] = step["adam"] * 1.01
    size = 101_770
    return EfficiencyResults(
        budget=EfficiencyBudget(rounds=rounds, steps_per_block=8, repeats=1, lbfgs_steps=0),
        seed=0,
        params=size,
        device="fake",
        state_bytes={n: (8 if n.startswith("adam") else 4) * size for n in step} | {"sgd": 0},
        step_seconds=step,
        update_seconds={name: 0.3 * t for name, t in step.items()},
    )


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [
        (np.full(20, 1.6) * np.exp(np.linspace(-0.05, 0.05, 20)), "confirmed"),
        (np.full(20, 1.1) * np.exp(np.linspace(-0.05, 0.05, 20)), "confirmed"),  # any size
        (np.full(20, 0.9) * np.exp(np.linspace(-0.05, 0.05, 20)), "refuted"),
        (np.exp(np.linspace(-0.6, 0.9, 6)), "inconclusive"),  # wide: contains 1
    ],
)
def test_report_decides_the_step_time_claim_on_its_direction(tmp_path, ratios, verdict):
    section = efficiency.report(_results(ratios), tmp_path)
    memory, slower = section.claims
    assert memory.verdict == "confirmed"
    assert slower.verdict == verdict
    assert slower.evidence.startswith(f"Adam's step takes {np.exp(np.log(ratios).mean()):.3g}x")
    assert (tmp_path / "efficiency.png").stat().st_size > 0


def test_budgets_cover_every_tier():
    assert set(efficiency.BUDGETS) == {"quick", "medium", "full"}
    with pytest.raises(ValueError, match="rounds"):
        EfficiencyBudget(rounds=1, steps_per_block=1, repeats=1, lbfgs_steps=0)
