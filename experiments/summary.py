"""The summary: the protocol every MNIST study follows, a performance profile ranking every
optimizer configuration over every problem of the convergence and robustness studies, and
the report's own limits.

**Problems.** A problem is a setting (workload, noise variant) and a target; its cost for
a configuration is, per final seed, the epochs (examples processed / training-set size)
until the target was first reached, ``inf`` when it never was
(:func:`experiments.convergence.profile_problems`,
:func:`experiments.robustness.profile_problems`).

**Profile** (Dolan & More 2002, scored as MLCommons AlgoPerf does): per problem a
configuration's cost is its median over seeds; :math:`\\rho_s(\\tau)` is the fraction of
problems configuration :math:`s` solves within :math:`\\tau` times the cheapest
configuration's cost, read on AlgoPerf's range :math:`\\tau \\in [1, 4]`, and the score is
the normalised area under it (1: the cheapest on every problem). The uncertainty is a
paired bootstrap over seeds (:func:`experiments.stats.profile_band`, which gives the
curves' bands and, from the same resamples, the area's percentile interval).

**Missing configurations.** Not every configuration runs on every problem (the robustness
study trains fewer configurations). A configuration that was not run did not fail, so it
is never counted as unsolved: problems are grouped by the set of configurations that ran
them, and each group gets its own profile and ranking (:func:`group_problems`); when there
are several groups, one more profile covers every problem for the configurations that ran
on all of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jax
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from experiments import protocol
from experiments.protocol import ProtocolBudget
from experiments.report import Section
from experiments.seeds import derive
from experiments.stats import (
    ALGOPERF_TAUS,
    CONFIDENCE,
    ProfileBand,
    profile_band,
)
from jaxopt_lab.training.models import INPUT_SIZE

RESAMPLES = 1000  # bootstrap resamples of the seeds
FIGURE = "performance_profile.png"
NUM_CLASSES = 10

Problems = Mapping[str, Mapping[str, np.ndarray]]
"""problem title -> configuration label -> cost to the problem's target per final seed."""


@dataclass(frozen=True)
class Profile:
    """A performance profile over ``problems`` for ``configurations`` (all of which ran
    on every one of those problems): the costs ``[problems, seeds]`` per configuration,
    the profile with its band, and the area with its bootstrap interval."""

    title: str
    problems: tuple[str, ...]
    configurations: tuple[str, ...]
    costs: dict[str, np.ndarray]
    bands: dict[str, ProfileBand]  # each with its area and the area's interval

    @property
    def ranking(self) -> list[str]:
        """Configurations by decreasing area (ties: the order given)."""
        return sorted(self.configurations, key=lambda c: -self.bands[c].area.mean)


