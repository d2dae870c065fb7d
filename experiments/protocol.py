"""The fair protocol every image-classification study shares: workloads, optimizer
configurations, tuning and final runs.

**Data** (:mod:`experiments.splits`): train on the head of the training split, validate on
its held-out tail, evaluate each final run on the test split once, after its last step.

**Seeds**: every seed derives from the master seed (:mod:`experiments.seeds`). A seed fixes
both the initialisation and the batch order (``sweep(..., data_seed=None)``); the tuning
seeds and the final seeds of a workload are the same for every configuration, so
configurations are paired by seed (common random numbers).

**Budget**: mini-batch configurations get the same number of *epochs* (examples
processed), whatever their batch size, so batch-1 SGD sees as much data as batch 32;
full-batch configurations get ``full_batch_steps`` steps (one epoch each). Every run is
evaluated at ``evals`` evenly spaced points, and its step count is a multiple of them.

**Tuning** (DeepOBS / Schmidt et al. 2021 style, with a bracketed optimum): each
configuration starts from a log grid of learning rates with ``per_decade`` points per
decade spanning ``span_decades`` decades around a prior centre for that optimizer. When
the best rate sits on an edge of the grid, the grid is extended by one decade on that side
and only the new rates are trained, up to ``max_extensions`` times; an optimum still on an
edge after that is recorded (``Tuned.edge``) and the report says so. A configuration may
also tune extra hyperparameters (momentum, Adam's ``b1`` and ``eps``) on small fixed grids,
jointly with the rate. A study selects the point whose mean over the tuning seeds is
lowest for the quantity its verdict reads (:data:`SELECTIONS`; a diverged run is infinitely
bad), so a configuration is never judged on a metric it was not tuned for:

- ``"final"``, **final validation loss** (what the budget ends at): the default, and what
  every verdict except the convergence-speed claim relies on;
- ``"area"``, **mean validation loss over the run's evaluations** (the area under the
  validation curve per unit of budget: low when a run gets low early and stays low): what
  the convergence-speed claim reads.

The grid is extended until the optimum of *both* selections is bracketed, so the points
are the same whichever a study asks for. A third choice, by **steps to a validation target**
(AlgoPerf style: the fewest steps at which the mean validation loss over the tuning seeds
reaches 1.05x the configuration's best final validation loss), is reported beside them to
show whether the choice depends on the criterion.

The selected point is rerun with the final seeds (vectorized over seeds; wall time is the
job of :mod:`experiments.efficiency`). Tuning grids are cached per (workload,
configuration, variant, budget, master seed) and final runs per hyperparameters, so later
studies, and a second selection that picks the same point, reuse them.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxopt_lab as jl
from experiments.seeds import derive_many
from experiments.splits import holdout
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.sweep import OptimizerFactory, SweepData, SweepResult, sweep


@dataclass(frozen=True)
class Workload:
    """A dataset and a model: ``hidden_sizes=()`` is multinomial logistic regression (a
    convex objective), ``(128,)`` the seed MLP (784-128-10, ReLU, no dropout so that every
    optimizer minimises the same deterministic loss)."""

    name: str
    dataset: str
    hidden_sizes: tuple[int, ...]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("mnist-mlp", "mnist", (128,)),
        Workload("fashion-mlp", "fashion_mnist", (128,)),
        Workload("mnist-logreg", "mnist", ()),
    )
}


@dataclass(frozen=True)
class Config:
    """An optimizer by registry name, its batch size (None: the whole training set), and
    the hyperparameters tuned beside the learning rate (names from :data:`EXTRA_GRIDS`)."""

    optimizer: str
    batch_size: int | None
    tuned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.tuned) - set(EXTRA_GRIDS)
        if unknown:
            raise ValueError(f"cannot tune {sorted(unknown)}; choose from {sorted(EXTRA_GRIDS)}")


# the fixed grids of the hyperparameters tuned beside the learning rate
EXTRA_GRIDS: dict[str, tuple[float, ...]] = {
    "momentum": (0.5, 0.9, 0.99),
    "b1": (0.5, 0.9, 0.99),
    # Adam's eps matters from about the gradient's size on (Choi et al. 2019): span 1e-8 to 1e-2
    "eps": (1e-8, 1e-5, 1e-2),
}

# the centre of each optimizer's first learning-rate grid (its usual default)
CENTRES: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.01,
    "nesterov": 0.01,
    "adagrad": 0.03,
    "rmsprop": 1e-3,
    "adam": 1e-3,
    "adamw": 1e-3,
}
FULL_BATCH_CENTRE = 1.0  # full-batch gradient descent tolerates larger steps
# selection by steps to target: the target is this factor times the best final validation loss
TARGET_FACTOR = 1.05


@dataclass(frozen=True)
class Variant:
    """What is done to the training signal: Gaussian gradient noise of norm about
    ``noise`` times the gradient's (:func:`relative_gradient_noise`), or a fraction
    ``flip`` of the training labels replaced by a different random class."""

    noise: float = 0.0
    flip: float = 0.0

    def __post_init__(self) -> None:
        if self.noise < 0 or not 0 <= self.flip < 1:
            raise ValueError(f"need noise >= 0 and 0 <= flip < 1, got {self}")

    @property
    def label(self) -> str:
        if self.noise:
            return f"sigma={self.noise:g}"
        if self.flip:
            return f"flip={self.flip:g}"
        return "clean"


CLEAN = Variant()


@dataclass(frozen=True)
class ProtocolBudget:
    """Data sizes, training length, seeds and tuning grid of one tier."""

    num_train: int
    num_eval: int
    num_val: int
    batch_size: int
    epochs: int  # epochs of every mini-batch configuration
    full_batch_steps: int  # steps of every full-batch configuration
    evals: int  # evaluation points per run (besides step 0)
    tuning_seeds: int
    final_seeds: int
    per_decade: int = 3
    span_decades: int = 2
    max_extensions: int = 3

    def __post_init__(self) -> None:
        if self.per_decade < 3:
            raise ValueError(f"per_decade must be >= 3, got {self.per_decade}")
        if self.full_batch_steps % self.evals:
            raise ValueError(
                f"full_batch_steps ({self.full_batch_steps}) must be a multiple of evals "
                f"({self.evals}) so that every run takes exactly its budget"
            )
        if self.tuning_seeds < 1 or self.final_seeds < 2:
            raise ValueError("need at least 1 tuning seed and 2 final seeds")

    def steps(self, config: Config) -> int:
        """Steps of ``config``: ``full_batch_steps``, or ``epochs`` worth of its batches
        rounded up to a multiple of ``evals``."""
        if config.batch_size is None:
            return self.full_batch_steps
        per_epoch = math.ceil(self.num_train / config.batch_size)
        return math.ceil(self.epochs * per_epoch / self.evals) * self.evals

    def batch(self, config: Config) -> int:
        return self.num_train if config.batch_size is None else config.batch_size


# what a study's tuning minimises (see the module doc)
Selection = Literal["final", "area"]
SELECTIONS: tuple[str, ...] = ("final", "area")


def _check_selection(selection: str) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; choose from {SELECTIONS}")


@dataclass(frozen=True)
class TuningPoint:
    """One grid point: its hyperparameters and its validation-loss curves per tuning seed
    (``[seed, evaluation point]``; NaN/inf where a run diverged)."""

    hyperparameters: Mapping[str, float]
    val_loss: np.ndarray

    @property
    def final(self) -> float:
        """Mean final validation loss over the seeds (inf if any diverged)."""
        last = self.val_loss[:, -1]
        return float(last.mean()) if np.all(np.isfinite(last)) else math.inf

    @property
    def area(self) -> float:
        """Mean over the seeds of the mean validation loss over the evaluations after step 0
        (inf if any evaluation diverged)."""
        later = self.val_loss[:, 1:]
        return float(later.mean()) if np.all(np.isfinite(later)) else math.inf

    def score(self, selection: Selection) -> float:
        """What ``selection`` minimises: :attr:`final` or :attr:`area`."""
        _check_selection(selection)
        return self.final if selection == "final" else self.area


def select(points, selection: Selection) -> TuningPoint:
    """The point with the lowest :meth:`TuningPoint.score` (the first of equals)."""
    return min(points, key=lambda p: p.score(selection))


@dataclass(frozen=True)
class Tuned:
    """A configuration after the protocol: its grid, the two selections, the final runs."""

    workload: Workload
    config: Config
    variant: Variant
    steps: np.ndarray  # step of each evaluation point
    samples_per_step: int
    num_train: int
    points: tuple[TuningPoint, ...]
    selection: Selection  # what ``best`` minimises
    best: Mapping[str, float]  # the selected point's hyperparameters (the final runs use them)
    best_by_target: Mapping[str, float]  # by steps to 1.05x the best validation loss
    extensions: int  # decades added to the first grid
    edge: str | None  # a sentence when an optimum still sits on a grid edge
    final: SweepResult = field(repr=False)  # the final seeds at ``best`` (test metrics included)

    def chosen(self, selection: Selection) -> Mapping[str, float]:
        """The hyperparameters ``selection`` picks from this grid (``best`` for its own)."""
        return select(self.points, selection).hyperparameters

    @property
    def learning_rates(self) -> np.ndarray:
        return np.unique([p.hyperparameters["learning_rate"] for p in self.points])

    @property
    def effective_learning_rate(self) -> float:
        """lr / (1 - momentum) for heavy-ball and Nesterov momentum (the step size a
        constant gradient settles to), the learning rate otherwise."""
        momentum = self.best.get("momentum", default_momentum(self.config.optimizer))
        return self.best["learning_rate"] / (1.0 - momentum)

    @property
    def epochs(self) -> np.ndarray:
        """Epochs (examples processed / training-set size) at each evaluation point."""
        return self.steps * self.samples_per_step / self.num_train

    def final_curve(self, metric: str) -> np.ndarray:
        """``[seed, evaluation point]`` of ``train_loss``, ``val_loss`` or ``val_accuracy``
        of the final runs; ``test_loss``/``test_accuracy`` are ``[seed]``."""
        return np.asarray(getattr(self.final.curves, metric)).reshape(len(self.final.seeds), -1)

    def final_test_accuracy(self) -> np.ndarray:
        return np.asarray(self.final.curves.test_accuracy).reshape(-1)


def default_momentum(optimizer: str) -> float:
    """The momentum a registry optimizer uses by default (0 without momentum)."""
    return {"momentum": 0.9, "nesterov": 0.9}.get(optimizer, 0.0)


def learning_rate_grid(centre: float, per_decade: int, low: int, high: int) -> list[float]:
    """``centre * 10**(k / per_decade)`` for ``k`` in ``[low, high]``, rounded to 3
    significant digits (so the same rate gets the same key in every extension)."""
    return [float(f"{centre * 10 ** (k / per_decade):.3g}") for k in range(low, high + 1)]


def first_grid(config: Config, budget: ProtocolBudget) -> list[float]:
    """The learning rates a configuration's tuning starts from: ``span_decades`` decades
    around its optimizer's centre (:data:`CENTRES`, or :data:`FULL_BATCH_CENTRE`)."""
    centre = FULL_BATCH_CENTRE if config.batch_size is None else CENTRES[config.optimizer]
    half = budget.span_decades * budget.per_decade // 2
    return learning_rate_grid(centre, budget.per_decade, -half, half)


