r"""Study 3 — non-convex landscapes: a strict saddle and Rastrigin's local minima.

**Saddle** :math:`f(x, y) = x^2 - y^2 + y^4/4` (:func:`jaxopt_lab.problems.saddle`): the
origin is a strict saddle with Hessian eigenvalues :math:`\pm 2`, the minima lie at
:math:`y = \pm\sqrt 2`. A start :math:`(x_0, \pm\delta)` lies :math:`\delta` off the
saddle's stable manifold (the x axis). A run *escapes* at the first iterate with
:math:`|y| \ge r` (:data:`ESCAPE_RADIUS`, where the quartic term is under 1% of the
quadratic one). Near the saddle gradient descent multiplies :math:`y` by
:math:`1 + \eta|\lambda_{min}|` per step, so it escapes after

.. math:: k^\star(\eta, \delta) = \frac{\ln(r/\delta)}{\ln(1 + \eta|\lambda_{min}|)}
          \approx \frac{\ln(r/\delta)}{\eta |\lambda_{min}|}

steps (:func:`gd_escape_steps`). Gradient noise :math:`\sigma\xi_k` adds to the offset a
Gaussian of variance :math:`\eta^2\sigma^2\sum_{j=1}^{k}(1 + \eta|\lambda_{min}|)^{-2j}`,
which gives the chance of escaping within a budget (:func:`noisy_escape_probability`).

**Rastrigin** :math:`f(x) = 20 + \sum_i x_i^2 - 10\cos(2\pi x_i)` in 2-D. Every local
minimum other than the global one has :math:`f \ge f_2 \approx 0.995`
(:data:`SECOND_MINIMUM`), so the sub-level set :math:`\{f < f_2/2\}` (:data:`BASIN_LEVEL`,
half of it, a margin for float32 rounding at the local minima) lies inside the global
minimum's basin. A run *succeeds* when its best visited iterate lies there (some iterate
has :math:`f < f_2/2`: the *best-visited* criterion); the final iterate's success is reported
beside it. Learning rates are annealed geometrically from :math:`\eta_0` to
:data:`FINAL_RATE`, below the minima's stability limit :math:`2/(2 + 40\pi^2)`, so every
run settles. Each method is tuned by two-fold cross-fitting: the configuration chosen on
half of the starts is scored on the other half, so no start scores the configuration it
helped choose.

Every method runs for the same fixed number of iterations (first-order steps, L-BFGS and
Newton iterations alike); no method stops on a small gradient. Momentum is compared at the
*effective* learning rate :math:`\eta = \mathrm{lr}/(1 - \beta)`; GD, noisy GD and momentum
are one family (:func:`jaxopt_lab.sgd` with momentum :math:`\beta \ge 0` and gradient noise
:math:`\sigma \ge 0`). Every random start and noise draw derives from the master seed.
Rates carry Wilson intervals, differences of rates Newcombe intervals, escape steps
Student-t intervals over starts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import scipy.stats
from matplotlib.figure import Figure

import jaxopt_lab as jl
from experiments.report import Section
from experiments.seeds import derive
from experiments.stats import (
    Interval,
    binomial_ci,
    mean_ci,
    paired_difference,
    proportion_difference,
)
from experiments.verdict import by_fact, by_interval
from jaxopt_lab import problems

STUDY = "landscapes"
ESCAPE_RADIUS = 0.1
MOMENTUM = 0.9  # heavy-ball beta on the saddle
EFFECTIVE_RATES = (2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5)
OFFSETS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
PRIMARY_RATE = 1e-2  # the offset and noise sweeps run at this (effective) rate
PRIMARY_OFFSET = 1e-6  # the rate and noise sweeps start this far off the stable manifold
PRIMARY_NOISE = 1e-2  # noisy GD's gradient-noise std in the rate and offset sweeps
NOISE_SCALES = tuple(float(s) for s in np.logspace(-4, 0, 13))
FIRST_ORDER = ("gd", "momentum", "noisy gd", "adam")
SECOND_ORDER = ("lbfgs (hager-zhang)", "lbfgs (backtracking)", "newton (saddle-free)", "newton")
RATE_SWEEP = ("gd", "momentum", "noisy gd")

RASTRIGIN_RATES = tuple(float(r) for r in np.logspace(-3, 1, 13))  # initial effective rates
RASTRIGIN_NOISES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
RASTRIGIN_MOMENTA = (0.5, 0.9)
FINAL_RATE = 1e-4
TOLERANCE = 0.01  # GD's measured escape may differ from ceil(k*) by one step or 1%


def _family(method: str) -> str:
    """The compiled program a method runs in: GD, noisy GD and momentum are all ``sgd``."""
    return "sgd" if method in ("gd", "noisy gd", "momentum") else method


@dataclass(frozen=True)
class LandscapeBudget:
    """Random starts and iteration budgets of the study."""

    saddle_starts: int  # per setting on the saddle
    saddle_steps: int  # iterations on the saddle, every method
    rastrigin_starts: int  # per configuration on Rastrigin (half tune, half score)
    rastrigin_steps: int  # steps of the annealed schedule on Rastrigin


BUDGETS: dict[str, LandscapeBudget] = {
    "quick": LandscapeBudget(16, 700, 32, 150),
    "medium": LandscapeBudget(512, 4000, 1024, 1500),
    "full": LandscapeBudget(2048, 4000, 4096, 4000),
}


@functools.cache
def _saddle() -> problems.Problem:
    return problems.saddle()


@functools.cache
def _rastrigin() -> problems.Problem:
    return problems.rastrigin(2)


@functools.cache
def saddle_curvature() -> float:
    """:math:`|\\lambda_{min}|` of the saddle's Hessian at the origin (2)."""
    hessian = jax.hessian(_saddle().fun)(jnp.zeros(2))
    return float(-np.linalg.eigvalsh(np.asarray(hessian, np.float64))[0])


def _second_lowest_minimum() -> float:
    r""":math:`f_2`: Rastrigin's lowest non-global local minimum, :math:`g(x_1)` with
    :math:`g(x) = x^2 + 10(1 - \cos 2\pi x)` and :math:`x_1` its 1-D minimiser near 1
    (Newton's method on :math:`g'`); the other coordinate sits at 0."""
    x = 1.0
    for _ in range(50):
        x -= (2 * x + 20 * math.pi * math.sin(2 * math.pi * x)) / (
            2 + 40 * math.pi**2 * math.cos(2 * math.pi * x)
        )
    return x * x + 10 * (1 - math.cos(2 * math.pi * x))


