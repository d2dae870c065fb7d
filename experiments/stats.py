"""Uncertainty and ranking: bootstrap confidence intervals over seeds, paired
comparisons, time-to-target and performance profiles.

The bootstrap resamples seeds with replacement and takes the 2.5 and 97.5 percentiles
of the resampled means (the percentile bootstrap). Comparing two optimizers run with the
same seeds, :func:`paired_difference_ci` resamples the per-seed *differences*, which
removes the between-seed variance both runs share.

A performance profile (Dolan & More, 2002; the scoring of MLCommons AlgoPerf) ranks
solvers over a set of problems: with :math:`t_{p,s}` the time solver :math:`s` needs to
reach the target on problem :math:`p` (infinite if it never does),
:math:`\\rho_s(\\tau) = |\\{p : t_{p,s} \\le \\tau \\min_{s'} t_{p,s'}\\}| / |P|`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


class Interval(NamedTuple):
    """A sample mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def format(self, precision: int = 3) -> str:
        """``mean [low, high]`` with ``precision`` significant digits."""
        return f"{self.mean:.{precision}g} [{self.low:.{precision}g}, {self.high:.{precision}g}]"


def bootstrap_ci(
    samples: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of ``samples`` with a percentile-bootstrap interval of the mean.

    Non-finite samples (a diverged or never-converged run) make the mean non-finite:
    they are kept, not dropped, so a failure is never hidden. One sample gives a
    zero-width interval.
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = float(values.mean())
    if values.size == 1 or not np.all(np.isfinite(values)):
        return Interval(mean, mean, mean)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[picks].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(mean, float(low), float(high))


def paired_difference_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, **kwargs: float
) -> Interval:
    """Mean of ``a - b`` over paired samples (same seeds), with its bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape, got {a.shape} and {b.shape}")
    return bootstrap_ci(a - b, **kwargs)


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
