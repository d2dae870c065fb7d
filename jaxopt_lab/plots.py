"""Matplotlib figures written as PNG files (Agg backend, never inside jitted code)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from jaxopt_lab.train import History


def plot_learning_curves(history: History, path: str | Path) -> None:
    """Loss and accuracy per epoch, training against validation, side by side."""
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric, title in (
        (loss_ax, "loss", "cross-entropy loss"),
        (accuracy_ax, "accuracy", "accuracy"),
    ):
        ax.plot(history.epoch, getattr(history, metric), "o-", label="train")
        ax.plot(
            history.epoch, getattr(history, f"val_{metric}"), "s--", label="validation (test split)"
        )
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_predictions(
    images: np.ndarray, predicted: np.ndarray, labels: np.ndarray, path: str | Path
) -> None:
    """A 5x5 grid of images, each with its predicted and true label underneath.

    Wrong predictions are labelled in red.
    """
    fig, axes = plt.subplots(5, 5, figsize=(7, 8), constrained_layout=True)
    for ax, image, guess, truth in zip(axes.flat, images, predicted, labels, strict=False):
        ax.imshow(np.squeeze(image), cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"pred {guess} / true {truth}", color="black" if guess == truth else "red")
    for ax in axes.flat[len(images) :]:
        ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bench(report: dict, path: str | Path) -> None:
    """The ``jaxopt-lab bench`` report: step time against optax and against the
    memory-bound limit per parameter count, and training throughput per batch size."""
    records = report["optimizers"]
    names = list(dict.fromkeys(r["optimizer"] for r in records))
    panels = 3 if report.get("training") else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    for name in names:
        rows = [r for r in records if r["optimizer"] == name]
        sizes = [r["size"] for r in rows]
        axes[0].plot(sizes, [r["ratio_vs_optax"] for r in rows], "o-", label=name)
        axes[1].plot(sizes, [r["fraction_of_copy_bandwidth"] for r in rows], "o-", label=name)
    axes[0].axhline(1.0, color="black", lw=0.8)
    axes[0].axhline(1.05, color="gray", ls="--", lw=0.8, label="target 1.05")
    axes[0].set(
        xscale="log",
        xlabel="parameters",
        ylabel="step time, ours / optax",
        title="jaxopt_lab vs optax (lower is faster)",
    )
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[1].set(
        xscale="log",
        xlabel="parameters",
        ylabel="fraction of streaming bandwidth",
        title="bandwidth reached vs a plain streaming step",
    )
    axes[0].legend(fontsize=7, ncol=2)
    if report.get("training"):
        rows = report["training"]
        axes[2].plot([r["batch_size"] for r in rows], [r["samples_per_s"] for r in rows], "o-")
        axes[2].set(
            xscale="log",
            xlabel="batch size",
            ylabel="samples / s",
            title="MNIST MLP training throughput",
        )
        axes[2].minorticks_off()
        axes[2].set_xticks([r["batch_size"] for r in rows], [str(r["batch_size"]) for r in rows])
        axes[2].set_ylim(bottom=0)
    info = report["device"]
    fig.suptitle(f"{info['device']} ({info['backend']}), JAX {info['jax_version']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
