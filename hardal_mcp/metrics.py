"""Prometheus metrics for `--transport http --metrics` (the `metrics` extra: prometheus-client), in a registry
of their own. No label names a key, a website or anything a client typed: tool names are the server's own,
statuses are numbers."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import httpx2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from .client import ResponseCache
from .config import Settings
from .store import DayKey, DayStore

if TYPE_CHECKING:
    import polars as pl


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tool_calls = Counter(
            "hardal_mcp_tool_calls",
            "Tool calls by tool and outcome (ok, error)",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.tool_seconds = Histogram(
            "hardal_mcp_tool_call_seconds", "Tool call latency by tool", ["tool"], registry=self.registry
        )
        self.upstream = Counter(
            "hardal_mcp_upstream_requests", "Requests to Hardal by HTTP status", ["status"], registry=self.registry
        )
        self.rate_limited = Counter(
            "hardal_mcp_upstream_rate_limited", "Requests Hardal answered 429", registry=self.registry
        )
        self.lookups = Counter(
            "hardal_mcp_cache_lookups",
            "Lookups in the response cache and the day store, by result (hit, miss)",
            ["cache", "result"],
            registry=self.registry,
        )
        self.budget = Gauge(
            "hardal_mcp_rate_budget_available",
            "Requests the configured key's rate budget lets start now (absent in passthrough mode)",
            registry=self.registry,
        )

    def tool_call(self, tool: str, ok: bool, seconds: float) -> None:
        self.tool_calls.labels(tool, "ok" if ok else "error").inc()
        self.tool_seconds.labels(tool).observe(seconds)

    async def on_response(self, response: httpx2.Response) -> None:
        """An httpx event hook for the client's requests to Hardal (retries included)."""
        self.upstream.labels(str(response.status_code)).inc()
        if response.status_code == 429:
            self.rate_limited.inc()

    def lookup(self, cache: str, hit: bool) -> None:
        self.lookups.labels(cache, "hit" if hit else "miss").inc()

    def cache(self) -> ResponseCache:
        return CountedCache(self)

    def open_store(self, settings: Settings) -> DayStore | None:
        store = CountedStore.open(settings)
        if isinstance(store, CountedStore):
            store.metrics = self
        return store

    def watch_budget(self, available: Callable[[], int]) -> None:
        self.budget.set_function(available)

    async def endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class CountedCache(ResponseCache):
    """The client's response cache, counting hits and misses."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def get(self, key: Hashable) -> object | None:
        answer = super().get(key)
        self._metrics.lookup("response", answer is not None)
        return answer


class CountedStore(DayStore):
    """The day store, counting hits and misses."""

    metrics: Metrics | None = None

    def get(self, key: DayKey) -> pl.DataFrame | None:
        sessions = super().get(key)
        if self.metrics is not None:
            self.metrics.lookup("store", sessions is not None)
        return sessions
