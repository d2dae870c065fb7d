"""The six optimizer studies of issue 5, each a module with ``run(budget, out) -> Section``.

``python -m experiments.run_all --quick --out runs/report`` runs them all and writes
``REPORT.md`` with every figure it references; ``make experiments`` is the full budget.
"""
