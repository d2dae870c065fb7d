"""Where the time of one steady training epoch goes (the seed job: MLP 784-128-10,
dropout 0.2, Adam, batch 32, 1875 steps as one compiled ``lax.scan``).

Each row is a compiled epoch with one piece taken away; the piece's cost is the row's
difference to the row below it in CPU time (what the work costs, whatever else runs on
the host). The first two rows are the seed epoch as it ran before its dropout masks were drawn
ahead of the scan, and before they were drawn as 16-bit integers (four per threefry
block), each compared with the third in wall time. All programs are compiled
first (compilation is not measured), then timed in interleaved rounds so machine noise
hits each alike; the figures are medians over rounds of wall time and of process CPU
time (on a 2-core host CPU time above wall time means XLA ran work on both cores).

    python benchmarks/epoch_profile.py --out runs/bench/epoch_profile.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import jax
import optax
from flax import nnx

import jaxopt_lab as jl
from jaxopt_lab.runtime import device_info
from jaxopt_lab.training.data import load_dataset
from jaxopt_lab.training.models import MLP, _layer_key
from jaxopt_lab.training.step import evaluate, init_train_state, train_epoch, train_step

BATCH_SIZE = 32


class _MasksPerStep(nnx.Module):
    """The seed model behind a model without a ``dropout_masks`` method: ``train_epoch``
    then passes each step's key, and the MLP draws that step's masks inside the scan."""

    def __init__(self, **options):
        self.mlp = MLP(**options)

    def __call__(self, x, *, train=False, dropout_key=None):
        return self.mlp(x, train=train, dropout_key=dropout_key)


class _BernoulliMasks(MLP):
    """The seed model with the masks it drew before its 16-bit draws: one
    ``jax.random.bernoulli`` per layer, 32 bits and one threefry block per unit (as
    ``nnx.Dropout`` draws them), drawn ahead of the scan as the seed epoch's are."""

    def dropout_masks(self, dropout_key, batch_size):
        keep = 1.0 - self.dropout_rate
        return tuple(
            jax.random.bernoulli(
                _layer_key(dropout_key, index), keep, (batch_size, layer.out_features)
            )
            for index, layer in enumerate(self.hidden)
        )


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    wall_s: float
    cpu_s: float


def _epoch(
    dropout_rate: float, optimizer: optax.GradientTransformation, data, model_class=MLP
) -> Callable:
    """A zero-argument call of one compiled epoch of the seed model, blocked on."""
    model = model_class(dropout_rate=dropout_rate, rngs=nnx.Rngs(0))
    graphdef, state = init_train_state(model, optimizer)
    epoch = jax.jit(
        partial(train_epoch, graphdef=graphdef, optimizer=optimizer, batch_size=BATCH_SIZE)
    )
    args = (state, jax.random.key(1), data.train_images, data.train_labels)
    jax.block_until_ready(epoch(*args))
    return lambda: jax.block_until_ready(epoch(*args))


def _fixed_batch_epoch(optimizer: optax.GradientTransformation, data) -> Callable:
    """The epoch's 1875 steps without dropout on one fixed batch: no permutation, no
    gather, no conversion of a fresh batch (the first 32 images, converted inside the
    step as always)."""
    graphdef, state = init_train_state(MLP(dropout_rate=0.0, rngs=nnx.Rngs(0)), optimizer)
    num_batches = data.train_labels.shape[0] // BATCH_SIZE
    images, labels = data.train_images[:BATCH_SIZE], data.train_labels[:BATCH_SIZE]

    @jax.jit
    def epoch(state, key):
        def step(state, step_key):
            return train_step(
                state, images, labels, step_key, graphdef=graphdef, optimizer=optimizer
            )

        return jax.lax.scan(step, state, jax.random.split(key, num_batches))

    jax.block_until_ready(epoch(state, jax.random.key(1)))
    return lambda: jax.block_until_ready(epoch(state, jax.random.key(1)))


def _evaluation(data) -> Callable:
    """The validation pass run after each epoch: the 10k test images, no dropout."""
    graphdef, state = init_train_state(MLP(rngs=nnx.Rngs(0)), jl.adam(1e-3))
    args = (state, data.test_images, data.test_labels)
    jax.block_until_ready(evaluate(*args, graphdef=graphdef))
    return lambda: jax.block_until_ready(evaluate(*args, graphdef=graphdef))


def measure(rounds: int) -> list[Row]:
    data = load_dataset("mnist")
    pieces = [
        (
            "seed epoch, masks drawn per step",
            "the same masks, each drawn inside the scan from its step's key",
            _epoch(0.2, jl.adam(1e-3), data, _MasksPerStep),
        ),
        (
            "seed epoch, Bernoulli masks",
            "masks drawn ahead by jax.random.bernoulli, one threefry block per unit",
            _epoch(0.2, jl.adam(1e-3), data, _BernoulliMasks),
        ),
        (
            "seed epoch",
            "gather + forward + dropout + backward + Adam",
            _epoch(0.2, jl.adam(1e-3), data),
        ),
        (
            "no dropout",
            "the same without dropout's random bits and mask",
            _epoch(0.0, jl.adam(1e-3), data),
        ),
        (
            "SGD, no dropout",
            "Adam's moment updates replaced by one scaled add",
            _epoch(0.0, jl.sgd(1e-3), data),
        ),
        (
            "SGD, no dropout, fixed batch",
            "no permutation or batch gather",
            _fixed_batch_epoch(jl.sgd(1e-3), data),
        ),
        ("evaluation", "one pass over the 10k test images (after each epoch)", _evaluation(data)),
    ]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in pieces}
    for _ in range(rounds):
        for name, _, call in pieces:
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return [
        Row(
            name,
            what,
            statistics.median(w for w, _ in times[name]),
            statistics.median(c for _, c in times[name]),
        )
        for name, what, _ in pieces
    ]


def table(rows: list[Row]) -> str:
    by_name = {row.name: row for row in rows}
    seed, nodrop, sgd = by_name["seed epoch"], by_name["no dropout"], by_name["SGD, no dropout"]
    fixed = by_name["SGD, no dropout, fixed batch"]
    shares = [
        ("dropout (random bits, mask)", seed.cpu_s - nodrop.cpu_s),
        ("Adam's update beyond SGD's", nodrop.cpu_s - sgd.cpu_s),
        ("permutation and batch gather", sgd.cpu_s - fixed.cpu_s),
        ("forward, backward, SGD step, loop", fixed.cpu_s),
    ]
    lines = ["| row | what | wall s | CPU s |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.what} | {r.wall_s:.3f} | {r.cpu_s:.3f} |" for r in rows]
    lines += ["", "| piece of the seed epoch | CPU s | share |", "|---|---|---|"]
    lines += [f"| {name} | {s:.3f} | {s / seed.cpu_s:.0%} |" for name, s in shares]
    per_step = by_name["seed epoch, masks drawn per step"]
    saved = 1 - seed.wall_s / per_step.wall_s
    lines += ["", f"masks drawn ahead instead of per step: {saved:.0%} less wall time per epoch"]
    bernoulli = by_name["seed epoch, Bernoulli masks"]
    saved = 1 - seed.wall_s / bernoulli.wall_s
    lines += [f"16-bit draws instead of Bernoulli masks: {saved:.0%} less wall time per epoch"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/epoch_profile.json"))
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    rows = measure(args.rounds)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"rounds": args.rounds, "rows": [asdict(r) for r in rows], "device": device_info()}
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
