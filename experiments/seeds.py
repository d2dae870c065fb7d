"""Every random seed of the studies derives from one master seed.

``python -m experiments --seed 7`` (``make experiments-medium SEED=7``) changes every
tuning seed, final seed, random start and noise draw at once; the same master seed
reproduces the same report. A seed is named by a path (``derive(master, "convergence",
"final")``), hashed with CRC-32 (stable across processes, unlike ``hash``) and mixed with
the master seed by :class:`numpy.random.SeedSequence`. The parts of a path are joined with
``/`` (so ``("a", "b")`` and ``("a/b",)`` name the same seed, and ``1`` the same as ``"1"``).
"""

from __future__ import annotations

import zlib

import numpy as np

DEFAULT_MASTER_SEED = 0


def _entropy(master: int, path: tuple[str | int, ...]) -> np.random.SeedSequence:
    if master < 0:
        raise ValueError(f"the master seed must be >= 0, got {master}")
    name = "/".join(str(part) for part in path)
    return np.random.SeedSequence([master, zlib.crc32(name.encode())])


def derive(master: int, *path: str | int) -> int:
    """One seed in [0, 2**31) for ``path`` under ``master``."""
    return int(_entropy(master, path).generate_state(1)[0] & 0x7FFFFFFF)


def derive_many(master: int, count: int, *path: str | int) -> tuple[int, ...]:
    """``count`` distinct seeds in [0, 2**31) for ``path`` under ``master``.

    A longer list extends a shorter one: ``derive_many(m, 10, p)[:5] == derive_many(m, 5, p)``,
    so a larger budget tier reruns the seeds of a smaller one and adds new ones.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    state = _entropy(master, path).generate_state(2 * count + 8) & 0x7FFFFFFF
    seeds = tuple(dict.fromkeys(int(s) for s in state))[:count]  # distinct, in order
    if len(seeds) < count:  # pragma: no cover - needs 2**31-scale collisions
        raise RuntimeError("could not draw distinct seeds")
    return seeds
