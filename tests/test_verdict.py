"""The one verdict rule every study uses (experiments/verdict.py)."""

import pytest

from experiments.stats import Interval
from experiments.verdict import (
    Outcome,
    by_fact,
    by_interval,
    by_threshold,
    verdict,
)


@pytest.mark.parametrize(
    ("interval", "sign", "outcome"),
    [
        (Interval(-0.5, -0.9, -0.1), -1, Outcome.SUPPORTS),
        (Interval(-0.5, -0.9, -0.1), 1, Outcome.CONTRADICTS),
        (Interval(0.5, 0.1, 0.9), 1, Outcome.SUPPORTS),
        (Interval(0.1, -0.2, 0.4), 1, Outcome.INCONCLUSIVE),
        (Interval(0.0, 0.0, 0.3), 1, Outcome.INCONCLUSIVE),  # touching zero is not excluding it
    ],
)
def test_an_interval_supports_only_when_it_excludes_zero_on_the_claimed_side(
    interval, sign, outcome
):
    assert by_interval("x", interval, sign).outcome is outcome


def test_thresholds_leave_a_band_of_inconclusive_values():
    kwargs = {"supports_above": 0.05, "contradicts_below": 0.01}
    assert by_threshold("x", 0.06, **kwargs).outcome is Outcome.SUPPORTS
    assert by_threshold("x", 0.03, **kwargs).outcome is Outcome.INCONCLUSIVE
    assert by_threshold("x", 0.0, **kwargs).outcome is Outcome.CONTRADICTS
    with pytest.raises(ValueError, match="contradicts_below"):
        by_threshold("x", 0.0, supports_above=0.0, contradicts_below=1.0)


def test_the_rule():
    yes, no = by_fact("a", True), by_fact("b", False)
    unsure = by_interval("c", Interval(0.0, -1.0, 1.0), 1)
    assert verdict([yes, yes]) == "confirmed"
    assert verdict([no, no]) == "refuted"
    assert verdict([yes, no]) == "depends"
    assert verdict([yes, unsure]) == "depends"
    assert verdict([unsure]) == "depends"
    with pytest.raises(ValueError, match="at least one"):
        verdict([])
