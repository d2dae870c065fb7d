"""How much compute each study gets: the quick budget (CI, a few minutes on a 2-core
CPU) and the full budget (`make experiments`)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """Sizes and counts shared by the studies.

    MNIST studies train the seed MLP (784-128-10, no dropout so that every optimizer,
    L-BFGS included, minimises the same deterministic loss) on the first ``num_train``
    training images; the training loss is measured on the first ``num_eval`` of them and
    the validation loss on the first ``num_val`` test images.
    """

    name: str
    num_train: int
    num_eval: int
    num_val: int
    learning_rates: tuple[float, ...]  # the same log-spaced grid for every optimizer
    tuning_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    steps: int  # optimizer steps per mini-batch MNIST run
    full_batch_steps: int  # steps (iterations) of full-batch GD and L-BFGS
    evals: int  # evaluation points per MNIST run
    batch_size: int  # mini-batch size
    noise_scales: tuple[float, ...]  # std of the Gaussian noise added to each gradient entry
    flip_fractions: tuple[float, ...]  # fraction of training labels flipped
    robust_optimizers: tuple[str, ...]  # registry names run under noise and label flips
    deep_layers: int
    deep_width: int
    deep_steps: int
    landscape_starts: int
    landscape_steps: int
    condition_numbers: tuple[float, ...]
    quadratic_dim: int
    quadratic_maxiter: int
    timing_repeats: int

    @property
    def vectorized_tuning(self) -> bool:
        """Tune with one vmapped program; quick mode runs the grid one run at a time,
        which compiles a smaller program and times every run."""
        return len(self.learning_rates) * len(self.tuning_seeds) > 8


QUICK = Budget(
    name="quick",
    num_train=2048,
    num_eval=1024,
    num_val=1024,
    learning_rates=(1e-3, 1e-2, 1e-1, 1.0),
    tuning_seeds=(0, 1),
    final_seeds=(0, 1),
    steps=300,
    full_batch_steps=60,
    evals=10,
    batch_size=32,
    noise_scales=(0.0, 3e-3, 3e-2, 3e-1),
    flip_fractions=(0.0, 0.2, 0.4),
    robust_optimizers=("sgd", "momentum", "adam"),
    deep_layers=20,
    deep_width=32,
    deep_steps=150,
    landscape_starts=256,
    landscape_steps=200,
    condition_numbers=(1e1, 1e2, 1e3),
    quadratic_dim=50,
    quadratic_maxiter=3000,
    timing_repeats=5,
)

FULL = Budget(
    name="full",
    num_train=60000,
    num_eval=10000,
    num_val=10000,
    learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
    tuning_seeds=(0, 1),
    final_seeds=(10, 11, 12, 13, 14),
    steps=3000,
    full_batch_steps=300,
    evals=30,
    batch_size=32,
    noise_scales=(0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    flip_fractions=(0.0, 0.1, 0.2, 0.4),
    robust_optimizers=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"),
    deep_layers=20,
    deep_width=64,
    deep_steps=1000,
    landscape_starts=1024,
    landscape_steps=500,
    condition_numbers=(1e1, 1e2, 1e3, 1e4, 1e5),
    quadratic_dim=100,
    quadratic_maxiter=50000,
    timing_repeats=20,
)

# between the two: a 10k-image training subset, half the full steps, three optimizers
# under noise (about 16 minutes on 2 shared CPU cores)
MEDIUM = replace(
    FULL,
    name="medium",
    num_train=10000,
    num_eval=5000,
    num_val=5000,
    learning_rates=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    steps=1500,
    full_batch_steps=50,
    evals=15,
    noise_scales=(0.0, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    robust_optimizers=("sgd", "momentum", "adam"),
    deep_steps=400,
    landscape_starts=512,
    landscape_steps=300,
    condition_numbers=(1e1, 1e2, 1e3, 1e4),
    quadratic_maxiter=20000,
    timing_repeats=10,
)

# the smallest budget that exercises every code path (the test suite runs it)
SMOKE = replace(
    QUICK,
    name="smoke",
    num_train=512,
    num_eval=256,
    num_val=256,
    learning_rates=(1e-2, 1e-1),
    steps=40,
    full_batch_steps=10,
    evals=4,
    noise_scales=(0.0, 0.1),
    flip_fractions=(0.0, 0.4),
    robust_optimizers=("sgd", "adam"),
    deep_width=16,
    deep_steps=20,
    landscape_starts=32,
    landscape_steps=50,
    condition_numbers=(1e1, 1e2),
    quadratic_dim=20,
    quadratic_maxiter=500,
    timing_repeats=2,
)

BUDGETS = {"smoke": SMOKE, "quick": QUICK, "medium": MEDIUM, "full": FULL}