def relative_gradient_noise(sigma: jax.Array, key: jax.Array) -> optax.GradientTransformation:
    """Adds Gaussian noise to the gradient ``g`` with per-entry std
    ``sigma * ||g|| / sqrt(d)`` (``d`` parameters), so the noise's norm is about
    ``sigma * ||g||``: the signal-to-noise ratio is ``1 / sigma`` whatever the gradient's
    size."""

    def init(params):
        del params
        return {"key": key}

    def update(updates, state, params=None):
        del params
        leaves, treedef = jax.tree.flatten(updates)
        size = sum(leaf.size for leaf in leaves)
        scale = sigma * optax.tree.norm(updates) / jnp.sqrt(size)
        next_key, *keys = jax.random.split(state["key"], len(leaves) + 1)
        noisy = [
            leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, keys, strict=True)
        ]
        return jax.tree.unflatten(treedef, noisy), {"key": next_key}

    return optax.GradientTransformation(init, update)


@functools.cache
def _factory(optimizer: str, noisy: bool) -> OptimizerFactory:
    """One factory object per (optimizer, noisy), so compiled programs are reused."""

    def build(hyperparameters: Mapping[str, jax.Array], key: jax.Array):
        options = {k: hyperparameters[k] for k in EXTRA_GRIDS if k in hyperparameters}
        optimizer_ = jl.make_optimizer(optimizer, hyperparameters["learning_rate"], **options)
        if not noisy:
            return optimizer_
        return jl.chain(relative_gradient_noise(hyperparameters["noise"], key), optimizer_)

    return build


