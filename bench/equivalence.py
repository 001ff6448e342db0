"""Property check: the engine of this checkout against another version of it (the legacy engine), every
figure, on random messy sessions, random segments of every criterion, funnels, paths and comparisons.

    python -m bench.equivalence --legacy PATH [--cases 500] [--seed 1] [--shrink] [--record DIR]

PATH is a checkout of the other version (e.g. `git worktree add /tmp/legacy b59f378`); it runs in a child
process (`PYTHONPATH=PATH`, this interpreter), this checkout runs in process. Cases are generated from the
seed alone: sessions with missing and empty values, enumerations in several cases (`Desktop`/`desktop`,
`ß`/`SS`), hostile labels, missing page counts, no pages, long paths, repeated ids, visitors with one to
three sessions and none, fields with UTM and custom keys (empty, PII-like), durations null/0/fractional/
huge, starts with assorted UTC offsets, naive, outside the window or unknown; windows in zones with and
without DST, one day (hourly) to a month. Each case is fed in random batches (in process: a list of
`Session`s, a frame, or a frame through the store's Parquet body; the scan's BATCH set small at random, so
that repeats and `returning` cross the engine's batches), and answers: the summary and its
estimate `Record` (scalars, series, groups, wholes, shown), a funnel with a breakdown and its record, a
path analysis with and without a page and their records, and `compare` of the summary with the previous
period's. Answers are compared as JSON; a float that differs only by |a-b| <= 1e-9 relative is reported as
noise, not as a difference. `--shrink` reduces one failing case per kind of difference to a minimal input.
`--record DIR` writes a few cases that together cover every criterion, with the legacy answers (what
`tests/test_equivalence_messy.py` reads; written to tests/data/equivalence/messy)."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent

# ------------------------------------------------------------------------------------------ generation

WINDOWS = [  # (timeframe, start, end, zone)
    ("custom", "2026-10-01", "2026-10-07", "Europe/Istanbul"),
    ("custom", "2026-10-31", "2026-11-02", "America/New_York"),  # DST ends on 11-01
    ("yesterday", "2026-11-01", "2026-11-01", "America/New_York"),  # a 25-hour day, hourly
    ("custom", "2026-03-08", "2026-03-08", "America/New_York"),  # a 23-hour day
    ("today", "2026-10-03", "2026-10-03", "UTC"),
    ("last30days", "2026-10-01", "2026-10-30", "Asia/Kathmandu"),
    ("custom", "2026-10-05", "2026-10-06", "Pacific/Kiritimati"),
]
HOSTILE = [
    "\u202eevil",
    "a\x00b",
    "<script>alert(1)</script>",
    "tab\there",
    "  padded  ",
    "line\nbreak",
    "🙂",
    "x" * 300,
    "zero\u200bwidth",
    '"quoted"',
    "ann@example.com",
]
PAGES = [
    "/",
    "/",
    "/pricing",
    "/pricing",
    "/pricing?plan=pro",
    "/Pricing",
    "/checkout",
    "/checkout",
    "/checkout/",
    "/checkout/done",
    "/blog/a",
    "/blog/b",
    "/Blog/A",
    "",
    " ",
    "/reset?email=ann@example.com",
    "/reset?email=[email]",
    "/ü/页面",
    "/a*b",
    "/p/" + "long" * 40,
    *HOSTILE[:4],
]
PATTERNS = [
    "/",
    "*",
    "/pricing",
    "/pricing*",
    "/Pricing",
    "/checkout*",
    "/checkout",
    "/checkout/done",
    "*/done",
    "/blog/*",
    "/*/*",
    "*?plan=*",
    "/reset?email=ann@example.com",
    "/reset?email=[email]",
    "/ü/*",
    "/a*b",
    "/nowhere",
    "**",
    "*a*",
]
COUNTRIES = [
    "Turkey",
    "turkey",
    "TURKEY",
    "Germany",
    "germany",
    "United States",
    "Straße",
    "STRASSE",
    "",
    None,
    "(none)",
    "(None)",
    "İstanbul",
    *HOSTILE[:3],
]
DEVICES = ["Mobile", "mobile", "MOBILE", "Desktop", "desktop", "Tablet", "", None, "(none)", "smart tv"]
BROWSERS = ["Chrome", "chrome", "Safari", "Firefox", "Edge ", "", None, HOSTILE[0]]
SYSTEMS = ["iOS", "ios", "IOS", "Android", "Windows", "Mac OS", "", None]
FIELD_KEYS = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "plan",
    "user_id",
    "ref",
    "UTM_SOURCE",
    "email",
    "ann@example.com",
    "",
    "k\u202e",
]
FIELD_VALUES = [
    "google",
    "Google",
    "newsletter",
    "",
    "(none)",
    "free",
    "pro",
    '{"a": 1}',
    "bob@example.com",
    "x" * 200,
    *HOSTILE[:3],
]
OFFSETS = [0, 0, 3 * 3600, -5 * 3600, 5 * 3600 + 45 * 60, 14 * 3600, -12 * 3600, -(9 * 3600 + 30 * 60), None, None]
DURATIONS = [None, None, 0.0, 0.4, 0.5, 1.5, 30.0, 30.0, 59.5, 600.0, 3599.5, 86400.0 * 3, 1e7, "uniform"]


def _pick(rng: random.Random, values: list[Any]) -> Any:
    return values[rng.randrange(len(values))]


def sessions(rng: random.Random, window: tuple[str, str, str, str], prefix: str = "s") -> list[dict[str, Any]]:
    """Random sessions around `window` (a day either side), as JSON: ISO starts keep their offset or none."""
    start, end = date.fromisoformat(window[1]), date.fromisoformat(window[2])
    low = datetime(start.year, start.month, start.day) - timedelta(days=1, hours=14)
    span = int(((end - start).days + 3) * 86400 + 28 * 3600)
    out: list[dict[str, Any]] = []
    count = _pick(rng, [0, 1, 2, 5, 20, 60, 120, 200])
    visitors = [f"v{i}" for i in range(max(1, count // 2))] + ["", "v@x.com"]
    plenty = rng.random() < 0.5  # few distinct values (ties), or many
    for i in range(count):
        if out and rng.random() < 0.06:
            sid = out[rng.randrange(len(out))]["id"]  # a repeat: the first one counts
        else:
            sid = _pick(rng, [f"{prefix}{i:03d}", f"{prefix}{i}", f"{prefix}-{i}.x", f"É{prefix}{i}"])
        started: str | None = None
        if rng.random() > 0.06:
            at = low + timedelta(seconds=rng.randrange(span))
            if rng.random() < 0.2:
                at = at.replace(microsecond=rng.choice([1, 500000, 999999]))
            offset = _pick(rng, OFFSETS)
            if offset is None:
                started = at.isoformat()
            else:
                started = at.replace(tzinfo=UTC).astimezone(timezone(timedelta(seconds=offset))).isoformat()
        n_pages = _pick(rng, [0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5, 8])
        pages = [_pick(rng, PAGES if plenty else PAGES[:6]) for _ in range(n_pages)]
        if pages and rng.random() < 0.1:
            pages.append(pages[-1])  # a reload
        fields: dict[str, str] = {}
        for _ in range(_pick(rng, [0, 0, 1, 1, 2, 3, 5])):
            fields[_pick(rng, FIELD_KEYS)] = _pick(rng, FIELD_VALUES)
        if plenty and rng.random() < 0.15:
            fields["user_id"] = f"u{rng.randrange(10_000)}"
        duration = _pick(rng, DURATIONS)
        if duration == "uniform":
            duration = round(rng.uniform(0, 5000), rng.choice([0, 1, 3]))
        views = _pick(rng, [None, None, 0, 1, n_pages, n_pages, n_pages + 2, 1000])
        out.append(
            {
                "id": sid,
                "visitor_id": None if rng.random() < 0.1 else _pick(rng, visitors),
                "started_at": started,
                "duration": duration,
                "page_views": views,
                "events": _pick(rng, [None, 0, 1, 3, 12]),
                "pages": pages,
                "browser": _pick(rng, BROWSERS),
                "os": _pick(rng, SYSTEMS),
                "device": _pick(rng, DEVICES),
                "country": _pick(rng, COUNTRIES if plenty else [*COUNTRIES[:4], None]),
                "fields": fields,
            }
        )
    return out


CHOICES = {
    "country": [
        "Turkey",
        "turkey",
        "TURKEY",
        "germany",
        "(none)",
        "(NONE)",
        "",
        "nowhere",
        "strasse",
        "straße",
        "i̇stanbul",
        HOSTILE[0],
        "ann@example.com",
    ],
    "device": ["mobile", "Desktop", "DESKTOP", "tablet", "(none)", "", "Smart TV"],
    "browser": ["chrome", "CHROME", "safari", "edge", "edge ", "(none)"],
    "os": ["ios", "android", "WINDOWS", "mac os", "(none)", ""],
}
FIELD_CRITERIA = {
    "utm_source": ["google", "Google", "newsletter", "(none)", "", '{"a": 1}'],
    "plan": ["pro", "free", "(none)"],
    "email": ["bob@example.com", "[email]"],
    "ann@example.com": ["google", "(none)"],
    "[email]": ["google"],
    "nokey": ["(none)", "x"],
    "UTM_SOURCE": ["google"],
}


def _values(rng: random.Random, pool: list[str]) -> str | list[str]:
    if rng.random() < 0.4:
        return _pick(rng, pool)
    return rng.sample(pool, rng.randint(1, min(3, len(pool))))


def _respelled(rng: random.Random, value: str | None) -> str:
    if not value:
        return _pick(rng, ["(none)", "(NONE)", ""])
    return _pick(rng, [value, value, value.upper(), value.lower(), value.casefold(), value.title()])


def segment(rng: random.Random, data: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Random criteria; values are often those of the sessions, spelled in another case."""
    if rng.random() < 0.2:
        return None

    def seen(name: str) -> list[str]:
        found = [_respelled(rng, s[name]) for s in rng.sample(data, min(3, len(data)))]
        return found + CHOICES[name] if rng.random() < 0.3 else found or CHOICES[name]

    def pages() -> str | list[str]:
        found = [p for s in rng.sample(data, min(3, len(data))) for p in s["pages"] if p.strip()]
        if found and rng.random() < 0.4:
            return _values(rng, found)
        return _values(rng, PATTERNS)

    def fields() -> dict[str, Any]:
        present = sorted({k for s in data for k in s["fields"] if k})
        keys = rng.sample(sorted(FIELD_CRITERIA), rng.randint(1, 2))
        if present and rng.random() < 0.6:
            keys[0] = _pick(rng, present)
        out: dict[str, Any] = {}
        for key in keys:
            values = [s["fields"].get(key) or "(none)" for s in rng.sample(data, min(3, len(data)))]
            out[key] = _values(rng, values + FIELD_CRITERIA.get(key, ["(none)"]))
        return out

    make: dict[str, Any] = {
        **{name: (lambda name=name: _values(rng, seen(name))) for name in CHOICES},
        "fields": fields,
        "visited": pages,
        "not_visited": pages,
        "landing_page": pages,
        "exit_page": pages,
        "min_duration": lambda: _pick(rng, [0, 0.5, 1, 30, 59.5, 600, 1e6]),
        "max_duration": lambda: _pick(rng, [0, 0.5, 30, 600, 3599.5, 1e8]),
        "min_pageviews": lambda: _pick(rng, [0, 1, 2, 3, 4]),
        "bounced": lambda: rng.random() < 0.5,
        "returning": lambda: rng.random() < 0.5,
    }
    picked = rng.sample(sorted(make), _pick(rng, [1, 1, 1, 2, 2, 3, 4]))
    criteria = {name: make[name]() for name in picked}
    if criteria.get("min_duration", 0) > criteria.get("max_duration", 1e9):
        criteria["min_duration"], criteria["max_duration"] = criteria["max_duration"], criteria["min_duration"]
    return criteria


