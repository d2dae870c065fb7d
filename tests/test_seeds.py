"""experiments/seeds.py: every seed derives from one master seed."""

import pytest

from experiments.seeds import derive, derive_many


def test_derive_is_deterministic_and_depends_on_the_path_and_the_master_seed():
    assert derive(0, "convergence", "final") == derive(0, "convergence", "final")
    paths = [
        ("convergence", "final"),
        ("convergence", "tuning"),
        ("landscapes", "final"),
        ("convergence",),
        ("convergence", "final", 1),
        ("convergence", "final", 2),
    ]
    seeds = {derive(master, *path) for master in (0, 1, 7) for path in paths}
    assert len(seeds) == 3 * len(paths)  # every master and path gives its own seed
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)


def test_derive_many_gives_distinct_seeds_that_depend_on_the_master_seed():
    seeds = derive_many(0, 200, "convergence", "final")
    assert len(seeds) == len(set(seeds)) == 200
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert derive_many(0, 200, "convergence", "final") == seeds
    assert set(derive_many(1, 200, "convergence", "final")).isdisjoint(seeds)
    assert set(derive_many(0, 200, "convergence", "tuning")).isdisjoint(seeds)
    # a larger budget tier keeps the seeds of a smaller one and adds to them
    assert derive_many(0, 10, "convergence", "final") == seeds[:10]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="master seed"):
        derive(-1, "x")
    with pytest.raises(ValueError, match="master seed"):
        derive_many(-1, 3, "x")
    with pytest.raises(ValueError, match="count"):
        derive_many(0, 0, "x")
