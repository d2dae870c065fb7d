"""The run folder's two figures, drawn on ``matplotlib.figure.Figure`` objects.

No pyplot and no global backend switch: importing this module changes nothing for a
user's own matplotlib session. Each function returns the PNG bytes, so the caller
decides where (and how atomically) they are written.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from jaxopt_lab.training.runs import History


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def learning_curves_png(history: History) -> bytes:
    """Loss and accuracy per epoch, training against validation, side by side."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    for ax, metric, title in (
        (loss_ax, "loss", "cross-entropy loss"),
        (accuracy_ax, "accuracy", "accuracy"),
    ):
        ax.plot(history.epoch, getattr(history, metric), "o-", label="train")
        ax.plot(history.epoch, getattr(history, f"val_{metric}"), "s--", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    return png_bytes(figure, dpi=120)


def predictions_png(images: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> bytes:
    """A 5x5 grid of images, each with its predicted and true label underneath.

    Wrong predictions are labelled in red.
    """
    figure = Figure(figsize=(7, 8), layout="constrained")
    axes = figure.subplots(5, 5)
    for ax, image, guess, truth in zip(axes.flat, images, predicted, labels, strict=False):
        ax.imshow(np.squeeze(image), cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"pred {guess} / true {truth}", color="black" if guess == truth else "red")
    for ax in axes.flat[len(images) :]:
        ax.axis("off")
    return png_bytes(figure, dpi=100)
