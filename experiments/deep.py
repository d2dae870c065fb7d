"""Study 5 — exploding and vanishing gradients in a deep MLP.

**Network.** ``layers`` hidden ReLU layers of ``width`` units (no dropout), kernels drawn
:math:`W_{ij} \\sim \\mathcal N(0, g^2/\\text{fan-in})`, biases zero. Gain
:math:`g = \\sqrt 2` is He's initialisation.

**Prediction at initialisation.** Backpropagating through one layer,
:math:`\\delta_l = \\mathrm{relu}'(z_l) \\odot W_{l+1}^\\top \\delta_{l+1}` (with
:math:`\\delta_l = \\partial\\ell/\\partial z_l` the gradient at the pre-activation): a
ReLU passes half the units and :math:`W^\\top` multiplies the squared norm by :math:`g^2`
on average, so :math:`E\\lVert\\delta_l\\rVert^2 = (g^2/2)\\, E\\lVert\\delta_{l+1}\\rVert^2`.
Over :math:`L` layers the gradient reaching the input side is :math:`(g^2/2)^{L/2}` times
the one at the output: vanishing for :math:`g < \\sqrt 2`, exploding for
:math:`g > \\sqrt 2`. On a log scale, :math:`\\log\\lVert\\delta_l\\rVert` is a line in the
layer index :math:`l` with slope :math:`-\\tfrac12\\log(g^2/2)` per layer. The kernel's
gradient :math:`\\partial\\ell/\\partial W_l = a_{l-1}\\delta_l^\\top` also carries the
forward activation, whose squared norm grows by the same :math:`g^2/2` per layer, so the
two cancel: the weight gradients of all equal-width hidden layers have about the same norm,
uniformly scaled by :math:`(g^2/2)^{L/2}` (Glorot & Bengio 2010 make the same argument for
linear networks). That is exact in expectation for one example; the batch-mean gradient
also sums the products of different examples' activations and gradients, whose
correlation drifts along the layers and tilts the level line slightly (a few hundredths
per layer at 20 layers, about 0.1 at 6). Both predictions are measured on a batch of
training images, per layer, for several initial seeds.

**Training.** Momentum SGD (momentum 0.9), with the learning rate tuned for every
setting (gain, clipping threshold, batch norm): a log grid with ``per_decade`` rates per
decade, extended by ``extend_decades`` decades on a side while the best rate (lowest mean
final validation loss over the tuning seeds, a diverged run counting as infinitely bad)
sits on that edge, at most ``max_extensions`` times. A clipped setting's grid is centred
at ``CENTRE / threshold``: when every step is clipped the update is
:math:`\\eta\\, c\\, g/\\lVert g\\rVert`, so rate and threshold only act through their
product. The pre-clip global gradient norm of every step is logged by
:func:`clip_monitor` (how many steps exceeded the threshold, the mean log norm per
evaluation interval). The selected rates are rerun with the final seeds, and each final run
is evaluated once on the test set after its last step; the verdicts use those test
accuracies, paired by seed (a seed fixes the initialisation and the batch order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from matplotlib.figure import Figure

import jaxopt_lab as jl
from experiments.protocol import learning_rate_grid
from experiments.report import Section
from experiments.seeds import derive_many
from experiments.splits import holdout
from experiments.stats import Interval, holm_paired, mean_ci, paired_difference, slope_ci
from experiments.verdict import by_interval
from jaxopt_lab.optim import tree_l2_norm
from jaxopt_lab.training.models import MLP
from jaxopt_lab.training.step import TrainState
from jaxopt_lab.training.sweep import Curve, ModelFactory, OptimizerFactory, SweepData, sweep

HE_GAIN = math.sqrt(2.0)
VANISHING_GAIN = 0.5
EXPLODING_GAIN = 3.0  # also the gain the clipping thresholds are swept at
POOR_GAINS = (VANISHING_GAIN, EXPLODING_GAIN)
GAINS = (VANISHING_GAIN, HE_GAIN, EXPLODING_GAIN)
CENTRE = 1e-2  # centre of an unclipped setting's first learning-rate grid
SLOPE_TOLERANCE = 0.1  # |measured - predicted| per layer, in log-norm units (10% per layer)
MARGIN = 0.05  # test accuracy: "better" means better by more than this
# test accuracy: "within reach of He" means less than this below He's; about twice the
# seed-to-seed standard deviation of He's test accuracy at the medium budget (0.04-0.05)
CLOSE = 0.1
LOSS_CAP = 1e5  # validation losses above this are drawn as diverged


@dataclass(frozen=True)
class DeepBudget:
    """Network, data, training length, seeds and tuning grid of one tier."""

    layers: int
    width: int
    num_train: int
    num_eval: int  # training images the (unused) training loss is measured on
    num_val: int
    batch_size: int
    steps: int
    evals: int  # evaluation points per run (besides step 0)
    tuning_seeds: int
    final_seeds: int
    init_seeds: int  # initialisations measured per gain at step 0
    probe_batch: int  # training images the step-0 gradients are measured on
    clip_thresholds: tuple[float, ...]
    grid_points: int  # rates in a setting's first grid
    per_decade: int = 3
    extend_decades: int = 1
    max_extensions: int = 2
    vectorize: bool = True  # vmap the runs of a sweep (False compiles a smaller program)

    def __post_init__(self) -> None:
        if self.steps % self.evals:
            raise ValueError(f"steps ({self.steps}) must be a multiple of evals ({self.evals})")
        if self.per_decade < 3 or self.grid_points < 3:
            raise ValueError("need per_decade >= 3 and grid_points >= 3")
        if self.final_seeds < 2 or self.init_seeds < 2 or self.tuning_seeds < 1:
            raise ValueError("need >= 2 final and initial seeds and >= 1 tuning seed")
        if min(self.clip_thresholds, default=1.0) <= 0:
            raise ValueError(f"clip thresholds must be > 0, got {self.clip_thresholds}")

    @property
    def steps_per_eval(self) -> int:
        return self.steps // self.evals


BUDGETS: dict[str, DeepBudget] = {
    # every code path in a minute or two (the test suite and CI)
    "quick": DeepBudget(
        layers=3, width=16, num_train=256, num_eval=64, num_val=64, batch_size=16, steps=8,
        evals=2, tuning_seeds=1, final_seeds=2, init_seeds=3, probe_batch=32,
        clip_thresholds=(1.0, 100.0), grid_points=3, max_extensions=0, vectorize=False,
    ),
    # the committed report; 32 final seeds (16 until stop 22): at 16 the batch-norm claim's
    # interval at gain 0.5 straddled its threshold on one machine and cleared it on another
    "medium": DeepBudget(
        layers=20, width=64, num_train=10_000, num_eval=256, num_val=2000, batch_size=32,
        steps=400, evals=8, tuning_seeds=2, final_seeds=32, init_seeds=10, probe_batch=256,
        clip_thresholds=(1.0, 1e2, 1e4), grid_points=7, max_extensions=3,
        extend_decades=2,
    ),
    "full": DeepBudget(
        layers=20, width=128, num_train=50_000, num_eval=1000, num_val=10_000, batch_size=32,
        steps=3000, evals=20, tuning_seeds=3, final_seeds=20, init_seeds=20, probe_batch=512,
        clip_thresholds=(1.0, 1e2, 1e4, 1e6), grid_points=7, max_extensions=3,
        extend_decades=2,
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- the network


def deep_mlp(
    layers: int, width: int, gain: float | jax.Array, key: jax.Array, *, batch_norm: bool = False
) -> MLP:
    """A ReLU MLP with ``layers`` hidden layers of ``width`` units whose kernels are drawn
    :math:`W_{ij} \\sim \\mathcal N(0, g^2 / \\text{fan-in})` (biases zero); ``gain`` may
    be traced."""
    model_key, weight_key = jax.random.split(key)
    model = MLP(
        hidden_sizes=(width,) * layers,
        dropout_rate=0.0,
        batch_norm=batch_norm,
        rngs=nnx.Rngs(model_key),
    )
    dense = [*model.hidden, model.output]
    for layer, layer_key in zip(dense, jax.random.split(weight_key, len(dense)), strict=True):
        fan_in, fan_out = layer.kernel[...].shape
        layer.kernel[...] = (
            gain / jnp.sqrt(fan_in) * jax.random.normal(layer_key, (fan_in, fan_out))
        )
    return model


# ------------------------------------------------------- gradients at initialisation


def predicted_slope(gain: float) -> float:
    """The slope of :math:`\\log\\lVert\\delta_l\\rVert` in the layer index :math:`l`
    (input side first): :math:`-\\tfrac12\\log(g^2/2)` per layer."""
    return -0.5 * math.log(gain**2 / 2)


def layer_gradient_norms(
    model: MLP, images: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per layer, on one batch of a plain (no batch norm) MLP:

    - ``signal[l]`` (hidden layers, input side first): the root mean square over the
      examples of :math:`\\lVert\\partial\\ell_b/\\partial z_l\\rVert`, the gradient of
      example ``b``'s loss at the layer's pre-activation. Since
      :math:`z_l = a_{l-1}W_l + b_l`, it is exactly the example's gradient with respect to
      the layer's bias.
    - ``kernel[l]`` (every Dense layer, the output layer last): the Frobenius norm of the
      batch-mean loss's gradient with respect to the kernel.
    """
    graphdef, biases, rest = nnx.split(model, nnx.PathContains("bias"), ...)

    def loss(biases, rest, images, labels):
        logits = nnx.merge(graphdef, biases, rest)(images.astype(jnp.float32) / 255)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, None, 0, 0))(
        biases, rest, images[:, None], labels[:, None]
    )
    signal_model = nnx.merge(graphdef, per_example, rest)
    signal = jnp.stack(
        [
            jnp.sqrt(jnp.mean(jnp.sum(layer.bias[...] ** 2, axis=-1)))
            for layer in signal_model.hidden
        ]
    )
    kernel_model = nnx.merge(
        graphdef, biases, jax.grad(loss, argnums=1)(biases, rest, images, labels)
    )
    kernel = jnp.stack(
        [
            jnp.linalg.norm(layer.kernel[...])
            for layer in [*kernel_model.hidden, kernel_model.output]
        ]
    )
    return signal, kernel