def group_problems(problems: Problems) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``(problem titles, configurations)`` for each distinct set of configurations among
    ``problems``, in order of first appearance; configurations keep their first order."""
    if not problems:
        raise ValueError("the performance profile needs at least one problem")
    groups: dict[frozenset[str], list[str]] = {}
    order: list[str] = []
    for title, costs in problems.items():
        if not costs:
            raise ValueError(f"problem {title!r} has no configuration")
        groups.setdefault(frozenset(costs), []).append(title)
        order += [c for c in costs if c not in order]
    return [
        (tuple(titles), tuple(c for c in order if c in configurations))
        for configurations, titles in groups.items()
    ]


def _cost_table(problems: Problems, titles: tuple[str, ...], configurations: tuple[str, ...]):
    """``configuration -> [problem, seed]`` costs; every problem needs the same seeds."""
    lengths = {np.asarray(problems[t][c]).shape for t in titles for c in configurations}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(
            f"the costs of problems {list(titles)} must be 1-D arrays over the same final "
            f"seeds, got shapes {sorted(lengths)}"
        )
    return {
        c: np.stack([np.asarray(problems[t][c], dtype=np.float64) for t in titles])
        for c in configurations
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def profiles(problems: Problems, seed: int, resamples: int = RESAMPLES) -> list[Profile]:
    """One :class:`Profile` per group of :func:`group_problems`, then (with several
    groups) one over every problem for the configurations that ran on all of them.
    Bootstrap seeds derive from the master ``seed``."""
    groups = group_problems(problems)
    titled = [
        (f"{_count(len(t), 'problem')} run by {_count(len(c), 'configuration')}", t, c)
        for t, c in groups
    ]
    shared = tuple(c for c in groups[0][1] if all(c in p for p in problems.values()))
    if len(groups) > 1 and len(shared) > 1:
        titled.append(
            (
                f"all {len(problems)} problems, {len(shared)} configurations that ran on every one",
                tuple(problems),
                shared,
            )
        )
    result = []
    for index, (title, titles, configurations) in enumerate(titled):
        costs = _cost_table(problems, titles, configurations)
        bootstrap = derive(seed, "summary", "bootstrap", index)
        result.append(
            Profile(
                title=title,
                problems=titles,
                configurations=configurations,
                costs=costs,
                bands=profile_band(costs, ALGOPERF_TAUS, resamples=resamples, seed=bootstrap),
            )
        )
    return result


def plot_profiles(found: list[Profile], path: Path) -> None:
    """One panel per profile: rho(tau) on AlgoPerf's range as a step curve per
    configuration with its bootstrap band; the legend (with each area) sits outside."""
    figure = Figure(figsize=(9.5, 3.8 * len(found)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(found), 1))
    colors = matplotlib.colormaps["tab10"]
    styles = ("-", "--", "-.", ":")
    for ax, profile in zip(axes, found, strict=True):
        for index, name in enumerate(profile.ranking):
            band, color = profile.bands[name], colors(index % 10)
            style = styles[(index // 10 + index) % len(styles)]
            ax.fill_between(
                ALGOPERF_TAUS, band.low, band.high, step="post", color=color, alpha=0.15
            )
            ax.step(
                ALGOPERF_TAUS,
                band.fractions,
                where="post",
                color=color,
                ls=style,
                lw=1.8,
                label=f"{name} (area {profile.bands[name].area.mean:.2f})",
            )
        ax.set(
            xlim=(ALGOPERF_TAUS[0], ALGOPERF_TAUS[-1]),
            ylim=(-0.03, 1.03),
            xlabel="tau (cost in epochs relative to the cheapest configuration)",
            ylabel="fraction of problems solved",
            title=profile.title,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="by area")
    figure.savefig(path, dpi=120)


def _median_cell(costs: np.ndarray) -> str:
    """Median epochs over seeds, with the seeds that reached the target when some missed."""
    reached = int(np.isfinite(costs).sum())
    median = float(np.median(costs))
    text = f"{median:.3g}" if math.isfinite(median) else "never"
    return text if reached == costs.size else f"{text} ({reached}/{costs.size})"


def protocol_text(budget: ProtocolBudget, seed: int) -> str:
    """The protocol of every MNIST study, with the numbers of ``budget``."""
    centres = ", ".join(f"{name} {centre:g}" for name, centre in protocol.CENTRES.items())
    extra = "; ".join(f"{name} {list(grid)}" for name, grid in protocol.EXTRA_GRIDS.items())
    return (
        f"**Protocol.** Data: each model trains on the first {budget.num_train:,} images of "
        f"the training split; the last {budget.num_val:,} images of that split are the "
        "validation set (disjoint from the training images) on which every tuning decision "
        "is made; the test split is evaluated once per final run, after its last step, and "
        "only reported. Seeds: everything derives from the master seed "
        f"{seed}; a seed fixes both the initialisation and the batch order, and the "
        f"{budget.tuning_seeds} tuning and {budget.final_seeds} final seeds of a workload "
        "are the same for every configuration, so configurations are paired by seed. "
        f"Budget: every mini-batch configuration trains {budget.epochs} epochs whatever its "
        f"batch size; full-batch configurations take {budget.full_batch_steps} steps; every "
        f"run is evaluated at {budget.evals} evenly spaced points. Tuning: a log grid of "
        f"{budget.per_decade} learning rates per decade over {budget.span_decades} decades "
        f"around each optimizer's usual rate ({centres}; full batch "
        f"{protocol.FULL_BATCH_CENTRE:g}), extended by one decade on the side where the best "
        f"rate sits on the edge, up to {budget.max_extensions} times (an optimum still on an "
        "edge is stated in its study); configurations marked as tuning momentum, b1 or eps "
        f"search them jointly on {extra}. Selection: the point with the lowest final "
        "validation loss, mean over the tuning seeds (a diverged run is infinitely bad), "
        "is rerun with the final seeds and used by every verdict; the point reaching "
        f"{protocol.TARGET_FACTOR:g}x that loss in the fewest steps (AlgoPerf style) is "
        "reported beside it. Statistics: "
        f"{CONFIDENCE:.0%} Student-t intervals over the final seeds; optimizers compared "
        "paired by seed; Holm's correction whenever several are compared with one baseline; "
        "Wilson (one rate) and Newcombe (two rates) intervals for success rates; k/n when "
        "some seeds miss a target."
    )


def report(budget: ProtocolBudget, problems: Problems, out: Path, seed: int) -> Section:
    """The protocol, then the performance profiles of ``problems`` (title -> configuration
    -> epochs to the problem's target per final seed, ``inf`` when missed)."""
    section = Section("Summary: protocol and ranking by performance profile")
    section.text(protocol_text(budget, seed))
    found = profiles(problems, seed)
    plot_profiles(found, out / FIGURE)
    section.text(
        f"**Performance profile** over {len(problems)} problems (a setting and a target each; "
        "cost = epochs until the validation metric first reached the target, median over "
        "the final seeds, never = unsolved). rho(tau) is the fraction of problems a "
        "configuration solves within tau times the cheapest configuration's cost; the "
        f"score is the area under rho over AlgoPerf's range tau in [{ALGOPERF_TAUS[0]:g}, "
        f"{ALGOPERF_TAUS[-1]:g}], divided by its width (1 = the cheapest on every problem). "
        f"Intervals and bands: {CONFIDENCE:.0%} percentile bootstrap over the final seeds "
        f"({RESAMPLES} resamples, the same seeds for every configuration). A configuration "
        "is only compared on the problems it ran: problems are grouped by the configurations "
        "that ran them, one profile per group"
        + (
            ", plus one over every problem for the configurations that ran on all."
            if len(found) > 1
            else "."
        )
    )
    for profile in found:
        section.text(f"*{profile.title}*")
        section.table(
            [
                "rank",
                "configuration",
                "area [95% bootstrap]",
                "rho(1) [band]",
                "problems solved at all",
                "seeds reaching the target",
            ],
            [
                (
                    rank + 1,
                    name,
                    profile.bands[name].area.format(),
                    f"{profile.bands[name].fractions[0]:.2f} [{profile.bands[name].low[0]:.2f}, "
                    f"{profile.bands[name].high[0]:.2f}]",
                    f"{int(np.isfinite(np.median(profile.costs[name], axis=1)).sum())}/"
                    f"{len(profile.problems)}",
                    f"{int(np.isfinite(profile.costs[name]).sum())}/{profile.costs[name].size}",
                )
                for rank, name in enumerate(profile.ranking)
            ],
        )
    for titles, configurations in group_problems(problems):
        section.table(
            ["problem (median epochs to target)", *configurations],
            [
                (t, *(_median_cell(np.asarray(problems[t][c])) for c in configurations))
                for t in titles
            ],
        )
    section.figure(
        FIGURE,
        "Performance profiles on AlgoPerf's tau range (bands: 95% bootstrap over seeds).",
    )
    return section


def _parameters(hidden_sizes: tuple[int, ...]) -> int:
    sizes = (INPUT_SIZE, *hidden_sizes, NUM_CLASSES)
    return sum(
        (fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False)
    )


def limits(budget: ProtocolBudget) -> Section:
    """What the report cannot tell, with the numbers of ``budget`` and of this machine."""
    section = Section("Limits of this report")
    models = ", ".join(
        f"{w.name} ({'-'.join(map(str, (INPUT_SIZE, *w.hidden_sizes, NUM_CLASSES)))}, "
        f"{_parameters(w.hidden_sizes):,} parameters"
        + (", a convex objective)" if not w.hidden_sizes else ")")
        for w in protocol.WORKLOADS.values()
    )
    device = jax.devices()[0]
    section.text(
        f"Hardware: {device.device_kind} ({jax.default_backend()}) with "
        f"{os.cpu_count()} cores, shared with other work; wall times and their ratios "
        "describe this machine and small models, where the gradient is cheap, and would "
        f"differ on an accelerator or a large model. Models: {models}; no convolutions "
        "or dropout, batch norm only in the deep study. "
        f"Data: {budget.num_train:,} training images per "
        f"workload, {budget.epochs} epochs for mini-batch configurations and "
        f"{budget.full_batch_steps} full-batch steps: short runs, so verdicts are about "
        "early training, not about the best accuracy each optimizer can reach. No data "
        "augmentation, no learning-rate schedules or warm-up (constant rates), no weight "
        "decay tuned; hyperparameters other than those tuned keep their defaults. "
        f"{budget.final_seeds} final seeds bound what a {CONFIDENCE:.0%} interval can "
        "resolve: a claim whose effect is smaller than its interval is reported "
        "inconclusive, not refuted. The master seed fixes every random draw, but the "
        "floating-point results repeat bit for bit only on the same CPU and software: "
        "elsewhere XLA may order sums differently, the last digits move, a tuning grid "
        "point that was nearly tied can win, and a verdict whose interval ends near zero "
        "can change."
    )
    return section
