"""One written rule turns measurements into a verdict, the same way in every study.

A claim is backed by one or more comparisons. Each comparison *supports* the claim,
*contradicts* it, or is *inconclusive*:

- an interval (e.g. a paired difference between two optimizers) supports the claim when
  it excludes zero in the claimed direction, contradicts it when it excludes zero in the
  other direction, and is inconclusive when it contains zero;
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

from experiments.stats import Interval

Verdict = Literal["confirmed", "refuted", "depends"]
VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "depends")
RULE = (
    "Each claim rests on one or more comparisons; each supports it (an interval excluding "
    "zero in the claimed direction, or a measured value beyond its support threshold), "
    "contradicts it (excluding zero the other way, or beyond its refutation threshold), or "
    "is inconclusive. Confirmed: every comparison supports the claim. Refuted: every "
    "comparison contradicts it. Depends: anything else."
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


def by_interval(label: str, interval: Interval, claimed_sign: Literal[1, -1]) -> Comparison:
    """Supports when the interval lies on the claimed side of zero, contradicts when it
    lies on the other side, inconclusive when it contains zero."""
    low, high = interval.low * claimed_sign, interval.high * claimed_sign
    low, high = min(low, high), max(low, high)
    if low > 0:
        return Comparison(label, Outcome.SUPPORTS)
    if high < 0:
        return Comparison(label, Outcome.CONTRADICTS)
    return Comparison(label, Outcome.INCONCLUSIVE)


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
