"""Does the engine give exactly the figures another version gives? Random sessions, random segments,
funnels and path questions, answered by this checkout and by another one (`--legacy PATH`, e.g. `git
worktree add /tmp/legacy <commit>`), every figure compared.

    python -m bench.engine_equivalence --legacy PATH [--cases 300] [--seed 1] [--record DIR]

Each case is generated from the seed: sessions with the awkward values that matter (missing or empty
values, enumerations in two cases, no page count, no pages, long paths, repeated ids, visitors with one to
three sessions, starts with offsets, without one, outside the window or unknown, fields with UTM and
custom keys), fed in random batches; a segment of random criteria; a funnel with a breakdown; path
questions with and without a page. The same child program (`--child`) answers the cases in each checkout
(`PYTHONPATH` names the checkout), as JSON: the summary, its estimate `Record`, the funnel and the paths.
`--record DIR` writes a few cases that together use every criterion, and the other version's answers
to them, there (what `tests/test_equivalence.py`
reads). Prints the cases that differ and a count."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
WINDOW = ("custom", "2026-10-01", "2026-10-07", "Europe/Istanbul")
PAGES = ["/", "/pricing", "/pricing?plan=pro", "/checkout", "/checkout/done", "/blog/a", "/blog/b", "/Blog/A", ""]
COUNTRIES = ["Turkey", "turkey", "Germany", "United States", "", None]
DEVICES = ["Mobile", "mobile", "Desktop", "Tablet", None]
BROWSERS = ["Chrome", "Safari", "Firefox", None]
SOURCES = ["google", "Google", "newsletter", "", "(none)"]


def sessions(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    visitors = [f"v{i}" for i in range(rng.randint(1, 40))]
    for i in range(rng.randint(0, 160)):
        sid = f"s{i:03d}" if rng.random() > 0.05 or not out else out[rng.randrange(len(out))]["id"]  # repeats
        start: str | None = None
        if rng.random() > 0.05:
            at = datetime(2026, 9, 30, 20) + timedelta(minutes=rng.randint(0, 60 * 24 * 9))  # edges included
            zone = rng.choice([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5)), None])
            start = (at.replace(tzinfo=zone) if zone else at).isoformat()
        pages = [rng.choice(PAGES) for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 6]))]
        fields: dict[str, str] = {}
        if rng.random() < 0.6:
            fields["utm_source"] = rng.choice(SOURCES)
        if rng.random() < 0.3:
            fields["utm_campaign"] = rng.choice(["spring", "Spring", "x" * 50])
        if rng.random() < 0.3:
            fields["plan"] = rng.choice(["free", "pro"])
        if rng.random() < 0.2:
            fields["user_id"] = f"u{rng.randint(0, 999)}"
        out.append(
            {
                "id": sid,
                "visitor_id": rng.choice(visitors) if rng.random() > 0.1 else None,
                "started_at": start,
                "duration": rng.choice([None, 0.0, 1.5, 30.0, 30.0, 600.0, rng.uniform(0, 4000)]),
                "page_views": None if rng.random() < 0.2 else rng.choice([0, 1, len(pages), len(pages) + 2]),
                "events": rng.choice([None, 0, 3, 12]),
                "pages": pages,
                "browser": rng.choice(BROWSERS),
                "os": rng.choice(["iOS", "Android", "Windows", None]),
                "device": rng.choice(DEVICES),
                "country": rng.choice(COUNTRIES),
                "fields": fields,
            }
        )
    return out


def segment(rng: random.Random) -> dict[str, Any] | None:
    choices: dict[str, Any] = {
        "country": lambda: rng.choice(["Turkey", ["germany", "(none)"], "TURKEY"]),
        "device": lambda: rng.choice(["mobile", ["Desktop", "Tablet"]]),
        "browser": lambda: "chrome",
        "fields": lambda: rng.choice([{"utm_source": "google"}, {"utm_source": ["(none)", "newsletter"]}]),
        "visited": lambda: rng.choice([["/pricing*"], ["/checkout", "/"], "*"]),
        "not_visited": lambda: ["/checkout*"],
        "landing_page": lambda: rng.choice(["/", "/blog/*"]),
        "exit_page": lambda: "/checkout/done",
        "min_duration": lambda: rng.choice([0, 30, 100]),
        "max_duration": lambda: rng.choice([600, 5000]),
        "min_pageviews": lambda: rng.choice([1, 2, 3]),
        "bounced": lambda: rng.random() < 0.5,
        "returning": lambda: rng.random() < 0.5,
    }
    if rng.random() < 0.25:
        return None
    picked = rng.sample(sorted(choices), rng.randint(1, 3))
    criteria = {name: choices[name]() for name in picked}
    if criteria.get("min_duration", 0) > criteria.get("max_duration", 1e9):
        del criteria["max_duration"]
    return criteria


def cases(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        data = sessions(rng)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 4))))
        out.append(
            {
                "case": i,
                "sessions": data,
                "batches": [b - a for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False) if b > a],
                "top": rng.choice([3, 10]),
                "segment": segment(rng),
                "steps": rng.choice([["/", "/pricing*", "/checkout*"], ["/blog/*", "/checkout"]]),
                "breakdown": rng.choice([None, "country", "device", "utm_source"]),
                "page": rng.choice(["/pricing", "/blog/*", "/"]),
            }
        )
    return out


# ------------------------------------------------------------------------------- the child (any version)


def answer(case: dict[str, Any]) -> dict[str, Any]:
    from hardal_mcp.analytics import Digest, Funnel, PathAnalysis, Segment
    from hardal_mcp.analytics.estimate import Record
    from hardal_mcp.models import Session
    from hardal_mcp.params import Window

    window = Window(WINDOW[0], date.fromisoformat(WINDOW[1]), date.fromisoformat(WINDOW[2]), WINDOW[3])
    rows = [
        Session(**{**s, "started_at": None if s["started_at"] is None else datetime.fromisoformat(s["started_at"])})
        for s in case["sessions"]
    ]
    seg = Segment.parse(case["segment"]) if case["segment"] else None

    def fed(scan: Any) -> Any:
        at = 0
        for size in case["batches"]:
            scan.add(rows[at : at + size])
            at += size
        return scan

    record = Record()
    summary = fed(Digest(window, top=case["top"], segment=seg)).summary(website_id="w", total=None, record=record)
    funnel_record = Record()
    funnel = fed(Funnel(window, case["steps"], breakdown=case["breakdown"], segment=seg)).result(
        website_id="w", total=None, record=funnel_record
    )
    paths = fed(PathAnalysis(window, case["page"], segment=seg)).result(website_id="w", total=None)
    flows = fed(PathAnalysis(window, None, top=5, segment=seg)).result(website_id="w", total=None)
    return {
        "summary": summary.model_dump(mode="json"),
        "record": {
            "counts": sorted([list(k), list(v)] for k, v in record.counts.items()),
            "wholes": record.wholes,
            "shown": record.shown,
            "scalars": record.scalars,
            "series": record.series,
        },
        "funnel": funnel.model_dump(mode="json"),
        "funnel_scalars": funnel_record.scalars,
        "paths": paths.model_dump(mode="json"),
        "flows": flows.model_dump(mode="json"),
    }


def child() -> None:
    import hardal_mcp

    given = json.load(sys.stdin)
    print(json.dumps({"module": hardal_mcp.__file__, "answers": [answer(c) for c in given]}))


def answers_of(checkout: Path, given: list[dict[str, Any]]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(HERE), "--child"],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    if not Path(result["module"]).resolve().is_relative_to(checkout.resolve()):
        raise RuntimeError(f"the child ran {result['module']}, not the code in {checkout}")
    return result


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(a.keys() | b.keys()):
            out += differences(a.get(key), b.get(key), f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    if a == b:
        return []
    if isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)):
        return [f"{where}: float noise {a!r} vs {b!r}"]
    return [f"{where}: {a!r} vs {b!r}"]


def covering(given: list[dict[str, Any]]) -> list[int]:
    """A few cases that together use every segment criterion, no segment, and every breakdown."""

    def traits(case: dict[str, Any]) -> set[str]:
        return {*(case["segment"] or {"(no segment)": None}), f"breakdown {case['breakdown']}"}

    wanted = set().union(*map(traits, given))
    kept: list[int] = []
    while wanted:
        best = max(range(len(given)), key=lambda i: (len(traits(given[i]) & wanted), -len(given[i]["sessions"])))
        kept.append(best)
        wanted -= traits(given[best])
    return sorted(kept)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_equivalence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--legacy", type=Path, required="--child" not in sys.argv)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", type=Path, help="write the cases and the legacy answers here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    given = cases(args.seed, args.cases)
    ours = answers_of(HERE.parent.parent, given)["answers"]
    theirs = answers_of(args.legacy, given)["answers"]
    noise = failing = 0
    for case, a, b in zip(given, ours, theirs, strict=True):
        found = differences(a, b)
        real = [d for d in found if "float noise" not in d]
        noise += len(found) - len(real)
        if real:
            failing += 1
            print(f"case {case['case']} (segment {case['segment']}):", *real[:8], sep="\n  ")
    print(f"{len(given)} cases, seed {args.seed}: {failing} differ; {noise} float-noise differences")
    if args.record:
        kept = covering(given)
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / "cases.json").write_text(json.dumps([given[i] for i in kept], separators=(",", ":")))
        (args.record / "answers.json").write_text(json.dumps([theirs[i] for i in kept], separators=(",", ":")))
        print(f"recorded cases {kept} in {args.record}")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
