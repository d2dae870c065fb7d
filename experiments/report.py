"""REPORT.md: sections of prose, markdown tables, figures and claim verdicts.

Each study returns a :class:`Section`; :func:`write_report` puts a summary table of all
claims and their measured verdicts first, then the sections in order. Every claim is
stated next to its verdict and the numbers behind it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.verdict import RULE, Comparison, Verdict, verdict


@dataclass(frozen=True)
class Claim:
    """A textbook claim, the comparisons that test it, their verdict and the numbers."""

    text: str
    comparisons: tuple[Comparison, ...]
    evidence: str

    @property
    def verdict(self) -> Verdict:
        return verdict(self.comparisons)


@dataclass
class Section:
    """One study's part of the report, built up in order."""

    title: str
    blocks: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def text(self, paragraph: str) -> None:
        self.blocks.append(paragraph.strip())

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(markdown_table(headers, rows))

    def figure(self, file_name: str, caption: str) -> None:
        """Reference a PNG that the study wrote next to REPORT.md."""
        self.figures.append(file_name)
        self.blocks.append(f"![{caption}]({file_name})\n\n*{caption}*")

    def claim(self, text: str, comparisons: Sequence[Comparison], evidence: str) -> None:
        """State ``text``, decide it from ``comparisons`` by the one rule, show the numbers."""
        claim = Claim(text, tuple(comparisons), evidence)
        self.claims.append(claim)
        tested = "; ".join(f"{c.label}: {c.outcome.value}" for c in claim.comparisons)
        self.blocks.append(
            f"> **Claim:** {text}  \n> **Verdict: {claim.verdict}.** {evidence}  \n"
            f"> *Comparisons:* {tested}."
        )

    def markdown(self) -> str:
        return "\n\n".join([f"## {self.title}", *self.blocks])


def format_number(value: object, precision: int = 4) -> str:
    """Numbers with ``precision`` significant digits; infinities as "never"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "never"
        if math.isnan(value):
            return "nan"
        return f"{value:.{precision}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; cells go through :func:`format_number`."""
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(format_number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, title: str, preamble: str, sections: Sequence[Section]) -> Path:
    """Write REPORT.md: title, preamble, a table of every claim's verdict, the sections;
    and ``verdicts.json`` beside it (study, claim, verdict and each comparison's outcome),
    to compare the verdicts of two runs."""
    claims = [(section.title, claim) for section in sections for claim in section.claims]
    summary = markdown_table(
        ["study", "claim", "verdict", "measured"],
        [(study, c.text, f"**{c.verdict}**", c.evidence) for study, c in claims],
    )
    parts = [f"# {title}", preamble.strip(), "## Verdicts", f"*Rule:* {RULE}", summary]
    parts += [section.markdown() for section in sections]
    path.write_text("\n\n".join(parts) + "\n")
    verdicts = [
        {
            "study": study,
            "claim": c.text,
            "verdict": c.verdict,
            "comparisons": {x.label: x.outcome.value for x in c.comparisons},
        }
        for study, c in claims
    ]
    (path.parent / "verdicts.json").write_text(json.dumps(verdicts, indent=1) + "\n")
    return path
