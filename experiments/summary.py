"""The summary: a performance profile ranking the optimizers over every MNIST problem
of studies 1 and 2 (clean targets, gradient-noise scales, flipped-label fractions), as
MLCommons AlgoPerf scores training algorithms, and the fair-tuning protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments import plots
from experiments.budget import MnistBudget
from experiments.report import Section
from experiments.stats import performance_profile, profile_area

TAUS = np.logspace(0, np.log10(64), 61)


def report(budget: MnistBudget, problems: dict[str, dict[str, float]], out: Path) -> Section:
    """Rank the configurations over ``problems`` (title -> configuration -> seconds to the
    problem's target; from :func:`experiments.convergence.profile_problems` and
    :func:`experiments.robustness.profile_problems`)."""
    section = Section("Summary: ranking by performance profile")
    solvers = [s for s in next(iter(problems.values())) if all(s in p for p in problems.values())]
    times = {s: [problems[p][s] for p in problems] for s in solvers}
    profile = performance_profile(times, TAUS)
    scores = {s: profile_area(profile[s], TAUS) for s in solvers}
    ranking = sorted(solvers, key=lambda s: -scores[s])
    plots.plot_performance_profile(TAUS, profile, out / "performance_profile.png")
    section.text(
        "Fair tuning: every first-order optimizer got the same log-spaced learning-rate grid "
        f"({', '.join(f'{lr:g}' for lr in budget.learning_rates)}), trained on seeds "
        f"{list(budget.tuning_seeds)}; the rate with the lowest final validation loss (mean "
        "over seeds, diverged = worst) was rerun on seeds "
        f"{list(budget.final_seeds)}; intervals are 95% Student-t intervals of the "
        "mean over those seeds, and comparisons between optimizers are paired by seed. "
        "Other hyperparameters stay at their optax defaults (momentum 0.9, Adam betas 0.9/0.999)."
    )
    section.text(
        f"Performance profile over {len(problems)} problems (each: a setting and a target; "
        "time = wall seconds to reach the target, mean over seeds, never = unsolved). "
        "rho(tau) is the fraction of problems an optimizer solves within tau times the "
        "fastest optimizer's time; the score is the area under rho over log tau in "
        f"[1, {TAUS[-1]:g}], normalised (1 = fastest everywhere)."
    )
    section.table(
        ["rank", "optimizer", "score", "fastest on (rho(1))", "solved within 4x", "solved at all"],
        [
            (
                rank + 1,
                s,
                scores[s],
                float(profile[s][0]),
                float(np.interp(np.log(4), np.log(TAUS), profile[s])),
                float(np.mean(np.isfinite(times[s]))),
            )
            for rank, s in enumerate(ranking)
        ],
    )
    section.table(
        ["problem", *solvers],
        [(p, *(problems[p][s] for s in solvers)) for p in problems],
    )
    section.figure(
        "performance_profile.png",
        "Performance profile: fraction of problems solved within tau x the best time.",
    )
    return section
