"""Uncertainty and ranking: confidence intervals over seeds, paired comparisons with a
correction for testing several at once, success rates, slopes, time-to-target and
performance profiles with their uncertainty.

The intervals keep their stated coverage at the sample sizes of the studies (about 10
seeds, tens to hundreds of random starts); ``tests/test_stats.py`` measures it for means,
rates and slopes, and the family-wise error of the Holm intervals.

- **Means over seeds** (:func:`mean_ci`): the Student-t interval
  :math:`\\bar x \\pm t_{n-1} s/\\sqrt n`. It is exact for normal samples at any n and
  robust for the mild skew of final losses. At n = 10 the percentile bootstrap of the mean
  covers about 91% where 95% is asked (it ignores the t distribution's heavier tails);
  the t interval covers 95%.
- **Paired comparisons** (:func:`paired_difference`): optimizers run with the same seeds
  (same initialisation and batch order) are compared by the t interval and the paired
  t-test of the per-seed differences, which removes the between-seed variance both share.
  A run that diverged or never reached a target is not finite: it is counted, never
  averaged (``k/n`` finite stays visible), and its pair drops out.
- **Several optimizers against one baseline** (:func:`holm`, :func:`holm_paired`): Holm's
  step-down correction (Holm 1979) keeps the family-wise error rate at alpha for any
  dependence between the tests; :func:`holm_paired` also gives each difference an interval
  at the matching level, so "the interval excludes 0" and "the adjusted p-value is below
  alpha" are the same statement.
- **Success rates** (:func:`binomial_ci`): the Wilson score interval (Wilson 1927), whose
  coverage stays near nominal for small n and rates near 0 or 1, where the Wald interval
  :math:`\\hat p \\pm z\\sqrt{\\hat p(1-\\hat p)/n}` collapses to a point at 0 of n.
- **Difference of two rates** (:func:`proportion_difference`): Newcombe's hybrid score
  interval (Newcombe 1998, method 10), built from the two Wilson intervals; in Newcombe's
  evaluation its coverage stays close to nominal for small samples and rates near 0 or 1,
  where the Wald difference interval under-covers badly.
- **Slopes** (:func:`slope_ci`): ordinary least squares with the t interval on n - 2
  degrees of freedom (exact for independent normal residuals).
- **Time to target** (:func:`first_reach`): the first measured position at or below the
  target, infinite when never reached.
- **Performance profiles** (Dolan & More 2002; the scoring of MLCommons AlgoPerf, Dahl et
  al. 2023): with :math:`t_{p,s}` the cost solver :math:`s` needs to reach the target on
  problem :math:`p` (infinite if it never does),
  :math:`\\rho_s(\\tau) = |\\{p : t_{p,s} \\le \\tau \\min_{s'} t_{p,s'}\\}| / |P|`,
  read on AlgoPerf's range :math:`\\tau \\in [1, 4]` (:data:`ALGOPERF_TAUS`) and scored by
  the normalised area :math:`\\frac{1}{\\tau_{max} - 1}\\int_1^{\\tau_{max}} \\rho_s(\\tau)
  d\\tau` (:func:`profile_area`). :func:`profile_band` adds its uncertainty over seeds: the
  cost on a problem is the median over seeds, and a paired bootstrap over seeds (the same
  resampled seeds for every solver and problem) gives a percentile band. The band is
  descriptive (how much the profile moves with the seeds); no verdict rests on it, as a
  percentile bootstrap of a step function has no coverage guarantee at 10 seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
ALGOPERF_TAUS = np.linspace(1.0, 4.0, 61)
"""AlgoPerf's range of performance ratios, tau in [1, 4], in steps of 0.05."""


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

    def plus(self, offset: float) -> Interval:
        """The interval of ``quantity + offset`` (a margin moved onto zero)."""
        return self._replace(
            mean=self.mean + offset, low=self.low + offset, high=self.high + offset
        )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _t_quantile(confidence: float, dof: int) -> float:
    return float(scipy.stats.t.ppf(0.5 + confidence / 2, dof))


