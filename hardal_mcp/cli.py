"""Command line: parse flags, build settings once, hand over to the server, sandbox or one-shot call."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx2

from . import __version__
from .config import Settings, display_url
from .errors import ConfigError, HardalError
from .operations import configure_logging

if TYPE_CHECKING:
    from .metrics import Metrics

DEMO_BASE_URL = "http://sandbox.demo"  # never resolved: --demo routes requests to the in-process sandbox


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "call" and all("=" in item and not item.startswith("-") for item in extra):
        args.arguments += extra  # name=value pairs given after a flag, e.g. `call TOOL --demo top=5`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "sandbox":
            return _sandbox(args)
        if args.command == "store":
            return _flushed(_store(args))
        settings, transport = _settings(args)
        _check_store(settings)
        _check_redis(settings)
        if args.command == "call":
            return _flushed(asyncio.run(_call(settings, transport, args.tool, args.arguments, as_json=args.json)))
        if args.check:
            return _flushed(asyncio.run(_check(settings, transport)))
        return _serve(settings, transport, args)
    except HardalError as exc:
        print(f"hardal-mcp: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, BaseExceptionGroup) as exc:  # the stdio server's writer fails inside a task group
        if not _reader_gone(exc):
            raise
        # Whoever read stdout went away (`| head`, a host that hung up): stop quietly, as Unix tools do. A
        # one-shot command's output was cut short (141 = 128 + SIGPIPE); a server's client simply left.
        _stdout_to_devnull()
        return 141 if args.command == "call" or args.check else 0


def _flushed(code: int) -> int:
    """Flush stdout here, so a closed reader is met inside main() and not as a traceback at exit."""
    sys.stdout.flush()
    return code


def _reader_gone(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(BrokenPipeError) is not None
    return isinstance(exc, BrokenPipeError)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still buffered cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or replaced: nothing left to flush into the pipe
        pass


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--demo", action="store_true", help="serve the embedded sandbox's demo data (no key needed)")
    common.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="stderr log level"
    )
    common.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="stderr logs as text or one JSON object a line"
    )
    parser = argparse.ArgumentParser(
        prog="hardal-mcp",
        description="MCP server for Hardal analytics sessions. Configured by HARDAL_* environment variables.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"hardal-mcp {__version__}")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--auth",
        choices=["none", "token", "passthrough", "oauth"],
        help="HTTP only. token: clients present HARDAL_MCP_TOKEN (the default when it is set); passthrough: "
        "each client presents its own Hardal API key as bearer token and the server holds none; oauth: the "
        "server is its own OAuth authorization server, people enter their key on its consent page "
        "(needs HARDAL_OAUTH_SECRET)",
    )
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="--auth oauth: the origin clients reach the server at, e.g. https://mcp.example.com behind a proxy "
        "(default: HARDAL_PUBLIC_URL, else http://HOST:PORT on loopback)",
    )
    parser.add_argument("--stateless", action="store_true", help="HTTP only: no sessions, for load-balanced replicas")
    parser.add_argument(
        "--metrics", action="store_true", help="HTTP only: serve Prometheus metrics at /metrics (the metrics extra)"
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="HTTP only: after SIGTERM, how long calls in flight may run on while new ones are refused (default 20)",
    )
    parser.add_argument("--check", action="store_true", help="check the configuration against the API and exit")
    sub = parser.add_subparsers(dest="command")
    call = sub.add_parser("call", parents=[common], help="run one tool and print its answer")
    call.add_argument("tool", help="list_sessions, summarize_sessions, get_session_activity, …")
    call.add_argument("arguments", nargs="*", metavar="name=value", help="tool arguments; values may be JSON")
    call.add_argument("--json", action="store_true", help="print the structured result instead of the text")
    sandbox = sub.add_parser("sandbox", parents=[common], help="serve the fake Hardal API on loopback")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8787)
    sandbox.add_argument("--sessions-per-day", type=int, default=1500)
    sandbox.add_argument("--rate-limit", type=int, default=None, help="requests per minute per key (default off)")
    sandbox.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[SITE=]NAME",
        help="serve a fault (e.g. 429, 503-burst, slow, drop, drift) to one website id, or to all; repeatable",
    )
    store = sub.add_parser("store", parents=[common], help="the day store of closed days (HARDAL_STORE)")
    store.add_argument("action", choices=["status", "clear"], help="status: what is kept; clear: forget it all")
    return parser


def _settings(args: argparse.Namespace) -> tuple[Settings, httpx2.AsyncBaseTransport | None]:
    if not args.demo:
        return Settings.from_env(os.environ), None
    from .sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app

    # The demo's data is made in process: nothing worth keeping on disk unless HARDAL_STORE asks for it.
    store = os.environ.get("HARDAL_STORE", "").strip() or "off"
    settings = Settings.from_env(
        os.environ, api_key=DEMO_API_KEY, website_id=DEMO_WEBSITE_ID, base_url=DEMO_BASE_URL, store=store
    )
    return settings, httpx2.ASGITransport(app=create_app(SandboxConfig()))


def _serve(settings: Settings, transport: httpx2.AsyncBaseTransport | None, args: argparse.Namespace) -> int:
    from .server import DRAIN_SECONDS, AuthMode, build_server, serve_http

    auth: AuthMode = args.auth or ("token" if settings.mcp_token else "none")
    if args.transport != "http":
        if args.auth or args.stateless or args.metrics or args.drain_seconds is not None or args.public_url:
            raise ConfigError(
                "--auth, --public-url, --stateless, --metrics and --drain-seconds apply to --transport http only."
            )
        server = build_server(settings, transport=transport)
        _settle_heap()
        server.run("stdio")
        return 0
    if auth in ("passthrough", "oauth") and settings.api_key is not None:
        logging.getLogger(__name__).warning("--auth %s: ignoring HARDAL_API_KEY; clients bring their own", auth)
        settings = settings.model_copy(update={"api_key": None})
    if auth == "oauth":
        settings = settings.model_copy(update={"public_url": _public_url(args, settings)})
    elif args.public_url:
        raise ConfigError("--public-url applies to --auth oauth only.")
    drain = DRAIN_SECONDS if args.drain_seconds is None else args.drain_seconds
    if drain < 0:
        raise ConfigError(f"--drain-seconds {args.drain_seconds:g}: give 0 or more seconds.")
    server = build_server(settings, transport=transport, auth=auth, metrics=_metrics() if args.metrics else None)
    _settle_heap()
    serve_http(
        server, settings, host=args.host, port=args.port, auth=auth, stateless=args.stateless, drain_seconds=drain
    )
    return 0


def _public_url(args: argparse.Namespace, settings: Settings) -> str:
    """--public-url, else HARDAL_PUBLIC_URL, else the loopback address served (a local try-out)."""
    if args.public_url:
        return Settings.from_env({}, public_url=args.public_url).public_url or ""
    if settings.public_url:
        return settings.public_url
    if args.host in ("127.0.0.1", "localhost"):
        return f"http://{args.host}:{args.port}"
    raise ConfigError(
        f"--auth oauth on {args.host} needs the public URL clients use (--public-url https://mcp.example.com or "
        "HARDAL_PUBLIC_URL): it names the authorization server and the resource in every token."
    )


def _metrics() -> Metrics:
    try:
        from .metrics import Metrics
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"--metrics needs prometheus-client ({exc.name} is missing): pip install 'hardal-mcp[metrics]'."
        ) from None
    return Metrics()


def _settle_heap() -> None:
    """Start-up objects (the SDK, pydantic schemas) live forever: move them out of the collector's sight,
    so the full collections a large scan triggers do not walk them again and again. (No collection
    first: it would cost 30 ms of start-up to spare a little garbage.)"""
    gc.freeze()


def _sandbox(args: argparse.Namespace) -> int:
    from .sandbox import PRESETS, SandboxConfig, serve

    faults = {}
    for spec in args.fault:
        site, _, name = spec.rpartition("=")
        if name not in PRESETS:
            raise ConfigError(f"--fault {spec!r}: unknown fault {name!r}; choose from {', '.join(PRESETS)}.")
        faults[site or "*"] = PRESETS[name]
    config = SandboxConfig(sessions_per_day=args.sessions_per_day, rate_limit_per_minute=args.rate_limit, faults=faults)
    serve(args.host, args.port, config)
    return 0


def _check_store(settings: Settings) -> None:
    """Refuse to start (ConfigError) when HARDAL_STORE names a file that is not a day store: checked here,
    before serving, so that the message ends the process instead of a store quietly left unused."""
    from .store import check_store

    check_store(settings)


def _check_redis(settings: Settings) -> None:
    """Refuse to start (ConfigError) when HARDAL_REDIS_URL is set and Redis does not answer: an operator who
    asked for a budget shared by replicas wants it, not each replica spending the key's minute alone."""
    if settings.redis_url is not None:
        from .budget_backends import needs_redis

        with needs_redis():
            from .budget_redis import check

        check(settings)