SECOND_MINIMUM = _second_lowest_minimum()
BASIN_LEVEL = SECOND_MINIMUM / 2


def gd_escape_steps(rate: float, offset: float) -> float:
    r"""Closed form :math:`k^\star = \ln(r/\delta) / \ln(1 + \eta|\lambda_{min}|)` for GD's
    escape from the saddle (module doc); the first iterate past :math:`r` is step
    :math:`\lceil k^\star \rceil`."""
    if rate <= 0 or offset <= 0:
        raise ValueError(f"rate and offset must be positive, got {rate!r} and {offset!r}")
    return math.log(ESCAPE_RADIUS / offset) / math.log1p(rate * saddle_curvature())


def momentum_growth(rate: float, beta: float) -> float:
    r"""Heavy ball's growth factor along the saddle's unstable direction at effective rate
    :math:`\eta` (step :math:`\mathrm{lr} = \eta(1 - \beta)`): the larger root of
    :math:`z^2 - (1 + \beta + \mathrm{lr}|\lambda_{min}|) z + \beta`. It is below GD's
    :math:`1 + \eta|\lambda_{min}|` for every :math:`\beta > 0`: the polynomial at that
    point equals :math:`\beta(\eta|\lambda_{min}|)^2 > 0`."""
    trace = 1.0 + beta + rate * (1.0 - beta) * saddle_curvature()
    return (trace + math.sqrt(trace * trace - 4.0 * beta)) / 2.0


def noisy_escape_probability(rate: float, offset: float, noise: float, steps: int) -> float:
    r"""Chance that noisy GD, linearised at the saddle, lies past :math:`r` after ``steps``
    steps: with :math:`a = \eta|\lambda_{min}|`, :math:`y_k = (1 + a)^k (\delta + S)`,
    :math:`S \sim N(0, v)`, :math:`v = \eta^2\sigma^2 (1 - (1+a)^{-2k}) / ((1+a)^2 - 1)`,
    so :math:`P = P(|\delta + S| \ge r (1 + a)^{-k})`."""
    growth = 1.0 + rate * saddle_curvature()
    threshold = ESCAPE_RADIUS * growth**-steps
    if noise == 0:
        return float(offset >= threshold)
    spread = rate * noise * math.sqrt((1 - growth ** (-2 * steps)) / (growth**2 - 1))
    inside = scipy.stats.norm.cdf((threshold - offset) / spread) - scipy.stats.norm.cdf(
        (-threshold - offset) / spread
    )
    return float(1.0 - inside)


def _pure_newton() -> optax.GradientTransformationExtraArgs:
    """Newton's step :math:`-H^{-1} g` with the exact Hessian, unit step, no line search
    and no change of the Hessian's eigenvalues (jaxopt_lab's ``newton`` takes their
    absolute values: the saddle-free variant)."""

    def init(params: jax.Array) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(grads, state, params=None, *, value_fn, **extra):
        del extra
        return -jnp.linalg.solve(jax.hessian(value_fn)(params), grads), state

    return optax.GradientTransformationExtraArgs(init, update)


def _transformation(family: str, rate, beta: jax.Array) -> optax.GradientTransformation:
    """The optimizer of ``family`` (:func:`_family`) at effective learning rate ``rate`` (a
    number or a schedule); ``sgd`` takes steps ``rate * (1 - beta)`` with heavy-ball
    momentum ``beta`` (plain GD at ``beta = 0``); second-order methods ignore both."""
    if family == "sgd":
        scaled = (lambda t: rate(t) * (1 - beta)) if callable(rate) else rate * (1 - beta)
        return jl.sgd(scaled, momentum=beta)
    if family == "adam":
        return jl.adam(rate)
    if family == "lbfgs (hager-zhang)":
        return jl.lbfgs()
    if family == "lbfgs (backtracking)":
        return jl.lbfgs(linesearch=jl.scale_by_backtracking_linesearch())
    if family == "newton (saddle-free)":
        return jl.newton()
    if family == "newton":
        return _pure_newton()
    raise ValueError(f"unknown method family {family!r}")


def annealed(initial: jax.Array, steps: int) -> Callable[[jax.Array], jax.Array]:
    r"""Geometric annealing :math:`\eta_t = \eta_0 (\eta_{end}/\eta_0)^{t/(T-1)}` from
    ``initial`` to :data:`FINAL_RATE` over ``steps`` steps."""
    return lambda t: initial * (FINAL_RATE / initial) ** (t / max(steps - 1, 1))


def escaped(x: jax.Array) -> jax.Array:
    """Past the saddle's escape radius: :math:`|y| \\ge r` (one point)."""
    return jnp.abs(x[1]) >= ESCAPE_RADIUS


def in_global_basin(x: jax.Array) -> jax.Array:
    """Rastrigin value below half of every non-global local minimum, so inside the global
    basin (one point)."""
    return _rastrigin().fun(x) < BASIN_LEVEL


class Descent(NamedTuple):
    """``first_hit[c, n]``: the first iterate (0 = the start) where ``hit`` held, inf if
    never within the budget; ``final[c, n]``: the last iterate."""

    first_hit: np.ndarray
    final: np.ndarray


