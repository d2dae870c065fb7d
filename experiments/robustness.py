"""Study 2 — robustness: Gaussian noise added to the gradients, and flipped labels.

**Gradient noise.** Every optimizer trains the MNIST MLP through the fair protocol
(:mod:`experiments.protocol`) with Gaussian noise of norm about ``sigma`` times the
gradient's added to every mini-batch gradient (:func:`~experiments.protocol.
relative_gradient_noise`: the signal-to-noise ratio is ``1/sigma`` whatever the gradient's
size), and its learning rate is **re-tuned at every noise level**. Robustness is the
**rise from clean** of the final validation loss: for optimizer ``o`` and final seed ``s``,
``rise_o(s) = loss_o(sigma, s) - loss_o(clean, s)``. The final seeds are shared by every
optimizer and variant, so the rise is paired by seed, and so is the verdict's quantity, the
excess rise ``rise_o(s) - rise_sgd(s)`` (negative: ``o`` resists better than SGD).

The verdict metric is the validation loss because the protocol selects the learning rate
on it: its value at the selected rate sits at a flat optimum, so it does not depend on
which of two nearly equal rates won the tuning. The validation accuracy at the selected
rate does: with 40% of labels flipped, the medium runs of master seeds 0 and 1 picked SGD
rates 0.0464 and 0.0215 (nearly equal validation losses) and lost 0.158 and 0.113 of
accuracy, enough to flip the sign of Adam's comparison. It is reported, paired the same
way, but decides nothing.

**Label noise.** A fraction ``f`` of the *training* labels is replaced by a different random
class (validation and test stay clean). To let the networks memorise the noise, these runs
use a small training set and many epochs (``flip_num_train``, ``flip_epochs``). Memorisation
is measured against an oracle: a model that cannot tell flipped examples apart (the flips
are independent of the images) predicts at best the empirical distribution of noisy labels
given the clean class, so its training loss is at least the conditional entropy
``H(noisy | clean)`` of the sample (:func:`label_noise_entropy`); a training loss below it
means the network fits individual flipped labels. The rise from clean (the same budget
without flips) is compared with SGD's as for gradient noise; the claim, about adaptive
methods, rests on the comparisons of the adaptive optimizers (:data:`ADAPTIVE`), the
others are reported beside it.

Every family of comparisons that decides a claim is Holm-corrected together
(:func:`holm_family`), and a run whose final validation loss is not finite counts as
diverged: it is left out of the means and reported as ``k/n`` finite.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from experiments import protocol
from experiments.report import Section
from experiments.stats import HolmComparison, Interval, first_reach, holm_paired, mean_ci
from experiments.verdict import by_interval

ADAPTIVE = frozenset({"adagrad", "rmsprop", "adam", "adamw"})  # per-coordinate step sizes
METRIC = "val_loss"  # the final validation metric every verdict of this study uses
TARGET_FACTOR = 1.1  # profile target: 1.1x the lowest mean validation loss of any optimizer


@dataclass(frozen=True)
class RobustnessBudget:
    """The study's settings on top of a protocol tier.

    ``protocol`` names the tier of :data:`experiments.protocol.BUDGETS` of the gradient-noise
    runs; the label-noise runs use the same tier with ``flip_num_train`` training images
    (all of them measure the training loss) and ``flip_epochs`` epochs. The first optimizer
    is the baseline every other is compared with.
    """

    protocol: str
    noise_scales: tuple[float, ...]  # sigma > 0, relative to the gradient norm
    flip_fractions: tuple[float, ...]  # fractions of training labels flipped, in (0, 1)
    flip_num_train: int
    flip_epochs: int
    workload: str = "mnist-mlp"
    optimizers: tuple[str, ...] = ("sgd", "momentum", "adam")
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.protocol not in protocol.BUDGETS:
            raise ValueError(f"unknown protocol tier {self.protocol!r}")
        if self.workload not in protocol.WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}")
        if not self.noise_scales or any(s <= 0 for s in self.noise_scales):
            raise ValueError(f"need at least one noise scale, all > 0, got {self.noise_scales}")
        if not self.flip_fractions or any(not 0 < f < 1 for f in self.flip_fractions):
            raise ValueError(f"need flip fractions in (0, 1), got {self.flip_fractions}")
        if len(self.optimizers) < 2:
            raise ValueError("need a baseline and at least one optimizer to compare with it")
        if not ADAPTIVE & set(self.optimizers[1:]):
            raise ValueError(
                f"the label-noise claim needs an adaptive optimizer ({sorted(ADAPTIVE)})"
            )
        if self.flip_num_train < 1 or self.flip_epochs < 1:
            raise ValueError("flip_num_train and flip_epochs must be >= 1")

    @property
    def baseline(self) -> str:
        return self.optimizers[0]

    @property
    def noise_budget(self) -> protocol.ProtocolBudget:
        return protocol.BUDGETS[self.protocol]

    @property
    def flip_budget(self) -> protocol.ProtocolBudget:
        return dataclasses.replace(
            self.noise_budget,
            num_train=self.flip_num_train,
            num_eval=self.flip_num_train,
            epochs=self.flip_epochs,
        )

    def config(self, optimizer: str) -> protocol.Config:
        return protocol.Config(optimizer, self.batch_size)

    def profile_label(self, optimizer: str) -> str:
        """The configuration's name in the performance profile, as the convergence study
        names the same configuration (plain SGD carries its batch size there)."""
        return f"sgd (batch {self.batch_size})" if optimizer == "sgd" else optimizer


BUDGETS: dict[str, RobustnessBudget] = {
    "quick": RobustnessBudget("quick", (3.0,), (0.4,), flip_num_train=256, flip_epochs=4),
    "medium": RobustnessBudget("medium", (3.0, 10.0), (0.4,), flip_num_train=2000, flip_epochs=40),
    "full": RobustnessBudget(
        "full", (1.0, 3.0, 10.0, 30.0), (0.2, 0.4, 0.6), flip_num_train=5000, flip_epochs=60
    ),
}


@dataclass(frozen=True)
class RobustnessResults:
    """Every tuned configuration of the study. ``noise[(optimizer, sigma)]`` uses the
    protocol tier (sigma 0: clean); ``flip[(optimizer, fraction)]`` the label-noise budget
    (fraction 0: clean). ``noise_floor[fraction]`` is :func:`label_noise_entropy` of the
    training labels the training loss is measured on."""

    budget: RobustnessBudget
    seed: int
    noise: dict[tuple[str, float], protocol.Tuned]
    flip: dict[tuple[str, float], protocol.Tuned]
    noise_floor: dict[float, float]


def measure(budget: RobustnessBudget, seed: int) -> RobustnessResults:
    """Tune and run every optimizer clean, at every noise level and every flip fraction
    (master seed ``seed``: every tuning seed, final seed and label flip derives from it)."""
    workload = protocol.WORKLOADS[budget.workload]
    noise, flip = {}, {}
    for optimizer in budget.optimizers:
        config = budget.config(optimizer)
        for sigma in (0.0, *budget.noise_scales):
            variant = protocol.Variant(noise=sigma)
            noise[optimizer, sigma] = protocol.tune(
                workload, config, budget.noise_budget, seed, variant
            )
        for fraction in (0.0, *budget.flip_fractions):
            variant = protocol.Variant(flip=fraction)
            flip[optimizer, fraction] = protocol.tune(
                workload, config, budget.flip_budget, seed, variant
            )
    clean = protocol.data(workload, budget.flip_budget, protocol.CLEAN, seed).eval_labels
    floor = {
        f: label_noise_entropy(
            np.asarray(clean),
            np.asarray(
                protocol.data(
                    workload, budget.flip_budget, protocol.Variant(flip=f), seed
                ).eval_labels
            ),
        )
        for f in budget.flip_fractions
    }
    return RobustnessResults(budget, seed, noise, flip, floor)


# --- the quantities behind the verdicts ------------------------------------------------


def label_noise_entropy(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The empirical conditional entropy ``H(noisy | clean)`` in nats,
    ``-sum_c p(c) sum_y p(y | c) ln p(y | c)`` over the sample: the least mean
    cross-entropy on the noisy labels of any predictor that sees only the clean class
    (the lowest training loss without memorising which examples were flipped). For a
    fraction ``f`` flipped uniformly to the other ``K - 1`` classes it tends to
    ``-(1 - f) ln(1 - f) - f ln(f / (K - 1))``."""
    clean, noisy = np.asarray(clean).ravel(), np.asarray(noisy).ravel()
    if clean.shape != noisy.shape or clean.size == 0:
        raise ValueError(
            f"need two non-empty label arrays of one shape, got {clean.shape}, {noisy.shape}"
        )
    entropy = 0.0
    for c in np.unique(clean):
        _, counts = np.unique(noisy[clean == c], return_counts=True)
        p = counts / counts.sum()
        entropy -= counts.sum() / clean.size * float(np.sum(p * np.log(p)))
    return entropy


