"""The sandbox as a child process of the benchmark, with its traffic record readable over loopback.

`python -m bench.sandbox_proc --port P [--sessions-per-day N] [--rate-limit L] [--now ISO]` serves the same app as
`hardal-mcp sandbox` (`hardal_mcp.sandbox.create_app`) plus one route of its own,
`GET /_bench/traffic/{website_id}`: the arrival time, status, route and target (path and query) of every request that
website id was sent. The sandbox runs in its own process so that its CPU time is never counted as the server's."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from functools import lru_cache

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from hardal_mcp.sandbox import SandboxConfig, create_app, data, traffic

TRAFFIC_PREFIX = "/_bench/traffic/"


def build(config: SandboxConfig) -> ASGIApp:
    api = create_app(config)
    record = traffic(api)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(TRAFFIC_PREFIX):
            await api(scope, receive, send)
            return
        site = record.site(path[len(TRAFFIC_PREFIX) :])
        body = json.dumps({"hits": [[hit.at, hit.status, hit.route, hit.target] for hit in site.hits]}).encode()
        # The record also keeps every session it served; a benchmark reads 100,000s of them, so let go.
        site.served.clear()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def widen_block_cache(blocks: int) -> None:
    """Let the sandbox keep `blocks` generated blocks instead of 128 (65,536 sessions): a 100k-session
    window then stays generated between scans, so a warmed sandbox answers at the speed of rendering and
    wall times measure the client, not the fake API's data generator. The data is the same."""
    data._block = lru_cache(maxsize=blocks)(data._block.__wrapped__)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_proc")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions-per-day", type=int, default=1500)
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--more-keys", default="", help="further keys accepted (comma-separated), each its own limit")
    parser.add_argument(
        "--now", default=None, help="pin the sandbox's clock (ISO 8601 with an offset): today's sessions stop growing"
    )
    parser.add_argument(
        "--block-cache",
        type=int,
        default=1024,
        help="generated blocks of 512 sessions kept (the sandbox keeps 128: less than a 100k window)",
    )
    args = parser.parse_args()
    widen_block_cache(args.block_cache)
    config = SandboxConfig(
        sessions_per_day=args.sessions_per_day,
        rate_limit_per_minute=args.rate_limit,
        more_keys=tuple(k for k in args.more_keys.split(",") if k),
        now=datetime.fromisoformat(args.now) if args.now else None,
    )
    uvicorn.run(build(config), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
