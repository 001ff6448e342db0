"""How fast the day store (`hardal_mcp.store`) keeps and gives back a day of sessions, and what the
alternatives would cost.

    python -m bench.store_speed [--sessions 15000] [--days 28] [--repeat 5]

Sessions come from the sandbox's generator (15,000 a day by default), rendered as the API's JSON, read by
`models.parse_sessions_page` and redacted by `privacy.redact_session`, as the planner hands them over.
Every format is checked to round-trip every `Session` field exactly before it is timed. Prints:

1. body formats: ms to encode and to decode one day, and bytes per session;
2. the checksum over one body (SHA-256, what the store uses, against blake2b and crc32);
3. the store itself (a SQLite file in a temporary directory), in both body formats: ms per day for `put`;
   then in a new process (a restart), the time to `get` all `--days` days back, per day and in total, and a
   warm `get`; bytes per session on disk and the file size for `--days` days.
Times are process CPU time (other work on the machine inflates wall time, not CPU time), the median of
`--repeat` runs; the 28-day read-back also gives its wall time."""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from hardal_mcp import store
from hardal_mcp.models import Session, parse_sessions_page
from hardal_mcp.privacy import redact_session
from hardal_mcp.sandbox.data import Site
from hardal_mcp.sandbox.query import Renderer, Window, resolve_window

TIMEZONE = "Europe/Istanbul"
FIRST_DAY = date(2026, 9, 1)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def day_of_sessions(day: date, count: int) -> list[Session]:
    """`count` sessions of one day as the planner would hold them (parsed from the API's JSON, redacted)."""
    zone = ZoneInfo(TIMEZONE)
    site = Site(0, "bench", count)
    start, end = resolve_window("custom", day.isoformat(), day.isoformat(), zone, NOW)
    window = Window(site, start, end, NOW)
    raw = window.page(0, window.total)
    while len(raw) < count:  # the generator varies around its average: top the day up with repeats
        raw += raw[: count - len(raw)]
    body = Renderer(zone).sessions_body(raw[:count], {"total": count})
    page = parse_sessions_page(body.encode())
    return [redact_session(s) for s in page.sessions]


# --------------------------------------------------------------------------------------------- formats


def store_encode(sessions: list[Session]) -> bytes:
    return store.encode(sessions)


def store_decode(body: bytes) -> list[Session]:
    return store.decode(body)


def rows_encode(sessions: list[Session]) -> bytes:
    """One array per session."""
    return orjson.dumps(
        [
            (s.id, s.visitor_id, None if s.started_at is None else s.started_at.isoformat(), s.duration, s.page_views,
             s.events, s.pages, s.browser, s.os, s.device, s.country, s.fields)
            for s in sessions
        ]
    )  # fmt: skip


def rows_decode(body: bytes) -> list[Session]:
    iso = datetime.fromisoformat
    return [
        Session(i, v, None if t is None else iso(t), d, pv, e, p, b, o, dv, c, f)
        for i, v, t, d, pv, e, p, b, o, dv, c, f in orjson.loads(body)
    ]


def documented_encode(sessions: list[Session]) -> bytes:
    """The API's own shape, so `parse_sessions_page`'s orjson fast path (`models._documented`) reads it."""
    return orjson.dumps(
        {
            "sessions": [
                {
                    "id": s.id, "visitorId": s.visitor_id,
                    "startedAt": None if s.started_at is None else s.started_at.isoformat(),
                    "duration": s.duration, "pageViews": s.page_views, "events": s.events, "pages": s.pages,
                    "browser": s.browser, "os": s.os, "device": s.device, "country": s.country, "fields": s.fields,
                }
                for s in sessions
            ]
        }
    )  # fmt: skip


def documented_decode(body: bytes) -> list[Session]:
    return parse_sessions_page(body).sessions


