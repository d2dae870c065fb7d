"""Shared fixtures. ``mnist`` loads the real dataset once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The same defaults as the Makefile, so a bare `pytest` finds the data too.
os.environ.setdefault("MNIST_DIR", str((REPO / ".." / "shared" / "data" / "mnist").resolve()))
os.environ.setdefault("TFDS_DATA_DIR", str(REPO / ".tfds"))
# One folder of original files per dataset (mnist, fashion_mnist).
os.environ.setdefault("JAXOPT_LAB_DATA", str((REPO / ".." / "shared" / "data").resolve()))
SHARED_DATA = Path(os.environ["JAXOPT_LAB_DATA"])
# The CLI keeps compiled programs in a persistent cache by default; in-process CLI calls
# would switch it on for the whole test session, so tests run without it unless a test
# asks for it (tests/test_runtime.py does, in subprocesses).
os.environ.setdefault("JAXOPT_LAB_COMPILATION_CACHE", "off")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs two workers), prepare both datasets once in
    the controller before any worker starts, so that no two workers write the same TFDS
    folder of a clean checkout at once."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    from jaxopt_lab.training.data import load_dataset

    for name in ("mnist", "fashion_mnist"):
        load_dataset(name)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Work units for ``make test``'s ``--dist loadgroup``: one per test file, as
    ``--dist loadfile`` would make, except that every test using ``quick_report`` joins
    one unit, so that a single worker builds that report (7-8 minutes in CI) instead of
    each worker building its own."""
    for item in items:
        shared = "quick_report" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group("quick_report" if shared else item.location[0]))


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST (60k train / 10k test) on the device, prepared offline from MNIST_DIR."""
    from jaxopt_lab.training.data import load_dataset

    return load_dataset("mnist")


# the master seed of the quick report the experiment tests share
QUICK_REPORT_SEED = 3


@pytest.fixture(scope="session")
def quick_report(tmp_path_factory, mnist):
    """The whole experiment suite at the quick budget (what `make experiments-quick` and
    CI run), built once per session in this process: ``.path`` is its REPORT.md and
    ``.results[study]`` each study's measured results, which the study tests check."""
    from experiments.run_all import run_all

    return run_all("quick", tmp_path_factory.mktemp("report"), seed=QUICK_REPORT_SEED)


@pytest.fixture(scope="module")
def float64():
    """Switch x64 on for one module (``pytestmark = pytest.mark.usefixtures("float64")``)
    and restore the global flag afterwards; x64 is process-wide state."""
    import jax

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
    jax.clear_caches()
