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


def table(rows: list[Row], baseline: str = "baseline", ratio: bool = True) -> str:
    """The table; without `ratio`, the ratio column is left out (rows' `ratio` unused)."""
    if ratio:
        lines = [f"| figure | hardal-mcp | {baseline} | ratio | goal | met |", "|---|---:|---:|---:|---|:-:|"]
    else:
        lines = [f"| figure | hardal-mcp | {baseline} | goal | met |", "|---|---:|---:|---|:-:|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        middle = f"{r.baseline} | {r.ratio}" if ratio else r.baseline
        lines.append(f"| {r.figure} | {r.ours} | {middle} | {r.goal} | {met} |")
    return "\n".join(lines)


@dataclass
class Section:
    """A further table with its own notes, under its own heading."""

    title: str
    intro: str
    rows: list[Row]
    notes: list[str]
    baseline: str = "old behaviour"
    ratio: bool = False


def document(
    title: str, header: list[str], rows: list[Row], notes: list[str], sections: list[Section] | None = None
) -> str:
    parts = [f"# {title}", "", *header]
    if rows:
        parts += ["", table(rows), "", "Notes:", ""]
        parts += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    for s in sections or []:
        parts += ["", f"## {s.title}", "", s.intro, "", table(s.rows, s.baseline, s.ratio), "", "Notes:", ""]
        parts += [f"{i}. {note}" for i, note in enumerate(s.notes, 1)]
    return "\n".join(parts) + "\n"