def _store(args: argparse.Namespace) -> int:
    """`store status`: where the store is and what it keeps, keys named by a short fingerprint prefix only;
    `store clear`. Neither writes sessions, so both work whatever HARDAL_REDACT_PII says. A failure raises
    (the message on stderr, a non-zero exit)."""
    from .store import DayStore, store_path

    settings = Settings.from_env(os.environ)
    path = store_path(settings.store)
    if path is None:
        print("The day store is off (HARDAL_STORE=off): nothing is kept.")
        return 0
    if not settings.redact_pii:
        print("HARDAL_REDACT_PII=false: the server does not use the day store while redaction is off.")
    if not path.exists():  # asking must not create it
        print(f"path         {path}\n(nothing stored yet)" if args.action == "status" else "0 days removed")
        return 0
    with DayStore(path, max_bytes=settings.store_max_mb * 2**20) as store:
        if args.action == "clear":
            print(f"{store.clear():,} days removed from {path}")
            return 0
        status = store.status()
    mib = 2**20
    lines = [
        f"path         {status.path}",
        f"size         {status.bytes / mib:,.1f} MiB on disk (cap {status.max_bytes / mib:,.0f} MiB)",
        f"days         {status.days:,}",
        f"websites     {status.websites:,}",
        f"oldest day   {status.oldest or '-'}",
        f"newest day   {status.newest or '-'}",
    ]
    for site in status.sites:
        name = site.website_id if site.website_id.isprintable() else repr(site.website_id)
        lines.append(
            f"  key {site.fingerprint[:12]}  website {name}: {site.days:,} days, {site.oldest} … {site.newest}, "
            f"{site.bytes / mib:,.1f} MiB"
        )
    print("\n".join(lines))
    return 0


