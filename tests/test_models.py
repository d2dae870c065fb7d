"""The NNX MLP: the seed architecture, dropout driven by explicit keys, options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend.random import threefry_2x32

from jaxopt_lab.training.models import MLP, keep_probability


def param_shapes(model: nnx.Module) -> list[tuple[int, ...]]:
    return sorted(x.shape for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_default_is_the_keras_quickstart_network():
    model = MLP(rngs=nnx.Rngs(0))
    assert param_shapes(model) == [(10,), (128,), (128, 10), (784, 128)]
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == 101_770
    logits = model(jnp.ones((3, 28, 28, 1)))
    assert logits.shape == (3, 10)


def test_dropout_only_in_training_and_reproducible_from_its_key():
    model = MLP(dropout_rate=0.5, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    key = jax.random.key(2)
    np.testing.assert_array_equal(model(x), model(x))
    train_a = model(x, train=True, dropout_key=key)
    np.testing.assert_array_equal(train_a, model(x, train=True, dropout_key=key))
    assert not np.allclose(train_a, model(x))
    assert not np.allclose(train_a, model(x, train=True, dropout_key=jax.random.key(3)))


def threefry_draws(key: jax.Array, shape: tuple[int, int]) -> np.ndarray:
    """16-bit draws straight from threefry2x32 (``jax.extend.random.threefry_2x32``): its
    32-bit words of the counters 0, 1, ..., cut into halves, low half first."""
    count = shape[0] * shape[1] // 2
    words = threefry_2x32(jax.random.key_data(key), jnp.arange(count, dtype=jnp.uint32))
    return np.asarray(words).view(np.uint16).reshape(shape)  # little-endian: low half first


def test_dropout_keeps_a_unit_where_its_16_bit_draw_is_below_the_threshold():
    """The oracle is threefry2x32 itself, four 16-bit draws per block: a unit is kept
    when its draw is below 52429 = round(0.8 * 2^16), checked on 2^20 units (so draws
    at the threshold and one below it occur), and a kept unit is divided by
    52429 / 2^16. Training without a key is refused."""
    key = jax.random.key(2)
    (mask,) = MLP(hidden_sizes=(512,), rngs=nnx.Rngs(0)).dropout_masks(key, 2048)
    draws = threefry_draws(key, (2048, 512))
    assert np.isin([52428, 52429], draws).all()
    np.testing.assert_array_equal(mask, draws < 52429)
    assert keep_probability(0.2) == 52429 / 2**16

    model = MLP(dropout_rate=0.2, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
    hidden = nnx.relu(model.hidden[0](x.reshape(16, -1)))
    kept = threefry_draws(key, (16, 128)) < 52429
    expected = model.output(jnp.where(kept, hidden / (52429 / 2**16), 0.0))
    np.testing.assert_array_equal(model(x, train=True, dropout_key=key), expected)
    with pytest.raises(ValueError, match="dropout_key"):
        model(x, train=True)


@pytest.mark.parametrize("dropout_rate", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_dropout_keeps_units_at_its_rate_independently(dropout_rate, impl):
    """Over 2^20 units (2048 examples x 512), the share kept is within 5 standard errors
    of ``keep_probability``, and so is the share of neighbours both kept (units 2j and
    2j + 1 share a threefry word, 2j + 1 and 2j + 2 do not) from p^2; with a threefry
    key and with an rbg key (``jax.random.bits`` of that implementation)."""
    model = MLP(hidden_sizes=(512,), dropout_rate=dropout_rate, rngs=nnx.Rngs(0))
    (mask,) = model.dropout_masks(jax.random.key(7, impl=impl), 2048)
    kept = np.asarray(mask, dtype=np.float64)
    p = keep_probability(dropout_rate)
    assert abs(p - (1 - dropout_rate)) <= 2**-17
    assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / kept.size)
    for pairs in (kept[:, 0::2] * kept[:, 1::2], kept[:, 1:-1:2] * kept[:, 2::2]):
        q = p * p
        assert abs(pairs.mean() - q) < 5 * np.sqrt(q * (1 - q) / pairs.size), pairs.mean()


def test_keep_probability_is_the_rate_to_2_to_the_minus_16():
    assert keep_probability(0.0) == 1.0
    assert keep_probability(0.5) == 0.5
    assert keep_probability(1 - 1e-9) == 2**-16  # never zero: kept units are divided by it
    assert keep_probability(1e-9) == 1.0


def test_each_hidden_layer_drops_its_own_units():
    """Two hidden layers of 8 units, each passing its input through unchanged (the first
    sees a constant 1, the second an identity kernel), dropout 0.5: an output unit is 4
    where both layers kept it. Independent masks keep a unit in both with probability
    0.25; one mask shared by both layers would keep it with probability 0.5."""
    model = MLP(
        hidden_sizes=(8, 8), num_classes=8, dropout_rate=0.5, input_size=1, rngs=nnx.Rngs(0)
    )
    first, second = model.hidden
    first.kernel.set_value(jnp.zeros((1, 8)))
    first.bias.set_value(jnp.ones(8))
    second.kernel.set_value(jnp.eye(8))
    second.bias.set_value(jnp.zeros(8))
    model.output.kernel.set_value(jnp.eye(8))
    model.output.bias.set_value(jnp.zeros(8))
    logits = model(jnp.zeros((512, 1)), train=True, dropout_key=jax.random.key(0))
    assert set(np.unique(np.asarray(logits))) <= {0.0, 4.0}
    kept_by_both = float(jnp.mean(logits == 4.0))
    # 4096 Bernoulli(0.25) units: standard error 0.0068
    assert abs(kept_by_both - 0.25) < 0.03, kept_by_both


@pytest.mark.parametrize("hidden_sizes", [(128,), (64, 32)])
def test_masks_drawn_ahead_give_the_logits_of_the_key(hidden_sizes):
    model = MLP(hidden_sizes=hidden_sizes, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
    key = jax.random.key(2)
    masks = model.dropout_masks(key, 16)
    assert [m.shape for m in masks] == [(16, size) for size in hidden_sizes]
    drawn = model(x, train=True, dropout_key=key)
    np.testing.assert_array_equal(model(x, train=True, dropout_masks=masks), drawn)
    other = model.dropout_masks(jax.random.key(3), 16)
    assert not np.array_equal(model(x, train=True, dropout_masks=other), drawn)
    assert MLP(dropout_rate=0.0, rngs=nnx.Rngs(0)).dropout_masks(key, 16) == ()


def test_hidden_sizes_activation_and_batch_norm():
    model = MLP(
        hidden_sizes=(64, 32), num_classes=5, activation=nnx.tanh, batch_norm=True, rngs=nnx.Rngs(0)
    )
    assert param_shapes(model) == [
        (5,),
        (32,),
        (32,),
        (32,),
        (32, 5),
        (64,),
        (64,),
        (64,),
        (64, 32),
        (784, 64),
    ]
    stats = nnx.state(model, nnx.BatchStat)
    assert len(jax.tree.leaves(stats)) == 4  # mean and var of both hidden layers
    x = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
    model(x, train=True, dropout_key=jax.random.key(0))
    updated = nnx.state(model, nnx.BatchStat)
    assert not np.allclose(updated["norms"][0]["mean"].get_value(), 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_sizes": (0,)}, "hidden_sizes"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs, rngs=nnx.Rngs(0))
