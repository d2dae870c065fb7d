"""The data protocol of every study that trains on images.

- **train**: the first ``num_train`` images of the training split take the gradient steps;
  the training loss is measured on the first ``num_eval`` of them;
- **validation**: the *last* ``num_val`` images of the training split, disjoint from the
  training images; every tuning decision (learning rate, momentum, stopping) uses it;
- **test**: the test split, held out; each final run is evaluated on it once, after its
  last step, and the report quotes it. Tuning sweeps never see it
  (:meth:`~jaxopt_lab.training.sweep.SweepData.without_test`).
"""

from __future__ import annotations

import functools

from jaxopt_lab.training.data import load_dataset
from jaxopt_lab.training.sweep import SweepData

TRAIN_SPLIT_SIZE = 60_000  # MNIST and Fashion-MNIST both have 60k training images


@functools.cache
def holdout(
    dataset: str, num_train: int, num_eval: int, num_val: int, num_test: int | None = None
) -> SweepData:
    """Train, train-evaluation, validation and test arrays of ``dataset`` on the device."""
    if min(num_train, num_eval, num_val) < 1:
        raise ValueError(
            f"num_train, num_eval and num_val must be >= 1, got {num_train}, {num_eval}, {num_val}"
        )
    if num_train + num_val > TRAIN_SPLIT_SIZE:
        raise ValueError(
            f"num_train + num_val = {num_train + num_val} exceeds the {TRAIN_SPLIT_SIZE} "
            "training images: validation would overlap the training images"
        )
    full = load_dataset(dataset)
    images, labels = full.train_images, full.train_labels
    test = slice(None) if num_test is None else slice(0, num_test)
    return SweepData(
        train_images=images[:num_train],
        train_labels=labels[:num_train],
        eval_images=images[: min(num_eval, num_train)],
        eval_labels=labels[: min(num_eval, num_train)],
        val_images=images[-num_val:],
        val_labels=labels[-num_val:],
        test_images=full.test_images[test],
        test_labels=full.test_labels[test],
    )
