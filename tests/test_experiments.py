"""The experiment suite end to end at the smoke budget: REPORT.md, every figure it
references, the verdict table and the tables of measured numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERDICTS = {"**confirmed**", "**refuted**", "**depends**"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|inf|nan|never", re.IGNORECASE)


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    subprocess.run(
        [sys.executable, "-m", "experiments.run_all", "--budget", "smoke", "--out", str(out)],
        cwd=REPO,
        check=True,
    )
    return out, (out / "REPORT.md").read_text()


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every markdown table as rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_every_referenced_figure_is_a_png(report):
    out, text = report
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) >= 10
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(data) > 10_000, name  # a drawn figure, not an empty canvas


def test_sections_and_verdicts(report):
    _, text = report
    for heading in ("## Verdicts", "## Summary", *(f"## {i}." for i in range(1, 7))):
        assert heading in text
    assert "*Rule:* Each claim rests on one or more comparisons" in text
    verdict_table = _tables(text.split("## Verdicts")[1])[0]
    assert verdict_table[0] == ["study", "claim", "verdict", "measured"]
    rows = verdict_table[1:]
    assert len(rows) >= 13
    studies = {row[0].split(".")[0] for row in rows}
    assert studies == {"1", "2", "3", "4", "5", "6"}
    for row in rows:
        assert row[2] in VERDICTS
        assert NUMBER.search(row[3]), row  # every verdict carries numbers
    assert text.count("**Claim:**") == len(rows) == text.count("> *Comparisons:*")


def test_tables_hold_finite_numbers(report):
    _, text = report
    tables = _tables(text)
    assert len(tables) >= 10
    for table in tables:
        header, *rows = table
        assert rows, header
        for row in rows:
            assert len(row) == len(header)
            for cell in row[1:]:
                assert "nan" not in cell.lower(), (header, row)


def test_measured_structure(report):
    _, text = report
    tables = _tables(text)
    by_header = {tuple(t[0]): t[1:] for t in tables}
    convergence = next(rows for header, rows in by_header.items() if "steps to target" in header)
    assert {row[0] for row in convergence} == {
        "gd (full batch)",
        "sgd (batch 32)",
        "sgd (batch 1)",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "l-bfgs (full batch)",
    }
    final_losses = [float(row[2].split()[0]) for row in convergence]
    assert all(0 <= loss < 10 for loss in final_losses)
    memory = next(rows for header, rows in by_header.items() if "state bytes / parameter" in header)
    state = {row[0]: float(row[1]) for row in memory}
    assert state["sgd"] == 0 and state["momentum"] == 4 and state["adam"] == 8
    assert state["lbfgs"] > state["adam"]
    quadratic = next(rows for header, rows in by_header.items() if "L-BFGS" in header)
    assert all(row[5] == "1" for row in quadratic)  # Newton: one step on a quadratic


def test_unknown_study_is_rejected_before_any_work(tmp_path, capsys):
    from experiments.run_all import main

    with pytest.raises(SystemExit) as stopped:
        main(["--budget", "smoke", "--studies", "nope", "--out", str(tmp_path)])
    assert stopped.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()