def columns_encode(sessions: list[Session]) -> bytes:
    """One array per field, every value spelled out (the store's format without its coded columns)."""
    return orjson.dumps(
        [
            [s.id for s in sessions],
            [s.visitor_id for s in sessions],
            [None if s.started_at is None else s.started_at.isoformat() for s in sessions],
            [s.duration for s in sessions],
            [s.page_views for s in sessions],
            [s.events for s in sessions],
            [s.pages for s in sessions],
            [s.browser for s in sessions],
            [s.os for s in sessions],
            [s.device for s in sessions],
            [s.country for s in sessions],
            [s.fields for s in sessions],
        ]
    )


def columns_decode(body: bytes) -> list[Session]:
    columns = orjson.loads(body)
    iso = datetime.fromisoformat
    columns[2] = [None if t is None else iso(t) for t in columns[2]]
    return list(map(Session, *columns))


def zlib_codec(encode: Callable[[list[Session]], bytes], decode: Callable[[bytes], list[Session]], level: int) -> Any:
    return (lambda s: zlib.compress(encode(s), level)), (lambda b: decode(zlib.decompress(b)))


def paused_decode(body: bytes) -> list[Session]:
    with store.collector_paused():
        return store.decode(body)


FORMATS: dict[str, tuple[Callable[[list[Session]], bytes], Callable[[bytes], list[Session]]]] = {
    "store (collector paused)": (store_encode, paused_decode),
    "columns, coded": (store_encode, store_decode),
    "store + zlib 1": zlib_codec(store_encode, store_decode, 1),
    "store + zlib 6": zlib_codec(store_encode, store_decode, 6),
    "columns": (columns_encode, columns_decode),
    "rows": (rows_encode, rows_decode),
    "rows + zlib 1": zlib_codec(rows_encode, rows_decode, 1),
    "documented JSON": (documented_encode, documented_decode),
    "documented + zlib 1": zlib_codec(documented_encode, documented_decode, 1),
}


def exact(a: list[Session], b: list[Session]) -> bool:
    """Every field equal, datetimes with the same offset (equality alone ignores the offset)."""
    return len(a) == len(b) and all(
        x == y and (x.started_at is None or x.started_at.utcoffset() == y.started_at.utcoffset())  # type: ignore[union-attr]
        for x, y in zip(a, b, strict=True)
    )


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.process_time()
        action()
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times)


def store_keys(count: int) -> tuple[list[store.DayKey], Callable[[], float]]:
    """The keys of `count` days, and a clock well after them, so all are closed (nothing younger than 48 h
    is stored or served)."""
    clock = datetime.combine(FIRST_DAY + timedelta(days=count + 10), datetime.min.time(), UTC).timestamp
    return [
        store.DayKey("fp", "bench", None, False, TIMEZONE, FIRST_DAY + timedelta(days=i)) for i in range(count)
    ], clock


def read_back(path: Path, count: int, repeat: int) -> dict[str, float]:
    """In a fresh process (a restart): every day read, each let go before the next as a planner aggregating
    day by day does; then every day read and held at once; then one day again (warm)."""
    keys, clock = store_keys(count)
    with store.DayStore(path, clock=clock) as day_store:
        gc.collect()
        began, wall = time.process_time(), time.perf_counter()
        for key in keys:
            day = day_store.get(key)
            assert day is not None
            del day
        one_by_one, one_by_one_wall = time.process_time() - began, time.perf_counter() - wall
        gc.collect()
        began = time.process_time()
        held = [day_store.get(key) for key in keys]
        held_cpu = time.process_time() - began
        del held
        gc.collect()
        warm = median_ms(lambda: day_store.get(keys[0]), repeat)
    return {"cpu": one_by_one * 1000, "wall": one_by_one_wall * 1000, "held": held_cpu * 1000, "warm": warm}


