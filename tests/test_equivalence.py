"""Every figure of the columnar engine equals the previous engine's, on fixed data.

`tests/data/equivalence/` holds a few generated cases that together use every segment criterion, no
segment and every funnel breakdown (sessions with missing values, mixed-case enumerations, repeated ids,
starts with and without offsets, inside and outside the window), and the answers the engine before the
columnar one (commit b59f378) gave to them: the summary, its estimate record, a funnel and two path
analyses. Made with `python -m bench.engine_equivalence --legacy <checkout of b59f378> --cases 80 --seed 14
--record tests/data/equivalence`, which also compares the two engines on as many random cases as asked
(700 cases, 0 differences, when the engine was replaced)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.engine_equivalence import answer, differences

DATA = Path(__file__).parent / "data" / "equivalence"
CASES: list[dict[str, Any]] = json.loads((DATA / "cases.json").read_text())
ANSWERS: list[dict[str, Any]] = json.loads((DATA / "answers.json").read_text())


def test_the_cases_use_every_criterion() -> None:
    used = {name for case in CASES for name in case["segment"] or {}}
    assert used >= {"country", "device", "browser", "fields", "visited", "not_visited", "landing_page",
                    "exit_page", "min_duration", "max_duration", "min_pageviews", "bounced", "returning"}  # fmt: skip
    assert any(case["segment"] is None for case in CASES)


@pytest.mark.parametrize(
    ("case", "expected"), list(zip(CASES, ANSWERS, strict=True)), ids=[str(c["case"]) for c in CASES]
)
def test_every_figure_equals_the_previous_engines(case: dict[str, Any], expected: dict[str, Any]) -> None:
    got = json.loads(json.dumps(answer(case)))  # as the previous engine's answers were kept: JSON
    # A sum of durations may differ in its last bits (the engine adds in another order): only the
    # estimate record carries it unrounded; every figure shown is rounded and must be equal.
    assert [d for d in differences(got, expected) if "float noise" not in d] == []
