"""One written rule turns measurements into a verdict, the same way in every study.

A claim is backed by one or more comparisons, each an interval for a quantity whose sign
decides the claim (a paired difference between two optimizers, a difference of two
success rates, a log-log slope minus its textbook value). A comparison

- *supports* the claim when its interval excludes zero in the claimed direction,
- *contradicts* it when its interval excludes zero the other way,
- is *inconclusive* when the interval contains zero.

The intervals come from :mod:`experiments.stats` (95% Student-t intervals of paired
differences over seeds, Wilson/Newcombe intervals for rates); when several optimizers are
compared with one baseline, the intervals are Holm-corrected (:func:`~experiments.stats.
holm_paired`), so the family of comparisons keeps a 5% error rate. A deterministic
measurement (bytes of optimizer state, iterations on one fixed problem) has no sampling
error: its interval is the point itself (:func:`by_fact`).

The verdict of a claim:

- **confirmed**: every comparison supports it;
- **refuted**: every comparison contradicts it;
- **depends**: some comparisons support it and some contradict it (it holds in some
  settings and fails in others; the evidence says which);
- **inconclusive**: anything else (an interval contains zero and the others do not
  disagree with each other).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from experiments.stats import Interval

Verdict = Literal["confirmed", "refuted", "depends", "inconclusive"]
VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "depends", "inconclusive")
RULE = (
    "Each claim rests on one or more comparisons, each a 95% interval for a quantity whose "
    "sign decides the claim (paired by seed and Holm-corrected when several optimizers are "
    "compared with one baseline; Wilson/Newcombe intervals for rates). A comparison supports "
    "the claim when its interval excludes zero in the claimed direction, contradicts it when "
    "it excludes zero the other way, and is inconclusive when it contains zero; a "
    "deterministic measurement counts as its own interval. Confirmed: every comparison "
    "supports the claim. Refuted: every comparison contradicts it. Depends: some support "
    "and some contradict it. Inconclusive: anything else."
)


class Outcome(enum.Enum):
    """What one comparison says about a claim."""

    SUPPORTS = "supports"
    CONTRADICTS = "contradicts"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One piece of evidence for a claim and what it says."""

    label: str
    outcome: Outcome


def by_interval(label: str, interval: Interval, claimed_sign: Literal[1, -1]) -> Comparison:
    """Supports when ``interval`` lies strictly on the ``claimed_sign`` side of zero,
    contradicts when it lies strictly on the other side, inconclusive otherwise (it
    contains zero, or no finite sample made an interval)."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"claimed_sign must be 1 or -1, got {claimed_sign!r}")
    if math.isnan(interval.low) or math.isnan(interval.high):
        return Comparison(label, Outcome.INCONCLUSIVE)
    low, high = sorted((interval.low * claimed_sign, interval.high * claimed_sign))
    if low > 0:
        return Comparison(label, Outcome.SUPPORTS)
    if high < 0:
        return Comparison(label, Outcome.CONTRADICTS)
    return Comparison(label, Outcome.INCONCLUSIVE)


def by_fact(label: str, holds: bool) -> Comparison:
    """A deterministic measurement (no sampling error): supports when the claimed
    inequality holds, contradicts when it does not."""
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
    if {Outcome.SUPPORTS, Outcome.CONTRADICTS} <= outcomes:
        return "depends"
    return "inconclusive"
