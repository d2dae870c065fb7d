"""The layer rule of DESIGN.md holds: import-linter's contracts pass, and they name every
module of the package, so a new module cannot slip outside the rule."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jaxopt_lab

REPO = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a dev dependency"
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def test_the_top_level_contract_names_every_module_of_the_package():
    top = next(c for c in _contracts() if c["type"] == "layers" and "containers" not in c)
    named = set(top["layers"])
    modules = {f"jaxopt_lab.{m.name}" for m in pkgutil.iter_modules(jaxopt_lab.__path__)}
    assert modules == named, (sorted(modules - named), sorted(named - modules))


def test_each_subpackage_contract_names_every_module_of_its_subpackage():
    for contract in _contracts():
        for container in contract.get("containers", []):
            package = __import__(container, fromlist=["_"])
            modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
            named = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
            assert modules == named, (container, sorted(modules - named), sorted(named - modules))
