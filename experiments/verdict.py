"""One written rule turns measurements into a verdict, the same way in every study.

A claim is backed by one or more comparisons. Each comparison *supports* the claim,
*contradicts* it, or is *inconclusive*:

- a test of a difference (e.g. a paired t-test between two optimizers, its p-value
  Holm-adjusted when several are compared with one baseline) supports the claim when it
  is significant (adjusted p < 0.05) with the difference in the claimed direction,
  contradicts it when significant the other way, and is inconclusive otherwise;
- a measured quantity with thresholds supports the claim beyond the support threshold,
  contradicts it beyond the refutation threshold, and is inconclusive in between;
- a plain fact (one measured inequality) supports or contradicts.

The verdict: **confirmed** when every comparison supports the claim, **refuted** when
every comparison contradicts it, **depends** otherwise (some do, some do not, or the
evidence is inconclusive).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05

Verdict = Literal["confirmed", "refuted", "depends"]
VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "depends")
RULE = (
    "Each claim rests on one or more comparisons; each supports it (a paired t-test "
    f"significant at {ALPHA:g} after Holm's correction, in the claimed direction, or a "
    "measured value beyond its support threshold), contradicts it (significant the other "
    "way, or beyond its refutation threshold), or is inconclusive. Confirmed: every "
    "comparison supports the claim. Refuted: every comparison contradicts it. Depends: "
    "anything else."
)


class Outcome(enum.Enum):
    SUPPORTS = "supports"
    CONTRADICTS = "contradicts"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One piece of evidence for a claim and what it says."""

    label: str
    outcome: Outcome


def by_test(
    label: str, difference: float, p_value: float, claimed_sign: Literal[1, -1]
) -> Comparison:
    """Supports when ``p_value < ALPHA`` and ``difference`` has the claimed sign,
    contradicts when significant with the other sign, inconclusive otherwise (NaN p: too
    few finite pairs to test)."""
    if not p_value < ALPHA:
        return Comparison(label, Outcome.INCONCLUSIVE)
    if difference * claimed_sign > 0:
        return Comparison(label, Outcome.SUPPORTS)
    return Comparison(label, Outcome.CONTRADICTS)


def by_threshold(
    label: str, value: float, *, supports_above: float, contradicts_below: float
) -> Comparison:
    """Supports when ``value > supports_above``, contradicts when
    ``value < contradicts_below``, inconclusive in between."""
    if contradicts_below > supports_above:
        raise ValueError("contradicts_below must not exceed supports_above")
    if value > supports_above:
        return Comparison(label, Outcome.SUPPORTS)
    if value < contradicts_below:
        return Comparison(label, Outcome.CONTRADICTS)
    return Comparison(label, Outcome.INCONCLUSIVE)


def by_fact(label: str, holds: bool) -> Comparison:
    """A measured inequality: supports when it holds, contradicts when it does not."""
    return Comparison(label, Outcome.SUPPORTS if holds else Outcome.CONTRADICTS)


def verdict(comparisons: Sequence[Comparison]) -> Verdict:
    """The rule of this module."""
    if not comparisons:
        raise ValueError("a verdict needs at least one comparison")
    outcomes = {c.outcome for c in comparisons}
    if outcomes == {Outcome.SUPPORTS}:
        return "confirmed"
    if outcomes == {Outcome.CONTRADICTS}:
        return "refuted"
    return "depends"
