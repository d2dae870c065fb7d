"""Study 2 — robustness: Gaussian noise added to the gradients, and flipped labels.

Each mini-batch optimizer runs at its tuned learning rate (study 1) with zero-mean
Gaussian noise of standard deviation ``sigma`` added to every gradient entry (a curve
over ``sigma``, :func:`experiments.mnist.noisy_factory`), and, without gradient noise,
on training labels of which a fraction was replaced by a different random class. The
outcome is the validation accuracy on the clean test labels after the step budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import mnist, plots
from experiments.budget import Budget
from experiments.convergence import ConvergenceResults
from experiments.report import Section
from experiments.stats import first_reach, holm, mean_ci, paired_difference
from experiments.verdict import by_fact, by_test
from jaxopt_lab.training.sweep import SweepData, SweepResult, sweep


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


@dataclass(frozen=True)
class RobustnessResults:
    """Final clean validation accuracy under gradient noise and label flips, per optimizer:
    arrays ``(setting, seed)``; the sweeps behind them; seconds per step from study 1."""

    budget: Budget
    labels: dict[str, str]  # registry name -> the convergence study's label
    noise_accuracy: dict[str, np.ndarray]
    flip_accuracy: dict[str, np.ndarray]
    noise_curves: dict[str, SweepResult]
    flip_curves: dict[tuple[str, float], SweepResult]
    seconds_per_step: dict[str, float]


def measure(budget: Budget, convergence: ConvergenceResults) -> RobustnessResults:
    """Each optimizer at the learning rate study 1 tuned, under noise and label flips."""
    mnist_budget, robust = budget.mnist, budget.robustness
    configs = mnist.configs(mnist_budget)
    labels = {
        c.optimizer: label
        for label, c in configs.items()
        if c.batch_size == mnist_budget.batch_size
    }
    data = mnist.data(mnist_budget)
    steps, evals = mnist_budget.steps, min(mnist_budget.evals, mnist_budget.steps)
    common = dict(
        model_factory=mnist.seed_model,
        batch_size=mnist_budget.batch_size,
        num_evals=evals,
        steps_per_eval=steps // evals,
    )
    noise_acc: dict[str, np.ndarray] = {}
    flip_acc: dict[str, np.ndarray] = {}
    noise_curves, flip_curves = {}, {}
    for name in robust.optimizers:
        rate = convergence.tuned[labels[name]].learning_rate
        factory = mnist.noisy_factory(name)
        noisy = sweep(
            factory,
            {"learning_rate": [rate], "noise": robust.noise_scales},
            mnist_budget.final_seeds,
            data,
            vectorize=mnist_budget.vectorized_tuning,
            **common,
        )
        noise_acc[name] = noisy.curves.val_accuracy[0, :, :, -1]  # (noise, seeds)
        noise_curves[name] = noisy
        flips = []
        for index, fraction in enumerate(robust.flip_fractions):
            result = sweep(
                factory,
                {"learning_rate": [rate], "noise": [0.0]},
                mnist_budget.final_seeds,
                flip_labels(data, fraction, jax.random.key(100 + index)),
                vectorize=False,
                **common,
            )
            flips.append(result.curves.val_accuracy[0, 0, :, -1])
            flip_curves[(name, fraction)] = result
        flip_acc[name] = np.stack(flips)  # (fractions, seeds)
    by_label = convergence.by_label
    seconds_per_step = {
        n: float(np.mean(by_label[labels[n]].seconds[:, -1]) / steps) for n in noise_acc
    }
    return RobustnessResults(
        budget,
        {n: labels[n] for n in robust.optimizers},
        noise_acc,
        flip_acc,
        noise_curves,
        flip_curves,
        seconds_per_step,
    )


def profile_problems(results: RobustnessResults) -> dict[str, dict[str, float]]:
    """Performance-profile problems: seconds to 95% of the best final accuracy under each
    noise scale and flip fraction."""
    robust, labels = results.budget.robustness, results.labels
    names = list(results.noise_accuracy)
    accuracy_by_setting = {
        f"noise sigma={s:g}": {n: results.noise_curves[n].curves.val_accuracy[0, i] for n in names}
        for i, s in enumerate(robust.noise_scales)
        if s > 0
    }
    accuracy_by_setting.update(
        {
            f"labels {f:.0%} flipped": {
                n: results.flip_curves[(n, f)].curves.val_accuracy[0, 0] for n in names
            }
            for f in robust.flip_fractions
            if f > 0
        }
    )
    at = results.noise_curves[names[0]].steps
    problems = {}
    for title, accuracy in accuracy_by_setting.items():
        target = 0.95 * max(a[:, -1].mean() for a in accuracy.values())
        problems[f"{title}, accuracy >= {target:.3f}"] = {
            labels[n]: results.seconds_per_step[n]
            * float(np.mean([first_reach(-acc, at, -target) for acc in accuracy[n]]))
            for n in names
        }
    return problems


def report(results: RobustnessResults, out: Path) -> Section:
    section = Section("2. Robustness to gradient noise and label noise")
    mnist_budget, robust, labels = results.budget.mnist, results.budget.robustness, results.labels
    noise_acc, flip_acc = results.noise_accuracy, results.flip_accuracy
    steps = mnist_budget.steps
    plots.plot_robustness(
        robust.noise_scales, noise_acc, robust.flip_fractions, flip_acc, out / "robustness.png"
    )
    section.text(
        f"Optimizers at their tuned learning rates, {steps} steps of batch "
        f"{mnist_budget.batch_size}, seeds {list(mnist_budget.final_seeds)}; validation "
        "accuracy on the clean test labels, mean "
        "[95% t interval]. Noise: N(0, sigma^2) added to every gradient entry at every "
        "step. Label noise: the given fraction of training labels replaced by another class."
    )
    section.table(
        ["optimizer", *(f"sigma={s:g}" for s in robust.noise_scales)],
        [(labels[n], *(mean_ci(a).format() for a in noise_acc[n])) for n in noise_acc],
    )
    section.table(
        ["optimizer", *(f"flipped {f:.0%}" for f in robust.flip_fractions)],
        [(labels[n], *(mean_ci(a).format() for a in flip_acc[n])) for n in flip_acc],
    )
    section.figure(
        "robustness.png",
        "Validation accuracy against gradient-noise scale and flipped-label fraction "
        "(mean, 95% t interval over seeds).",
    )

    # accuracy averaged over the noise curve (sigma > 0), paired by seed against SGD
    others = [n for n in noise_acc if n != "sgd"]
    diffs = [
        paired_difference(noise_acc[name][1:].mean(axis=0), noise_acc["sgd"][1:].mean(axis=0))
        for name in others
    ]
    adjusted = holm([d.p_value for d in diffs])
    evidence = [
        f"{name} {d.interval.format()} (Holm p {p:.2g})"
        for name, d, p in zip(others, diffs, adjusted, strict=True)
    ]
    comparisons = [
        by_test(f"{name} - sgd", d.interval.mean, p, 1)
        for name, d, p in zip(others, diffs, adjusted, strict=True)
    ]
    largest = robust.noise_scales[-1]
    section.claim(
        "Momentum and adaptive methods resist noisy gradients better than plain SGD.",
        comparisons,
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
        f"Label noise ({robust.flip_fractions[-1]:.0%} of labels flipped) hurts adaptive methods "
        "less than SGD.",
        [by_fact(f"{n} loses less than sgd", drops[n] < drops["sgd"]) for n in others],
        "accuracy lost from clean to the largest flip fraction: "
        + ", ".join(f"{n} {drops[n]:.3f}" for n in drops)
        + ".",
    )
    return section