def _batches(rng: random.Random, n: int) -> list[list[Any]]:
    """Sizes and how each batch is fed: `list` (Session objects), `frame`, or `stored` (a frame through Parquet)."""
    cuts = sorted(rng.sample(range(n + 1), min(n + 1, rng.randint(1, 4))))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=False) if b > a] or [0]
    return [[size, _pick(rng, ["list", "frame", "stored"])] for size in sizes]


def case(rng: random.Random, number: int) -> dict[str, Any]:
    window = _pick(rng, WINDOWS)
    data = sessions(rng, window)
    before = _previous(window)
    return {
        "case": number,
        "window": list(window),
        "sessions": data,
        "batches": _batches(rng, len(data)),
        "top": _pick(rng, [1, 2, 3, 5, 10, 50]),
        "segment": segment(rng, data),
        "steps": [_pick(rng, PATTERNS) for _ in range(_pick(rng, [2, 2, 3, 4, 5]))],
        "breakdown": _pick(
            rng,
            [None, "country", "device", "browser", "os", "utm_source", "plan", "nokey", "ann@example.com", "user_id"],
        ),
        "funnel_top": _pick(rng, [1, 3, 5]),
        "page": _pick(rng, PATTERNS),
        "paths_top": _pick(rng, [1, 3, 10]),
        "previous": {"window": list(before), "sessions": sessions(rng, before, "p")} if rng.random() < 0.7 else None,
        "movers": _pick(rng, [1, 3, 5]),
        "flush": _pick(rng, [None, None, 1, 2, 7, 30]),
    }


