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
