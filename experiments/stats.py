"""Uncertainty and ranking: confidence intervals over seeds, paired comparisons with a
correction for testing several at once, time-to-target and performance profiles.

Intervals are Student-t intervals of the mean over seeds (:func:`mean_ci`); comparing two
optimizers run with the same seeds, :func:`paired_difference` works on the per-seed
differences, and :func:`holm` adjusts the p-values when several optimizers are compared
with one baseline.

A performance profile (Dolan & More, 2002; the scoring of MLCommons AlgoPerf) ranks
solvers over a set of problems: with :math:`t_{p,s}` the time solver :math:`s` needs to
reach the target on problem :math:`p` (infinite if it never does),
:math:`\\rho_s(\\tau) = |\\{p : t_{p,s} \\le \\tau \\min_{s'} t_{p,s'}\\}| / |P|`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats

CONFIDENCE = 0.95


class Interval(NamedTuple):
    """A mean over the finite samples with its confidence interval, and how many of the
    samples were finite (a diverged run or a target never reached is not finite: it is
    counted, never averaged, so k of n successes stay visible)."""

    mean: float
    low: float
    high: float
    finite: int
    total: int

    def format(self, precision: int = 3) -> str:
        """``mean [low, high]``, with ``(k/n finite)`` when some samples were not."""
        if self.finite == 0:
            return f"none of {self.total}"
        text = f"{self.mean:.{precision}g} [{self.low:.{precision}g}, {self.high:.{precision}g}]"
        return text if self.finite == self.total else f"{text} ({self.finite}/{self.total})"


def mean_ci(samples: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Student-t confidence interval of the mean of the finite samples.

    The t interval keeps its coverage at the small sample sizes of seeded runs (at n = 10
    the percentile bootstrap covered 91% where 95% was asked, the t interval 95.5%;
    ``tests/test_stats.py`` measures it). One finite sample gives an unbounded interval.
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_ci needs at least one sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, values.size)
    mean = float(finite.mean())
    if finite.size == 1:
        return Interval(mean, -math.inf, math.inf, 1, values.size)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, finite.size - 1) * scipy.stats.sem(finite)
    return Interval(mean, mean - float(half), mean + float(half), finite.size, values.size)


class PairedDifference(NamedTuple):
    """``a - b`` over the pairs (same seeds) where both are finite: the interval of its
    mean and the two-sided paired t-test's p-value for "the mean difference is 0"."""

    interval: Interval
    p_value: float


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """Compare two optimizers run with the same seeds: pairing removes the between-seed
    variance both share."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape, got {a.shape} and {b.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    difference = np.where(both, a - b, np.nan)
    interval = mean_ci(difference, confidence=confidence)._replace(total=a.size)
    finite = difference[both]
    if finite.size < 2:
        return PairedDifference(interval, math.nan)
    if np.all(finite == finite[0]):  # no spread: the t statistic is 0/0
        return PairedDifference(interval, 1.0 if finite[0] == 0 else 0.0)
    return PairedDifference(interval, float(scipy.stats.ttest_1samp(finite, 0.0).pvalue))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` for testing them together (Holm 1979):
    the k-th smallest becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``. Rejecting where
    the adjusted value is below alpha keeps the family-wise error rate at alpha. NaN stays
    NaN (and counts in m)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p))
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return np.where(np.isnan(p), np.nan, adjusted)


def first_reach(
    values: Sequence[float] | np.ndarray, positions: Sequence[float] | np.ndarray, target: float
) -> float:
    """The first position where ``values`` drops to ``target`` or below (``inf`` if never).

    ``values[i]`` is measured at ``positions[i]`` (steps, epochs or seconds).
    """
    values, positions = np.asarray(values), np.asarray(positions)
    if values.shape != positions.shape:
        raise ValueError(f"values {values.shape} and positions {positions.shape} differ")
    reached = np.flatnonzero(values <= target)
    return float(positions[reached[0]]) if reached.size else float("inf")


def performance_profile(
    times: Mapping[str, Sequence[float]], taus: Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """:math:`\\rho_s(\\tau)` for each solver ``s`` of ``times`` (solver -> time per problem).

    A problem no solver reaches counts as unsolved for all of them.
    """
    names = list(times)
    table = np.asarray([np.asarray(times[n], dtype=np.float64) for n in names])
    if table.ndim != 2 or table.shape[1] == 0:
        raise ValueError("times must map every solver to the same non-empty list of problems")
    if np.any(table <= 0):
        raise ValueError("times to target must be positive (use inf for a failure)")
    best = table.min(axis=0)
    with np.errstate(invalid="ignore"):  # every solver failed: inf / inf = nan, unsolved
        ratios = table / best
    taus = np.asarray(taus, dtype=np.float64)
    solved = ratios[:, :, None] <= taus[None, None, :]
    return {name: solved[i].mean(axis=0) for i, name in enumerate(names)}


def profile_area(fractions: np.ndarray, taus: Sequence[float] | np.ndarray) -> float:
    """Normalised area under a performance profile over ``log(tau)`` (1 = always fastest)."""
    log_taus = np.log(np.asarray(taus, dtype=np.float64))
    span = log_taus[-1] - log_taus[0]
    if span <= 0:
        return float(fractions[0])
    return float(np.trapezoid(fractions, log_taus) / span)