def _previous(window: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
    start, end = date.fromisoformat(window[1]), date.fromisoformat(window[2])
    days = (end - start).days + 1
    return ("custom", str(start - timedelta(days=days)), str(start - timedelta(days=1)), window[3])


def cases(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [case(rng, i) for i in range(count)]


# ------------------------------------------------------------------------------ answering (any version)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _record(record: Any) -> dict[str, Any]:
    return {
        "counts": sorted([[list(k), list(v)] for k, v in record.counts.items()], key=repr),
        "wholes": record.wholes,
        "shown": record.shown,
        "scalars": record.scalars,
        "series": list(record.series),
    }


def answer(given: dict[str, Any]) -> dict[str, Any]:
    """Every figure of every analysis of one case, by whichever `hardal_mcp` is importable."""
    try:
        from hardal_mcp import frames
    except ImportError:  # the legacy engine: Session objects only
        frames = None

    if frames is None:
        return _answer(given, None)
    from hardal_mcp.analytics import scan as scan_module

    batch = scan_module.BATCH  # the engine counts once per BATCH rows: small ones exercise what crosses batches
    scan_module.BATCH = given.get("flush") or batch
    try:
        return _answer(given, frames)
    finally:
        scan_module.BATCH = batch


def _answer(given: dict[str, Any], frames: Any) -> dict[str, Any]:
    from hardal_mcp.analytics import Digest, Funnel, PathAnalysis, Segment, compare
    from hardal_mcp.analytics.estimate import Record
    from hardal_mcp.models import Session
    from hardal_mcp.params import Window

    def window_of(w: list[str]) -> Window:
        return Window(w[0], date.fromisoformat(w[1]), date.fromisoformat(w[2]), w[3])  # type: ignore[arg-type]

    def rows_of(items: list[dict[str, Any]]) -> list[Session]:
        return [
            Session(**{**s, "started_at": None if s["started_at"] is None else datetime.fromisoformat(s["started_at"])})
            for s in items
        ]

    def fed(scan: Any, rows: list[Session], batches: list[list[Any]]) -> Any:
        at = 0
        for size, how in batches:
            part = rows[at : at + size]
            at += size
            if frames is None or how == "list":
                scan.add(part)
            elif how == "frame":
                scan.add(frames.from_sessions(part))
            else:
                scan.add(frames.decode(frames.encode(frames.from_sessions(part))))
        return scan

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # an analysis that fails must fail the same way in both
            return {"error": type(exc).__name__, "message": str(exc)[:300]}

    window = window_of(given["window"])
    rows = rows_of(given["sessions"])
    batches = given["batches"]
    out: dict[str, Any] = {}
    seg: Any = attempt(lambda: Segment.parse(given["segment"]) if given["segment"] else None)
    if isinstance(seg, dict):
        return {"segment": seg}

    record = Record()
    summary = attempt(
        lambda: fed(Digest(window, top=given["top"], segment=seg), rows, batches).summary(
            website_id="w", total=len(rows) + 1, record=record
        )
    )
    out["summary"] = summary if isinstance(summary, dict) else summary.model_dump(mode="json")
    out["record"] = _record(record)

    funnel_record = Record()
    funnel = attempt(
        lambda: fed(
            Funnel(window, given["steps"], breakdown=given["breakdown"], top=given["funnel_top"], segment=seg),
            rows,
            batches,
        ).result(website_id="w", total=None, record=funnel_record)
    )
    out["funnel"] = funnel if isinstance(funnel, dict) else funnel.model_dump(mode="json")
    out["funnel_record"] = _record(funnel_record)

    for name, page in (("paths", given["page"]), ("flows", None)):
        paths_record = Record()
        paths = attempt(
            lambda page=page, paths_record=paths_record: fed(
                PathAnalysis(window, page, top=given["paths_top"], segment=seg), rows, batches
            ).result(website_id="w", total=None, record=paths_record)
        )
        out[name] = paths if isinstance(paths, dict) else paths.model_dump(mode="json")
        out[f"{name}_record"] = _record(paths_record)

    if given.get("previous") is not None and not isinstance(summary, dict):
        before = given["previous"]
        prows = rows_of(before["sessions"])
        previous = attempt(
            lambda: fed(
                Digest(window_of(before["window"]), top=given["top"], segment=seg), prows, [[len(prows), "frame"]]
            ).summary(website_id="w", total=None)
        )
        if isinstance(previous, dict):
            out["compare"] = previous
        else:
            out["previous"] = previous.model_dump(mode="json")
            both = attempt(lambda: compare(summary, previous, movers=given["movers"]))
            out["compare"] = both if isinstance(both, dict) else both.model_dump(mode="json")
    return _jsonable(out)


def child() -> None:
    """Answer cases, one JSON line in, one JSON line out, until stdin ends."""
    import hardal_mcp

    print(json.dumps({"module": hardal_mcp.__file__}), flush=True)
    for line in sys.stdin:
        print(json.dumps(answer(json.loads(line))), flush=True)


class Legacy:
    """The other checkout's engine, in one long-lived child process."""

    def __init__(self, checkout: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=checkout,
            env=env,
        )
        module = json.loads(self._line())["module"]
        if not Path(module).resolve().is_relative_to(checkout.resolve()):
            raise RuntimeError(f"the child ran {module}, not the code in {checkout}")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the legacy child ended")
        return line

    def answer(self, given: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(given) + "\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._line())
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


# ---------------------------------------------------------------------------------------------- comparing


def differences(a: Any, b: Any, where: str = "") -> list[tuple[str, str]]:
    """(path, what) of every difference of `a` (this engine) from `b` (legacy); what starts with `noise`
    for floats equal within 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(a.keys() | b.keys()):
            if key not in a or key not in b:
                out.append((f"{where}.{key}", f"only in {'legacy' if key in b else 'new'}"))
            else:
                out += differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [(where, f"length {len(a)} vs {len(b)}: {_short(a)} vs {_short(b)}")]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    if a == b and type(a) is type(b):
        return []
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and a == b:
        return [(where, f"type {type(a).__name__} vs {type(b).__name__}: {a!r}")]
    if isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)):
        return [(where, f"noise {a!r} vs {b!r}")]
    return [(where, f"{_short(a)} vs {_short(b)}")]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "…"


def kind(path: str) -> str:
    """A difference's kind: its path without list indexes."""
    return re.sub(r"\[\d+\]", "[]", path)


def real(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The differences that are not float noise nor an int and a float of the same value."""
    return [d for d in found if not d[1].startswith(("noise", "type"))]


# ------------------------------------------------------------------------------------------------ shrinking


def shrink(given: dict[str, Any], wanted: str, legacy: Legacy, budget: int = 400) -> dict[str, Any]:
    """A smaller case that still shows a difference of kind `wanted` (greedy; at most `budget` tries)."""
    tries = 0

    def still(candidate: dict[str, Any]) -> bool:
        nonlocal tries
        tries += 1
        found = real(differences(answer(candidate), legacy.answer(candidate)))
        return any(kind(p) == wanted for p, _ in found)

    def fix_batches(c: dict[str, Any]) -> dict[str, Any]:
        n = len(c["sessions"])
        sizes, total = [], 0
        for size, how in c["batches"]:
            size = min(size, n - total)
            if size > 0:
                sizes.append([size, how])
                total += size
        if total < n:
            sizes.append([n - total, "frame"])
        return {**c, "batches": sizes or [[0, "frame"]]}

    best = given
    if best.get("previous") and not wanted.startswith((".compare", ".previous")):
        candidate = {**best, "previous": None}
        if still(candidate):
            best = candidate
    candidate = {**best, "batches": [[len(best["sessions"]), "list"]]}
    if still(candidate):
        best = candidate
    chunk = max(1, len(best["sessions"]) // 2)
    while chunk >= 1 and tries < budget:
        i, changed = 0, False
        while i < len(best["sessions"]) and tries < budget:
            candidate = fix_batches({**best, "sessions": best["sessions"][:i] + best["sessions"][i + chunk :]})
            if still(candidate):
                best, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    if best.get("previous"):
        for i in range(len(best["previous"]["sessions"]) - 1, -1, -1):
            if tries >= budget:
                break
            rows = best["previous"]["sessions"]
            candidate = {**best, "previous": {**best["previous"], "sessions": rows[:i] + rows[i + 1 :]}}
            if still(candidate):
                best = candidate
    if best["segment"]:
        for name in list(best["segment"]):
            rest = {k: v for k, v in best["segment"].items() if k != name}
            candidate = {**best, "segment": rest or None}
            if tries < budget and still(candidate):
                best = candidate
    # simplify each remaining session, one attribute at a time
    blanks = {
        "fields": {},
        "pages": [],
        "browser": None,
        "os": None,
        "device": None,
        "country": None,
        "visitor_id": None,
        "events": None,
        "page_views": None,
        "duration": None,
        "started_at": None,
    }
    for i in range(len(best["sessions"])):
        for key, blank in blanks.items():
            if best["sessions"][i][key] == blank or tries >= budget:
                continue
            changed_rows = list(best["sessions"])
            changed_rows[i] = {**changed_rows[i], key: blank}
            candidate = {**best, "sessions": changed_rows}
            if still(candidate):
                best = candidate
    return best


# -------------------------------------------------------------------------------------------- recording


def traits(given: dict[str, Any]) -> set[str]:
    found = {f"criterion {name}" for name in given["segment"] or {"(no segment)": None}}
    found.add(f"breakdown {given['breakdown']}")
    found.add(f"window {given['window'][3]} {given['window'][1]}")
    found |= {f"fed {how}" for _, how in given["batches"]}
    found.add(f"flush {given.get('flush')}")
    if given.get("previous"):
        found.add("compare")
    return found


def covering(
    given: list[dict[str, Any]], answers: list[dict[str, Any]], limit: int = 8, size: int = 25_000
) -> list[int]:
    """At most `limit` cases that together show as many traits as they can, every segment criterion first;
    chosen among those of 20 sessions or more, JSON under `size` characters, with 3 or more matching."""

    def matched(i: int) -> int:
        summary = answers[i].get("summary", {})
        return int(summary.get("totals", {}).get("sessions", 0))

    small = [
        i for i, c in enumerate(given) if len(c["sessions"]) >= 20 and len(json.dumps(c)) <= size and matched(i) >= 3
    ] or list(range(len(given)))
    wanted = set().union(*(traits(given[i]) for i in small))

    def score(i: int) -> tuple[int, int]:
        hits = traits(given[i]) & wanted
        return sum(10 if t.startswith("criterion") else 1 for t in hits), -len(json.dumps(given[i]))

    kept: list[int] = []
    while wanted and len(kept) < limit:
        best = max(small, key=score)
        if not traits(given[best]) & wanted:
            break
        kept.append(best)
        wanted -= traits(given[best])
    return sorted(kept)


# -------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.equivalence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--legacy", type=Path, required="--child" not in sys.argv)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shrink", action="store_true", help="shrink one failing case per kind of difference")
    parser.add_argument("--out", type=Path, help="write the (shrunk) failing cases here, one JSON file per kind")
    parser.add_argument("--record", type=Path, help="write covering cases and the legacy answers here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    legacy = Legacy(args.legacy)
    given = cases(args.seed, args.cases)
    failing = 0
    kinds: Counter[str] = Counter()
    noise: Counter[str] = Counter()
    first: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {}
    theirs_all: list[dict[str, Any]] = []
    for c in given:
        ours, theirs = answer(c), legacy.answer(c)
        theirs_all.append(theirs)
        found = differences(ours, theirs)
        for path, what in found:
            if what.startswith(("noise", "type")):
                noise[f"{what.split()[0]} {kind(path)}"] += 1
        found = real(found)
        if found:
            failing += 1
            for k in {kind(p) for p, _ in found}:
                kinds[k] += 1
                first.setdefault(k, (c, found))
    print(f"{len(given)} cases, seed {args.seed}: {failing} differ")
    for k, n in kinds.most_common():
        c, found = first[k]
        example = next(what for p, what in found if kind(p) == k)
        print(f"  {n:4} cases differ at {k} (first: case {c['case']}: {example})")
    for k, n in noise.most_common():
        print(f"  {n:4} tolerated differences ({k.split()[0]}) at {k.split(maxsplit=1)[1]}")
    if args.shrink or args.out:
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
        for k in kinds:
            small = shrink(first[k][0], k, legacy) if args.shrink else first[k][0]
            shown = [(p, w) for p, w in real(differences(answer(small), legacy.answer(small))) if kind(p) == k]
            print(f"\n== {k}: case {small['case']}, {len(small['sessions'])} sessions, segment {small['segment']}")
            for p, w in shown[:4]:
                print(f"   {p}: new {w}")
            if args.out:
                name = re.sub(r"[^A-Za-z0-9_.]+", "_", k).strip("_")[:100]
                (args.out / f"{name}.json").write_text(json.dumps(small, ensure_ascii=False, indent=1))
            else:
                print(
                    "   input:",
                    json.dumps(
                        {
                            x: small[x]
                            for x in (
                                "window",
                                "sessions",
                                "batches",
                                "segment",
                                "top",
                                "steps",
                                "breakdown",
                                "page",
                                "previous",
                            )
                        },
                        ensure_ascii=False,
                    )[:3000],
                )
    if args.record:
        kept = covering(given, theirs_all)
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / "cases.json").write_text(json.dumps([given[i] for i in kept], separators=(",", ":")))
        (args.record / "answers.json").write_text(json.dumps([theirs_all[i] for i in kept], separators=(",", ":")))
        print(f"recorded cases {kept} in {args.record}")
    legacy.close()
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
