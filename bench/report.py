"""The one table (`| figure | hardal-mcp | baseline | ratio | goal | met |`) and its notes, as Markdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    ours: str
    baseline: str = "—"
    ratio: str = "—"
    goal: str = "—"
    met: bool | None = None


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def times(value: float) -> str:
    return f"{value:.2f}×"


def percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def table(rows: list[Row]) -> str:
    lines = ["| figure | hardal-mcp | baseline | ratio | goal | met |", "|---|---:|---:|---:|---|:-:|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.figure} | {r.ours} | {r.baseline} | {r.ratio} | {r.goal} | {met} |")
    return "\n".join(lines)


def document(title: str, header: list[str], rows: list[Row], notes: list[str]) -> str:
    parts = [f"# {title}", "", *header, "", table(rows), "", "Notes:", ""]
    parts += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(parts) + "\n"