def _standard_error(values: np.ndarray) -> float:
    """The standard error of the mean, :math:`s / \\sqrt n` (n >= 2)."""
    return float(values.std(ddof=1)) / math.sqrt(values.size)


def mean_ci(samples: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Student-t confidence interval of the mean of the finite samples.

    The t interval keeps its coverage at the small sample sizes of seeded runs (95% at
    n = 10, where the percentile bootstrap covers about 91%; ``tests/test_stats.py``
    measures it). One finite sample gives an unbounded interval.
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_ci needs at least one sample")
    _check_confidence(confidence)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, values.size)
    mean = float(finite.mean())
    if finite.size == 1:
        return Interval(mean, -math.inf, math.inf, 1, values.size)
    half = _t_quantile(confidence, finite.size - 1) * _standard_error(finite)
    return Interval(mean, mean - half, mean + half, finite.size, values.size)


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
    variance both share. ``finite`` counts the pairs where both are finite, ``total`` all
    pairs; fewer than two finite pairs give a NaN p-value."""
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
    t = abs(interval.mean) / _standard_error(finite)
    return PairedDifference(interval, float(2.0 * scipy.stats.t.sf(t, finite.size - 1)))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` for testing them together (Holm 1979):
    the k-th smallest (1-based) becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``.
    Rejecting where the adjusted value is below alpha keeps the family-wise error rate at
    alpha. NaN stays NaN (and counts in m)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return np.where(np.isnan(p), np.nan, adjusted)


class HolmComparison(NamedTuple):
    """One optimizer against the baseline: the interval of the paired difference
    ``other - baseline`` at the Holm-consistent level, the raw paired t-test p-value and
    its Holm-adjusted value."""

    interval: Interval
    p_value: float
    adjusted_p: float


def holm_paired(
    baseline: Sequence[float] | np.ndarray,
    others: Mapping[str, Sequence[float] | np.ndarray],
    *,
    confidence: float = CONFIDENCE,
) -> dict[str, HolmComparison]:
    """Compare each of ``others`` with ``baseline`` (all run with the same seeds) by the
    paired t-test of ``other - baseline``, Holm-corrected for the ``m = len(others)``
    comparisons.

    Each interval is the paired t interval at the level Holm's procedure tests it at
    (alpha = 1 - confidence): sorting the p-values ascending, the j-th (0-based) gets
    confidence ``1 - alpha / (m - j)`` as long as every earlier one was rejected; from the
    first one not rejected on, every later one keeps that first non-rejected level. Since
    a t interval at level ``1 - a`` excludes 0 exactly when the t-test's p-value is below
    ``a``, an interval excludes 0 if and only if its adjusted p-value is below alpha, and
    the intervals that exclude 0 keep the family-wise error rate at alpha. A comparison
    with fewer than two finite pairs has a NaN p-value, sorts last and cannot be rejected.
    """
    _check_confidence(confidence)
    names = list(others)
    tests = {n: paired_difference(others[n], baseline, confidence=confidence) for n in names}
    p = np.array([tests[n].p_value for n in names])
    adjusted = holm(p)
    alpha, m = 1.0 - confidence, len(names)
    results: dict[str, HolmComparison] = {}
    level, rejecting = confidence, True
    for rank, index in enumerate(np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")):
        if rejecting:
            level = 1.0 - alpha / (m - rank)
            rejecting = bool(p[index] < alpha / (m - rank))
        name = names[index]
        interval = paired_difference(others[name], baseline, confidence=level).interval
        results[name] = HolmComparison(interval, float(p[index]), float(adjusted[index]))
    return {name: results[name] for name in names}


def _check_count(successes: int, trials: int) -> None:
    if trials < 1:
        raise ValueError(f"a rate needs at least one trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")


def binomial_ci(successes: int, trials: int, *, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval for the success rate ``k/n`` (Wilson 1927).

    With :math:`z` the normal quantile and :math:`\\hat p = k/n`, the bounds are
    :math:`(\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n + z^2/4n^2}) / (1 + z^2/n)`:
    the rates :math:`p` whose score test :math:`|\\hat p - p| \\le z\\sqrt{p(1-p)/n}` does
    not reject. They never leave [0, 1], and 0 of n still gives a proper interval
    :math:`[0, z^2/(n + z^2)]`. ``mean`` is ``k/n``; ``finite`` and ``total`` are both
    ``n`` (every trial is an observation).
    """
    _check_count(successes, trials)
    _check_confidence(confidence)
    k, n = int(successes), int(trials)
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    scale = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(p, low, high, n, n)