def parse_arguments(pairs: Sequence[str]) -> dict[str, Any]:
    """`name=value` pairs; a value that parses as JSON (numbers, booleans, objects) is taken as JSON."""
    arguments: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise HardalError(f"Tool arguments are name=value pairs; got {pair!r}.")
        try:
            arguments[name] = json.loads(raw)
        except ValueError:
            arguments[name] = raw
    return arguments


async def _call(
    settings: Settings, transport: httpx2.AsyncBaseTransport | None, tool: str, pairs: Sequence[str], *, as_json: bool
) -> int:
    from mcp.client import Client

    from .server import build_server

    arguments = parse_arguments(pairs)
    async with Client(build_server(settings, transport=transport)) as client:
        result = await client.call_tool(tool, arguments)
    if as_json and result.structured_content is not None and not result.is_error:
        print(json.dumps(result.structured_content, ensure_ascii=False, indent=1))
    else:
        print("\n".join(block.text for block in result.content if block.type == "text"))
    return 1 if result.is_error else 0


async def _check(settings: Settings, transport: httpx2.AsyncBaseTransport | None) -> int:
    from .client import HardalClient
    from .params import resolve_window

    lines = [
        f"base URL     {display_url(settings.base_url)}",
        f"API key      {'set' if settings.api_key else 'MISSING — set HARDAL_API_KEY'}",
        f"website      {settings.website_id or 'MISSING — set HARDAL_WEBSITE_ID (or pass website_id per call)'}",
        f"time zone    {settings.timezone}",
        f"rate limit   {settings.rate_limit}/min, page size {settings.page_size}, timeout {settings.timeout:g} s",
    ]
    key, website = settings.api_key, settings.website_id
    ok = key is not None and website is not None
    if key is not None and website is not None:
        client = HardalClient(settings, transport=transport)
        try:
            window = resolve_window("last7days", None, None, settings.timezone)
            page = await client.sessions(key, website, window, limit=1)
        except HardalError as exc:
            lines.append(f"API          FAILED — {exc.message}")
            ok = False
        else:
            total = page.pagination.total if page.pagination else None
            lines.append("API          reachable, key accepted, website found")
            lines.append(
                f"last 7 days  {total:,} sessions" if total is not None else "last 7 days  (no total reported)"
            )
        finally:
            await client.aclose()
    print("\n".join(lines))
    print("OK" if ok else "PROBLEMS FOUND", file=sys.stderr)
    return 0 if ok else 1