def by_seed(tuned: protocol.Tuned, metric: str = METRIC) -> dict[int, float]:
    """The final value of ``metric`` of each final run, by seed; NaN for a run whose final
    validation loss is not finite (diverged: its accuracy would be a meaningless constant)."""
    values = tuned.final_curve(metric)[:, -1]
    diverged = ~np.isfinite(tuned.final_curve("val_loss")[:, -1])
    values = np.where(diverged, np.nan, values)
    return {int(s): float(v) for s, v in zip(tuned.final.seeds, values, strict=True)}


def seed_difference(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """``a[s] - b[s]`` for every seed ``s``, matched by seed (not by position); the two
    must hold the same seeds."""
    if set(a) != set(b):
        raise ValueError(f"paired samples need the same seeds, got {sorted(a)} and {sorted(b)}")
    return {s: a[s] - b[s] for s in a}


def holm_family(samples: Mapping[str, Mapping[int, float]]) -> dict[str, HolmComparison]:
    """Holm-corrected intervals of the means of several per-seed samples tested together
    (one family: every comparison a claim rests on). Each sample is already a paired
    difference, so its test is the one-sample t-test of "mean 0", which is
    :func:`~experiments.stats.holm_paired` against a baseline of zeros."""
    arrays = {name: np.asarray(list(values.values())) for name, values in samples.items()}
    size = {a.size for a in arrays.values()}
    if len(size) != 1:
        raise ValueError(f"every sample needs the same number of seeds, got {sorted(size)}")
    return holm_paired(np.zeros(size.pop()), arrays)


@dataclass(frozen=True)
class RiseComparison:
    """One optimizer in one setting: the rise of its final validation loss from clean
    (95% t interval over seeds) and its excess rise over the baseline's, ``rise - baseline
    rise`` (Holm-corrected over the family; negative: hurt less than the baseline)."""

    optimizer: str
    setting: float
    rise: Interval
    excess: HolmComparison | None  # None for the baseline itself


def compare_rises(
    clean: Mapping[str, Mapping[int, float]],
    noisy: Mapping[float, Mapping[str, Mapping[int, float]]],
    baseline: str,
) -> list[RiseComparison]:
    """Rises from clean, ``noisy - clean`` by seed, of every optimizer in every setting
    (``noisy[setting][optimizer]``), and the excess rise of every other optimizer over the
    baseline in the same setting, also by seed; the excess rises of all settings form one
    Holm family."""
    rises = {
        (setting, name): seed_difference(per_setting[name], clean[name])
        for setting, per_setting in noisy.items()
        for name in per_setting
    }
    excess = {
        (setting, name): seed_difference(rise, rises[setting, baseline])
        for (setting, name), rise in rises.items()
        if name != baseline
    }
    family = holm_family({f"{name}@{setting}": d for (setting, name), d in excess.items()})
    return [
        RiseComparison(
            name,
            setting,
            mean_ci(list(rise.values())),
            family[f"{name}@{setting}"] if name != baseline else None,
        )
        for (setting, name), rise in rises.items()
    ]


def noise_rises(results: RobustnessResults) -> list[RiseComparison]:
    """:func:`compare_rises` for the gradient-noise runs (setting: sigma)."""
    names, budget = results.budget.optimizers, results.budget
    clean = {n: by_seed(results.noise[n, 0.0]) for n in names}
    noisy = {s: {n: by_seed(results.noise[n, s]) for n in names} for s in budget.noise_scales}
    return compare_rises(clean, noisy, budget.baseline)


def flip_rises(results: RobustnessResults) -> list[RiseComparison]:
    """:func:`compare_rises` for the label-noise runs (setting: flip fraction)."""
    names, budget = results.budget.optimizers, results.budget
    clean = {n: by_seed(results.flip[n, 0.0]) for n in names}
    noisy = {f: {n: by_seed(results.flip[n, f]) for n in names} for f in budget.flip_fractions}
    return compare_rises(clean, noisy, budget.baseline)


def accuracy_drop(clean: protocol.Tuned, noisy: protocol.Tuned) -> Interval:
    """Final validation accuracy lost from ``clean`` to ``noisy``, paired by seed (95% t;
    descriptive: the verdicts use the validation loss)."""
    drop = seed_difference(by_seed(clean, "val_accuracy"), by_seed(noisy, "val_accuracy"))
    return mean_ci(list(drop.values()))


@dataclass(frozen=True)
class Memorisation:
    """The label-noise runs of one optimizer and flip fraction against the oracle floor:
    ``margin`` = floor - final training loss on the noisy labels (Holm-corrected over the
    family; > 0: the network fits individual flipped labels); the epoch of the lowest mean
    validation loss, and how much the validation loss rises and the training loss falls
    from there to the end, per seed (95% t)."""

    optimizer: str
    fraction: float
    margin: HolmComparison
    best_epoch: float
    val_rise: Interval
    train_fall: Interval


def memorisation(results: RobustnessResults) -> list[Memorisation]:
    """Every optimizer at every flip fraction (one Holm family for the margins)."""
    keys = [(n, f) for f in results.budget.flip_fractions for n in results.budget.optimizers]
    margins = {
        f"{n}@{f}": {
            s: results.noise_floor[f] - loss
            for s, loss in by_seed(results.flip[n, f], "train_loss").items()
        }
        for n, f in keys
    }
    family = holm_family(margins)
    rows = []
    for n, f in keys:
        tuned = results.flip[n, f]
        val, train = tuned.final_curve("val_loss"), tuned.final_curve("train_loss")
        mean = _mean_of_finite_runs(val)  # every run diverged: no lowest point, take the last
        best = int(np.nanargmin(mean)) if np.isfinite(mean).any() else mean.size - 1
        rows.append(
            Memorisation(
                n,
                f,
                family[f"{n}@{f}"],
                float(tuned.epochs[best]),
                mean_ci(val[:, -1] - val[:, best]),
                mean_ci(train[:, best] - train[:, -1]),
            )
        )
    return rows


def profile_problems(results: RobustnessResults) -> dict[str, dict[str, np.ndarray]]:
    """Performance-profile problems, one per noise level and flip fraction: problem title ->
    configuration label (:meth:`RobustnessBudget.profile_label`) -> the cost in epochs of
    each final seed to reach a validation-loss target (inf when missed). The target is
    :data:`TARGET_FACTOR` times the lowest mean validation loss any optimizer reaches at any
    evaluation point of that setting."""
    budget, problems = results.budget, {}
    settings = [
        (results.noise, s, f"{budget.workload}, gradient noise sigma={s:g}")
        for s in budget.noise_scales
    ]
    settings += [
        (
            results.flip,
            f,
            f"{budget.workload} ({budget.flip_num_train} images), {f:.0%} labels flipped",
        )
        for f in budget.flip_fractions
    ]
    for runs, setting, title in settings:
        tuned = {n: runs[n, setting] for n in budget.optimizers}
        curves = {n: t.final_curve("val_loss") for n, t in tuned.items()}
        lowest = np.nanmin([_mean_of_finite_runs(c) for c in curves.values()])
        target = TARGET_FACTOR * float(lowest)
        problems[f"{title}: validation loss <= {target:.3g}"] = {
            budget.profile_label(n): np.array(
                [first_reach(run, tuned[n].epochs, target) for run in curves[n]]
            )
            for n in budget.optimizers
        }
    return problems


def _mean_of_finite_runs(curves: np.ndarray) -> np.ndarray:
    """The mean ``[evaluation point]`` of the runs (rows) that stayed finite throughout;
    NaN everywhere when none did."""
    finite = np.all(np.isfinite(curves), axis=1)
    if not finite.any():
        return np.full(curves.shape[1], np.nan)
    return curves[finite].mean(axis=0)


# --- figures -----------------------------------------------------------------------------


def _spread(count: int, index: int, width: float = 0.04) -> float:
    """A multiplicative x offset (log axis) so that error bars of ``count`` series do not
    overlap."""
    return 10 ** ((index - (count - 1) / 2) * width)


def plot_noise(results: RobustnessResults, comparisons: list[RiseComparison]) -> Figure:
    """Left: each optimizer's rise in final validation loss from clean against sigma (95% t
    interval). Middle: the excess rise over the baseline (Holm-corrected interval; below
    zero = more robust than the baseline). Right: the learning rate the protocol chose
    clean and at each noise level."""
    budget = results.budget
    sigmas = np.asarray(budget.noise_scales)
    clean_at = sigmas.min() / 3  # where the clean runs sit on the learning-rate panel
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    rise_ax, excess_ax, rate_ax = fig.subplots(1, 3)
    names = budget.optimizers
    for index, name in enumerate(names):
        color, offset = f"C{index}", _spread(len(names), index)
        rows = [c for c in comparisons if c.optimizer == name]
        _errorbars(rise_ax, sigmas * offset, [r.rise for r in rows], color, name)
        if name != budget.baseline:
            _errorbars(excess_ax, sigmas * offset, [r.excess.interval for r in rows], color, name)
        settings = (0.0, *budget.noise_scales)
        rates = [results.noise[name, s].effective_learning_rate for s in settings]
        rate_ax.plot(np.array([clean_at, *sigmas]) * offset, rates, "o-", color=color, label=name)
    rise_ax.axhline(0, color="black", lw=0.8)
    rise_ax.set(
        title="rise from clean (mean, 95% t interval)",
        ylabel="validation loss minus clean (nats)",
    )
    excess_ax.axhline(0, color="black", lw=0.8)
    excess_ax.set(
        title=f"rise minus {budget.baseline}'s rise (Holm-corrected)",
        ylabel=f"excess rise over {budget.baseline} (nats)",
    )
    rate_ax.set(
        yscale="log",
        title="learning rate re-tuned per noise level",
        ylabel="learning rate (lr/(1-momentum) for momentum)",
    )
    for ax in (rise_ax, excess_ax, rate_ax):
        ax.set(xscale="log", xlabel="gradient noise sigma (noise norm / gradient norm)")
        ax.set_xlim((clean_at if ax is rate_ax else sigmas.min()) / 2, sigmas.max() * 2)
        ax.set_xticks(sigmas, [f"{s:g}" for s in sigmas])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    rate_ax.set_xticks([clean_at, *sigmas], ["clean", *(f"{s:g}" for s in sigmas)])
    return fig


def _errorbars(ax, x, intervals: list[Interval], color: str, label: str, fmt: str = "o-") -> None:
    """Means with their interval as error bars."""
    mean = np.array([i.mean for i in intervals])
    low, high = np.array([i.low for i in intervals]), np.array([i.high for i in intervals])
    ax.errorbar(
        x, mean, yerr=[mean - low, high - mean], fmt=fmt, color=color, capsize=4, label=label
    )


def _band(ax, x: np.ndarray, samples: np.ndarray, color: str, style: str, label: str) -> None:
    """The mean over seeds (rows of ``samples``) with a 95% t band."""
    intervals = [mean_ci(column) for column in samples.T]
    mean = np.array([i.mean for i in intervals])
    ax.plot(x, mean, style, color=color, label=label)
    ax.fill_between(
        x, [i.low for i in intervals], [i.high for i in intervals], color=color, alpha=0.2
    )


def plot_labels(results: RobustnessResults, comparisons: list[RiseComparison]) -> Figure:
    """One row per flip fraction: per optimizer, the training loss on its training labels
    and the validation loss on clean labels against epochs, trained on flipped (solid) and
    clean (dashed) labels, with 95% t bands and the oracle floor of the training loss
    without memorisation (dotted); last column: the rise in final validation loss from
    clean (95% t)."""
    budget = results.budget
    fractions, names = budget.flip_fractions, budget.optimizers
    fig = Figure(figsize=(4.2 * (len(names) + 1), 3.8 * len(fractions) + 0.8), layout="constrained")
    axes = fig.subplots(len(fractions), len(names) + 1, squeeze=False)
    for row, fraction in zip(axes, fractions, strict=True):
        for ax, name in zip(row, names, strict=False):
            runs = (
                (results.flip[name, fraction], "-", f"trained on {fraction:.0%} flipped"),
                (results.flip[name, 0.0], "--", "trained clean"),
            )
            for tuned, style, what in runs:
                train, val = tuned.final_curve("train_loss"), tuned.final_curve("val_loss")
                _band(ax, tuned.epochs, train, "C0", style, f"training loss (own labels), {what}")
                _band(ax, tuned.epochs, val, "C3", style, f"validation loss (clean), {what}")
            floor = results.noise_floor[fraction]
            ax.axhline(floor, color="black", ls=":", label="floor without memorising")
            ax.set(
                title=f"{name}, {fraction:.0%} of labels flipped",
                xlabel="epochs",
                ylabel="cross-entropy (nats)",
                ylim=(0, 2.5),
            )
            ax.grid(alpha=0.3)
        rise_ax = row[-1]
        rows = [c for c in comparisons if c.setting == fraction]
        for index, c in enumerate(rows):
            _errorbars(rise_ax, [index], [c.rise], f"C{index}", c.optimizer, fmt="o")
        rise_ax.set_xticks(range(len(rows)), [c.optimizer for c in rows])
        rise_ax.set(
            title="rise from clean (mean, 95% t)",
            ylabel="final validation loss minus clean (nats)",
            xlim=(-0.5, len(rows) - 0.5),
        )
        rise_ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8)
    return fig


