"""The floor of a scan: only download the same pages and parse them, as fast as Python can.

`python -m bench.floor URL WEBSITE START END TZ PAGE_SIZE CONCURRENCY` reads the window's first page, then
the rest at fixed offsets with CONCURRENCY requests in flight (the shape of `Hardal.scan`), with httpx2
and orjson, and prints one JSON line: wall and CPU seconds of the download, sessions, bytes, requests,
peak RSS growth. Imports and one warm-up request (a connection, as the server's warm-up call leaves
one) come before the clock starts."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import httpx2
import orjson

from bench.procs import peak_rss_growth, reset_peak_rss


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def scan(url: str, website: str, start: str, end: str, tz: str, size: int, concurrency: int) -> dict[str, float]:
    params = {"timeframe": "custom", "startDate": start, "endDate": end, "timezone": tz, "limit": str(size)}
    path = f"/api/websites/{website}/sessions"
    headers = {"Authorization": "Bearer demo-key", "Accept": "application/json"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        (await http.get(path, params={**params, "limit": "1", "offset": "0"})).raise_for_status()  # warm-up
        before = reset_peak_rss()
        wall, cpu = time.perf_counter(), cpu_seconds()
        sessions = nbytes = requests = 0

        async def fetch(offset: int) -> dict[str, object]:
            nonlocal sessions, nbytes, requests
            response = await http.get(path, params={**params, "offset": str(offset)})
            response.raise_for_status()
            page = orjson.loads(response.content)
            sessions += len(page["sessions"])
            nbytes += len(response.content)
            requests += 1
            return page  # type: ignore[no-any-return]

        first = await fetch(0)
        total = first["pagination"]["total"]  # type: ignore[index]
        offsets = iter(range(size, total, size))

        async def worker() -> None:
            for offset in offsets:
                await fetch(offset)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {
            "wall": time.perf_counter() - wall,
            "cpu": cpu_seconds() - cpu,
            "rss_mb": peak_rss_growth(before) / 2**20,
            "sessions": sessions,
            "bytes": nbytes,
            "requests": requests,
        }


def main() -> None:
    url, website, start, end, tz, size, concurrency = sys.argv[1:8]
    result = asyncio.run(scan(url, website, start, end, tz, int(size), int(concurrency)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
