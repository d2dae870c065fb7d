"""Run the optimizer studies and the summary; write REPORT.md and its figures.

    python -m experiments --budget quick --seed 0 --out runs/report

Each study module has a ``BUDGETS`` dict of tiers, ``measure(budget, seed) -> Results``
(a dataclass) and ``report(results, out) -> Section``. One master seed (``--seed``, or
``SEED=<n>`` for the make targets) derives every tuning seed, final seed, random start and
noise draw of every study (:mod:`experiments.seeds`). The summary ranks the configurations
of the convergence and robustness studies by a performance profile.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from experiments import (
    convergence,
    deep,
    efficiency,
    hypergradient,
    landscapes,
    protocol,
    quadratics,
    robustness,
    summary,
)
from experiments.report import write_report
from experiments.seeds import DEFAULT_MASTER_SEED
from jaxopt_lab.runtime import device_info

T = TypeVar("T")

# quick: every code path in a few minutes (CI runs it through tests/test_experiments.py);
# medium: the committed report; full: hours on a CPU
TIERS = ("quick", "medium", "full")
# the studies with a BUDGETS dict and measure(budget, seed) / report(results, out), in
# report order
STUDIES = {
    "convergence": convergence,
    "robustness": robustness,
    "landscapes": landscapes,
    "efficiency": efficiency,
    "deep": deep,
    "quadratics": quadratics,
}
# the hypergradient study's tier per report tier: its medium tier alone takes about 8
# minutes, so the medium report runs its quick tier (`make experiments-hypergradient`
# runs the others)
HYPERGRADIENT_TIER = {"quick": "smoke", "medium": "quick", "full": "medium"}
CHOICES = (*STUDIES, "hypergradient", "summary")
# a study and the studies whose results it takes as arguments
REQUIRES = {"summary": ("convergence", "robustness")}


@dataclass(frozen=True)
class Report:
    """What :func:`run_all` wrote (``path``: REPORT.md), at which tier and master seed, and
    the results behind it, by study."""

    path: Path
    tier: str
    seed: int
    results: dict[str, Any]


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


def run_all(
    tier: str,
    out: Path,
    studies: Sequence[str] | None = None,
    seed: int = DEFAULT_MASTER_SEED,
) -> Report:
    """The ``studies`` (default: all) at budget ``tier`` under master ``seed``, with the
    studies they build on, written to ``out/REPORT.md``."""
    if tier not in TIERS:
        raise ValueError(f"unknown budget {tier!r}; choose from {', '.join(TIERS)}")
    if seed < 0:
        raise ValueError(f"the master seed must be >= 0, got {seed}")
    wanted = set(CHOICES if studies is None else studies)
    unknown = wanted - set(CHOICES)
    if unknown:
        raise ValueError(f"unknown studies {sorted(unknown)}; choose from {', '.join(CHOICES)}")
    for name in list(wanted):
        wanted.update(REQUIRES.get(name, ()))
    out.mkdir(parents=True, exist_ok=True)
    timed, sections, results = _Timer(), [], {}
    for name, module in STUDIES.items():
        if name in wanted:
            budget = module.BUDGETS[tier]
            results[name] = timed(name, lambda m=module, b=budget: m.measure(b, seed))
            sections.append(module.report(results[name], out))
    if "hypergradient" in wanted:
        results["hypergradient"] = timed(
            "hypergradient", lambda: hypergradient.measure(HYPERGRADIENT_TIER[tier], seed)
        )
        sections.append(hypergradient.report(results["hypergradient"], out))
    if "summary" in wanted:
        problems = {
            **convergence.profile_problems(results["convergence"]),
            **robustness.profile_problems(results["robustness"]),
        }
        sections.insert(0, summary.report(protocol.BUDGETS[tier], problems, out, seed))
    sections.append(summary.limits(protocol.BUDGETS[tier]))
    info = device_info()
    preamble = (
        "Textbook claims about gradient-descent optimizers, each turned into a measured "
        f"experiment. Budget **{tier}**, master seed **{seed}** (`python -m experiments "
        f"--budget {tier} --seed {seed}`; every other seed derives from it), measured on "
        f"{info['device']} ({info['backend']}), JAX {info['jax_version']}. Run time per "
        f"study: {'; '.join(timed.lines)}."
    )
    path = write_report(out / "REPORT.md", "jaxopt_lab optimizer report", preamble, sections)
    return Report(path, tier, seed, results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--budget", choices=TIERS, default="full", help="compute tier")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_MASTER_SEED, help="master seed of every study"
    )
    parser.add_argument("--out", default="runs/report", help="folder for REPORT.md and figures")
    parser.add_argument("--studies", nargs="+", choices=CHOICES, default=None)
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    report = run_all(args.budget, Path(args.out), args.studies, args.seed)
    print(f"wrote {report.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
