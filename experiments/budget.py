"""How much compute each study gets, one small dataclass per concern, grouped by tier:
smoke (the test suite), quick (CI, a few minutes on a 2-core CPU), medium and full."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class MnistBudget:
    """The MNIST studies (convergence, robustness, deep gradients, step timing).

    They train the seed MLP (784-128-10, no dropout so that every optimizer, L-BFGS
    included, minimises the same deterministic loss) on the first ``num_train`` training
    images; the training loss is measured on the first ``num_eval`` of them and the
    validation loss on the first ``num_val`` test images.
    """

    num_train: int
    num_eval: int
    num_val: int
    learning_rates: tuple[float, ...]  # the same log-spaced grid for every optimizer
    tuning_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    steps: int  # optimizer steps per mini-batch run
    full_batch_steps: int  # steps (iterations) of full-batch GD and L-BFGS
    evals: int  # evaluation points per run
    batch_size: int  # mini-batch size

    @property
    def vectorized_tuning(self) -> bool:
        """Tune with one vmapped program; small grids run one run at a time, which
        compiles a smaller program and times every run."""
        return len(self.learning_rates) * len(self.tuning_seeds) > 8


@dataclass(frozen=True)
class RobustnessBudget:
    noise_scales: tuple[float, ...]  # std of the Gaussian noise added to each gradient entry
    flip_fractions: tuple[float, ...]  # fraction of training labels flipped
    optimizers: tuple[str, ...]  # registry names run under noise and label flips


@dataclass(frozen=True)
class LandscapeBudget:
    starts: int  # random starts per 2-D problem
    steps: int  # steps (iterations) from each start


@dataclass(frozen=True)
class DeepBudget:
    layers: int
    width: int
    steps: int


@dataclass(frozen=True)
class QuadraticBudget:
    condition_numbers: tuple[float, ...]
    dim: int
    maxiter: int


@dataclass(frozen=True)
class Budget:
    """One tier: a budget for each study."""

    name: str
    mnist: MnistBudget
    robustness: RobustnessBudget
    landscapes: LandscapeBudget
    deep: DeepBudget
    quadratics: QuadraticBudget
    timing_repeats: int
    hypergradient: str  # the tier of experiments.hypergradient.BUDGETS


QUICK = Budget(
    name="quick",
    mnist=MnistBudget(
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
    ),
    robustness=RobustnessBudget(
        noise_scales=(0.0, 3e-3, 3e-2, 3e-1),
        flip_fractions=(0.0, 0.2, 0.4),
        optimizers=("sgd", "momentum", "adam"),
    ),
    landscapes=LandscapeBudget(starts=256, steps=200),
    deep=DeepBudget(layers=20, width=32, steps=150),
    quadratics=QuadraticBudget(condition_numbers=(1e1, 1e2, 1e3), dim=50, maxiter=3000),
    timing_repeats=5,
    hypergradient="quick",
)

FULL = Budget(
    name="full",
    mnist=MnistBudget(
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
    ),
    robustness=RobustnessBudget(
        noise_scales=(0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
        flip_fractions=(0.0, 0.1, 0.2, 0.4),
        optimizers=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"),
    ),
    landscapes=LandscapeBudget(starts=1024, steps=500),
    deep=DeepBudget(layers=20, width=64, steps=1000),
    quadratics=QuadraticBudget(condition_numbers=(1e1, 1e2, 1e3, 1e4, 1e5), dim=100, maxiter=50000),
    timing_repeats=20,
    hypergradient="medium",
)

# between the two: a 10k-image training subset, half the full steps, three optimizers
# under noise (about 16 minutes on 2 shared CPU cores)
MEDIUM = replace(
    FULL,
    name="medium",
    mnist=replace(
        FULL.mnist,
        num_train=10000,
        num_eval=5000,
        num_val=5000,
        learning_rates=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        steps=1500,
        full_batch_steps=50,
        evals=15,
    ),
    robustness=replace(
        FULL.robustness,
        noise_scales=(0.0, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1),
        optimizers=("sgd", "momentum", "adam"),
    ),
    landscapes=LandscapeBudget(starts=512, steps=300),
    deep=replace(FULL.deep, steps=400),
    quadratics=replace(FULL.quadratics, condition_numbers=(1e1, 1e2, 1e3, 1e4), maxiter=20000),
    timing_repeats=10,
    hypergradient="medium",
)

# the smallest budget that exercises every code path (the test suite runs it)
SMOKE = replace(
    QUICK,
    name="smoke",
    mnist=replace(
        QUICK.mnist,
        num_train=512,
        num_eval=256,
        num_val=256,
        learning_rates=(1e-2, 1e-1),
        steps=40,
        full_batch_steps=10,
        evals=4,
    ),
    robustness=RobustnessBudget(
        noise_scales=(0.0, 0.1), flip_fractions=(0.0, 0.4), optimizers=("sgd", "adam")
    ),
    landscapes=LandscapeBudget(starts=32, steps=50),
    deep=replace(QUICK.deep, width=16, steps=20),
    quadratics=QuadraticBudget(condition_numbers=(1e1, 1e2), dim=20, maxiter=500),
    timing_repeats=2,
    hypergradient="smoke",
)

BUDGETS = {"smoke": SMOKE, "quick": QUICK, "medium": MEDIUM, "full": FULL}