class InitGradients(NamedTuple):
    """:func:`layer_gradient_norms` of freshly initialised plain networks: ``signal``
    ``[gain, seed, hidden layer]``, ``kernel`` ``[gain, seed, Dense layer]``."""

    gains: tuple[float, ...]
    signal: np.ndarray
    kernel: np.ndarray


@partial(jax.jit, static_argnames=("layers", "width"))
def _init_norms(gains, seeds, images, labels, *, layers, width):
    def one(gain, seed):
        model = deep_mlp(layers, width, gain, jax.random.key(seed))
        return layer_gradient_norms(model, images, labels)

    return jax.vmap(lambda gain: jax.vmap(lambda seed: one(gain, seed))(seeds))(gains)


def measure_init(
    layers: int,
    width: int,
    gains: Sequence[float],
    seeds: Sequence[int],
    images: jax.Array,
    labels: jax.Array,
) -> InitGradients:
    """The per-layer gradient norms at initialisation for every gain and seed."""
    signal, kernel = _init_norms(
        jnp.asarray(gains, jnp.float32),
        jnp.asarray(seeds, jnp.uint32),
        images,
        labels,
        layers=layers,
        width=width,
    )
    return InitGradients(tuple(gains), np.asarray(signal), np.asarray(kernel))


def layer_slopes(log_norms: np.ndarray, first_layer: int = 1) -> np.ndarray:
    """The least-squares slope of each row of ``log_norms`` (``[..., layer]``, the layers
    numbered from ``first_layer``) in the layer index.

    The per-seed slopes are independent across seeds, so a t interval over them is honest;
    pooling every (layer, seed) point into one regression is not, since the log norm is a
    random walk along the layers (each layer multiplies it by an independent factor) and
    its residuals are correlated."""
    layers = np.arange(first_layer, first_layer + log_norms.shape[-1])
    rows = log_norms.reshape(-1, log_norms.shape[-1])
    return np.asarray([slope_ci(layers, row).mean for row in rows]).reshape(log_norms.shape[:-1])


