"""The one verdict rule every study uses (experiments/verdict.py)."""

import pytest

from experiments.verdict import Outcome, by_fact, by_test, by_threshold, verdict


@pytest.mark.parametrize(
    ("difference", "p", "sign", "outcome"),
    [
        (-0.5, 0.01, -1, Outcome.SUPPORTS),
        (-0.5, 0.01, 1, Outcome.CONTRADICTS),
        (0.5, 0.049, 1, Outcome.SUPPORTS),
        (0.5, 0.05, 1, Outcome.INCONCLUSIVE),  # not below alpha
        (0.5, float("nan"), 1, Outcome.INCONCLUSIVE),  # too few pairs to test
    ],
)
def test_a_test_supports_only_when_significant_in_the_claimed_direction(
    difference, p, sign, outcome
):
    assert by_test("x", difference, p, sign).outcome is outcome


def test_thresholds_leave_a_band_of_inconclusive_values():
    kwargs = {"supports_above": 0.05, "contradicts_below": 0.01}
    assert by_threshold("x", 0.06, **kwargs).outcome is Outcome.SUPPORTS
    assert by_threshold("x", 0.03, **kwargs).outcome is Outcome.INCONCLUSIVE
    assert by_threshold("x", 0.0, **kwargs).outcome is Outcome.CONTRADICTS
    with pytest.raises(ValueError, match="contradicts_below"):
        by_threshold("x", 0.0, supports_above=0.0, contradicts_below=1.0)


def test_the_rule():
    yes, no = by_fact("a", True), by_fact("b", False)
    unsure = by_test("c", 0.3, 0.4, 1)
    assert verdict([yes, yes]) == "confirmed"
    assert verdict([no, no]) == "refuted"
    assert verdict([yes, no]) == "depends"
    assert verdict([yes, unsure]) == "depends"
    assert verdict([unsure]) == "depends"
    with pytest.raises(ValueError, match="at least one"):
        verdict([])
