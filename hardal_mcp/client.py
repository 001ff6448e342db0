"""The only code that speaks HTTP to Hardal: one shared connection pool, a client-side rate limiter,
retries with capped exponential backoff and jitter, and the one boundary where HTTP failures become
`hardal_mcp.errors` exceptions.

It also remembers when Hardal last accepted each key for each website: nothing kept for a key (a cached
body here, a stored day in the planner) is served unless Hardal accepted that key within VERIFY_TTL
(`HardalClient.vouch`), so a key Hardal refuses, or has since revoked, gets Hardal's refusal."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote

import anyio
import anyio.lowlevel
import httpx2
from pydantic import SecretStr

from . import __version__
from .budget_backends import budget_backend, local_budgets
from .config import Settings, display_url
from .errors import (
    AuthError,
    ConfigError,
    HardalError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from .frames import SessionsPage, parse_sessions_page
from .frames import scrub_secret as scrub_sessions
from .keys import Fingerprints
from .models import ActivityPage, mentions, parse_activity_page, scrub_secret
from .params import Window
from .privacy import redact_frame
from .ratelimit import BudgetBackend, Limiter
from .ratelimit import RateLimiter as RateLimiter  # where callers of old look for the local limiter
from .sanitize import clean, elide, redact_secret

log = logging.getLogger(__name__)
P = TypeVar("P")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# How long a body stays fresh: a window that includes today still grows; a closed one hardly changes.
OPEN_WINDOW_TTL = 60.0
CLOSED_WINDOW_TTL = 3600.0
ACTIVITY_TTL = 300.0
SWEEP_SECONDS = 60.0  # how often the cache drops expired bodies
MAX_IDLE_LIMITERS = 1024  # per-key limiters kept beyond this only while their key is active
VERIFY_TTL = 300.0  # seconds an answer from Hardal vouches for its key, so kept data may be served to it


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # total tries of one request
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is reported to the user instead of waited out

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to the capped exponential bound of this attempt."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


class ResponseCache:
    """Recent upstream answers, so a repeated question within their lifetime costs no request.

    What is kept is the answer as read (a sessions page as its redacted frame), so a repeat does not read
    the body again. Keys include the API key's fingerprint: nothing fetched with one key is served to
    another. Bounded by the bytes of the bodies the answers were read from (a frame takes less memory than
    its JSON), least recently used out first."""

    def __init__(self, max_bytes: int = 64 * 2**20, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, object, int]] = OrderedDict()
        self._size = 0
        self._next_sweep = clock() + SWEEP_SECONDS

    @property
    def size(self) -> int:
        """Bytes of the bodies whose answers are held."""
        return self._size

    def get(self, key: Hashable) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, answer: object, size: int, ttl: float) -> None:
        """Keep `answer`, read from a body of `size` bytes, for `ttl` seconds."""
        if ttl <= 0 or size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        now = self._clock()
        if now >= self._next_sweep:  # expired bodies go even if nobody asks for them again
            for stale in [k for k, (expires, _, _) in self._entries.items() if expires <= now]:
                self._drop(stale)
            self._next_sweep = now + SWEEP_SECONDS
        self._entries[key] = (now + ttl, answer, size)
        self._size += size
        while self._size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        self._size -= self._entries.pop(key)[2]


class Acceptance:
    """When Hardal last accepted each key (by fingerprint) for each website, within `ttl` seconds.

    A 401 says the key itself is refused: every website forgets it. A 403 or 404 concerns one website."""

    def __init__(self, ttl: float = VERIFY_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._accepted: OrderedDict[tuple[str, str], float] = OrderedDict()  # oldest acceptance first

    def fresh(self, fingerprint: str, website_id: str) -> bool:
        accepted = self._accepted.get((fingerprint, website_id))
        return accepted is not None and self._clock() - accepted < self.ttl

    def accepted(self, fingerprint: str, website_id: str) -> None:
        now = self._clock()
        self._accepted[(fingerprint, website_id)] = now
        self._accepted.move_to_end((fingerprint, website_id))
        while self._accepted and now - next(iter(self._accepted.values())) >= self.ttl:  # expired: worthless
            self._accepted.popitem(last=False)

    def refused(self, fingerprint: str, website_id: str, status: int | None) -> None:
        if status == 401:
            for pair in [pair for pair in self._accepted if pair[0] == fingerprint]:
                del self._accepted[pair]
        elif status in (403, 404):
            self._accepted.pop((fingerprint, website_id), None)


class HardalClient:
    """Typed calls to the Hardal read API. Every method takes the API key to use, so one pool can serve
    many tenants; each key gets its own rate limiter, shared with the machine's other hardal-mcp
    processes unless HARDAL_STORE is off (`budget.SharedRateLimiter`), with every replica when
    HARDAL_REDIS_URL is set (`budget_redis`), or made by `budgets` when given: the client sees only the
    `ratelimit.Limiter` each makes.
    Keys are named by `fingerprints` (by default built from `settings`: `keys.Fingerprints.for_settings`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        cache: ResponseCache | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        fingerprints: Fingerprints | None = None,
        acceptance: Acceptance | None = None,
        budgets: Callable[[str], Limiter] | None = None,
        on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._on_response = on_response  # sees every answer from Hardal, retries included (metrics)
        self._sleep = sleep  # how retries wait (backoff, Retry-After); tests record the waits instead
        # A key's rate limiter, made from its fingerprint; tests give budgets on a clock of their own. An
        # injected transport (the in-process sandbox, tests) is not Hardal: no budget to share.
        self._backend: BudgetBackend | None = None
        if budgets is None:
            budgets = self._backend = local_budgets(settings) if transport is not None else budget_backend(settings)
        self._new_budget = budgets
        self.retry = retry or RetryPolicy()
        self.cache = cache or ResponseCache()
        # The page each day's sampled read began with (`planner`), by day key: kept beside the cache that
        # holds those pages, so asking again about any window holding the day starts from a cached page.
        self.first_pages: dict[Hashable, int] = {}
        self.fingerprints = fingerprints or Fingerprints.for_settings(settings)
        self.acceptance = acceptance or Acceptance()
        self._vouching: dict[tuple[str, str], anyio.Lock] = {}  # one check at a time per key and website
        self._limiters: OrderedDict[str, Limiter] = OrderedDict()  # by key fingerprint, least recent first
        self._transport = transport
        self._pool: httpx2.AsyncClient | None = None  # made on first use: TLS set-up is off the start-up path
        self.requests_sent = 0  # upstream requests, retries included
        self.reachable: bool | None = None  # whether Hardal's host answered the latest request (None: none yet)

    @property
    def _http(self) -> httpx2.AsyncClient:
        if self._pool is None:
            try:
                url = httpx2.URL(self.settings.base_url)
            except httpx2.InvalidURL:  # its message quotes the URL, credentials included
                raise ConfigError(
                    f"HARDAL_BASE_URL is not a valid URL ({display_url(self.settings.base_url)}); "
                    "check its host and port."
                ) from None
            self._pool = httpx2.AsyncClient(
                base_url=url,
                transport=self._transport,
                timeout=httpx2.Timeout(self.settings.timeout),
                headers={"User-Agent": f"hardal-mcp/{__version__}", "Accept": "application/json"},
                follow_redirects=False,
                # Below the usual 5 s server keep-alive, so an idle connection is never reused as it closes.
                limits=httpx2.Limits(keepalive_expiry=2.0),
                event_hooks={"response": [self._on_response]} if self._on_response else None,
            )
        return self._pool

    async def run_budgets(self) -> None:
        """The budget backend's background work while a server runs (Redis: announcing this replica)."""
        if self._backend is not None:
            await self._backend.run()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._backend is not None:
            await self._backend.aclose()

    async def sessions(
        self,
        key: SecretStr,
        website_id: str,
        window: Window,
        *,
        limit: int,
        offset: int = 0,
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> SessionsPage:
        path, params = _sessions_request(website_id, window, limit, offset, target_signal_id, is_hybrid)
        ttl = CLOSED_WINDOW_TTL if window.end < window.today() else OPEN_WINDOW_TTL
        return await self._get(key, website_id, path, params, f"website {website_id!r}", ttl, parse_sessions_page)

    def cached(
        self,
        key: SecretStr,
        website_id: str,
        window: Window,
        *,
        limit: int,
        offset: int = 0,
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> bool:
        """Whether `sessions` with these arguments would be answered from the cache (no request)."""
        path, params = _sessions_request(website_id, window, limit, offset, target_signal_id, is_hybrid)
        return self.cache.get(_cache_key(self.fingerprints.of(key), path, params)) is not None

    async def activity(
        self,
        key: SecretStr,
        website_id: str,
        session_id: str,
        *,
        timezone: str,
        page: int = 1,
        limit: int = 50,
        order_by: str = "timestamp",
        order: str = "asc",
        target_signal_id: str | None = None,
        is_hybrid: bool = False,
    ) -> ActivityPage:
        params = {
            "page": str(page),
            "limit": str(limit),
            "orderBy": order_by,
            "order": order,
            "timezone": timezone,
            "targetSignalId": target_signal_id or website_id,
            "isHybrid": "true" if is_hybrid else "false",
        }
        path = f"/api/websites/{_segment(website_id)}/sessions/{_segment(session_id)}/activity"
        what = f"session {session_id!r} on website {website_id!r}"
        return await self._get(key, website_id, path, params, what, ACTIVITY_TTL, parse_activity_page)

    async def vouch(self, key: SecretStr, website_id: str) -> None:
        """Return once Hardal has accepted `key` for `website_id` within VERIFY_TTL; otherwise ask it with
        one cheap request (one session of today, never from the cache) and raise its refusal, if any.
        Anything kept for a key is served only after this."""
        fingerprint = self.fingerprints.of(key)
        if self.acceptance.fresh(fingerprint, website_id):
            return
        pair = (fingerprint, website_id)
        lock = self._vouching.setdefault(pair, anyio.Lock())
        try:
            async with lock:
                if self.acceptance.fresh(fingerprint, website_id):  # a concurrent check just did
                    return
                today = datetime.now(UTC).date()
                window = Window("custom", today, today, "UTC")
                path, params = _sessions_request(website_id, window, 1, 0, None, False)
                # The answer must read as a sessions page: a proxy's 200 page vouches for nothing.
                what = f"website {website_id!r}"
                await self._judged(key, fingerprint, website_id, path, params, what, parse_sessions_page)
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._vouching.pop(pair, None)

    async def _get(
        self,
        key: SecretStr,
        website_id: str,
        path: str,
        params: Mapping[str, str],
        what: str,
        ttl: float,
        parse: Callable[[bytes], P],
    ) -> P:
        parse = _reading(parse, key, self.settings.redact_pii)
        fingerprint = self.fingerprints.of(key)
        cache_key = _cache_key(fingerprint, path, params)
        cached = self.cache.get(cache_key)
        if cached is not None:
            await self.vouch(key, website_id)
            await anyio.lowlevel.checkpoint()  # a scan served from cache still lets other requests run
            return cast(P, cached)  # kept under this request's key by this method, as `parse` read it
        content, parsed = await self._judged(key, fingerprint, website_id, path, params, what, parse)
        self.cache.put(cache_key, parsed, len(content), ttl)  # only bodies that parsed are kept
        return parsed

    async def _judged(
        self,
        key: SecretStr,
        fingerprint: str,
        website_id: str,
        path: str,
        params: Mapping[str, str],
        what: str,
        parse: Callable[[bytes], P],
    ) -> tuple[bytes, P]:
        """`_fetch`, noting Hardal's verdict on the key: an answer vouches for it, a refusal withdraws that."""
        try:
            answer = await self._fetch(key, self._limiter(fingerprint), path, params, what, parse)
        except UpstreamError as exc:
            self.acceptance.refused(fingerprint, website_id, exc.status)
            raise
        self.acceptance.accepted(fingerprint, website_id)
        return answer

    async def _fetch(
        self,
        key: SecretStr,
        limiter: Limiter,
        path: str,
        params: Mapping[str, str],
        what: str,
        parse: Callable[[bytes], P],
    ) -> tuple[bytes, P]:
        headers = {"Authorization": f"Bearer {key.get_secret_value().strip()}"}  # as fingerprinted
        failure: HardalError | None = None
        for attempt in range(self.retry.attempts):
            paused = limiter.held() if attempt == 0 else 0.0  # a retry already waits as its 429 asked
            if paused > self.retry.max_retry_after:  # a 429 asked every caller of this key to wait that long
                raise paused_error(paused)
            try:
                async with limiter.slot():
                    self.requests_sent += 1
                    response = await self._http.get(path, params=params, headers=headers)
                    self.reachable = True
                    content = await _read(response)
            except httpx2.TimeoutException:
                failure = NetworkError(
                    f"Hardal did not answer within HARDAL_TIMEOUT={self.settings.timeout:g} s "
                    f"({self.retry.attempts} attempts). Try again, narrow the time window, or raise HARDAL_TIMEOUT."
                )
                wait = self.retry.backoff(attempt)
            except (httpx2.ConnectError, httpx2.UnsupportedProtocol) as exc:
                self.reachable = False
                failure = NetworkError(
                    f"Could not reach Hardal at {display_url(self.settings.base_url)} ({type(exc).__name__}) after "
                    f"{attempt + 1} attempt(s). Check HARDAL_BASE_URL and the network, then try again."
                )
                wait = self.retry.backoff(attempt)
            except httpx2.HTTPError as exc:  # reached, but the exchange broke off (e.g. a connection dropped mid-body)
                failure = NetworkError(
                    f"The connection to Hardal at {display_url(self.settings.base_url)} broke off before the answer "
                    "was complete "
                    f"({type(exc).__name__}), {attempt + 1} attempt(s). Try again in a minute; if it persists, check "
                    "the network or proxy between this server and Hardal."
                )
                wait = self.retry.backoff(attempt)
            else:
                status = response.status_code
                if status < 300 and not _is_failure_envelope(content):
                    try:
                        return content, parse(content)
                    except ProtocolError as exc:  # a garbled body from a proxy or a deploy: worth one more try
                        failure = ProtocolError(
                            f"HTTP {status}: {redact_secret(exc.message, key.get_secret_value())} "
                            "Hardal may be mid-deploy or behind a failing proxy; "
                            "try again shortly.",
                            status=status,
                        )
                        wait = self.retry.backoff(attempt)
                        if attempt + 1 < self.retry.attempts:
                            log.warning("Unreadable Hardal body; retry %d in %.1f s", attempt + 1, wait)
                            await self._sleep(wait)
                        continue
                failure = _status_error(status, response.headers, content, what, key)
                if isinstance(failure, RateLimitError) and failure.retry_after is not None:
                    # Every process sharing the key's budget waits as long as Hardal asked. Without a
                    # Retry-After nothing says how long: the retries below back off, and the planner
                    # waits for the window itself.
                    limiter.hold_until(time.time() + failure.retry_after)
                if status not in _RETRY_STATUSES:
                    raise failure
                wait = self.retry.backoff(attempt)
                if isinstance(failure, RateLimitError) and failure.retry_after is not None:
                    if failure.retry_after > self.retry.max_retry_after:
                        raise failure
                    wait = max(wait, failure.retry_after)  # never sooner than Hardal asked
            if attempt + 1 < self.retry.attempts:
                log.warning("Hardal request failed: %s Retry %d in %.1f s.", failure.message, attempt + 1, wait)
                await self._sleep(wait)
        assert failure is not None
        raise failure

    def budget(self, key: SecretStr) -> Limiter:
        """The rate limiter that this key's requests pass (to plan how many a call may send)."""
        return self._limiter(self.fingerprints.of(key))

    def _limiter(self, fingerprint: str) -> Limiter:
        limiter = self._limiters.get(fingerprint)
        if limiter is None:
            limiter = self._limiters[fingerprint] = self._new_budget(fingerprint)
            # Hosted mode meets many keys: forget those idle for a minute (their window is empty anyway).
            while len(self._limiters) > MAX_IDLE_LIMITERS and next(iter(self._limiters.values())).idle:
                self._limiters.popitem(last=False)
        self._limiters.move_to_end(fingerprint)
        return limiter


def paused_error(paused: float) -> RateLimitError:
    """The error for a request of a key that a 429 paused for `paused` more seconds (any process's 429)."""
    return RateLimitError(
        f"Hardal's rate limit for this key is exhausted: an earlier answer asked to wait. Try again "
        f"in {math.ceil(paused)} s, or lower HARDAL_RATE_LIMIT if other tools share this key.",
        retry_after=paused,
    )


def _sessions_request(
    website_id: str, window: Window, limit: int, offset: int, target_signal_id: str | None, is_hybrid: bool
) -> tuple[str, dict[str, str]]:
    params = {
        "timeframe": "custom",
        "startDate": window.start.isoformat(),
        "endDate": window.end.isoformat(),
        "timezone": window.timezone,
        "limit": str(limit),
        "offset": str(offset),
        "targetSignalId": target_signal_id or website_id,
        "isHybrid": "true" if is_hybrid else "false",
    }
    return f"/api/websites/{_segment(website_id)}/sessions", params


def _cache_key(fingerprint: str, path: str, params: Mapping[str, str]) -> Hashable:
    return (fingerprint, path, tuple(sorted(params.items())))


def _reading(parse: Callable[[bytes], P], key: SecretStr, redact_pii: bool) -> Callable[[bytes], P]:
    """`parse`, then the API key masked in every string of the page when the body spells it (Hardal
    echoing a key, in a field, a property, a key name, must not put it in front of a model), then a
    sessions page's personal data masked (`privacy`, HARDAL_REDACT_PII) before anything counts or keeps it.
    (Activity events are masked when shown.)"""
    secret = key.get_secret_value()

    def read(content: bytes) -> P:
        page = parse(content)
        if isinstance(page, SessionsPage):
            if mentions(content, secret):
                scrub_sessions(page, secret)
            if redact_pii:
                page.replace(redact_frame(page.frame))
        elif isinstance(page, ActivityPage) and mentions(content, secret):
            scrub_secret(page, secret)
        return page

    return read


def _segment(value: str) -> str:
    """Percent-encode a path segment; `.` and `..` too, which URL normalisation would otherwise resolve."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if not encoded.strip(".") else encoded


async def _read(response: httpx2.Response) -> bytes:
    await response.aread()
    return response.content


def _is_failure_envelope(content: bytes) -> bool:
    """A 200 that says `{"success": false, ...}` is an error (reference §6.9); cheap prefix check first."""
    if b'"success"' not in content[:200]:
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False


def _status_error(status: int, headers: Mapping[str, str], content: bytes, what: str, key: SecretStr) -> UpstreamError:
    detail = _upstream_message(content, key)
    said = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status < 300:
        return ProtocolError(f"Hardal reported a failure ({detail or 'no message'}).", status=status)
    if status == 401:
        return AuthError(
            f"Hardal rejected the API key ({said}). Set HARDAL_API_KEY to a valid key from the Hardal "
            "dashboard (signal → Settings → Security → API Keys).",
            status=status,
        )
    if status == 403:
        return AuthError(
            f"The API key may not read {what} ({said}). Check website_id / HARDAL_WEBSITE_ID and "
            "target_signal_id, or use a key of that signal.",
            status=status,
        )
    if status == 404:
        return NotFoundError(f"Hardal has no {what} ({said}). Check the id; ids are case-sensitive.", status=status)
    if status == 429:
        retry_after = _retry_after(headers)
        when = f"in {math.ceil(retry_after)} s" if retry_after is not None else "in about a minute"
        return RateLimitError(
            f"Hardal's rate limit is exhausted ({said}); it allows about 100 requests per minute per key. "
            f"Try again {when}, or lower HARDAL_RATE_LIMIT if other tools share this key.",
            retry_after=retry_after,
        )
    if status >= 500:
        return ServerError(f"Hardal is failing ({said}). Try again in a minute.", status=status)
    return UpstreamError(f"Hardal refused the request for {what} ({said}). Check the tool arguments.", status=status)


def _upstream_message(content: bytes, key: SecretStr) -> str:
    """The human message from any of the error shapes (reference §6.9); empty for HTML or nothing."""
    try:
        body: Any = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return ""
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("code")
        elif isinstance(error, str):
            message = error
        message = message or body.get("message")
    if not isinstance(message, str | int):
        return ""
    # Upstream text: one clean line (no escapes, no line breaks to fake structure), credentials and the key
    # masked, before and after cleaning (which could join a key split by invisible characters), then cut.
    secret = key.get_secret_value()
    text = redact_secret(clean(redact_secret(str(message), secret), 1 << 20), secret)
    return elide(text, 200)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
