#!/usr/bin/env python3
"""Summarize one conformance run for scripts/conformance.sh.

    conformance_report.py ERA RESULTS_DIR EXIT_CODE

Reads RESULTS_DIR/*/checks.json and the suite's output (RESULTS_DIR/output.log), prints one line of counts and
the baseline verdict, and exits non-zero when the run failed: the suite exited non-zero, or it did not confirm
the baseline, or it produced no results at all. The counts line is written so that it is not mistaken for a
test runner's closing line (the suite's own "Total" line counts baselined fixture failures).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def main() -> int:
    era, results, code = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    counts = {"SUCCESS": 0, "FAILURE": 0, "WARNING": 0}
    scenarios = 0
    for path in sorted(results.glob("*/checks.json")):
        scenarios += 1
        for check in json.loads(path.read_text(encoding="utf-8")):
            status = check.get("status")
            if status in counts:
                counts[status] += 1
    log = ANSI.sub("", (results / "output.log").read_text(encoding="utf-8", errors="replace"))
    lines = log.splitlines()

    def section(title: str) -> list[str]:
        try:
            start = lines.index(title) + 1
        except ValueError:
            return []
        items = []
        for line in lines[start:]:
            if not line.startswith("  "):
                break
            items.append(line.strip()[2:])
        return items

    expected = section("Expected failures (in baseline):")
    stale = section("Stale baseline entries (now passing - remove from baseline):")
    unexpected = section("Unexpected failures (not in baseline):")
    confirmed = "Baseline check passed: all failures are expected." in log
    not_scored = re.search(r"Not scored for [^:]+: (\d+) scenario", log)
    print(
        f"conformance {era}: {scenarios} scenarios, checks passed={counts['SUCCESS']} failed={counts['FAILURE']}"
        f" warnings={counts['WARNING']}"
        + (f" (incl. {not_scored.group(1)} unscored scenarios)" if not_scored else "")
        + f"; baseline: {len(expected)} expected, {len(unexpected)} unexpected, {len(stale)} stale"
    )
    for entry in unexpected:
        print(f"  UNEXPECTED FAILURE {entry}")
    for entry in stale:
        print(f"  STALE BASELINE ENTRY (now passes; delete it) {entry}")
    if code != 0:
        print(f"conformance {era}: FAILED (suite exit code {code})")
        return 1
    if scenarios == 0 or not confirmed:
        print(f"conformance {era}: FAILED (no results, or the suite did not confirm the baseline)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