@functools.cache
def model_factory(hidden_sizes: tuple[int, ...]):
    """The workload's model without dropout (one factory object per architecture)."""

    def build(hyperparameters: Mapping[str, jax.Array], key: jax.Array) -> nnx.Module:
        del hyperparameters
        return MLP(hidden_sizes=hidden_sizes, dropout_rate=0.0, rngs=nnx.Rngs(key))

    return build


def flip_labels(labels: jax.Array, fraction: float, key: jax.Array, classes: int = 10):
    """Replace a ``fraction`` of ``labels`` (chosen at random) by a different random class."""
    flip_key, shift_key = jax.random.split(key)
    flipped = jax.random.uniform(flip_key, labels.shape) < fraction
    shift = jax.random.randint(shift_key, labels.shape, 1, classes)
    return jnp.where(flipped, (labels + shift) % classes, labels).astype(labels.dtype)


def data(workload: Workload, budget: ProtocolBudget, variant: Variant, master: int) -> SweepData:
    """The workload's splits; with ``variant.flip`` the training labels (only) flipped."""
    splits = holdout(workload.dataset, budget.num_train, budget.num_eval, budget.num_val)
    if not variant.flip:
        return splits
    (key,) = derive_many(master, 1, "protocol", workload.name, "flip", variant.flip)
    labels = flip_labels(splits.train_labels, variant.flip, jax.random.key(key))
    return splits._replace(train_labels=labels, eval_labels=labels[: budget.num_eval])


