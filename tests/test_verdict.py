"""The one verdict rule every study uses (experiments/verdict.py)."""

import math

import pytest

from experiments.stats import Interval, mean_ci
from experiments.verdict import RULE, VERDICTS, Outcome, by_fact, by_interval, verdict


def _interval(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high, 10, 10)


@pytest.mark.parametrize(
    ("low", "high", "sign", "outcome"),
    [
        (0.1, 0.5, 1, Outcome.SUPPORTS),  # above zero, claimed positive
        (0.1, 0.5, -1, Outcome.CONTRADICTS),
        (-0.5, -0.1, -1, Outcome.SUPPORTS),  # below zero, claimed negative
        (-0.5, -0.1, 1, Outcome.CONTRADICTS),
        (-0.1, 0.5, 1, Outcome.INCONCLUSIVE),  # contains zero
        (-0.1, 0.5, -1, Outcome.INCONCLUSIVE),
        (0.0, 0.5, 1, Outcome.INCONCLUSIVE),  # touching zero does not exclude it
        (-0.5, 0.0, 1, Outcome.INCONCLUSIVE),
        (-math.inf, math.inf, 1, Outcome.INCONCLUSIVE),  # one finite sample
        (2.0, math.inf, 1, Outcome.SUPPORTS),  # half-bounded
        (math.nan, math.nan, 1, Outcome.INCONCLUSIVE),  # no finite sample
        (0.1, math.nan, 1, Outcome.INCONCLUSIVE),
        (math.nan, -0.1, -1, Outcome.INCONCLUSIVE),
    ],
)
def test_an_interval_supports_only_when_it_excludes_zero_on_the_claimed_side(
    low, high, sign, outcome
):
    comparison = by_interval("x", _interval(low, high), sign)
    assert comparison.outcome is outcome
    assert comparison.label == "x"


def test_by_interval_on_measured_intervals():
    assert by_interval("up", mean_ci([1.0, 1.2, 0.9, 1.1]), 1).outcome is Outcome.SUPPORTS
    assert by_interval("noise", mean_ci([1.0, -1.2, 0.9, -1.1]), 1).outcome is Outcome.INCONCLUSIVE
    assert by_interval("none", mean_ci([math.inf, math.nan]), 1).outcome is Outcome.INCONCLUSIVE
    with pytest.raises(ValueError, match="claimed_sign"):
        by_interval("x", _interval(0.1, 0.5), 0)


def test_a_fact_supports_or_contradicts():
    assert by_fact("a", True).outcome is Outcome.SUPPORTS
    assert by_fact("a", False).outcome is Outcome.CONTRADICTS


def test_the_rule():
    yes, no = by_fact("a", True), by_fact("b", False)
    unsure = by_interval("c", _interval(-1.0, 1.0), 1)
    assert verdict([yes]) == verdict([yes, yes]) == "confirmed"
    assert verdict([no, no]) == "refuted"
    assert verdict([yes, no]) == verdict([yes, no, unsure]) == "depends"
    assert verdict([unsure]) == "inconclusive"
    assert verdict([yes, unsure]) == "inconclusive"  # one setting does not back it
    assert verdict([no, unsure]) == "inconclusive"
    assert set(VERDICTS) == {"confirmed", "refuted", "depends", "inconclusive"}
    for word in VERDICTS:
        assert word.capitalize() in RULE
    with pytest.raises(ValueError, match="at least one"):
        verdict([])
