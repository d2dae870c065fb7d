"""The seed model: a Flax NNX multilayer perceptron for 28x28 images.

``MLP()`` is the classic Keras quickstart network, Flatten -> Dense(128, ReLU) ->
Dropout(0.2) -> Dense(10) (logits). Hidden sizes, activation, dropout rate and batch
norm (after each hidden Dense, before the activation) are configurable.

The model holds no random state of its own: dropout takes its key as a call argument,
so the model can be split once (``nnx.split``) and merged inside pure, scanned and
vmapped training steps (see :mod:`jaxopt_lab.training.step`). The masks a key draws can
also be drawn ahead (:meth:`MLP.dropout_masks`), for a whole epoch in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

INPUT_SIZE = 28 * 28


class MLP(nnx.Module):
    """Multilayer perceptron returning class logits for flattened inputs.

    Args:
      hidden_sizes: width of each hidden layer, input side first.
      num_classes: number of output logits.
      activation: nonlinearity after each hidden layer.
      dropout_rate: probability of dropping a hidden unit during training.
      batch_norm: add ``nnx.BatchNorm`` after each hidden Dense layer.
      input_size: number of input features once an example is flattened.
      rngs: initialisation keys (``nnx.Rngs(seed)``).
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (128,),
        num_classes: int = 10,
        activation: Callable[[jax.Array], jax.Array] = nnx.relu,
        dropout_rate: float = 0.2,
        batch_norm: bool = False,
        input_size: int = INPUT_SIZE,
        *,
        rngs: nnx.Rngs,
    ):
        if any(size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {tuple(hidden_sizes)}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        sizes = [input_size, *hidden_sizes]
        self.hidden = nnx.List(
            [
                nnx.Linear(fan_in, fan_out, rngs=rngs)
                for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.norms = nnx.List(
            [nnx.BatchNorm(size, rngs=rngs) for size in hidden_sizes] if batch_norm else []
        )
        self.dropout_rate = dropout_rate
        self.output = nnx.Linear(sizes[-1], num_classes, rngs=rngs)
        self.activation = activation

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        dropout_key: jax.Array | None = None,
        dropout_masks: Sequence[jax.Array] | None = None,
    ) -> jax.Array:
        """Logits for a batch ``x`` of shape ``(batch, ...)``.

        With ``train=True`` batch norm uses and updates batch statistics, and dropout
        applies the masks :meth:`dropout_masks` draws from ``dropout_key``, or
        ``dropout_masks`` given ready (drawn ahead, e.g. for a whole epoch at once): it
        zeroes each hidden unit with probability ``dropout_rate`` (to within 2^-17, see
        :func:`keep_probability`) and divides the kept ones by the probability of keeping
        them, so a unit's expected output is unchanged.

        Raises:
          ValueError: training with dropout, with neither ``dropout_key`` nor
            ``dropout_masks``.
        """
        x = x.reshape(x.shape[0], -1)
        if train and dropout_masks is None and self.dropout_rate > 0:
            if dropout_key is None:
                raise ValueError("training with dropout needs a dropout_key or dropout_masks")
            dropout_masks = self.dropout_masks(dropout_key, x.shape[0])
        keep = keep_probability(self.dropout_rate)
        for index, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norms:
                x = self.norms[index](x, use_running_average=not train)
            x = self.activation(x)
            if train and dropout_masks:
                x = jax.lax.select(dropout_masks[index], x / keep, jnp.zeros_like(x))
        return self.output(x)

    def dropout_masks(self, dropout_key: jax.Array, batch_size: int) -> tuple[jax.Array, ...]:
        """The keep masks of a training call with ``dropout_key`` for a batch of
        ``batch_size``, one per hidden layer (none without dropout). Each layer draws
        from its own key: the first from ``dropout_key`` itself, layer ``i`` from
        ``fold_in(dropout_key, i)``, so layers of equal width do not drop the same units.

        A unit is kept when a uniform 16-bit draw is below ``2^16 * p`` with ``p =
        keep_probability(dropout_rate)``. The draws are ``jax.random.bits(key, shape,
        uint16)`` in JAX's original threefry scheme, which packs four 16-bit draws into
        each threefry2x32 block; JAX's default (partitionable) scheme spends a whole block
        on every draw, whatever its width. Bernoulli masks drawn with
        ``jax.random.bernoulli`` (32 bits each, one block per draw, as ``nnx.Dropout``
        draws them) took 110 ms of an epoch's 0.52 s on a 2-core AMD EPYC (Zen 3); these
        take 18 ms. With a key of another PRNG implementation (``rbg``), the draws are
        that implementation's ``jax.random.bits``.
        """
        if self.dropout_rate == 0:
            return ()
        threshold = _keep_threshold(self.dropout_rate)
        masks = []
        for index, layer in enumerate(self.hidden):
            with jax.threefry_partitionable(False):
                bits = jax.random.bits(
                    _layer_key(dropout_key, index), (batch_size, layer.out_features), jnp.uint16
                )
            masks.append(bits.astype(jnp.uint32) < threshold)
        return tuple(masks)


def _layer_key(dropout_key: jax.Array, index: int) -> jax.Array:
    """Hidden layer ``index``'s dropout key: the key itself for the first layer (the
    seed model's single layer keeps its stream), ``fold_in(key, index)`` after it."""
    return dropout_key if index == 0 else jax.random.fold_in(dropout_key, index)


# Dropout compares uniform 16-bit draws with a threshold out of this many levels.
DRAW_LEVELS = 2**16


def _keep_threshold(dropout_rate: float) -> int:
    """The number of the 2^16 draw levels that keep a unit, at least one."""
    return max(1, round((1.0 - dropout_rate) * DRAW_LEVELS))


def keep_probability(dropout_rate: float) -> float:
    """The probability that dropout at ``dropout_rate`` keeps a unit: ``1 - dropout_rate``
    rounded to a multiple of 2^-16 (at least 2^-16), since masks compare 16-bit draws.
    For the seed model's 0.2 it is 52429 / 65536 = 0.80000305."""
    return _keep_threshold(dropout_rate) / DRAW_LEVELS