@functools.partial(
    jax.jit, static_argnames=("fun", "family", "hit", "steps", "anneal", "until_all_hit")
)
def _descend(fun, starts, rates, betas, noises, key, *, family, hit, steps, anneal, until_all_hit):
    value_and_grad = jax.value_and_grad(fun)
    start_keys = jax.random.split(key, starts.shape[1])
    hit = jnp.vectorize(hit, signature="(2)->()")

    def make(rate, beta):
        schedule = annealed(rate, steps) if anneal else rate
        return optax.with_extra_args_support(_transformation(family, schedule, beta))

    def step(x, state, t, rate, beta, noise, start_key):
        value, grad = value_and_grad(x)
        if family == "sgd":
            draw = jax.random.normal(jax.random.fold_in(start_key, t), x.shape, x.dtype)
            grad = grad + noise * draw
        updates, state = make(rate, beta).update(
            grad, state, x, value=value, grad=grad, value_fn=fun
        )
        return jl.apply_updates(x, updates), state

    init = jax.vmap(jax.vmap(lambda x, r, b: make(r, b).init(x), (0, None, None)))
    batched = jax.vmap(
        jax.vmap(step, in_axes=(0, 0, None, None, None, None, 0)),
        in_axes=(0, 0, None, 0, 0, 0, None),
    )

    def keep_going(carry):
        t, _, _, first = carry
        going = t < steps
        return going & ~jnp.all(jnp.isfinite(first)) if until_all_hit else going

    def iterate(carry):
        t, x, state, first = carry
        x, state = batched(x, state, t, rates, betas, noises, start_keys)
        first = jnp.where(jnp.isinf(first) & hit(x), (t + 1).astype(first.dtype), first)
        return t + 1, x, state, first

    first = jnp.where(hit(starts), 0.0, jnp.inf).astype(starts.dtype)
    carry = (jnp.asarray(0), starts, init(starts, rates, betas), first)
    _, final, _, first = jax.lax.while_loop(keep_going, iterate, carry)
    return first, final