def through_store(days: list[list[Session]], repeat: int) -> tuple[float, dict[str, float], int]:
    """Put every day into a new store, then time reading them back in a new process; check they round-trip."""
    keys, clock = store_keys(len(days))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / store.FILENAME
        with store.DayStore(path, clock=clock) as day_store:
            puts = []
            for key, sessions in zip(keys, days, strict=True):
                began = time.process_time()
                day_store.put(key, sessions, len(sessions))
                puts.append((time.process_time() - began) * 1000)
        size = path.stat().st_size  # closed: the journal is checkpointed into the file and removed
        child = subprocess.run(
            [sys.executable, "-m", "bench.store_speed", "--read-back", str(path), "--days", str(len(days)),
             "--repeat", str(repeat)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        reads = json.loads(child.stdout)
        with store.DayStore(path, clock=clock) as day_store:
            for key, sessions in zip(keys, days, strict=True):
                assert exact(day_store.get(key), sessions), "store round trip"  # type: ignore[arg-type]
    return statistics.median(puts), reads, size


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=15_000, help="sessions per day")
    parser.add_argument("--days", type=int, default=28, help="days written and read back through the store")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--read-back", type=Path, help=argparse.SUPPRESS)  # the child that times a restart
    args = parser.parse_args()
    n, repeat = args.sessions, args.repeat
    if args.read_back:
        print(json.dumps(read_back(args.read_back, args.days, repeat)))
        return 0

    began = time.perf_counter()
    days = [day_of_sessions(FIRST_DAY + timedelta(days=i), n) for i in range(args.days)]
    print(f"{args.days} days × {n:,} sessions generated, parsed and redacted in {time.perf_counter() - began:.1f} s")
    sample = days[0]
    gc.collect()
    gc.freeze()  # the bench's own copy of the days is not the store's cost: keep it out of the collector's walks

    print(f"\n1. body formats, one day of {n:,} sessions (CPU ms, median of {repeat})")
    print(f"{'format':<24}{'encode ms':>11}{'decode ms':>11}{'bytes/session':>15}")
    for name, (enc, dec) in FORMATS.items():
        body = enc(sample)
        assert exact(dec(body), sample), f"{name} does not round-trip"
        print(
            f"{name:<24}{median_ms(lambda e=enc: e(sample), repeat):>11.1f}"  # type: ignore[misc]
            f"{median_ms(lambda d=dec, b=body: d(b), repeat):>11.1f}{len(body) / n:>15.0f}"  # type: ignore[misc]
        )

    body = store.encode(sample)
    print(f"\n2. checksum of one {len(body) / 2**20:.1f} MiB body (CPU ms, median of {repeat})")
    for name, fn in (
        ("blake2b-128", lambda: hashlib.blake2b(body, digest_size=16).digest()),
        ("sha256 (store)", lambda: hashlib.sha256(body).digest()),
        ("crc32", lambda: zlib.crc32(body)),
    ):
        print(f"{name:<24}{median_ms(fn, repeat):>11.2f} ms")

    print(f"\n3. the store (SQLite, {args.days} days)")
    heads = ("body", "put", "get", "N days", "(wall)", "N held", "warm get", "B/sess.", "MiB")
    print("".join(f"{h:<8}" if i == 0 else f"{h:>9}" for i, h in enumerate(heads)))
    for name, body_format in (("plain", store.PLAIN), ("zlib 1", store.ZLIB)):
        store.BODY_FORMAT = body_format
        put, reads, size = through_store(days, repeat)
        count = sum(map(len, days))
        figures = (put, reads["cpu"] / len(days), reads["cpu"], reads["wall"], reads["held"], reads["warm"])
        print(f"{name:<8}" + "".join(f"{f:>9.1f}" for f in figures) + f"{size / count:>9.0f}{size / 2**20:>9.1f}")
    store.BODY_FORMAT = store.PLAIN
    print(
        "CPU ms (wall: elapsed). put: encode, checksum and write one day, median over the days. Then, in a\n"
        "new process (a restart): get, N days: every day read back, each let go before the next (ms per day,\n"
        "total); N held: every day read back and kept in memory (the collector walks the growing heap); warm\n"
        "get: one day again, median. B/sess. and MiB: the file on disk after the store is closed."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
