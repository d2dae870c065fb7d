"""Run the six studies and the summary; write REPORT.md and its figures.

python -m experiments.run_all --budget quick --out runs/report
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import (
    convergence,
    deep,
    efficiency,
    landscapes,
    robustness,
    second_order,
    summary,
)
from experiments.budget import BUDGETS, Budget
from experiments.report import write_report
from jaxopt_lab.runtime import device_info

# in running order: robustness reuses the tuned rates of convergence; summary needs both
STUDIES = {
    "convergence": convergence,
    "robustness": robustness,
    "landscapes": landscapes,
    "efficiency": efficiency,
    "deep": deep,
    "second_order": second_order,
    "summary": summary,
}
REQUIRES = {"robustness": ("convergence",), "summary": ("convergence", "robustness")}


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
    shared: dict[str, Any] = {}
    sections, timings = [], []
    for study in (module for name, module in STUDIES.items() if name in wanted):
        start = time.perf_counter()
        sections.append(study.run(budget, out, shared))
        timings.append(f"{sections[-1].title.split(':')[0]} {time.perf_counter() - start:.0f} s")
        print(f"done: {sections[-1].title} ({time.perf_counter() - start:.0f} s)", flush=True)
    info = device_info()
    preamble = (
        "Textbook claims about gradient-descent optimizers, each turned into a measured "
        f"experiment. Budget **{budget.name}** (`python -m experiments.run_all --budget "
        f"{budget.name}`), measured on {info['device']} ({info['backend']}), JAX "
        f"{info['jax_version']}. Run time per study: {'; '.join(timings)}."
    )
    summary_first = sorted(sections, key=lambda section: not section.title.startswith("Summary"))
    return write_report(out / "REPORT.md", "jaxopt_lab optimizer report", preamble, summary_first)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--out", default="runs/report", help="folder for REPORT.md and figures")
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), default=None)
    args = parser.parse_args(argv)
    path = run_all(BUDGETS[args.budget], Path(args.out), args.studies)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
