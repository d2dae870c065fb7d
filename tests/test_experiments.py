"""The experiment suite end to end at the quick budget (what `make experiments-quick`
runs): REPORT.md, every figure it references, every verdict re-derived from its
comparisons by the one rule, and the data protocol of every tuned configuration."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from experiments import protocol
from experiments.splits import holdout
from experiments.verdict import VERDICTS, Comparison, Outcome, verdict
from jaxopt_lab.training.data import load_dataset

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|inf|nan|never", re.IGNORECASE)
CLAIM = re.compile(
    r"> \*\*Claim:\*\* (?P<text>.*?)  \n> \*\*Verdict: (?P<verdict>\w+)\.\*\* (?P<evidence>.*?)"
    r"  \n> \*Comparisons:\* (?P<comparisons>.*?)\.\n",
    re.DOTALL,
)


@pytest.fixture(scope="module")
def report(quick_report) -> tuple[Path, str, int]:
    """The quick report (conftest builds it in this process, so that the protocol can be
    inspected): its folder, its text and its master seed."""
    return quick_report.path.parent, quick_report.path.read_text(), quick_report.seed


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
    out, text, _ = report
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) >= 10
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(data) > 10_000, name  # a drawn figure, not an empty canvas


def test_every_verdict_is_the_rule_applied_to_its_comparisons(report):
    _, text, seed = report
    assert f"master seed **{seed}**" in text
    claims = list(CLAIM.finditer(text))
    assert len(claims) >= 12
    assert text.count("> **Claim:**") == len(claims)
    for claim in claims:
        outcomes = [
            Comparison(label, Outcome(outcome))
            for label, outcome in re.findall(
                r"([^;]+?): (supports|contradicts|inconclusive)", claim["comparisons"]
            )
        ]
        assert outcomes, claim["text"]
        assert claim["verdict"] in VERDICTS
        assert verdict(outcomes) == claim["verdict"], claim["text"]
        assert NUMBER.search(claim["evidence"]), claim["text"]  # every verdict carries numbers
    verdict_table = _tables(text.split("## Verdicts")[1])[0]
    assert verdict_table[0] == ["study", "claim", "verdict", "measured"]
    assert [row[2] for row in verdict_table[1:]] == [f"**{c['verdict']}**" for c in claims]


def test_validation_comes_from_training_images_and_test_is_held_out(report):
    runs = protocol.tuned_runs()
    assert runs, "the quick report tunes configurations through the protocol"
    budget = protocol.BUDGETS["quick"]
    for dataset in {run.workload.dataset for run in runs}:
        full = load_dataset(dataset)
        data = holdout(dataset, budget.num_train, budget.num_eval, budget.num_val)
        assert budget.num_train + budget.num_val <= full.train_labels.shape[0]
        np.testing.assert_array_equal(data.train_images, full.train_images[: budget.num_train])
        np.testing.assert_array_equal(data.val_images, full.train_images[-budget.num_val :])
        np.testing.assert_array_equal(data.test_images, full.test_images)
        assert data.without_test().test_images is None
    for run in runs:
        # the final runs were evaluated on the test split, once per seed
        assert run.final_test_accuracy().shape == (len(run.final.seeds),)


def test_no_optimum_on_a_grid_edge_without_the_report_saying_so(report):
    _, text, _ = report
    for run in protocol.tuned_runs():
        rates = run.learning_rates
        best = run.best["learning_rate"]
        on_edge = best in (rates.min(), rates.max())
        finite = np.isfinite([p.final for p in run.points]).any()
        if on_edge and finite:
            assert run.edge, (run.config, best, rates)
        if run.edge:
            assert run.edge in text, run.edge


def test_unknown_study_is_rejected_before_any_work(tmp_path, capsys):
    from experiments.run_all import main

    with pytest.raises(SystemExit) as stopped:
        main(["--budget", "quick", "--studies", "nope", "--out", str(tmp_path)])
    assert stopped.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()