# --- the report ----------------------------------------------------------------------------


def report(results: RobustnessResults, out: Path) -> Section:
    section = Section("2. Robustness to gradient noise and label noise")
    budget = results.budget
    names, base = budget.optimizers, budget.baseline
    noise_budget, flip_budget = budget.noise_budget, budget.flip_budget
    seeds = len(results.noise[base, 0.0].final.seeds)
    section.text(
        f"Workload {budget.workload}; optimizers {', '.join(names)} at batch {budget.batch_size}, "
        f"each tuned by the protocol (learning-rate grid of {noise_budget.per_decade} points "
        "per decade, extended when the optimum sits on an edge, chosen by final validation "
        f"loss over {noise_budget.tuning_seeds} tuning seed(s)) **separately for every noise "
        f"level and flip fraction**, then rerun on {seeds} final seeds shared by every "
        "optimizer and setting (paired). Gradient noise: Gaussian noise of norm about sigma "
        "times the mini-batch gradient's norm added to every gradient before the optimizer "
        f"sees it; {noise_budget.epochs} epochs of {noise_budget.num_train} images. Robustness "
        "is the **rise of the final validation loss** from the same optimizer's clean runs, "
        "paired by seed: the quantity the protocol tunes on, so its value at the chosen rate "
        "sits at a flat optimum and does not hinge on which of two nearly equal rates won "
        "(the accuracy at the chosen rate can; it is shown, paired the same way, but decides "
        f"nothing). The verdicts compare each optimizer's rise with {base}'s (paired "
        "difference, Holm-corrected over every comparison of the claim). A run whose final "
        "validation loss is not finite counts as diverged (k/n finite shown)."
    )
    edges = [
        f"{n} at {t.variant.label}: {t.edge}"
        for runs in (results.noise, results.flip)
        for (n, _), t in runs.items()
        if t.edge
    ]
    section.text(
        "Tuning grid edges: "
        + ("; ".join(edges) if edges else "every chosen learning rate is bracketed by its grid")
        + "."
    )

    rises = noise_rises(results)
    section.table(
        [
            "optimizer",
            "setting",
            "learning rate (effective)",
            "validation loss",
            "rise from clean",
            f"rise - {base}'s (Holm)",
            "validation accuracy lost",
        ],
        [
            (
                n,
                results.noise[n, s].variant.label,
                _rate(results.noise[n, s]),
                mean_ci(list(by_seed(results.noise[n, s]).values())).format(),
                "" if s == 0 else _find(rises, n, s).rise.format(),
                "" if s == 0 or n == base else _find(rises, n, s).excess.interval.format(),
                ""
                if s == 0
                else accuracy_drop(results.noise[n, 0.0], results.noise[n, s]).format(),
            )
            for n in names
            for s in (0.0, *budget.noise_scales)
        ],
    )
    plot_noise(results, rises).savefig(out / "robustness_noise.png", dpi=120)
    section.figure(
        "robustness_noise.png",
        "Gradient noise. Left: final validation loss minus the clean run's of the same "
        "optimizer and seed (mean, 95% t interval over seeds). Middle: that rise minus "
        f"{base}'s, paired by seed (Holm-corrected intervals; below 0 = more robust than "
        f"{base}). Right: the learning rate re-tuned at each noise level (a selection on a "
        f"{noise_budget.per_decade}-per-decade grid, no sampling interval).",
    )
    noise_family = [c for c in rises if c.excess is not None]
    section.claim(
        "Momentum and adaptive methods resist noisy gradients better than plain SGD.",
        [
            by_interval(
                f"{c.optimizer} - {base} rise at sigma={c.setting:g}", c.excess.interval, -1
            )
            for c in noise_family
        ],
        f"rise of the final validation loss from clean minus {base}'s, paired by seed, each "
        f"optimizer re-tuned per noise level (Holm over {len(noise_family)} comparisons; "
        "negative = more robust): "
        + "; ".join(
            f"{c.optimizer} at sigma={c.setting:g}: {c.excess.interval.format()}"
            for c in noise_family
        )
        + ". Rises: "
        + "; ".join(f"{c.optimizer} at sigma={c.setting:g}: {c.rise.format()}" for c in rises)
        + ".",
    )

    flips = flip_rises(results)
    memo = memorisation(results)
    section.text(
        f"Label noise: a fraction of the {flip_budget.num_train} training labels replaced by "
        "a different random class (validation and test labels stay clean), "
        f"{flip_budget.epochs} epochs so that the networks can memorise the flipped labels; "
        "clean: the same budget without flips. Oracle for memorisation: a model that cannot "
        "tell which examples were flipped (the flips do not depend on the images) reaches "
        "at best the conditional entropy H(noisy | clean) of the training labels as its "
        "training loss ("
        + ", ".join(f"{results.noise_floor[f]:.3f} nats at {f:.0%}" for f in budget.flip_fractions)
        + "); a training loss below it means the network fits individual flipped labels."
    )
    section.table(
        [
            "optimizer",
            "flipped",
            "learning rate (effective)",
            "validation loss",
            "rise from clean",
            f"rise - {base}'s (Holm)",
            "validation accuracy lost",
            "floor - final training loss (Holm)",
            "epoch of lowest validation loss",
            "validation loss rise after it",
            "training loss fall after it",
        ],
        [
            (
                m.optimizer,
                f"{m.fraction:.0%}",
                _rate(results.flip[m.optimizer, m.fraction]),
                mean_ci(list(by_seed(results.flip[m.optimizer, m.fraction]).values())).format(),
                _find(flips, m.optimizer, m.fraction).rise.format(),
                ""
                if m.optimizer == base
                else _find(flips, m.optimizer, m.fraction).excess.interval.format(),
                accuracy_drop(
                    results.flip[m.optimizer, 0.0], results.flip[m.optimizer, m.fraction]
                ).format(),
                m.margin.interval.format(),
                m.best_epoch,
                m.val_rise.format(),
                m.train_fall.format(),
            )
            for m in memo
        ],
    )
    plot_labels(results, flips).savefig(out / "robustness_labels.png", dpi=120)
    section.figure(
        "robustness_labels.png",
        "Label noise. Training loss on the labels each run trains on and validation loss on "
        "clean labels (mean, 95% t band over seeds), trained on flipped (solid) and clean "
        "(dashed) labels; dotted: the lowest training loss possible without memorising "
        "flipped labels. Right: final validation loss minus clean's (95% t interval).",
    )
    section.claim(
        f"Trained long enough ({flip_budget.epochs} epochs of {flip_budget.num_train} images), "
        "networks memorise flipped labels: the training loss falls below the floor of any "
        "model that cannot tell the flipped examples apart.",
        [
            by_interval(
                f"{m.optimizer} floor - training loss at {m.fraction:.0%}", m.margin.interval, 1
            )
            for m in memo
        ],
        "conditional-entropy floor minus final training loss on the noisy labels (Holm over "
        f"{len(memo)}; positive = memorised): "
        + "; ".join(
            f"{m.optimizer} at {m.fraction:.0%}: {m.margin.interval.format()}" for m in memo
        )
        + ". Validation loss at the end minus at its lowest mean point (positive = rising "
        "while the training loss falls): "
        + "; ".join(
            f"{m.optimizer} {m.val_rise.format()} after epoch {m.best_epoch:.3g}" for m in memo
        )
        + ".",
    )
    flip_family = [c for c in flips if c.excess is not None]
    adaptive = [c for c in flip_family if c.optimizer in ADAPTIVE]
    others = [c for c in flip_family if c.optimizer not in ADAPTIVE]
    largest = max(budget.flip_fractions)
    section.claim(
        f"Label noise (up to {largest:.0%} of labels flipped) hurts adaptive methods less "
        "than SGD.",
        [
            by_interval(
                f"{c.optimizer} - {base} rise at {c.setting:.0%} flipped", c.excess.interval, -1
            )
            for c in adaptive
        ],
        f"rise of the final validation loss from clean (same budget) minus {base}'s, paired "
        f"by seed (Holm over the {len(flip_family)} optimizers compared with {base}; "
        "negative = hurt less): "
        + "; ".join(
            f"{c.optimizer} at {c.setting:.0%}: {c.excess.interval.format()}" for c in adaptive
        )
        + (
            ". Not adaptive, not part of the verdict: "
            + "; ".join(
                f"{c.optimizer} at {c.setting:.0%}: {c.excess.interval.format()}" for c in others
            )
            if others
            else ""
        )
        + ". Rises: "
        + "; ".join(f"{c.optimizer} at {c.setting:.0%}: {c.rise.format()}" for c in flips)
        + ".",
    )
    section.text(
        "Test accuracy (the test split, evaluated once after each final run; no decision "
        "uses it), mean [95% t interval]:"
    )
    settings = [
        (results.noise, s, f"sigma={s:g}" if s else "clean") for s in (0.0, *budget.noise_scales)
    ]
    settings += [
        (results.flip, f, f"{f:.0%} flipped" if f else f"clean, {flip_budget.num_train} images")
        for f in (0.0, *budget.flip_fractions)
    ]
    section.table(
        ["optimizer", *(title for _, _, title in settings)],
        [
            (n, *(mean_ci(runs[n, s].final_test_accuracy()).format() for runs, s, _ in settings))
            for n in names
        ],
    )
    return section


def _find(comparisons: list[RiseComparison], optimizer: str, setting: float) -> RiseComparison:
    return next(c for c in comparisons if c.optimizer == optimizer and c.setting == setting)


def _rate(tuned: protocol.Tuned) -> str:
    rate, effective = tuned.best["learning_rate"], tuned.effective_learning_rate
    return f"{rate:.3g}" if math.isclose(rate, effective) else f"{rate:.3g} ({effective:.3g})"