def seeds(master: int, workload: Workload, purpose: str, count: int) -> tuple[int, ...]:
    """The tuning or final seeds of a workload (shared by all its configurations)."""
    return derive_many(master, count, "protocol", workload.name, purpose)


_GRIDS: dict[tuple, tuple[tuple[TuningPoint, ...], int]] = {}
_FINALS: dict[tuple, SweepResult] = {}
_TUNED: dict[tuple, Tuned] = {}


def tune(
    workload: Workload,
    config: Config,
    budget: ProtocolBudget,
    master: int,
    variant: Variant = CLEAN,
    selection: Selection = "final",
) -> Tuned:
    """Run (or fetch) the protocol for ``config`` on ``workload``, selecting by
    ``selection`` (see the module doc)."""
    _check_selection(selection)
    key = (workload, config, budget, master, variant, selection)
    if key not in _TUNED:
        _TUNED[key] = _tune(workload, config, budget, master, variant, selection)
    return _TUNED[key]


def _run_options(workload: Workload, config: Config, budget: ProtocolBudget) -> dict:
    """The :func:`~jaxopt_lab.training.sweep.sweep` options shared by tuning and final runs."""
    return dict(
        model_factory=model_factory(workload.hidden_sizes),
        batch_size=budget.batch(config),
        num_evals=budget.evals,
        steps_per_eval=budget.steps(config) // budget.evals,
        data_seed=None,
    )


def _extra_grids(config: Config, variant: Variant) -> dict[str, tuple[float, ...]]:
    """The grids swept beside the learning rate (a noise level is a one-point grid)."""
    extra = {name: EXTRA_GRIDS[name] for name in config.tuned}
    if variant.noise:
        extra["noise"] = (variant.noise,)
    return extra


def _grid(
    workload: Workload, config: Config, budget: ProtocolBudget, master: int, variant: Variant
) -> tuple[tuple[TuningPoint, ...], int]:
    """The tuning points (first grid and its extensions) and the number of extensions; the
    grid grows until the optimum of every selection is bracketed (cached)."""
    key = (workload, config, budget, master, variant)
    if key in _GRIDS:
        return _GRIDS[key]
    tuning_data = data(workload, budget, variant, master).without_test()
    factory = _factory(config.optimizer, bool(variant.noise))
    extra = _extra_grids(config, variant)
    tuning_seeds = seeds(master, workload, "tuning", budget.tuning_seeds)
    options = _run_options(workload, config, budget)
    centre = FULL_BATCH_CENTRE if config.batch_size is None else CENTRES[config.optimizer]
    high = budget.span_decades * budget.per_decade // 2  # the first grid's ends, in steps
    low = -high
    points: dict[tuple, TuningPoint] = {}

    def train(rates: list[float]) -> None:
        result = sweep(
            factory, {"learning_rate": rates, **extra}, tuning_seeds, tuning_data, **options
        )
        names = list(result.grid)
        val = np.asarray(result.curves.val_loss)  # [*grid, seed, eval]
        for index in itertools.product(*(range(len(result.grid[n])) for n in names)):
            hp = {n: float(result.grid[n][i]) for n, i in zip(names, index, strict=True)}
            points[tuple(sorted(hp.items()))] = TuningPoint(hp, val[index])

    train(first_grid(config, budget))
    extensions = 0
    while extensions < budget.max_extensions:
        rates = sorted({p.hyperparameters["learning_rate"] for p in points.values()})
        sides = [_edge_side(select(points.values(), s), rates) for s in SELECTIONS]
        side = next((side for side in sides if side), 0)
        if side == 0:
            break
        if side < 0:
            low -= budget.per_decade
            train(learning_rate_grid(centre, budget.per_decade, low, low + budget.per_decade - 1))
        else:
            high += budget.per_decade
            train(learning_rate_grid(centre, budget.per_decade, high - budget.per_decade + 1, high))
        extensions += 1
    _GRIDS[key] = (tuple(points.values()), extensions)
    return _GRIDS[key]


