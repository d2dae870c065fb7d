"""Run the six studies and the summary; write REPORT.md and its figures.

    python -m experiments --budget quick --out runs/report

Each study module has ``measure(budget) -> <Study>Results`` (a dataclass) and
``report(results, out) -> Section``; a study that builds on another takes that study's
results as an argument (robustness reuses the learning rates convergence tuned; the
summary ranks over both).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from experiments import (
    convergence,
    deep,
    efficiency,
    hypergradient,
    landscapes,
    robustness,
    second_order,
    summary,
)
from experiments.budget import BUDGETS, Budget
from experiments.report import write_report
from jaxopt_lab.runtime import device_info

T = TypeVar("T")

STUDIES = (
    "convergence",
    "robustness",
    "landscapes",
    "efficiency",
    "deep",
    "second_order",
    "hypergradient",
    "summary",
)
# a study and the studies whose results it takes as arguments
REQUIRES = {"robustness": ("convergence",), "summary": ("convergence", "robustness")}


class _Timer:
    """Runs each study's measurement and records how long it took."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, name: str, measure: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = measure()
        seconds = time.perf_counter() - start
        self.lines.append(f"{name} {seconds:.0f} s")
        print(f"done: {name} ({seconds:.0f} s)", flush=True)
        return result


def run_all(budget: Budget, out: Path, studies: Sequence[str] | None = None) -> Path:
    """The ``studies`` (default: all) under ``budget``, with the studies they build on;
    returns the path of the REPORT.md written in ``out``."""
    wanted = set(STUDIES if studies is None else studies)
    unknown = wanted - set(STUDIES)
    if unknown:
        raise ValueError(f"unknown studies {sorted(unknown)}; choose from {', '.join(STUDIES)}")
    for name in list(wanted):
        wanted.update(REQUIRES.get(name, ()))
    out.mkdir(parents=True, exist_ok=True)
    timed, sections = _Timer(), []
    if "convergence" in wanted:
        converged = timed("convergence", lambda: convergence.measure(budget.mnist))
        sections.append(convergence.report(converged, out))
    if "robustness" in wanted:
        robust = timed("robustness", lambda: robustness.measure(budget, converged))
        sections.append(robustness.report(robust, out))
    if "landscapes" in wanted:
        shapes = timed("landscapes", lambda: landscapes.measure(budget.landscapes))
        sections.append(landscapes.report(shapes, out))
    if "efficiency" in wanted:
        costs = timed("efficiency", lambda: efficiency.measure(budget))
        sections.append(efficiency.report(costs, out))
    if "deep" in wanted:
        gradients = timed("deep", lambda: deep.measure(budget))
        sections.append(deep.report(gradients, out))
    if "second_order" in wanted:
        quadratics = timed("second_order", lambda: second_order.measure(budget.quadratics))
        sections.append(second_order.report(quadratics, out))
    if "hypergradient" in wanted:
        tuned = timed("hypergradient", lambda: hypergradient.measure(budget.hypergradient))
        sections.append(hypergradient.report(tuned, out))
    if "summary" in wanted:
        problems = {
            **convergence.profile_problems(converged),
            **robustness.profile_problems(robust),
        }
        sections.insert(0, summary.report(budget.mnist, problems, out))
    info = device_info()
    preamble = (
        "Textbook claims about gradient-descent optimizers, each turned into a measured "
        f"experiment. Budget **{budget.name}** (`python -m experiments --budget "
        f"{budget.name}`), measured on {info['device']} ({info['backend']}), JAX "
        f"{info['jax_version']}. Run time per study: {'; '.join(timed.lines)}."
    )
    return write_report(out / "REPORT.md", "jaxopt_lab optimizer report", preamble, sections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--out", default="runs/report", help="folder for REPORT.md and figures")
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=None)
    args = parser.parse_args(argv)
    path = run_all(BUDGETS[args.budget], Path(args.out), args.studies)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