# ------------------------------------------------------------- clipping and its counter


class GradientNormLog(NamedTuple):
    """What :func:`clip_monitor` has seen so far: the number of steps whose gradient's
    global norm exceeded the threshold, and the sum of the log global norms."""

    clipped: jax.Array
    log_norm_sum: jax.Array


def clip_monitor(max_norm: float | jax.Array) -> optax.GradientTransformation:
    """The identity on the gradient :math:`g` that counts the steps with
    :math:`\\lVert g\\rVert_2 > c` (``max_norm``; the steps ``clip_by_global_norm(c)``
    shortens) and sums :math:`\\log\\lVert g\\rVert_2`. Chain it in front of the clipping,
    so it sees the gradient before clipping."""

    def init(params) -> GradientNormLog:
        del params
        return GradientNormLog(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

    def update(updates, state: GradientNormLog, params=None):
        del params
        norm = tree_l2_norm(updates)
        clipped = state.clipped + (norm > max_norm).astype(jnp.int32)
        return updates, GradientNormLog(clipped, state.log_norm_sum + jnp.log(norm))

    return optax.GradientTransformation(init, update)


def gradient_log_probe(state: TrainState, graphdef: nnx.GraphDef) -> GradientNormLog:
    """A sweep probe: the run's :class:`GradientNormLog` (the first state of its chain)."""
    del graphdef
    return state.opt_state[0]


# --------------------------------------------------------------------- settings and runs


@dataclass(frozen=True)
class Setting:
    """What is trained: the initial gain, the global-norm clipping threshold (``inf``:
    none) and whether batch norm follows every hidden Dense layer."""

    gain: float
    clip: float = math.inf
    batch_norm: bool = False

    @property
    def label(self) -> str:
        gain = "He" if self.gain == HE_GAIN else f"gain {self.gain:g}"
        extras = [f"clip {self.clip:g}"] if math.isfinite(self.clip) else []
        return ", ".join([gain, *extras, *(["batch norm"] if self.batch_norm else [])])

    @property
    def centre(self) -> float:
        """The centre of the first learning-rate grid: ``CENTRE / clip`` when clipped (the
        same step length when every step is clipped), else ``CENTRE``."""
        return CENTRE / self.clip if math.isfinite(self.clip) else CENTRE


def settings(budget: DeepBudget) -> tuple[Setting, ...]:
    """Plain nets at every gain, the exploding gain clipped at every threshold, batch-norm
    nets at every gain."""
    return (
        *(Setting(g) for g in GAINS),
        *(Setting(EXPLODING_GAIN, clip=c) for c in budget.clip_thresholds),
        *(Setting(g, batch_norm=True) for g in GAINS),
    )


def point_factories(
    budget: DeepBudget, batch_norm: bool, points: Sequence[tuple[Setting, float]]
) -> tuple[ModelFactory, OptimizerFactory]:
    """Model and optimizer factories over a table of runs: hyperparameter ``point = i``
    trains ``points[i] = (setting, rate)`` (the setting's gain, momentum SGD at ``rate``
    after :func:`clip_monitor` and ``clip_by_global_norm`` at its threshold), so any set of
    settings and rates is one vectorised sweep."""
    gains = np.asarray([s.gain for s, _ in points], np.float32)
    rates = np.asarray([r for _, r in points], np.float32)
    clips = np.asarray([s.clip for s, _ in points], np.float32)

    def model(hyperparameters: Mapping[str, jax.Array], key: jax.Array) -> nnx.Module:
        gain = jnp.asarray(gains)[hyperparameters["point"].astype(jnp.int32)]
        return deep_mlp(budget.layers, budget.width, gain, key, batch_norm=batch_norm)

    def optimizer(
        hyperparameters: Mapping[str, jax.Array], key: jax.Array
    ) -> optax.GradientTransformation:
        del key
        index = hyperparameters["point"].astype(jnp.int32)
        rate, clip = jnp.asarray(rates)[index], jnp.asarray(clips)[index]
        return jl.chain(clip_monitor(clip), jl.make_optimizer("momentum", rate, clip_norm=clip))

    return model, optimizer


def train(
    points: Sequence[tuple[Setting, float]],
    budget: DeepBudget,
    seeds: Sequence[int],
    data: SweepData,
) -> dict[tuple[Setting, float], Curve]:
    """Train every ``(setting, rate)`` with every seed: one sweep for the plain settings,
    one for the batch-norm ones. Curves ``[seed, evaluation]`` (test metrics ``[seed]``
    when ``data`` holds a test split); the probes are the cumulative
    :class:`GradientNormLog`."""
    curves = {}
    for batch_norm in (False, True):
        chosen = [p for p in points if p[0].batch_norm == batch_norm]
        if not chosen:
            continue
        model, optimizer = point_factories(budget, batch_norm, chosen)
        result = sweep(
            optimizer,
            {"point": list(range(len(chosen)))},
            seeds,
            data,
            model_factory=model,
            batch_size=budget.batch_size,
            num_evals=budget.evals,
            steps_per_eval=budget.steps_per_eval,
            probe=gradient_log_probe,
            vectorize=budget.vectorize,
            data_seed=None,
        )
        for index, point in enumerate(chosen):
            curves[point] = jax.tree.map(lambda x, i=index: np.asarray(x[i]), result.curves)
    return curves


@dataclass(frozen=True)
class Tuning:
    """The learning rates tried for one setting and their final validation losses
    ``[rate, tuning seed]`` (rates ascending; NaN or inf where a run diverged)."""

    rates: np.ndarray
    val_loss: np.ndarray
    extensions: int

    @property
    def scores(self) -> np.ndarray:
        """Mean final validation loss per rate; inf if any seed diverged."""
        finite = np.all(np.isfinite(self.val_loss), axis=1)
        return np.where(finite, self.val_loss.mean(axis=1), np.inf)

    @property
    def best(self) -> int:
        return int(np.argmin(self.scores))

    @property
    def best_rate(self) -> float:
        return float(self.rates[self.best])

    @property
    def diverged(self) -> bool:
        """Every rate tried diverged on some seed."""
        return not np.isfinite(self.scores[self.best])

    @property
    def edge_side(self) -> int:
        """-1 / +1 when the best rate is the smallest / largest tried, else 0; -1 when
        every rate diverged (smaller rates are where an optimum may be)."""
        if self.diverged or self.best == 0:
            return -1
        return 1 if self.best == self.rates.size - 1 else 0


def tune(
    chosen: Sequence[Setting], budget: DeepBudget, seeds: Sequence[int], data: SweepData
) -> dict[Setting, Tuning]:
    """The learning-rate search of every setting (see the module docstring); every round
    trains the new rates of all settings together."""
    half = budget.grid_points // 2
    bounds = {s: (-half, budget.grid_points - 1 - half) for s in chosen}
    losses: dict[Setting, dict[float, np.ndarray]] = {s: {} for s in chosen}
    extensions = dict.fromkeys(chosen, 0)

    def tuning(s: Setting) -> Tuning:
        rates = sorted(losses[s])
        return Tuning(np.asarray(rates), np.stack([losses[s][r] for r in rates]), extensions[s])

    pending = [
        (s, r) for s in chosen for r in learning_rate_grid(s.centre, budget.per_decade, *bounds[s])
    ]
    while pending:
        for (s, rate), curve in train(pending, budget, seeds, data).items():
            losses[s][rate] = curve.val_loss[:, -1]
        pending = []
        for s in chosen:
            side = tuning(s).edge_side
            if side == 0 or extensions[s] == budget.max_extensions:
                continue
            extensions[s] += 1
            low, high = bounds[s]
            added = budget.extend_decades * budget.per_decade
            new = (low - added, low - 1) if side < 0 else (high + 1, high + added)
            bounds[s] = (min(low, new[0]), max(high, new[1]))
            pending += [(s, r) for r in learning_rate_grid(s.centre, budget.per_decade, *new)]
    return {s: tuning(s) for s in chosen}


@dataclass(frozen=True)
class FinalRuns:
    """One setting rerun at its selected rate with the final seeds."""

    rate: float
    steps_per_eval: int
    val_accuracy: np.ndarray  # [seed, evaluation]
    test_accuracy: np.ndarray  # [seed]
    test_loss: np.ndarray  # [seed]
    clipped: np.ndarray  # [seed, evaluation]: steps clipped so far
    log_norm_sum: np.ndarray  # [seed, evaluation]: sum of log pre-clip norms so far

    @property
    def fraction_clipped(self) -> np.ndarray:
        """Per seed, the fraction of all steps whose gradient norm exceeded the threshold."""
        return self.clipped[:, -1] / (self.steps_per_eval * (self.clipped.shape[1] - 1))

    @property
    def interval_norms(self) -> np.ndarray:
        """``[seed, interval]``: the geometric mean pre-clip gradient norm over each
        interval between two evaluations (NaN once a norm was not finite)."""
        with np.errstate(invalid="ignore"):  # inf - inf after an infinite norm
            return np.exp(np.diff(self.log_norm_sum, axis=1) / self.steps_per_eval)


def final_runs(
    tuned: Mapping[Setting, Tuning], budget: DeepBudget, seeds: Sequence[int], data: SweepData
) -> dict[Setting, FinalRuns]:
    """Every setting at its selected rate, trained with ``seeds`` and tested once."""
    curves = train([(s, t.best_rate) for s, t in tuned.items()], budget, seeds, data)
    return {
        s: FinalRuns(
            rate=rate,
            steps_per_eval=budget.steps_per_eval,
            val_accuracy=c.val_accuracy,
            test_accuracy=c.test_accuracy,
            test_loss=c.test_loss,
            clipped=c.probes.clipped,
            log_norm_sum=c.probes.log_norm_sum,
        )
        for (s, rate), c in curves.items()
    }


@dataclass(frozen=True)
class DeepResults:
    """Step-0 gradients of the plain nets, the tuning of every setting and its final runs."""

    budget: DeepBudget
    seed: int
    init: InitGradients
    tunings: dict[Setting, Tuning]
    finals: dict[Setting, FinalRuns]


def measure(budget: DeepBudget, seed: int) -> DeepResults:
    """Run the study; every random draw derives from the master ``seed``."""
    data = holdout("mnist", budget.num_train, budget.num_eval, budget.num_val)
    init = measure_init(
        budget.layers,
        budget.width,
        GAINS,
        derive_many(seed, budget.init_seeds, "deep", "init"),
        data.train_images[: budget.probe_batch],
        data.train_labels[: budget.probe_batch],
    )
    tuning_seeds = derive_many(seed, budget.tuning_seeds, "deep", "tuning")
    tunings = tune(settings(budget), budget, tuning_seeds, data.without_test())
    final_seeds = derive_many(seed, budget.final_seeds, "deep", "final")
    return DeepResults(budget, seed, init, tunings, final_runs(tunings, budget, final_seeds, data))


# ---------------------------------------------------------------------------- the report


def _magnitude(interval: Interval) -> Interval:
    """The confidence set of :math:`|\\mu|` implied by one of :math:`\\mu` (same coverage):
    ``[0 or min(|low|, |high|), max(|low|, |high|)]``."""
    ends = (abs(interval.low), abs(interval.high))
    low = 0.0 if interval.low <= 0 <= interval.high else min(ends)
    return interval._replace(mean=abs(interval.mean), low=low, high=max(ends))


def _within(interval: Interval, tolerance: float) -> Interval:
    """The interval of ``tolerance - |mu|``: positive exactly when all of ``interval``
    lies inside ``(-tolerance, tolerance)`` (an equivalence test), negative when all of it
    lies outside."""
    size = _magnitude(interval)
    return size._replace(
        mean=tolerance - size.mean, low=tolerance - size.high, high=tolerance - size.low
    )


def _log_band(log_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``[seed, x]`` log values: the geometric mean and the exponentiated t
    interval of the mean log."""
    intervals = [mean_ci(column) for column in log_values.T]
    return tuple(np.exp([getattr(i, f) for i in intervals]) for f in ("mean", "low", "high"))


def plot_init_gradients(init: InitGradients, path: Path) -> Path:
    """Two panels against the layer index: the backpropagated gradient
    :math:`\\lVert\\partial\\ell/\\partial z_l\\rVert` and the kernel gradient
    :math:`\\lVert\\partial L/\\partial W_l\\rVert`, per gain (geometric mean over the
    initial seeds with its 95% band), each with its predicted line (slope
    :math:`-\\frac12\\log(g^2/2)` for the first, flat across the hidden layers for the
    second) placed by least squares."""
    fig = Figure(figsize=(11, 4.2))
    signal_ax, kernel_ax = fig.subplots(1, 2)
    layers = init.signal.shape[-1]
    colours = ("tab:blue", "tab:green", "tab:red")
    for index, (gain, colour) in enumerate(zip(init.gains, colours, strict=True)):
        name = "He" if gain == HE_GAIN else f"gain {gain:g}"
        for ax, norms, first, slope in (
            (signal_ax, init.signal[index], 1, predicted_slope(gain)),
            (kernel_ax, init.kernel[index, :, 1:layers], 2, 0.0),
        ):
            x = np.arange(first, first + norms.shape[-1])
            mean, low, high = _log_band(np.log(norms))
            ax.plot(x, mean, "o", color=colour, markersize=3.5, label=f"{name}: measured")
            ax.fill_between(x, low, high, color=colour, alpha=0.25, linewidth=0)
            offset = np.mean(np.log(mean) - slope * x)
            ax.plot(x, np.exp(offset + slope * x), "--", color=colour, label=f"{name}: predicted")
    signal_ax.set_title("backpropagated gradient (slope $-\\frac{1}{2}\\log(g^2/2)$ per layer)")
    signal_ax.set_ylabel("RMS over examples of $\\|\\partial\\ell/\\partial z_l\\|$")
    kernel_ax.set_title("weight gradient, hidden layers 2..L (predicted level)")
    kernel_ax.set_ylabel("$\\|\\partial L/\\partial W_l\\|_F$ (batch mean loss)")
    for ax in (signal_ax, kernel_ax):
        ax.set_yscale("log")
        ax.set_xlabel("layer l (1 = input side)")
        ax.grid(alpha=0.3)
    signal_ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"Gradient norms at initialisation, {layers}-layer ReLU MLP "
        f"({init.signal.shape[1]} seeds, 95% bands)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_clipping(results: DeepResults, path: Path) -> Path:
    """At the exploding gain, against the clipping threshold (``none`` at the right): the
    test accuracy and the fraction of steps clipped (mean and 95% interval over the final
    seeds), and the pre-clip gradient norm through training per threshold."""
    budget, finals = results.budget, results.finals
    thresholds = (*budget.clip_thresholds, math.inf)
    chosen = [Setting(EXPLODING_GAIN, clip=c) for c in thresholds]
    x = np.arange(len(thresholds))
    names = [f"{c:g}" if math.isfinite(c) else "none" for c in thresholds]
    fig = Figure(figsize=(13, 4.2))
    acc_ax, frac_ax, norm_ax = fig.subplots(1, 3)
    for ax, values, label in (
        (acc_ax, [finals[s].test_accuracy for s in chosen], "test accuracy"),
        (frac_ax, [finals[s].fraction_clipped for s in chosen], "fraction of steps clipped"),
    ):
        intervals = [mean_ci(v) for v in values]
        mean = np.array([i.mean for i in intervals])
        errors = np.abs(np.array([[i.low, i.high] for i in intervals]).T - mean)
        ax.errorbar(x, mean, yerr=errors, fmt="o-", color="tab:red", capsize=4, label=label)
        ax.set_xticks(x, names)
        ax.set_xlabel(f"clipping threshold on the global gradient norm (gain {EXPLODING_GAIN:g})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    he = mean_ci(finals[Setting(HE_GAIN)].test_accuracy)
    acc_ax.axhline(he.mean, color="tab:green", label="He, no clipping")
    acc_ax.axhspan(he.low, he.high, color="tab:green", alpha=0.2)
    acc_ax.set_ylim(0, 1)
    frac_ax.set_ylim(-0.05, 1.05)
    acc_ax.legend(fontsize=8)
    frac_ax.legend(fontsize=8)
    steps = np.arange(1, budget.evals + 1) * budget.steps_per_eval
    for index, (setting, name) in enumerate(zip(chosen, names, strict=True)):
        colour = f"C{index}"
        mean, low, high = _log_band(np.log(finals[setting].interval_norms))
        norm_ax.plot(steps, mean, "o-", markersize=3, color=colour, label=f"clip {name}")
        norm_ax.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        if math.isfinite(setting.clip):
            norm_ax.axhline(setting.clip, color=colour, linestyle=":", linewidth=1)
    norm_ax.set_yscale("log")
    norm_ax.set_xlabel("step (end of each evaluation interval)")
    norm_ax.set_ylabel("pre-clip gradient norm (interval geo. mean)")
    norm_ax.legend(fontsize=7, loc="upper right")
    norm_ax.grid(alpha=0.3)
    fig.suptitle(
        f"Clipping at gain {EXPLODING_GAIN:g}, learning rate tuned per threshold "
        f"({budget.final_seeds} final seeds, 95% intervals; dotted: the thresholds)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_tuning(results: DeepResults, path: Path) -> Path:
    """Final validation loss against the learning rate for every setting (mean over the
    tuning seeds, bars: their range), the selected rate ringed and diverged rates (loss
    above ``LOSS_CAP`` or not finite on some seed) drawn as x at the cap: three panels
    (plain nets at the other gains, the exploding gain by threshold, batch norm)."""
    groups = {
        "plain": [s for s in results.tunings if not s.batch_norm and s.gain != EXPLODING_GAIN],
        f"gain {EXPLODING_GAIN:g}, by clipping threshold": [
            s for s in results.tunings if not s.batch_norm and s.gain == EXPLODING_GAIN
        ],
        "batch norm": [s for s in results.tunings if s.batch_norm],
    }
    fig = Figure(figsize=(14, 4.2))
    for ax, (title, members) in zip(fig.subplots(1, 3), groups.items(), strict=True):
        for setting in members:
            tuning = results.tunings[setting]
            ok = tuning.scores < LOSS_CAP
            low, high = tuning.val_loss.min(axis=1), tuning.val_loss.max(axis=1)
            line = ax.errorbar(
                tuning.rates[ok],
                tuning.scores[ok],
                yerr=[tuning.scores[ok] - low[ok], high[ok] - tuning.scores[ok]],
                fmt="o-",
                markersize=3,
                capsize=2,
                label=setting.label,
            )
            colour = line.lines[0].get_color()
            ax.plot(tuning.rates[~ok], np.full((~ok).sum(), LOSS_CAP), "x", color=colour)
            ax.plot(tuning.best_rate, tuning.scores[tuning.best], "o", markersize=11,
                    markerfacecolor="none", color=colour)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final validation loss (cross-entropy, nats)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Learning-rate tuning (tuning seeds: {results.budget.tuning_seeds}; mean, bars = "
        f"range; ringed: selected; x: diverged, loss > {LOSS_CAP:g} or NaN)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def report(results: DeepResults, out: Path) -> Section:
    """The section: setup, step-0 gradients against the prediction and their claims,
    tuning, final runs and the clipping sweep, and the training claims."""
    section = Section("5. Exploding and vanishing gradients in a deep MLP")
    budget = results.budget
    epochs = budget.steps * budget.batch_size / budget.num_train
    section.text(
        f"{budget.layers} hidden ReLU layers of width {budget.width} (no dropout), kernels "
        f"N(0, g^2/fan-in), biases 0; gain sqrt(2) is He's. Trained on the first "
        f"{budget.num_train} MNIST training images with momentum SGD (momentum 0.9, batch "
        f"{budget.batch_size}, {budget.steps} steps = {epochs:.2g} epochs), validated on the "
        f"last {budget.num_val} training images, each final run tested once on the 10,000 "
        f"test images. The learning rate is tuned for every setting on a log grid of "
        f"{budget.per_decade} rates per decade ({budget.grid_points} to start, centred at "
        f"{CENTRE:g}, or {CENTRE:g}/threshold when clipped), extended by "
        f"{budget.extend_decades} decade(s) while the best rate (lowest mean final validation "
        f"loss) sits on an edge, at most {budget.max_extensions} times. "
        f"{budget.tuning_seeds} tuning seeds, {budget.final_seeds} final seeds (a seed fixes "
        f"the initialisation and the batch order; settings are paired by seed) and "
        f"{budget.init_seeds} initialisations for the step-0 gradients (measured on "
        f"{budget.probe_batch} training images), all derived from master seed {results.seed}."
    )
    _initialisation(section, results.init, out)
    _training(section, results, out)
    _training_claims(section, results)
    return section


def _initialisation(section: Section, init: InitGradients, out: Path) -> None:
    """The step-0 table, figure and claims."""
    L = init.signal.shape[-1]
    signal_slopes = {g: layer_slopes(np.log(init.signal[i])) for i, g in enumerate(init.gains)}
    kernel_slopes = {
        g: layer_slopes(np.log(init.kernel[i, :, 1:L]), first_layer=2)
        for i, g in enumerate(init.gains)
    }
    hidden_kernel = np.exp(np.log(init.kernel[:, :, 1:L]).mean(axis=(1, 2)))  # per gain
    he_index = init.gains.index(HE_GAIN)
    section.table(
        [
            "gain",
            "predicted slope of log ||dl/dz_l|| per layer",
            "measured (95% CI over seeds)",
            "slope of log ||dL/dW_l||, layers 2..L",
            "hidden weight-gradient norm",
            "ratio to He's: measured vs (g^2/2)^(L/2)",
        ],
        [
            (
                f"{g:.3g}",
                f"{predicted_slope(g):+.3f}",
                mean_ci(signal_slopes[g]).format(),
                mean_ci(kernel_slopes[g]).format(),
                f"{hidden_kernel[i]:.3g}",
                f"{hidden_kernel[i] / hidden_kernel[he_index]:.3g} vs {(g**2 / 2) ** (L / 2):.3g}",
            )
            for i, g in enumerate(init.gains)
        ],
    )
    plot_init_gradients(init, out / "deep_init_gradients.png")
    section.figure(
        "deep_init_gradients.png",
        "Gradient norms per layer at initialisation against the prediction: the "
        "backpropagated gradient shrinks or grows by sqrt(g^2/2) per layer (left), the "
        "weight gradients of the hidden layers stay level (right).",
    )
    section.claim(
        "At initialisation the gradient backpropagated through each ReLU layer changes its "
        "norm by sqrt(g^2/2): it vanishes for gains below sqrt(2) and explodes above, as "
        "(g^2/2)^(L/2) over L layers.",
        [
            by_interval(
                f"gain {g:.3g}: measured minus predicted slope within +-{SLOPE_TOLERANCE:g} "
                "per layer",
                _within(mean_ci(signal_slopes[g] - predicted_slope(g)), SLOPE_TOLERANCE),
                1,
            )
            for g in init.gains
        ],
        "slope of log ||dl/dz_l|| per layer (input side first), measured vs predicted: "
        + "; ".join(
            f"gain {g:.3g} {mean_ci(signal_slopes[g]).format()} vs {predicted_slope(g):+.3f}"
            for g in init.gains
        )
        + f" ({init.signal.shape[1]} initialisations; equivalence margin "
        f"+-{SLOPE_TOLERANCE:g}).",
    )
    section.claim(
        "With a poor initialisation the early layers' weight gradients are much smaller "
        "(vanishing) or larger (exploding) than the late layers'.",
        [
            by_interval(
                f"gain {g:.3g}: |slope of log ||dL/dW_l|||, layers 2..L, minus half the "
                f"backpropagated gradient's |{predicted_slope(g):.3f}|",
                _magnitude(mean_ci(kernel_slopes[g])).plus(-abs(predicted_slope(g)) / 2),
                1,
            )
            for g in POOR_GAINS
        ],
        "slope of log ||dL/dW_l|| per layer over the hidden layers 2..L: "
        + "; ".join(
            f"gain {g:.3g} {mean_ci(kernel_slopes[g]).format()} while the backpropagated "
            f"gradient's is {mean_ci(signal_slopes[g]).format()}"
            for g in POOR_GAINS
        )
        + " (the forward activations grow by the inverse factor).",
    )


def _training(section: Section, results: DeepResults, out: Path) -> None:
    """The tuning and final-run tables and their figures."""
    tunings, finals = results.tunings, results.finals
    section.table(
        ["setting", "rates tried", "selected rate", "extensions", "mean final val loss"],
        [
            (
                s.label,
                f"{t.rates.size} in [{t.rates[0]:.3g}, {t.rates[-1]:.3g}]",
                f"{t.best_rate:.3g}",
                t.extensions,
                f"{t.scores[t.best]:.4g}",
            )
            for s, t in tunings.items()
        ],
    )
    edges = [s for s, t in tunings.items() if t.edge_side]
    section.text(
        "Every selected rate is bracketed by worse rates on both sides."
        if not edges
        else "Still on the edge of its grid after the extensions (its optimum may lie "
        "beyond): "
        + "; ".join(
            f"{s.label}: every rate diverged, down to {tunings[s].rates[0]:.3g}"
            if tunings[s].diverged
            else f"{s.label} at {tunings[s].best_rate:.3g} "
            f"({'smallest' if tunings[s].edge_side < 0 else 'largest'} rate tried)"
            for s in edges
        )
        + ". Settings where nothing trains have a flat validation loss, so their 'best' "
        "rate is arbitrary."
    )
    plot_tuning(results, out / "deep_tuning.png")
    section.figure(
        "deep_tuning.png", "Final validation loss against the learning rate, per setting."
    )
    section.table(
        [
            "setting",
            "rate",
            "test accuracy (95% CI)",
            "test loss",
            "steps clipped",
            "gradient norm, first -> last interval",
        ],
        [
            (
                s.label,
                f"{f.rate:.3g}",
                mean_ci(f.test_accuracy).format(),
                mean_ci(f.test_loss).format(),
                mean_ci(f.fraction_clipped).format() if math.isfinite(s.clip) else "-",
                f"{np.exp(np.nanmean(np.log(f.interval_norms[:, 0]))):.3g} -> "
                f"{np.exp(np.nanmean(np.log(f.interval_norms[:, -1]))):.3g}",
            )
            for s, f in finals.items()
        ],
    )
    plot_clipping(results, out / "deep_clipping.png")
    section.figure(
        "deep_clipping.png",
        f"Gain {EXPLODING_GAIN:g}: test accuracy and fraction of steps clipped against the "
        "clipping threshold, and the pre-clip gradient norm during training.",
    )

    collapsed = [
        s.label
        for s, t in tunings.items()
        if abs(t.scores[t.best] - math.log(10)) < 0.01 * math.log(10)
    ]
    if collapsed:
        section.text(
            "A loss of ln 10 = 2.303 is that of the uniform prediction: "
            + ", ".join(collapsed)
            + " end within 1% of it at their selected rate, i.e. their output has collapsed "
            "to (nearly) the same prediction for every image."
        )


def _training_claims(section: Section, results: DeepResults) -> None:
    """The claims on training: poor gains, clipping, batch norm, He alone."""
    tunings, finals = results.tunings, results.finals
    accuracy = {s: f.test_accuracy for s, f in finals.items()}
    he = accuracy[Setting(HE_GAIN)]
    worse = holm_paired(he, {g: accuracy[Setting(g)] for g in POOR_GAINS})
    section.claim(
        "A poor initialisation makes the deep net train worse than He's even with the "
        f"learning rate tuned for it (test accuracy lower by more than {MARGIN:g}).",
        [
            by_interval(
                f"gain {g:.3g} minus He, + {MARGIN:g} (Holm)", worse[g].interval.plus(MARGIN), -1
            )
            for g in POOR_GAINS
        ],
        f"test accuracy He {mean_ci(he).format()}; "
        + "; ".join(
            f"gain {g:.3g} {mean_ci(accuracy[Setting(g)]).format()} (minus He "
            f"{worse[g].interval.format()}, Holm)"
            for g in POOR_GAINS
        )
        + ".",
    )

    clipped = [s for s in tunings if math.isfinite(s.clip)]
    chosen = min(clipped, key=lambda s: tunings[s].scores.min())
    unclipped = accuracy[Setting(EXPLODING_GAIN)]
    gain_over = paired_difference(accuracy[chosen], unclipped).interval
    rescue = np.minimum(accuracy[chosen] - unclipped - MARGIN, accuracy[chosen] - he + CLOSE)
    section.claim(
        f"Gradient clipping rescues training from exploding gradients (gain "
        f"{EXPLODING_GAIN:g}): it beats no clipping by more than {MARGIN:g} and comes within "
        f"{CLOSE:g} of He's test accuracy.",
        [
            by_interval(
                f"per seed min(clipped - unclipped - {MARGIN:g}, clipped - He + {CLOSE:g})",
                mean_ci(rescue),
                1,
            )
        ],
        f"threshold {chosen.clip:g} (lowest tuning validation loss of "
        f"{', '.join(f'{s.clip:g}' for s in clipped)}), "
        f"{mean_ci(finals[chosen].fraction_clipped).format()} of steps clipped: test "
        f"accuracy {mean_ci(accuracy[chosen]).format()} vs "
        f"{mean_ci(unclipped).format()} unclipped (difference {gain_over.format()}) and "
        f"{mean_ci(he).format()} for He; rescue margin {mean_ci(rescue).format()}.",
    )

    fixes = {
        g: np.minimum(
            accuracy[Setting(g, batch_norm=True)] - accuracy[Setting(g)] - MARGIN,
            accuracy[Setting(g, batch_norm=True)] - he + CLOSE,
        )
        for g in POOR_GAINS
    }
    fixed = holm_paired(np.zeros_like(he), fixes)
    section.claim(
        f"Batch norm fixes vanishing and exploding gradients: at a poor gain it beats the "
        f"plain net by more than {MARGIN:g} and comes within {CLOSE:g} of He's test accuracy.",
        [
            by_interval(
                f"gain {g:.3g}: per seed min(BN - plain - {MARGIN:g}, BN - He + {CLOSE:g}) (Holm)",
                fixed[g].interval,
                1,
            )
            for g in POOR_GAINS
        ],
        "; ".join(
            f"gain {g:.3g}: test accuracy with batch norm "
            f"{mean_ci(accuracy[Setting(g, batch_norm=True)]).format()} vs plain "
            f"{mean_ci(accuracy[Setting(g)]).format()}, margin {fixed[g].interval.format()}"
            for g in POOR_GAINS
        )
        + f"; He {mean_ci(he).format()}.",
    )

    he_bn = accuracy[Setting(HE_GAIN, batch_norm=True)]
    alone = paired_difference(he, he_bn).interval
    section.claim(
        f"Careful initialisation (He) avoids the problem without any other fix: plain He "
        f"comes within {CLOSE:g} of He with batch norm.",
        [by_interval(f"He minus He with batch norm, + {CLOSE:g}", alone.plus(CLOSE), 1)],
        f"test accuracy He {mean_ci(he).format()} vs He with batch norm "
        f"{mean_ci(he_bn).format()} (difference {alone.format()}).",
    )
