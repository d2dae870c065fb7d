"""Study 2 — robustness: Gaussian noise added to the gradients, and flipped labels.

Each mini-batch optimizer runs at its tuned learning rate (study 1) with zero-mean
Gaussian noise of standard deviation ``sigma`` added to every gradient entry (a curve
over ``sigma``, :func:`experiments.mnist.noisy_factory`), and, without gradient noise,
on training labels of which a fraction was replaced by a different random class. The
outcome is the validation accuracy on the clean test labels after the step budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import mnist, plots
from experiments.budget import Budget
from experiments.report import Section
from experiments.stats import bootstrap_ci, first_reach, paired_difference_ci
from jaxopt_lab.training.sweep import SweepData, sweep


def flip_labels(
    data: SweepData, fraction: float, key: jax.Array, num_classes: int = 10
) -> SweepData:
    """``data`` with ``fraction`` of the training labels (and of the training-loss subset,
    which is the head of the training split) moved to another random class."""
    flip_key, class_key = jax.random.split(key)
    labels = data.train_labels
    flipped = jax.random.bernoulli(flip_key, fraction, labels.shape)
    shift = jax.random.randint(class_key, labels.shape, 1, num_classes)
    noisy = jnp.where(flipped, (labels + shift) % num_classes, labels).astype(labels.dtype)
    count = data.eval_labels.shape[0]
    return data._replace(train_labels=noisy, eval_labels=noisy[:count])


def run(budget: Budget, out: Path, shared: dict[str, Any]) -> Section:
    section = Section("2. Robustness to gradient noise and label noise")
    configs = mnist.configs(budget)
    labels = {
        c.optimizer: label for label, c in configs.items() if c.batch_size == budget.batch_size
    }
    data = mnist.data(budget)
    steps, evals = budget.steps, min(budget.evals, budget.steps)
    common = dict(
        model_factory=mnist.seed_model,
        batch_size=budget.batch_size,
        num_evals=evals,
        steps_per_eval=steps // evals,
    )
    noise_acc: dict[str, np.ndarray] = {}
    flip_acc: dict[str, np.ndarray] = {}
    noise_curves, flip_curves = {}, {}
    for name in budget.robust_optimizers:
        rate = mnist.tune(configs[labels[name]], budget).learning_rate
        factory = mnist.noisy_factory(name)
        noisy = sweep(
            factory,
            {"learning_rate": [rate], "noise": budget.noise_scales},
            budget.final_seeds,
            data,
            vectorize=budget.vectorized_tuning,
            **common,
        )
        noise_acc[name] = noisy.curves.val_accuracy[0, :, :, -1]  # (noise, seeds)
        noise_curves[name] = noisy
        flips = []
        for index, fraction in enumerate(budget.flip_fractions):
            result = sweep(
                factory,
                {"learning_rate": [rate], "noise": [0.0]},
                budget.final_seeds,
                flip_labels(data, fraction, jax.random.key(100 + index)),
                vectorize=False,
                **common,
            )
            flips.append(result.curves.val_accuracy[0, 0, :, -1])
            flip_curves[(name, fraction)] = result
        flip_acc[name] = np.stack(flips)  # (fractions, seeds)

    plots.plot_robustness(
        budget.noise_scales, noise_acc, budget.flip_fractions, flip_acc, out / "robustness.png"
    )
    section.text(
        f"Optimizers at their tuned learning rates, {steps} steps of batch {budget.batch_size}, "
        f"seeds {list(budget.final_seeds)}; validation accuracy on the clean test labels, mean "
        "[bootstrap 95% interval]. Noise: N(0, sigma^2) added to every gradient entry at every "
        "step. Label noise: the given fraction of training labels replaced by another class."
    )
    section.table(
        ["optimizer", *(f"sigma={s:g}" for s in budget.noise_scales)],
        [(labels[n], *(bootstrap_ci(a).format() for a in noise_acc[n])) for n in noise_acc],
    )
    section.table(
        ["optimizer", *(f"flipped {f:.0%}" for f in budget.flip_fractions)],
        [(labels[n], *(bootstrap_ci(a).format() for a in flip_acc[n])) for n in flip_acc],
    )
    section.figure(
        "robustness.png",
        "Validation accuracy against gradient-noise scale and flipped-label fraction "
        "(mean, 95% bootstrap interval).",
    )

    # accuracy averaged over the noise curve (sigma > 0), paired by seed against SGD
    others = [n for n in noise_acc if n != "sgd"]
    evidence, better, worse = [], [], []
    for name in others:
        diff = paired_difference_ci(
            noise_acc[name][1:].mean(axis=0), noise_acc["sgd"][1:].mean(axis=0)
        )
        evidence.append(f"{name} {diff.format()}")
        better += [name] if diff.low > 0 else []
        worse += [name] if diff.high < 0 else []
    verdict = (
        "confirmed"
        if len(better) == len(others)
        else ("refuted" if len(worse) == len(others) else "depends")
    )
    largest = budget.noise_scales[-1]
    section.claim(
        "Momentum and adaptive methods resist noisy gradients better than plain SGD.",
        verdict,
        "mean validation accuracy over sigma > 0 minus SGD's, paired by seed: "
        f"{'; '.join(evidence)}. "
        f"At sigma={largest:g}: "
        + ", ".join(f"{n} {noise_acc[n][-1].mean():.3f}" for n in noise_acc)
        + " (clean: "
        + ", ".join(f"{n} {noise_acc[n][0].mean():.3f}" for n in noise_acc)
        + ").",
    )
    drops = {n: flip_acc[n][0].mean() - flip_acc[n][-1].mean() for n in flip_acc}
    section.claim(
        f"Label noise ({budget.flip_fractions[-1]:.0%} of labels flipped) hurts adaptive methods "
        "less than SGD.",
        "confirmed"
        if all(drops[n] < drops["sgd"] for n in others)
        else ("refuted" if all(drops[n] > drops["sgd"] for n in others) else "depends"),
        "accuracy lost from clean to the largest flip fraction: "
        + ", ".join(f"{n} {drops[n]:.3f}" for n in drops)
        + ".",
    )

    # performance-profile problems: seconds to reach 95% of the best accuracy per setting
    convergence = shared.get("convergence", {})
    seconds_per_step = {
        n: float(np.mean(convergence[labels[n]].seconds[:, -1]) / steps) for n in noise_acc
    }
    problems = shared.setdefault("profile_problems", {})
    accuracy_by_setting = {
        f"noise sigma={s:g}": {n: noise_curves[n].curves.val_accuracy[0, i] for n in noise_acc}
        for i, s in enumerate(budget.noise_scales)
        if s > 0
    }
    accuracy_by_setting.update(
        {
            f"labels {f:.0%} flipped": {
                n: flip_curves[(n, f)].curves.val_accuracy[0, 0] for n in noise_acc
            }
            for f in budget.flip_fractions
            if f > 0
        }
    )
    at = noise_curves["sgd"].steps
    for title, accuracy in accuracy_by_setting.items():
        target = 0.95 * max(a[:, -1].mean() for a in accuracy.values())
        problems[f"{title}, accuracy >= {target:.3f}"] = {
            labels[n]: seconds_per_step[n]
            * float(np.mean([first_reach(-acc, at, -target) for acc in accuracy[n]]))
            for n in noise_acc
        }
    return section
