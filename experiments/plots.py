"""The studies' figures, drawn on ``matplotlib.figure.Figure`` objects (no pyplot, no
global backend switch) and written as PNG files, never inside jitted code."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from experiments.stats import mean_ci


def _subplots(*grid: int, figsize: tuple[float, float]):
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots(*grid)


def plot_landscape_paths(contours: dict, paths: dict, path: str | Path) -> None:
    """Optimizer paths over contour plots, one panel per 2-D problem.

    ``contours[name]`` holds the grid ``x``, ``y``, its ``values``, the start ``x0`` and
    the minimiser ``x_min``; ``paths[name][method]`` is an array ``(steps + 1, 2)``.
    """
    fig, axes = _subplots(1, len(contours), figsize=(5.2 * len(contours), 4.6))
    colors = matplotlib.colormaps["tab10"]
    for ax, (name, contour) in zip(np.atleast_1d(axes), contours.items(), strict=True):
        x, y, values = contour["x"], contour["y"], contour["values"]
        ax.contourf(x, y, np.log10(values - values.min() + 1e-3), levels=30, cmap="Greys")
        low, high = (x.min(), y.min()), (x.max(), y.max())
        for index, (method, trajectory) in enumerate(paths[name].items()):
            trajectory = np.clip(trajectory, low, high)
            ax.plot(*trajectory.T, "-", lw=1.3, color=colors(index), label=method)
            ax.plot(*trajectory[-1], "o", ms=4, color=colors(index))
        ax.plot(*contour["x_min"], "*", ms=14, color="gold", mec="black", label="minimum")
        ax.plot(*contour["x0"], "s", ms=6, color="black", label="start")
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), title=name, xlabel="x", ylabel="y")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    fig.savefig(path, dpi=110)


def plot_success_rates(rates: dict[str, dict[str, float]], path: str | Path) -> None:
    """Grouped bars: fraction of random starts that succeed, per problem and optimizer."""
    problems = list(rates)
    methods = list(rates[problems[0]])
    width = 0.8 / len(methods)
    fig, ax = _subplots(figsize=(10, 4))
    for index, method in enumerate(methods):
        positions = np.arange(len(problems)) + (index - (len(methods) - 1) / 2) * width
        ax.bar(positions, [rates[p][method] for p in problems], width, label=method)
    ax.set_xticks(np.arange(len(problems)), problems)
    ax.set(ylabel="fraction of starts", ylim=(0, 1.05), title="success within the step budget")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


def plot_rate_vs_learning_rate(
    learning_rates, rates_by_method: dict[str, list[float]], path: str | Path
) -> None:
    """Success fraction against the learning rate, one line per optimizer."""
    fig, ax = _subplots(figsize=(6, 4))
    for method, rates in rates_by_method.items():
        ax.plot(learning_rates, rates, "o-", label=method)
    ax.set(xscale="log", xlabel="learning rate", ylabel="fraction escaped", ylim=(-0.03, 1.03))
    ax.set_title("saddle escape within the step budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def plot_iterations_vs_condition(
    condition_numbers, iterations: dict[str, list[float]], maxiter: int, path: str | Path
) -> None:
    """Iterations to tolerance per method against the condition number (log-log);
    runs that never converged are drawn at ``maxiter`` with an open marker."""
    fig, ax = _subplots(figsize=(6, 4.2))
    kappas = np.asarray(condition_numbers, dtype=float)
    for method, counts in iterations.items():
        counts = np.asarray(counts, dtype=float)
        drawn = np.where(np.isfinite(counts), counts, maxiter)
        (line,) = ax.plot(kappas, drawn, "o-", label=method)
        failed = ~np.isfinite(counts)
        ax.plot(kappas[failed], drawn[failed], "o", mfc="white", color=line.get_color())
    ax.axhline(maxiter, color="gray", ls=":", lw=1, label="budget (open: not converged)")
    ax.set(xscale="log", yscale="log", xlabel="condition number", ylabel="iterations to tolerance")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def plot_tuning(learning_rates, final_val_loss: dict[str, np.ndarray], path: str | Path) -> None:
    """Final validation loss against the learning rate, one line per optimizer
    (mean over seeds; diverged runs drawn at the top of the axis)."""
    fig, ax = _subplots(figsize=(7, 4.2))
    ceiling = 5.0
    for label, losses in final_val_loss.items():
        losses = np.where(np.isfinite(losses), losses, ceiling)
        ax.plot(learning_rates, np.minimum(losses.mean(axis=-1), ceiling), "o-", label=label)
    ax.set(
        xscale="log",
        xlabel="learning rate",
        ylabel="final validation loss",
        ylim=(0, ceiling),
        title=f"learning-rate sweep (diverged or > {ceiling:g}: drawn at {ceiling:g})",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)


def plot_convergence(traces, path: str | Path) -> None:
    """Training loss against steps, epochs and seconds; mean over seeds with a min-max band.

    Each trace has ``label``, ``steps``, ``epochs``, ``seconds`` and ``train_loss``
    (arrays ``(seeds, points)``, positions may be shared ``(points,)``).
    """
    fig, axes = _subplots(1, 3, figsize=(16, 4.6))
    colors = matplotlib.colormaps["tab10"]
    for index, trace in enumerate(traces):
        loss = np.asarray(trace.train_loss)
        for ax, axis in zip(axes, ("steps", "epochs", "seconds"), strict=True):
            at = np.broadcast_to(getattr(trace, axis), loss.shape).mean(axis=0)[1:]
            ax.plot(at, loss.mean(axis=0)[1:], "-", color=colors(index), label=trace.label)
            ax.fill_between(
                at, loss.min(axis=0)[1:], loss.max(axis=0)[1:], color=colors(index), alpha=0.2
            )
    for ax, label in zip(axes, ("optimizer steps", "epochs", "wall time (s)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="training loss")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)


def _mean_and_band(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``samples`` (settings x seeds): the mean and its 95% t interval."""
    intervals = [mean_ci(row) for row in samples]
    return tuple(np.asarray([getattr(i, f) for i in intervals]) for f in ("mean", "low", "high"))