def proportion_difference(
    k1: int, n1: int, k2: int, n2: int, *, confidence: float = CONFIDENCE
) -> Interval:
    """Newcombe's hybrid score interval (Newcombe 1998, method 10) for the difference
    ``k1/n1 - k2/n2`` of the success rates of two independent samples.

    With :math:`[l_i, u_i]` the Wilson interval of rate :math:`\\hat p_i` and
    :math:`d = \\hat p_1 - \\hat p_2`, the bounds are
    :math:`d - \\sqrt{(\\hat p_1 - l_1)^2 + (u_2 - \\hat p_2)^2}` and
    :math:`d + \\sqrt{(u_1 - \\hat p_1)^2 + (\\hat p_2 - l_2)^2}`.
    ``mean`` is ``d``; ``finite`` and ``total`` are ``n1 + n2``.
    """
    first = binomial_ci(k1, n1, confidence=confidence)
    second = binomial_ci(k2, n2, confidence=confidence)
    d = first.mean - second.mean
    low = d - math.hypot(first.mean - first.low, second.high - second.mean)
    high = d + math.hypot(first.high - first.mean, second.mean - second.low)
    return Interval(d, low, high, n1 + n2, n1 + n2)


def slope_ci(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Least-squares slope of ``y`` on ``x`` over the pairs where both are finite, with
    the t interval :math:`\\hat\\beta \\pm t_{n-2}\\, s / \\sqrt{S_{xx}}`
    (:math:`s^2` the residual variance on n - 2 degrees of freedom, :math:`S_{xx} =
    \\sum (x - \\bar x)^2`).

    ``finite`` counts the finite pairs, ``total`` all pairs. Two pairs give the slope
    through them with an unbounded interval; fewer, or a constant ``x``, leave the slope
    undetermined: NaN with an unbounded interval.
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y need the same length, got {x.size} and {y.size}")
    _check_confidence(confidence)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[keep], y[keep], int(keep.sum())
    dx = x - x.mean() if n else x
    sxx = float(dx @ dx)
    if n < 2 or sxx == 0.0:
        return Interval(math.nan, -math.inf, math.inf, n, keep.size)
    slope = float(dx @ (y - y.mean())) / sxx
    if n == 2:
        return Interval(slope, -math.inf, math.inf, n, keep.size)
    residuals = y - y.mean() - slope * dx
    half = _t_quantile(confidence, n - 2) * math.sqrt(float(residuals @ residuals) / (n - 2) / sxx)
    return Interval(slope, slope - half, slope + half, n, keep.size)


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


def _profile(table: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Profile fractions of a ``[solvers, problems, ...]`` table of costs, as
    ``[solvers, ..., taus]``. A problem no solver reaches counts as unsolved for all."""
    best = table.min(axis=0)
    with np.errstate(invalid="ignore"):  # every solver failed: inf / inf = nan, unsolved
        ratios = table / best
    return (ratios[..., None] <= taus).mean(axis=1)


def _check_costs(table: np.ndarray) -> None:
    if np.any(np.isnan(table)) or np.any(table <= 0):
        raise ValueError("times to target must be positive (use inf for a failure)")


def performance_profile(
    times: Mapping[str, Sequence[float] | np.ndarray], taus: Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """:math:`\\rho_s(\\tau)` for each solver ``s`` of ``times`` (solver -> cost per
    problem, ``inf`` where the target was never reached).

    A problem no solver reaches counts as unsolved for all of them.
    """
    names = list(times)
    try:
        table = np.asarray([np.asarray(times[n], dtype=np.float64) for n in names])
    except ValueError as error:  # ragged lists
        raise ValueError("times must map every solver to the same problems") from error
    if table.ndim != 2 or table.shape[1] == 0:
        raise ValueError("times must map every solver to the same non-empty list of problems")
    _check_costs(table)
    fractions = _profile(table, np.asarray(taus, dtype=np.float64))
    return {name: fractions[i] for i, name in enumerate(names)}


def profile_area(fractions: np.ndarray, taus: Sequence[float] | np.ndarray) -> float:
    """AlgoPerf's score of a performance profile: the area under it over ``tau``,
    normalised by the width of the range, :math:`\\frac{1}{\\tau_{max} - \\tau_{min}}
    \\int \\rho(\\tau) d\\tau` by the trapezoid rule (1 = always the fastest; with
    :data:`ALGOPERF_TAUS`, :math:`\\frac{1}{3}\\int_1^4`)."""
    taus = np.asarray(taus, dtype=np.float64)
    fractions = np.asarray(fractions, dtype=np.float64)
    if taus.shape != fractions.shape or taus.size == 0:
        raise ValueError(f"fractions {fractions.shape} and taus {taus.shape} differ")
    span = taus[-1] - taus[0]
    if span <= 0:
        return float(fractions[0])
    return float(np.trapezoid(fractions, taus) / span)


class ProfileBand(NamedTuple):
    """A performance profile over ``taus`` with its bootstrap percentile band, and its
    area (:func:`profile_area`) with the percentile interval of the same resamples
    (``finite`` and ``total`` count the resamples)."""

    fractions: np.ndarray
    low: np.ndarray
    high: np.ndarray
    area: Interval


def profile_band(
    times: Mapping[str, np.ndarray],
    taus: Sequence[float] | np.ndarray = ALGOPERF_TAUS,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, ProfileBand]:
    """A performance profile over seeds, with its uncertainty.

    ``times[solver]`` is a ``[problems, seeds]`` array of costs to target (``inf`` where
    that seed never reached it), every solver run with the same seeds. A solver's cost on
    a problem is its median over seeds, which is ``inf`` when half or more of the seeds
    missed. The band resamples the seed columns with replacement, the same columns for
    every solver and problem (the seeds pair the solvers), recomputes the profile, and
    takes the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` percentiles of each
    fraction over ``resamples`` resamples; where the percentiles of a step function miss
    the point estimate, the band is widened to include it. Identical seeds give a band of
    zero width. The area under each resampled profile gives the area's interval the same
    way.
    """
    names = list(times)
    if not names:
        raise ValueError("profile_band needs at least one solver")
    tables = [np.asarray(times[n], dtype=np.float64) for n in names]
    shape = tables[0].shape
    if len(shape) != 2 or 0 in shape or any(t.shape != shape for t in tables):
        raise ValueError(
            "times must map every solver to a [problems, seeds] array of the same non-empty "
            f"shape, got {[t.shape for t in tables]}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    _check_confidence(confidence)
    table = np.stack(tables)  # [solvers, problems, seeds]
    _check_costs(table)
    taus = np.asarray(taus, dtype=np.float64)
    fractions = _profile(np.median(table, axis=2), taus)  # [solvers, taus]
    seeds = shape[1]
    columns = np.random.default_rng(seed).integers(0, seeds, size=(resamples, seeds))
    medians = np.median(table[:, :, columns], axis=3)  # [solvers, problems, resamples]
    boot = _profile(medians, taus)  # [solvers, resamples, taus]
    tail = (1.0 - confidence) / 2
    low = np.minimum(np.quantile(boot, tail, axis=1), fractions)
    high = np.maximum(np.quantile(boot, 1.0 - tail, axis=1), fractions)
    area = np.array([profile_area(f, taus) for f in fractions])
    span = taus[-1] - taus[0]
    boot_area = np.trapezoid(boot, taus, axis=2) / span if span > 0 else boot[:, :, 0]
    area_low = np.minimum(np.quantile(boot_area, tail, axis=1), area)
    area_high = np.maximum(np.quantile(boot_area, 1.0 - tail, axis=1), area)
    return {
        n: ProfileBand(
            fractions[i],
            low[i],
            high[i],
            Interval(float(area[i]), float(area_low[i]), float(area_high[i]), resamples, resamples),
        )
        for i, n in enumerate(names)
    }
