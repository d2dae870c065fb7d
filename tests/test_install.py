"""A normal (non-editable) install works outside the repository: the wheel is built,
installed into a fresh virtual environment, and every subcommand that the installed
``jaxopt-lab --help`` lists runs its smallest case from a temporary directory.

The fresh environment borrows the dependencies (JAX, TensorFlow, ...) of the test's own
environment through a ``.pth`` line, so the test needs no network; that line adds a
directory to the path without running the ``.pth`` files in it, so the editable install of
the development environment stays inactive and only the installed wheel is importable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the smallest case of each subcommand; a new subcommand without one fails the test
SMALLEST = {
    "train": ["--epochs", "1", "--batch-size", "256", "--hidden-sizes", "16", "--out", "run"],
    "bench": ["--quick", "--skip-training", "--sizes", "2e4", "--optimizers", "sgd"],
    "minimize": ["--problem", "rosenbrock", "--dim", "2"],
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel of this checkout; returns its bin directory."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(wheels), str(REPO)],
        check=True,
    )
    (wheel,) = wheels.glob("jaxopt_lab-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
        + [str(wheel)],
        check=True,
    )
    return venv / "bin"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = _run(
        [str(installed / "python"), "-c", "import jaxopt_lab; print(jaxopt_lab.__file__)"], tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert str(installed.parent) in where.stdout and str(REPO) not in where.stdout


def test_every_listed_subcommand_runs_its_smallest_case(installed, tmp_path):
    help_text = _run([str(installed / "jaxopt-lab"), "--help"], tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    commands = help_text.stdout.split("COMMAND\n", 1)[1].split("\noptions:")[0]
    listed = re.findall(r"^    ([a-z][a-z-]*) ", commands, flags=re.MULTILINE)
    assert set(listed) == set(SMALLEST), listed
    for command in listed:
        result = _run([str(installed / "jaxopt-lab"), command, *SMALLEST[command]], tmp_path)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    assert (tmp_path / "run" / "metrics.json").exists()