def descend(
    problem: problems.Problem,
    family: str,
    starts: jax.Array,
    *,
    hit: Callable[[jax.Array], jax.Array],
    steps: int,
    key: jax.Array,
    rates: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    noises: Sequence[float] | None = None,
    anneal: bool = False,
    until_all_hit: bool = False,
) -> Descent:
    """Run ``family`` (:func:`_family`) from ``starts`` (``(configs, count, 2)``, one row
    of starts per configuration) for ``steps`` iterations, configuration ``c`` at
    effective learning rate ``rates[c]`` (annealed when ``anneal``), momentum ``betas[c]``
    and gradient-noise std ``noises[c]`` (the ``sgd`` family only); record the first
    iterate where ``hit`` (a predicate of one point) holds.

    Start ``n`` draws the same noise in every configuration (common random numbers). With
    ``until_all_hit`` the loop ends once every run has hit (nothing is recorded after a
    hit, so ``first_hit`` is the same; ``final`` is then not the budget's last iterate).
    """
    starts = jnp.asarray(starts)
    if starts.ndim != 3 or starts.shape[-1] != 2:
        raise ValueError(f"starts must have shape (configs, count, 2), got {starts.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    configs = starts.shape[0]

    def column(values: Sequence[float] | None, default: float) -> jax.Array:
        values = [default] * configs if values is None else list(values)
        if len(values) != configs:
            raise ValueError(f"need one value per configuration ({configs}), got {len(values)}")
        return jnp.asarray(values, starts.dtype)

    first, final = _descend(
        problem.fun,
        starts,
        column(rates, 1.0),
        column(betas, 0.0),
        column(noises, 0.0),
        key,
        family=family,
        hit=hit,
        steps=steps,
        anneal=anneal,
        until_all_hit=until_all_hit,
    )
    return Descent(np.asarray(first, np.float64), np.asarray(final))


def saddle_starts(offsets: Sequence[float], count: int, seed: int) -> jax.Array:
    """``(len(offsets), count, 2)`` starts :math:`(x_0, \\pm\\delta)`: :math:`x_0` uniform
    over the plot window and the sign random, the same draws at every offset."""
    (x_lo, x_hi), _ = _saddle().bounds
    x_key, sign_key = jax.random.split(jax.random.key(derive(seed, STUDY, "saddle starts")))
    xs = jax.random.uniform(x_key, (count,), minval=x_lo, maxval=x_hi)
    signs = jnp.where(jax.random.bernoulli(sign_key, shape=(count,)), 1.0, -1.0)
    ys = signs * jnp.asarray(offsets, xs.dtype)[:, None]
    return jnp.stack([jnp.broadcast_to(xs, ys.shape), ys], axis=-1)


def rastrigin_starts(count: int, seed: int) -> jax.Array:
    """``(count, 2)`` starts uniform over Rastrigin's window :math:`[-5.12, 5.12]^2`."""
    (lo, hi), _ = _rastrigin().bounds
    key = jax.random.key(derive(seed, STUDY, "rastrigin starts"))
    return jax.random.uniform(key, (count, 2), minval=lo, maxval=hi)


class Setting(NamedTuple):
    """One saddle run: a method at an effective rate, start offset and noise std."""

    method: str
    rate: float
    offset: float
    noise: float


def saddle_settings() -> tuple[Setting, ...]:
    """The rate sweep (at PRIMARY_OFFSET), the offset sweep (at PRIMARY_RATE, every
    method) and noisy GD's noise sweep (at both)."""

    def noise(method: str) -> float:
        return PRIMARY_NOISE if method == "noisy gd" else 0.0

    by_rate = [Setting(m, r, PRIMARY_OFFSET, noise(m)) for m in RATE_SWEEP for r in EFFECTIVE_RATES]
    by_offset = [
        Setting(m, PRIMARY_RATE, d, noise(m)) for m in FIRST_ORDER + SECOND_ORDER for d in OFFSETS
    ]
    by_noise = [Setting("noisy gd", PRIMARY_RATE, PRIMARY_OFFSET, s) for s in NOISE_SCALES]
    return tuple(dict.fromkeys(by_rate + by_offset + by_noise))


@dataclass(frozen=True)
class SaddleResults:
    """Escape steps per setting, one per start (inf: not within ``steps``); the noise
    sweep scores escapes within ``noise_steps``, half of GD's closed form."""

    starts: int
    steps: int
    noise_steps: int
    escape_steps: dict[Setting, np.ndarray]

    def by_rate(self, method: str) -> list[np.ndarray]:
        """Escape steps per start at each of EFFECTIVE_RATES, from PRIMARY_OFFSET."""
        noise = PRIMARY_NOISE if method == "noisy gd" else 0.0
        return [
            self.escape_steps[Setting(method, r, PRIMARY_OFFSET, noise)] for r in EFFECTIVE_RATES
        ]

    def by_offset(self, method: str) -> list[np.ndarray]:
        """Escape steps per start at each of OFFSETS, at PRIMARY_RATE."""
        noise = PRIMARY_NOISE if method == "noisy gd" else 0.0
        return [self.escape_steps[Setting(method, PRIMARY_RATE, d, noise)] for d in OFFSETS]

    def noise_escapes(self) -> list[int]:
        """Starts escaped within ``noise_steps`` at each of NOISE_SCALES."""
        return [
            int(
                np.sum(
                    self.escape_steps[Setting("noisy gd", PRIMARY_RATE, PRIMARY_OFFSET, s)]
                    <= self.noise_steps
                )
            )
            for s in NOISE_SCALES
        ]


def _measure_saddle(budget: LandscapeBudget, seed: int) -> SaddleResults:
    settings = saddle_settings()
    count = budget.saddle_starts
    key = jax.random.key(derive(seed, STUDY, "saddle noise"))
    escape_steps: dict[Setting, np.ndarray] = {}
    for family in dict.fromkeys(_family(s.method) for s in settings):
        runs = [s for s in settings if _family(s.method) == family]
        descent = descend(
            _saddle(),
            family,
            saddle_starts([s.offset for s in runs], count, seed),
            hit=escaped,
            steps=budget.saddle_steps,
            key=key,
            rates=[s.rate for s in runs],
            betas=[MOMENTUM if s.method == "momentum" else 0.0 for s in runs],
            noises=[s.noise for s in runs],
            until_all_hit=True,
        )
        escape_steps.update(zip(runs, descent.first_hit, strict=True))
    noise_steps = int(gd_escape_steps(PRIMARY_RATE, PRIMARY_OFFSET) // 2)
    return SaddleResults(count, budget.saddle_steps, noise_steps, escape_steps)


class Variant(NamedTuple):
    """One optimizer on Rastrigin; its initial learning rate is tuned, the rest fixed."""

    method: str  # gd, noisy gd, momentum or adam
    beta: float = 0.0
    noise: float = 0.0

    @property
    def label(self) -> str:
        if self.method == "momentum":
            return f"momentum β {self.beta:g}"
        if self.method == "noisy gd":
            return f"noisy gd σ {self.noise:g}"
        return self.method


GD = Variant("gd")
NOISY = tuple(Variant("noisy gd", noise=s) for s in RASTRIGIN_NOISES)
HEAVY_BALL = tuple(Variant("momentum", beta=b) for b in RASTRIGIN_MOMENTA)
RASTRIGIN_VARIANTS = (GD, *NOISY, *HEAVY_BALL, Variant("adam"))


def cross_fit(successes: np.ndarray) -> tuple[int, int]:
    """Two-fold cross-fitting on a ``(configs, starts)`` table of successes: the index of
    the configuration with the most successes on the even-numbered starts (it is scored
    on the odd ones, :func:`cross_fitted`) and on the odd-numbered starts (scored on the
    even ones). Ties go to the first in grid order."""
    successes = np.asarray(successes, bool)
    if successes.ndim != 2 or successes.shape[1] < 2:
        raise ValueError(f"need a (configs, starts >= 2) table, got shape {successes.shape}")
    return (
        int(np.argmax(successes[:, 0::2].sum(axis=1))),
        int(np.argmax(successes[:, 1::2].sum(axis=1))),
    )


def cross_fitted(table: np.ndarray, chosen: tuple[int, int]) -> np.ndarray:
    """Per start, ``table``'s entry for the configuration chosen on the other half
    (:func:`cross_fit`): odd starts take ``chosen[0]``, even starts ``chosen[1]``."""
    table = np.asarray(table)
    scored = np.empty_like(table[0])
    scored[1::2], scored[0::2] = table[chosen[0], 1::2], table[chosen[1], 0::2]
    return scored


@dataclass(frozen=True)
class RastriginRun:
    """One variant on Rastrigin: best-visited successes over all starts at each of
    RASTRIGIN_RATES, the rates chosen on the even and on the odd starts, and per start the
    cross-fitted best-visited and final-iterate success."""

    successes: tuple[int, ...]
    chosen: tuple[float, float]
    visited: np.ndarray
    final: np.ndarray


@dataclass(frozen=True)
class LandscapeResults:
    """Everything :func:`report` needs: the budget and master seed, the saddle's escape
    steps, each Rastrigin variant's run and the Rastrigin starts (for the success map)."""

    budget: LandscapeBudget
    seed: int
    saddle: SaddleResults
    rastrigin: dict[Variant, RastriginRun]
    rastrigin_starts: np.ndarray


def _measure_rastrigin(
    budget: LandscapeBudget, starts: jax.Array, seed: int
) -> dict[Variant, RastriginRun]:
    key = jax.random.key(derive(seed, STUDY, "rastrigin noise"))
    rates = len(RASTRIGIN_RATES)
    results = {}
    for family in dict.fromkeys(_family(v.method) for v in RASTRIGIN_VARIANTS):
        variants = [v for v in RASTRIGIN_VARIANTS if _family(v.method) == family]
        configs = [(r, v) for v in variants for r in RASTRIGIN_RATES]
        descent = descend(
            _rastrigin(),
            family,
            jnp.broadcast_to(starts, (len(configs), *starts.shape)),
            hit=in_global_basin,
            steps=budget.rastrigin_steps,
            key=key,
            rates=[r for r, _ in configs],
            betas=[v.beta for _, v in configs],
            noises=[v.noise for _, v in configs],
            anneal=True,
        )
        visited = np.isfinite(descent.first_hit)
        final = np.asarray(jax.vmap(jax.vmap(in_global_basin))(jnp.asarray(descent.final)))
        for index, variant in enumerate(variants):
            rows = slice(index * rates, (index + 1) * rates)
            chosen = cross_fit(visited[rows])
            results[variant] = RastriginRun(
                tuple(int(k) for k in visited[rows].sum(axis=1)),
                (RASTRIGIN_RATES[chosen[0]], RASTRIGIN_RATES[chosen[1]]),
                cross_fitted(visited[rows], chosen),
                cross_fitted(final[rows], chosen),
            )
    return results


def measure(budget: LandscapeBudget, seed: int) -> LandscapeResults:
    """Run the saddle sweeps and the Rastrigin grids (module doc)."""
    starts = rastrigin_starts(budget.rastrigin_starts, seed)
    rastrigin = _measure_rastrigin(budget, starts, seed)
    return LandscapeResults(
        budget, seed, _measure_saddle(budget, seed), rastrigin, np.asarray(starts)
    )


# ---------------------------------------------------------------- figures


def _rate(successes: np.ndarray) -> Interval:
    """Wilson interval of the fraction of True entries."""
    successes = np.asarray(successes, bool)
    return binomial_ci(int(successes.sum()), successes.size)


def _errorbar(ax, xs: Sequence[float], intervals: Sequence[Interval], **style) -> None:
    """Means with their intervals; settings with no finite sample are left out."""
    keep = [i for i, interval in enumerate(intervals) if interval.finite > 0]
    means = np.array([intervals[i].mean for i in keep])
    low = np.array([intervals[i].low for i in keep])
    high = np.array([intervals[i].high for i in keep])
    ax.errorbar(np.asarray(xs)[keep], means, yerr=[means - low, high - means], capsize=3, **style)


MARKERS = {m: f"{mark}:" for m, mark in zip(SECOND_ORDER, "sD^v", strict=True)}


def plot_escape_times(saddle: SaddleResults, path: Path) -> None:
    """Two log-log panels: steps to escape against the effective learning rate (at
    PRIMARY_OFFSET) and against the start offset (at PRIMARY_RATE); mean over starts with
    its 95% t interval, GD's closed form dashed."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    by_rate, by_offset = figure.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"]
    fine = np.geomspace(EFFECTIVE_RATES[0], EFFECTIVE_RATES[-1], 100)
    by_rate.plot(
        fine,
        [gd_escape_steps(r, PRIMARY_OFFSET) for r in fine],
        "k--",
        lw=1,
        label="GD closed form ln(r/δ)/ln(1+η|λ|)",
    )
    for index, method in enumerate(RATE_SWEEP):
        intervals = [mean_ci(row) for row in saddle.by_rate(method)]
        _errorbar(
            by_rate, EFFECTIVE_RATES, intervals, fmt="o-", ms=4, color=colors(index), label=method
        )
    by_rate.set(
        xscale="log",
        yscale="log",
        xlabel="effective learning rate η = lr/(1 − β)",
        ylabel=f"steps to escape (first |y| ≥ {ESCAPE_RADIUS:g})",
        title=f"saddle, start offset δ = {PRIMARY_OFFSET:g}",
    )
    fine = np.geomspace(OFFSETS[0], OFFSETS[-1], 100)
    by_offset.plot(
        fine, [gd_escape_steps(PRIMARY_RATE, d) for d in fine], "k--", lw=1, label="GD closed form"
    )
    for index, method in enumerate(FIRST_ORDER + SECOND_ORDER):
        intervals = [mean_ci(row) for row in saddle.by_offset(method)]
        style = {"fmt": MARKERS.get(method, "o-"), "ms": 4, "color": colors(index)}
        if method == "lbfgs (backtracking)":  # it coincides with saddle-free Newton: hollow
            style.update(ms=8, mfc="none")
        if any(interval.finite for interval in intervals):
            _errorbar(by_offset, OFFSETS, intervals, label=method, **style)
        else:
            by_offset.plot([], [], style["fmt"][0], color=style["color"], label=f"{method}: never")
    by_offset.set(
        xscale="log",
        yscale="log",
        xlabel="start offset δ from the stable manifold",
        ylabel="steps (iterations) to escape",
        title=f"saddle, effective learning rate {PRIMARY_RATE:g}",
    )
    for ax in (by_rate, by_offset):
        ax.grid(alpha=0.3, which="both")
    by_rate.legend(fontsize=8)
    by_offset.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=120)


def plot_noise_sweep(saddle: SaddleResults, path: Path) -> None:
    """Fraction of starts escaped within the budget against the noise std, with Wilson 95%
    intervals, beside the linearised prediction and GD's (noise-free) closed form."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = figure.subplots()
    fine = np.geomspace(NOISE_SCALES[0], NOISE_SCALES[-1], 200)
    predicted = [
        noisy_escape_probability(PRIMARY_RATE, PRIMARY_OFFSET, s, saddle.noise_steps) for s in fine
    ]
    ax.plot(fine, predicted, "k--", lw=1, label="linearised prediction")
    gd = noisy_escape_probability(PRIMARY_RATE, PRIMARY_OFFSET, 0.0, saddle.noise_steps)
    ax.axhline(gd, color="tab:blue", lw=1, label="GD without noise (closed form)")
    intervals = [binomial_ci(k, saddle.starts) for k in saddle.noise_escapes()]
    _errorbar(
        ax, NOISE_SCALES, intervals, fmt="o", ms=4, color="tab:green", label="noisy GD (Wilson 95%)"
    )
    ax.set(
        xscale="log",
        xlabel="gradient-noise std σ",
        ylabel=f"fraction of starts escaped within {saddle.noise_steps} steps",
        ylim=(-0.03, 1.03),
        title=f"saddle: effective lr {PRIMARY_RATE:g}, start offset {PRIMARY_OFFSET:g}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    figure.savefig(path, dpi=120)


def plot_rastrigin(results: LandscapeResults, path: Path) -> None:
    """Best-visited success over all starts against the initial effective learning rate
    (GD, Adam, momentum per beta; noisy GD per noise std), and the cross-fitted success
    against the noise std beside GD's; Wilson 95% intervals throughout."""
    figure = Figure(figsize=(15, 4.6), layout="constrained")
    by_rate, noisy_by_rate, by_noise = figure.subplots(1, 3)
    count = results.budget.rastrigin_starts
    runs = results.rastrigin
    colors = matplotlib.colormaps["tab10"]

    def draw(ax, variant: Variant, color) -> None:
        intervals = [binomial_ci(k, count) for k in runs[variant].successes]
        _errorbar(ax, RASTRIGIN_RATES, intervals, fmt="o-", ms=3, color=color, label=variant.label)

    for ax in (by_rate, noisy_by_rate):
        draw(ax, GD, "black")
    for index, variant in enumerate((*HEAVY_BALL, Variant("adam"))):
        draw(by_rate, variant, colors(index))
    for index, variant in enumerate(NOISY):
        draw(noisy_by_rate, variant, matplotlib.colormaps["viridis"](index / len(NOISY)))
    for ax, title in ((by_rate, "GD, momentum, Adam"), (noisy_by_rate, "noisy GD")):
        ax.set(
            xscale="log",
            xlabel=f"initial effective learning rate η₀ (annealed to {FINAL_RATE:g})",
            ylabel="fraction of starts reaching the global basin",
            ylim=(-0.03, 1.03),
            title=f"Rastrigin, best visited: {title} ({count} starts)",
        )
        ax.legend(fontsize=7, loc="upper left")
    gd = _rate(runs[GD].visited)
    by_noise.axhspan(gd.low, gd.high, color="black", alpha=0.15)
    by_noise.axhline(gd.mean, color="black", lw=1, label="GD (band: Wilson 95%)")
    _errorbar(
        by_noise,
        RASTRIGIN_NOISES,
        [_rate(runs[v].visited) for v in NOISY],
        fmt="o-",
        ms=4,
        color="tab:green",
        label="noisy GD, rate re-tuned per σ",
    )
    by_noise.set(
        xscale="log",
        xlabel="gradient-noise std σ",
        ylabel="fraction reaching the global basin (cross-fitted)",
        ylim=(-0.03, 1.03),
        title="Rastrigin: tuned success against noise",
    )
    by_noise.legend(fontsize=7, loc="lower left")
    for ax in (by_rate, noisy_by_rate, by_noise):
        ax.grid(alpha=0.3)
    figure.savefig(path, dpi=120)


MAP_VARIANTS = (GD, Variant("noisy gd", noise=1.0), Variant("momentum", beta=0.9), Variant("adam"))


def plot_rastrigin_map(results: LandscapeResults, path: Path) -> None:
    """Which starts reach the global basin (best visited, cross-fitted rate), one panel
    per variant of MAP_VARIANTS."""
    figure = Figure(figsize=(3.4 * len(MAP_VARIANTS), 3.9), layout="constrained")
    axes = figure.subplots(1, len(MAP_VARIANTS), sharey=True)
    starts = results.rastrigin_starts
    (lo, hi), _ = _rastrigin().bounds
    for ax, variant in zip(axes, MAP_VARIANTS, strict=True):
        visited = results.rastrigin[variant].visited
        ax.scatter(*starts[visited].T, s=3, color="tab:green", label="reached")
        ax.scatter(*starts[~visited].T, s=3, color="tab:red", alpha=0.5, label="missed")
        ax.plot(0, 0, "*", ms=11, color="gold", mec="black", label="global minimum")
        ax.set(
            xlim=(lo, hi),
            ylim=(lo, hi),
            aspect="equal",
            xlabel="start x₁",
            title=f"{variant.label}: {_rate(visited).format(2)}",
        )
    axes[0].set_ylabel("start x₂")
    axes[0].legend(fontsize=6, loc="lower left", framealpha=0.9)
    figure.savefig(path, dpi=120)


# ---------------------------------------------------------------- report


def _steps_text(steps: np.ndarray) -> str:
    """Mean escape steps with their t interval; one number when every start agrees."""
    interval = mean_ci(steps)
    if interval.finite == 0:
        return "never"
    if interval.low == interval.high:
        text = f"{interval.mean:.0f}"
        return (
            text
            if interval.finite == interval.total
            else f"{text} ({interval.finite}/{interval.total})"
        )
    return interval.format()


def gd_matches_closed_form(measured: np.ndarray, rate: float, offset: float, budget: int) -> bool:
    """GD's escape step is ceil(k*) within one step or 1% from every start, or GD never
    escaped within ``budget`` exactly when ceil(k*) exceeds it."""
    measured = np.asarray(measured, np.float64)
    closed = gd_escape_steps(rate, offset)
    if np.all(np.isinf(measured)):
        return math.ceil(closed) > budget
    if not np.all(np.isfinite(measured)):
        return False
    return bool(np.max(np.abs(measured - math.ceil(closed))) <= max(1.0, TOLERANCE * closed))


def _difference(a: np.ndarray, b: np.ndarray) -> Interval:
    """Paired t interval of ``a - b`` over starts (pairs where both escaped)."""
    with np.errstate(invalid="ignore"):  # inf - inf where neither escaped: dropped
        return paired_difference(a, b).interval


def report(results: LandscapeResults, out: Path) -> Section:
    """The section: setup, tables, figures and the claims with their verdicts."""
    section = Section("3. Non-convex landscapes: saddles and local minima")
    saddle = results.saddle
    plot_escape_times(saddle, out / "saddle_escape_times.png")
    plot_noise_sweep(saddle, out / "saddle_noise_sweep.png")
    plot_rastrigin(results, out / "rastrigin.png")
    plot_rastrigin_map(results, out / "rastrigin_map.png")
    _saddle_report(section, saddle, results.seed)
    _rastrigin_report(section, results)
    return section


def _saddle_report(section: Section, saddle: SaddleResults, seed: int) -> None:
    section.text(
        f"**Saddle** f(x, y) = x² − y² + y⁴/4 (Hessian eigenvalues ±{saddle_curvature():g} at "
        f"the origin). {saddle.starts} starts per setting: x₀ uniform on [−2, 2], y₀ = ±δ with "
        f"δ the offset from the stable manifold (master seed {seed}). Every method — "
        f"first-order steps, L-BFGS and Newton iterations alike — runs at most "
        f"{saddle.steps} iterations and none stops on a small gradient; a run escapes at its "
        f"first iterate with |y| ≥ {ESCAPE_RADIUS:g}. GD's closed form: k* = ln(r/δ)/ln(1 + "
        f"η|λ_min|) ≈ ln(r/δ)/(η|λ_min|) steps. Momentum is heavy ball with β = {MOMENTUM:g} "
        f"at the effective rate η = lr/(1 − β); noisy GD adds N(0, σ²) to every gradient "
        f"entry (σ = {PRIMARY_NOISE:g} unless swept); Adam runs at lr η. 'newton' is the "
        f"unit step −H⁻¹g; 'newton (saddle-free)' is jaxopt_lab's newton (|eigenvalues|, "
        f"Armijo search). Escape steps: mean over starts with a 95% t interval, (k/n) when "
        f"only k of n escaped within the budget. GD, momentum, Adam and both Newton methods "
        f"move y independently of x, so each escapes at the same step from every start. "
        f"Heavy ball grows the offset by z per step, the larger root of z² − (1 + β + "
        f"lr|λ_min|)z + β, which is below GD's 1 + η|λ_min| at every matched effective rate; "
        f"the column 'momentum / GD growth exponent' is ln(1 + η|λ_min|)/ln z, the ratio of "
        f"their escape steps far from the start (momentum also starts from zero velocity)."
    )
    section.table(
        [
            "effective lr",
            "GD closed form k*",
            "momentum / GD growth exponent",
            *(f"{m}: steps" for m in RATE_SWEEP),
        ],
        [
            (
                rate,
                gd_escape_steps(rate, PRIMARY_OFFSET),
                math.log1p(rate * saddle_curvature()) / math.log(momentum_growth(rate, MOMENTUM)),
                *(_steps_text(saddle.by_rate(m)[i]) for m in RATE_SWEEP),
            )
            for i, rate in enumerate(EFFECTIVE_RATES)
        ],
    )
    methods = FIRST_ORDER + SECOND_ORDER
    section.table(
        ["offset δ", "GD k*", *methods],
        [
            (
                offset,
                gd_escape_steps(PRIMARY_RATE, offset),
                *(_steps_text(saddle.by_offset(m)[i]) for m in methods),
            )
            for i, offset in enumerate(OFFSETS)
        ],
    )
    section.figure(
        "saddle_escape_times.png",
        f"Saddle: steps to escape against the effective learning rate (offset "
        f"{PRIMARY_OFFSET:g}) and against the start offset (effective lr {PRIMARY_RATE:g}); "
        f"mean over {saddle.starts} starts with 95% t intervals, GD's closed form dashed.",
    )
    escapes = saddle.noise_escapes()
    section.text(
        f"Noise sweep: effective lr {PRIMARY_RATE:g}, offset {PRIMARY_OFFSET:g}, budget "
        f"{saddle.noise_steps} steps, half of GD's k* = "
        f"{gd_escape_steps(PRIMARY_RATE, PRIMARY_OFFSET):.1f} (GD cannot escape in it). The "
        f"prediction linearises the saddle: the noise adds to the offset a Gaussian of std "
        f"ησ·sqrt(Σⱼ (1 + η|λ|)^(−2j))."
    )
    section.table(
        ["noise σ", "predicted escape rate", "measured escape rate [Wilson 95%]"],
        [
            (
                s,
                noisy_escape_probability(PRIMARY_RATE, PRIMARY_OFFSET, s, saddle.noise_steps),
                binomial_ci(k, saddle.starts).format(),
            )
            for s, k in zip(NOISE_SCALES, escapes, strict=True)
        ],
    )
    section.figure(
        "saddle_noise_sweep.png",
        "Saddle: fraction of starts escaped within the budget against the gradient-noise "
        "std (Wilson 95% intervals) beside the linearised prediction.",
    )

    gd_rate, gd_offset = saddle.by_rate("gd"), saddle.by_offset("gd")
    checks = [
        by_fact(
            f"GD at η {rate:g}, δ {PRIMARY_OFFSET:g}",
            gd_matches_closed_form(gd_rate[i], rate, PRIMARY_OFFSET, saddle.steps),
        )
        for i, rate in enumerate(EFFECTIVE_RATES)
    ] + [
        by_fact(
            f"GD at η {PRIMARY_RATE:g}, δ {offset:g}",
            gd_matches_closed_form(gd_offset[i], PRIMARY_RATE, offset, saddle.steps),
        )
        for i, offset in enumerate(OFFSETS)
    ]
    agree = sum(c.outcome.value == "supports" for c in checks)
    examples = ", ".join(
        f"δ {d:g}: {_steps_text(gd_offset[i])} vs k* {gd_escape_steps(PRIMARY_RATE, d):.1f}"
        for i, d in enumerate(OFFSETS)
        if i % 3 == 1
    )
    section.claim(
        "Vanilla GD is not trapped by a strict saddle: from offset δ it escapes in "
        "k* = ln(r/δ)/ln(1 + η|λ_min|) steps, growing like ln(1/δ)/(η|λ_min|).",
        checks,
        f"GD's first step past |y| = {ESCAPE_RADIUS:g} is ⌈k*⌉ (within one step or 1%, or "
        f"both beyond the {saddle.steps}-step budget) at {agree} of {len(checks)} (rate, "
        f"offset) settings; at η {PRIMARY_RATE:g}: {examples}.",
    )

    momentum, gd = saddle.by_rate("momentum"), gd_rate
    ratios = [
        f"{rate:g}: {mean_ci(momentum[i]).mean / mean_ci(gd[i]).mean:.2f}"
        for i, rate in enumerate(EFFECTIVE_RATES)
        if mean_ci(momentum[i]).finite and mean_ci(gd[i]).finite
    ]
    section.claim(
        f"At matched effective learning rate lr/(1 − β), heavy-ball momentum (β = {MOMENTUM:g}) "
        f"escapes the saddle in fewer steps than GD.",
        [
            by_interval(
                f"momentum − GD escape steps at η {rate:g}", _difference(momentum[i], gd[i]), -1
            )
            for i, rate in enumerate(EFFECTIVE_RATES)
        ],
        f"momentum / GD escape steps at offset {PRIMARY_OFFSET:g}, effective rate "
        f"{', '.join(ratios) or 'none escaped'} (at the same raw lr, momentum's effective "
        f"rate is {1 / (1 - MOMENTUM):g}x GD's).",
    )

    noisy = saddle.by_rate("noisy gd")
    differences = [_difference(noisy[i], gd[i]) for i in range(len(EFFECTIVE_RATES))]
    primary = int(np.argmin(np.abs(np.log(NOISE_SCALES) - math.log(PRIMARY_NOISE))))
    section.claim(
        f"At the same learning rate, gradient noise (σ = {PRIMARY_NOISE:g}) shortens GD's "
        f"escape from a start {PRIMARY_OFFSET:g} off the saddle's stable manifold.",
        [
            by_interval(f"noisy GD − GD escape steps at η {rate:g}", difference, -1)
            for rate, difference in zip(EFFECTIVE_RATES, differences, strict=True)
        ],
        "noisy GD − GD escape steps (mean over starts, 95% t) at η "
        + ", ".join(
            f"{r:g}: {d.format()}" for r, d in zip(EFFECTIVE_RATES, differences, strict=True)
        )
        + f"; within {saddle.noise_steps} steps at η {PRIMARY_RATE:g}, σ "
        f"{NOISE_SCALES[primary]:g} escapes from "
        f"{binomial_ci(escapes[primary], saddle.starts).format()} of the starts (GD: none).",
    )

    index = OFFSETS.index(PRIMARY_OFFSET)
    newton = saddle.by_offset("newton")
    hager_zhang = saddle.by_offset("lbfgs (hager-zhang)")[index]
    backtracking = saddle.by_offset("lbfgs (backtracking)")[index]
    escape_gap = proportion_difference(
        int(np.isfinite(hager_zhang).sum()),
        hager_zhang.size,
        int(np.isfinite(newton[index]).sum()),
        newton[index].size,
    )
    search_gap = _difference(hager_zhang, backtracking)
    section.claim(
        f"Under the same {saddle.steps}-iteration budget (no gradient-norm stopping), "
        f"Newton's method is attracted to the saddle while L-BFGS escapes it, and how fast "
        f"L-BFGS escapes depends on its line search (Hager-Zhang faster than backtracking).",
        [
            by_fact(
                "Newton (−H⁻¹g) escapes from no start at any offset",
                all(np.all(np.isinf(row)) for row in newton),
            ),
            by_interval(f"L-BFGS − Newton escape rate at δ {PRIMARY_OFFSET:g}", escape_gap, 1),
            by_interval(
                f"L-BFGS Hager-Zhang − backtracking iterations at δ {PRIMARY_OFFSET:g}",
                search_gap,
                -1,
            ),
        ],
        f"at δ {PRIMARY_OFFSET:g}: Newton escapes from {_rate(np.isfinite(newton[index])).format()}"
        f" of the starts, L-BFGS (Hager-Zhang) from {_rate(np.isfinite(hager_zhang)).format()} "
        f"(difference {escape_gap.format()}); iterations to escape: L-BFGS Hager-Zhang "
        f"{_steps_text(hager_zhang)}, backtracking {_steps_text(backtracking)} (difference "
        f"{search_gap.format()}), saddle-free Newton "
        f"{_steps_text(saddle.by_offset('newton (saddle-free)')[index])}.",
    )


def _rastrigin_report(section: Section, results: LandscapeResults) -> None:
    budget, runs = results.budget, results.rastrigin
    edges = [
        v.label
        for v, run in runs.items()
        if any(r in (RASTRIGIN_RATES[0], RASTRIGIN_RATES[-1]) for r in run.chosen)
    ]
    section.text(
        f"**Rastrigin** (2-D, {budget.rastrigin_starts} starts uniform on [−5.12, 5.12]², "
        f"the same starts and noise draws for every variant). Learning rates are annealed "
        f"geometrically from η₀ to {FINAL_RATE:g} over {budget.rastrigin_steps} steps, ending "
        f"below the minima's stability limit 2/(2 + 40π²) = "
        f"{2 / (2 + 40 * math.pi**2):.4f}. Success (best visited): some iterate has f < f₂/2 = "
        f"{BASIN_LEVEL:.4f}, half the lowest non-global minimum, so it lies in the global "
        f"basin; the final-iterate criterion asks the same of the last iterate. Each variant "
        f"(noisy GD per σ, momentum per β) tunes η₀ over {len(RASTRIGIN_RATES)} values from "
        f"{RASTRIGIN_RATES[0]:g} to {RASTRIGIN_RATES[-1]:g} (the effective rate lr/(1 − β) "
        f"for momentum) by two-fold cross-fitting: the rate with the most best-visited "
        f"successes on the even-numbered starts is scored on the odd ones and vice versa, so "
        f"no start scores a rate it helped choose. Differences from GD are Newcombe "
        f"intervals, Bonferroni-corrected within each claim (95% family-wise). "
        + (
            f"A chosen rate lies on the grid's edge for: {', '.join(edges)}."
            if edges
            else "No chosen rate lies on the grid's edge."
        )
    )
    gd = runs[GD].visited
    families = {"noisy gd": NOISY, "momentum": HEAVY_BALL}

    def gap(variant: Variant) -> Interval:
        other = runs[variant].visited
        family = families.get(variant.method, (variant,))
        return proportion_difference(
            int(other.sum()), other.size, int(gd.sum()), gd.size, confidence=1 - 0.05 / len(family)
        )

    section.table(
        [
            "variant",
            "η₀ chosen on even / odd starts",
            "best visited [Wilson 95%]",
            "final iterate [Wilson 95%]",
            "best visited − GD [Newcombe]",
        ],
        [
            (
                variant.label,
                " / ".join(f"{r:.3g}" for r in run.chosen),
                _rate(run.visited).format(),
                _rate(run.final).format(),
                "" if variant == GD else gap(variant).format(),
            )
            for variant, run in runs.items()
        ],
    )
    section.figure(
        "rastrigin.png",
        "Rastrigin: fraction of all starts whose best visited iterate reaches the global "
        "basin against the initial effective learning rate, and the cross-fitted success "
        "against the noise std beside GD's (Wilson 95% intervals).",
    )
    section.figure(
        "rastrigin_map.png",
        "Rastrigin: starts whose best visited iterate reaches the global basin, per variant "
        "at its cross-fitted rate (title: rate with its Wilson 95% interval).",
    )
    for method, what, variants in (
        ("noisy gd", "gradient noise", NOISY),
        ("momentum", "heavy-ball momentum", HEAVY_BALL),
    ):
        gaps = {v: gap(v) for v in variants}
        section.claim(
            f"With annealed learning rates, {what} helps GD reach Rastrigin's global minimum: "
            f"{method}, its rate tuned, reaches the global basin (best visited) from more "
            f"random starts than tuned GD in the same number of steps.",
            [by_interval(f"{v.label} − GD success rate", g, 1) for v, g in gaps.items()],
            f"best visited, GD {_rate(gd).format()} of {gd.size} starts; difference "
            + ", ".join(f"{v.label}: {g.format()}" for v, g in gaps.items())
            + f" (Newcombe, {len(variants)} comparisons at "
            f"{100 * (1 - 0.05 / len(variants)):.1f}% each).",
        )