def _final_runs(
    workload: Workload,
    config: Config,
    budget: ProtocolBudget,
    master: int,
    variant: Variant,
    hyperparameters: Mapping[str, float],
) -> SweepResult:
    """The final seeds at ``hyperparameters``, test metrics included (cached)."""
    key = (workload, config, budget, master, variant, tuple(sorted(hyperparameters.items())))
    if key not in _FINALS:
        _FINALS[key] = sweep(
            _factory(config.optimizer, bool(variant.noise)),
            {k: [v] for k, v in hyperparameters.items()},
            seeds(master, workload, "final", budget.final_seeds),
            data(workload, budget, variant, master),
            **_run_options(workload, config, budget),
        )
    return _FINALS[key]


def _tune(
    workload: Workload,
    config: Config,
    budget: ProtocolBudget,
    master: int,
    variant: Variant,
    selection: Selection,
) -> Tuned:
    points, extensions = _grid(workload, config, budget, master, variant)
    best = select(points, selection)
    rates = sorted({p.hyperparameters["learning_rate"] for p in points})
    steps = budget.steps(config)
    return Tuned(
        workload=workload,
        config=config,
        variant=variant,
        steps=np.arange(budget.evals + 1) * (steps // budget.evals),
        samples_per_step=budget.batch(config),
        num_train=budget.num_train,
        points=points,
        selection=selection,
        best=dict(best.hyperparameters),
        best_by_target=dict(_best_by_target(points, select(points, "final").final).hyperparameters),
        extensions=extensions,
        edge=_edge_sentence(best, rates, _extra_grids(config, variant), _edge_side(best, rates)),
        final=_final_runs(workload, config, budget, master, variant, best.hyperparameters),
    )


def _edge_side(best: TuningPoint, rates: list[float]) -> int:
    """-1 / +1 when the best learning rate is the smallest / largest tried, else 0 (also
    when nothing converged: no optimum to bracket)."""
    if not math.isfinite(best.final):
        return 0
    rate = best.hyperparameters["learning_rate"]
    return -1 if rate == rates[0] else 1 if rate == rates[-1] else 0


def _edge_sentence(
    best: TuningPoint, rates: list[float], extra: Mapping[str, tuple[float, ...]], side: int
) -> str | None:
    """Why the optimum is not bracketed, or None when it is."""
    problems = []
    if side:
        problems.append(
            f"learning rate {best.hyperparameters['learning_rate']:g} on the edge of "
            f"[{rates[0]:g}, {rates[-1]:g}]"
        )
    for name, grid in extra.items():
        value = best.hyperparameters[name]
        if len(grid) > 1 and value in (min(grid), max(grid)):
            problems.append(f"{name} {value:g} on the edge of its grid {list(grid)}")
    return "; ".join(problems) or None


def _best_by_target(points, best_final: float) -> TuningPoint:
    """The point whose mean validation curve first reaches ``TARGET_FACTOR * best_final``
    (ties: lower final loss)."""
    target = TARGET_FACTOR * best_final

    def first(point: TuningPoint) -> tuple[float, float]:
        mean = point.val_loss.mean(axis=0)
        hits = np.flatnonzero(np.isfinite(mean) & (mean <= target))
        return (float(hits[0]) if hits.size else math.inf, point.final)

    return min(points, key=first)


BUDGETS: dict[str, ProtocolBudget] = {
    # every code path in a few minutes (the test suite and CI)
    "quick": ProtocolBudget(
        num_train=512, num_eval=256, num_val=256, batch_size=32, epochs=1,
        full_batch_steps=8, evals=4, tuning_seeds=1, final_seeds=2, max_extensions=1,
    ),
    # the committed report: 10k training images, 10 final seeds
    "medium": ProtocolBudget(
        num_train=10_000, num_eval=5_000, num_val=5_000, batch_size=32, epochs=3,
        full_batch_steps=100, evals=10, tuning_seeds=2, final_seeds=10,
    ),
    "full": ProtocolBudget(
        num_train=50_000, num_eval=10_000, num_val=10_000, batch_size=32, epochs=10,
        full_batch_steps=300, evals=30, tuning_seeds=3, final_seeds=20,
    ),
}  # fmt: skip


def tuned_runs() -> tuple[Tuned, ...]:
    """Every configuration tuned in this process so far (what a report was built from)."""
    return tuple(_TUNED.values())
