"""REPORT.md: sections of prose, markdown tables, figures and claim verdicts.

Each study returns a :class:`Section`; :func:`write_report` puts a summary table of all
claims and their measured verdicts first, then the sections in order. Every claim is
stated next to its verdict and the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Verdict = Literal["confirmed", "refuted", "depends"]
VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "depends")


@dataclass(frozen=True)
class Claim:
    """A textbook claim, the verdict the measurement gives it, and the numbers."""

    text: str
    verdict: Verdict
    evidence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


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

    def claim(self, text: str, verdict: Verdict, evidence: str) -> None:
        self.claims.append(Claim(text, verdict, evidence))
        self.blocks.append(f"> **Claim:** {text}  \n> **Verdict: {verdict}.** {evidence}")

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
    """Write REPORT.md: title, preamble, a table of every claim's verdict, the sections."""
    claims = [(section.title, claim) for section in sections for claim in section.claims]
    summary = markdown_table(
        ["study", "claim", "verdict", "measured"],
        [(study, c.text, f"**{c.verdict}**", c.evidence) for study, c in claims],
    )
    parts = [f"# {title}", preamble.strip(), "## Verdicts", summary]
    parts += [section.markdown() for section in sections]
    path.write_text("\n\n".join(parts) + "\n")
    return path