def plot_robustness(
    noise_scales,
    noise_accuracy: dict[str, np.ndarray],
    flip_fractions,
    flip_accuracy: dict[str, np.ndarray],
    path: str | Path,
) -> None:
    """Validation accuracy against the gradient-noise scale (left, symlog axis: 0 is the
    clean run) and against the flipped-label fraction (right); arrays ``(setting, seed)``."""
    fig, (noise_ax, flip_ax) = _subplots(1, 2, figsize=(12, 4.4))
    for ax, xs, curves in (
        (noise_ax, noise_scales, noise_accuracy),
        (flip_ax, flip_fractions, flip_accuracy),
    ):
        for name, accuracy in curves.items():
            mean, low, high = _mean_and_band(np.asarray(accuracy))
            (line,) = ax.plot(xs, mean, "o-", label=name)
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
        ax.set_ylabel("validation accuracy (clean labels)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    positive = [s for s in noise_scales if s > 0]
    noise_ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    noise_ax.set(xlabel="gradient noise std per entry (sigma)", title="Gaussian gradient noise")
    flip_ax.set(xlabel="fraction of training labels flipped", title="label noise")
    fig.savefig(path, dpi=110)


def plot_layer_gradients(
    gains, norms: dict[str, np.ndarray], steps: np.ndarray, path: str | Path
) -> None:
    """Per-layer gradient norms, one panel per initial gain: after training (dashed, one
    colour per setup) and at initialisation (solid, once per architecture: the setups
    that differ only in clipping start alike); ``norms[setup]`` is an array
    ``(gain, evaluation, layer)``. Zero or non-finite norms (a dead or diverged network)
    are left out."""
    fig, axes = _subplots(1, len(gains), figsize=(5.2 * len(gains), 4.2))
    colors = matplotlib.colormaps["tab10"]
    drawn_init = set()
    for index, (label, values) in enumerate(norms.items()):
        values = np.where(np.isfinite(values) & (values > 1e-29), values, np.nan)
        architecture = label.split(",")[0]
        for ax, per_gain in zip(np.atleast_1d(axes), values, strict=True):
            layers = np.arange(1, per_gain.shape[-1] + 1)
            ax.plot(
                layers, per_gain[-1], "--", color=colors(index), label=f"{label}, step {steps[-1]}"
            )
            if architecture not in drawn_init:
                shade = "black" if architecture == "plain" else "gray"
                ax.plot(layers, per_gain[0], "-", lw=2, color=shade, label=f"{architecture}, init")
        drawn_init.add(architecture)
    for ax, gain in zip(np.atleast_1d(axes), gains, strict=True):
        ax.set(yscale="log", xlabel="layer (input side first)", ylabel="gradient norm of kernel")
        ax.set_title(f"initial gain {gain:.3g}")
        ax.grid(alpha=0.3, which="both")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)


def plot_efficiency(
    state_bytes: dict[str, float], step_ms: dict[str, float], path: str | Path
) -> None:
    """Bars of optimizer-state bytes per parameter and milliseconds per step."""
    names = list(state_bytes)
    fig, (memory_ax, time_ax) = _subplots(1, 2, figsize=(11, 3.8))
    memory_ax.bar(names, [state_bytes[n] for n in names], color="tab:blue")
    memory_ax.set(ylabel="state bytes / parameter", title="optimizer-state memory")
    time_ax.bar(names, [step_ms[n] for n in names], color="tab:orange")
    time_ax.set(ylabel="ms / step", title="training-step time")
    for ax in (memory_ax, time_ax):
        ax.tick_params(axis="x", rotation=35)
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


def plot_performance_profile(taus, profile: dict[str, np.ndarray], path: str | Path) -> None:
    """Dolan-More performance profile: fraction of problems solved within tau x best."""
    fig, ax = _subplots(figsize=(7, 4.4))
    for name, fractions in profile.items():
        ax.step(taus, fractions, where="post", label=name)
    ax.set(
        xscale="log",
        xlabel="tau (time relative to the fastest optimizer)",
        ylabel="fraction of problems solved",
        ylim=(-0.02, 1.02),
        title="performance profile",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
