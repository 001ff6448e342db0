"""HardalClient against a fake Hardal at the transport (httpx2.MockTransport): requests as the API
documents them (reference §2.1, §2.2), retries, Retry-After, error mapping (§1.3, §6.9), key hygiene,
and the client-side RateLimiter."""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import date
from urllib.parse import unquote

import anyio
import anyio.lowlevel
import httpx2
import pytest
from pydantic import SecretStr

from hardal_mcp import __version__
from hardal_mcp.budget import Limiter
from hardal_mcp.client import HardalClient, RateLimiter, ResponseCache, RetryPolicy
from hardal_mcp.config import Settings
from hardal_mcp.errors import (
    AuthError,
    HardalError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    UpstreamError,
)
from hardal_mcp.params import Window

from .conftest import FakeClock

BASE_URL = "http://127.0.0.1:8765"
KEY_VALUE = "hk_test_Zq8vN3kLp2Rt7Wm4Xy6Bc1Df"
KEY = SecretStr(KEY_VALUE)
WINDOW = Window("custom", date(2026, 11, 1), date(2026, 11, 7), "Europe/Istanbul")
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)

SESSIONS_BODY = {
    "sessions": [{"id": "sess_abc123456", "duration": "180s", "pageViews": 5}],
    "pagination": {"total": 1, "limit": 10, "offset": 0, "hasMore": False},
}
ACTIVITY_BODY = {
    "events": [{"id": "evt_1", "type": "pageview"}],
    "totalCount": 1,
    "page": 1,
    "pageSize": 50,
    "hasMore": False,
}

Step = Callable[[httpx2.Request], httpx2.Response]


def ok(body: object = SESSIONS_BODY) -> Step:
    return lambda request: httpx2.Response(200, json=body)


def reply(status: int, content: bytes = b"", headers: dict[str, str] | None = None) -> Step:
    return lambda request: httpx2.Response(status, content=content, headers=headers)


def reply_json(status: int, body: object, headers: dict[str, str] | None = None) -> Step:
    return lambda request: httpx2.Response(status, json=body, headers=headers)


def fail(exc_type: type[httpx2.RequestError]) -> Step:
    def step(request: httpx2.Request) -> httpx2.Response:
        raise exc_type("fake transport failure", request=request)

    return step


class FakeHardal:
    """Plays the steps in order (the last one repeats) and records every request."""

    def __init__(self, *steps: Step) -> None:
        self.steps = steps
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests) - 1, len(self.steps) - 1)]
        return step(request)

    @property
    def count(self) -> int:
        return len(self.requests)


@pytest.fixture
async def make_client():
    clients: list[HardalClient] = []

    def factory(
        handler: FakeHardal,
        retry: RetryPolicy = FAST,
        cache: ResponseCache | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        budgets: Callable[[str], Limiter] | None = None,
        **settings: object,
    ) -> HardalClient:
        client = HardalClient(
            Settings(api_key=KEY, base_url=BASE_URL, **settings),
            transport=httpx2.MockTransport(handler),
            retry=retry,
            cache=cache or ResponseCache(max_bytes=0),  # most tests count requests: no caching unless asked
            sleep=sleep,
            budgets=budgets,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


async def get_sessions(client: HardalClient, website_id: str = "demo", **kwargs: object):
    return await client.sessions(KEY, website_id, WINDOW, limit=kwargs.pop("limit", 100), **kwargs)


async def get_activity(client: HardalClient, website_id: str = "demo", session_id: str = "sess_abc123456"):
    return await client.activity(KEY, website_id, session_id, timezone="Europe/Istanbul")


def path_segments(request: httpx2.Request) -> list[bytes]:
    return request.url.raw_path.split(b"?", 1)[0].split(b"/")


# --- requests as documented -------------------------------------------------------------------------


async def test_sessions_request_path_query_and_headers(make_client):
    fake = FakeHardal(ok())
    client = make_client(fake)

    page = await get_sessions(client, "cm6gihhlq000aue9wkelb4ay3", limit=250, offset=500)

    assert [s.id for s in page.sessions] == ["sess_abc123456"]
    assert fake.count == 1
    request = fake.requests[0]
    assert request.method == "GET"
    assert f"{request.url.scheme}://{request.url.host}:{request.url.port}" == BASE_URL
    assert request.url.path == "/api/websites/cm6gihhlq000aue9wkelb4ay3/sessions"
    items = request.url.params.multi_items()
    assert len(items) == len(dict(items)), "no query parameter may be sent twice"
    assert dict(items) == {
        "timeframe": "custom",
        "startDate": "2026-11-01",
        "endDate": "2026-11-07",
        "timezone": "Europe/Istanbul",
        "limit": "250",
        "offset": "500",
        "targetSignalId": "cm6gihhlq000aue9wkelb4ay3",
        "isHybrid": "false",
    }
    assert b"timezone=Europe%2FIstanbul" in request.url.query  # reference §1.5: URL-encode the zone
    assert request.headers["Authorization"] == f"Bearer {KEY_VALUE}"
    assert request.headers["User-Agent"] == f"hardal-mcp/{__version__}"
    assert request.headers["Accept"] == "application/json"


async def test_sessions_target_signal_and_hybrid_are_passed_through(make_client):
    fake = FakeHardal(ok())
    client = make_client(fake)

    await get_sessions(client, "demo", target_signal_id="app_signal_2", is_hybrid=True)

    params = fake.requests[0].url.params
    assert params["targetSignalId"] == "app_signal_2"
    assert params["isHybrid"] == "true"
    assert fake.requests[0].url.path == "/api/websites/demo/sessions"


async def test_activity_request_path_query_and_headers(make_client):
    fake = FakeHardal(ok(ACTIVITY_BODY))
    client = make_client(fake)

    page = await client.activity(
        KEY,
        "demo",
        "sess_abc123456",
        timezone="America/New_York",
        page=3,
        limit=20,
        order_by="name",
        order="desc",
    )

    assert [e.id for e in page.events] == ["evt_1"]
    request = fake.requests[0]
    assert request.url.path == "/api/websites/demo/sessions/sess_abc123456/activity"
    items = request.url.params.multi_items()
    assert len(items) == len(dict(items))
    assert dict(items) == {
        "page": "3",
        "limit": "20",
        "orderBy": "name",
        "order": "desc",
        "timezone": "America/New_York",
        "targetSignalId": "demo",
        "isHybrid": "false",
    }
    assert request.headers["Authorization"] == f"Bearer {KEY_VALUE}"
    assert request.headers["User-Agent"] == f"hardal-mcp/{__version__}"


async def test_activity_defaults_are_the_first_page_in_timestamp_order(make_client):
    fake = FakeHardal(ok(ACTIVITY_BODY))
    client = make_client(fake)

    await get_activity(client)

    params = fake.requests[0].url.params
    assert params["page"] == "1"  # 1-based (reference §2.2)
    assert params["orderBy"] == "timestamp"
    assert params["timezone"] == "Europe/Istanbul"


HOSTILE_IDS = [
    "a/b",
    "a?b",
    "a#b",
    "a b",
    "a%2Fb",
    "../x",
    "x/../../admin",
    "ü-ñ",
    "..",
    ".",
]


@pytest.mark.parametrize("website_id", HOSTILE_IDS)
async def test_website_id_is_one_encoded_path_segment(make_client, website_id):
    fake = FakeHardal(ok())
    client = make_client(fake)

    await get_sessions(client, website_id)

    segments = path_segments(fake.requests[0])
    assert segments[:3] == [b"", b"api", b"websites"]
    assert len(segments) == 5, segments
    assert unquote(segments[3].decode()) == website_id
    assert segments[4] == b"sessions"
    assert fake.requests[0].url.params["targetSignalId"] == website_id  # query value round-trips too


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
async def test_session_id_is_one_encoded_path_segment(make_client, session_id):
    fake = FakeHardal(ok(ACTIVITY_BODY))
    client = make_client(fake)

    await get_activity(client, "demo", session_id)

    segments = path_segments(fake.requests[0])
    assert segments[:4] == [b"", b"api", b"websites", b"demo"]
    assert len(segments) == 7, segments
    assert segments[4] == b"sessions"
    assert unquote(segments[5].decode()) == session_id
    assert segments[6] == b"activity"


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retryable_status_is_retried_then_succeeds(make_client, status):
    fake = FakeHardal(reply(status), reply(status), ok())
    client = make_client(fake)

    page = await get_sessions(client)

    assert [s.id for s in page.sessions] == ["sess_abc123456"]
    assert fake.count == 3
    assert client.requests_sent == 3
    # a retry is the same request again
    assert {str(r.url) for r in fake.requests} == {str(fake.requests[0].url)}
    assert all(r.headers["Authorization"] == f"Bearer {KEY_VALUE}" for r in fake.requests)


@pytest.mark.parametrize(
    "exc_type", [httpx2.ConnectError, httpx2.ReadTimeout, httpx2.ConnectTimeout, httpx2.RemoteProtocolError]
)
async def test_transport_error_is_retried_then_succeeds(make_client, exc_type):
    fake = FakeHardal(fail(exc_type), fail(exc_type), ok(ACTIVITY_BODY))
    client = make_client(fake)

    page = await get_activity(client)

    assert [e.id for e in page.events] == ["evt_1"]
    assert fake.count == 3
    assert client.requests_sent == 3


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, UpstreamError), (401, AuthError), (403, AuthError), (404, NotFoundError)],
)
async def test_client_errors_are_not_retried(make_client, status, error_type):
    fake = FakeHardal(reply_json(status, {"error": {"code": status, "message": "nope"}}), ok())
    client = make_client(fake)

    with pytest.raises(UpstreamError) as info:
        await get_sessions(client)

    assert type(info.value) is error_type
    assert info.value.status == status
    assert fake.count == 1
    assert client.requests_sent == 1


async def test_requests_sent_counts_every_attempt_across_calls(make_client):
    fake = FakeHardal(ok(), reply(503), reply(502), ok())
    client = make_client(fake)

    await get_sessions(client)
    assert client.requests_sent == 1
    await get_sessions(client)
    assert client.requests_sent == 4
    assert fake.count == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_persistent_5xx_becomes_server_error_naming_the_status(make_client, status):
    fake = FakeHardal(reply(status))
    client = make_client(fake, retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01))

    with pytest.raises(ServerError) as info:
        await get_sessions(client)

    assert f"HTTP {status}" in str(info.value)
    assert info.value.status == status
    assert fake.count == 3
    assert client.requests_sent == 3


async def test_persistent_429_without_retry_after_becomes_rate_limit_error(make_client):
    fake = FakeHardal(reply_json(429, {"error": {"code": 429, "message": "Too many requests"}}))
    client = make_client(fake)

    with pytest.raises(RateLimitError) as info:
        await get_sessions(client)

    assert fake.count == FAST.attempts
    assert info.value.status == 429
    assert info.value.retry_after is None
    assert "HTTP 429" in str(info.value)
    assert "Too many requests" in str(info.value)


async def test_persistent_connect_error_becomes_network_error(make_client):
    fake = FakeHardal(fail(httpx2.ConnectError))
    client = make_client(fake)

    with pytest.raises(NetworkError) as info:
        await get_sessions(client)

    assert fake.count == FAST.attempts
    assert "HARDAL_BASE_URL" in str(info.value)
    assert BASE_URL in str(info.value)


async def test_persistent_timeout_becomes_network_error_naming_hardal_timeout(make_client):
    fake = FakeHardal(fail(httpx2.ReadTimeout))
    client = make_client(fake, timeout=7.5)

    with pytest.raises(NetworkError) as info:
        await get_sessions(client)

    assert fake.count == FAST.attempts
    assert "HARDAL_TIMEOUT" in str(info.value)
    assert "7.5" in str(info.value)


async def test_a_garbled_success_body_is_retried_once_then_read(make_client):
    fake = FakeHardal(reply(200, b"<html>maintenance</html>", {"Content-Type": "text/html"}), ok())
    client = make_client(fake)

    page = await get_sessions(client)
    assert [s.id for s in page.sessions] == ["sess_abc123456"]
    assert fake.count == 2


async def test_a_persistently_garbled_body_is_a_protocol_error_and_is_not_cached(make_client):
    fake = FakeHardal(reply(200, b'{"sessions": [', {"Content-Type": "application/json"}))
    client = make_client(fake, cache=ResponseCache())

    with pytest.raises(ProtocolError, match="not JSON"):
        await get_sessions(client)
    assert fake.count == FAST.attempts
    with pytest.raises(ProtocolError):
        await get_sessions(client)
    assert fake.count == 2 * FAST.attempts


# --- Retry-After -----------------------------------------------------------------------------------


class RecordedSleep:
    """Stands in for anyio.sleep: records each wait the client asks for, and the Unix time it would have
    ended, and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.until: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.until.append(time.time() + seconds)
        await anyio.lowlevel.checkpoint()


async def test_retry_after_seconds_is_never_retried_sooner(make_client):
    fake = FakeHardal(reply(429, headers={"Retry-After": "1"}), ok())
    sleep = RecordedSleep()
    client = make_client(fake, sleep=sleep)

    page = await get_sessions(client)

    assert len(page.sessions) == 1
    assert fake.count == 2
    assert len(sleep.waits) == 1
    assert sleep.waits[0] >= 1.0


async def test_retry_after_http_date_is_never_retried_sooner(make_client):
    not_before = math.floor(time.time()) + 2  # an HTTP-date has whole seconds: a wait in (1, 2] s
    header = email.utils.formatdate(not_before, usegmt=True)
    fake = FakeHardal(reply(429, headers={"Retry-After": header}), ok())
    sleep = RecordedSleep()
    client = make_client(fake, sleep=sleep)

    await get_sessions(client)

    assert fake.count == 2
    assert len(sleep.until) == 1
    assert sleep.until[0] >= not_before  # the retry would go no sooner than the date
    assert sleep.waits[0] <= 2.0  # ... and no later than needed


async def test_retries_wait_through_the_injected_sleep(make_client):
    sleep = RecordedSleep()
    fake = FakeHardal(reply(429, headers={"Retry-After": "7"}), reply(503), ok())
    client = make_client(fake, sleep=sleep)

    await get_sessions(client)

    assert fake.count == 3
    assert len(sleep.waits) == 2
    assert sleep.waits[0] == 7.0  # Retry-After exactly, never sooner
    assert 0 <= sleep.waits[1] <= FAST.max_delay  # plain backoff


async def test_retry_after_http_date_in_the_past_means_retry_now(make_client):
    header = email.utils.formatdate(time.time() - 3600, usegmt=True)
    fake = FakeHardal(reply(429, headers={"Retry-After": header}), ok())
    sleep = RecordedSleep()
    client = make_client(fake, sleep=sleep)

    await get_sessions(client)

    assert fake.count == 2
    assert len(sleep.waits) == 1
    assert sleep.waits[0] <= FAST.max_delay  # only the backoff: the past date asked for no wait


async def test_retry_after_longer_than_max_is_reported_not_waited(make_client):
    fake = FakeHardal(reply(429, headers={"Retry-After": "120"}), ok())
    sleep = RecordedSleep()
    client = make_client(fake, sleep=sleep)

    with pytest.raises(RateLimitError) as info:
        await get_sessions(client)

    assert sleep.waits == []  # reported at once, no wait of any length
    assert fake.count == 1
    assert info.value.retry_after == 120
    assert "120 s" in str(info.value)


async def test_unreadable_retry_after_falls_back_to_backoff(make_client):
    fake = FakeHardal(reply(429, headers={"Retry-After": "soon-ish"}), ok())
    client = make_client(fake)

    await get_sessions(client)

    assert fake.count == 2


async def test_retry_after_http_date_beyond_max_is_reported_immediately(make_client):
    header = email.utils.formatdate(time.time() + 3600, usegmt=True)
    fake = FakeHardal(reply(429, headers={"Retry-After": header}), ok())
    client = make_client(fake)

    with pytest.raises(RateLimitError) as info:
        await get_sessions(client)

    assert fake.count == 1
    assert info.value.retry_after is not None
    assert 3590 < info.value.retry_after <= 3600
    assert f"{math.ceil(info.value.retry_after)} s" in str(info.value)


async def test_retry_after_limit_is_the_policy_max_retry_after(make_client):
    fake = FakeHardal(reply(429, headers={"Retry-After": "1"}), ok())
    client = make_client(fake, retry=RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.5))

    with pytest.raises(RateLimitError) as info:
        await get_sessions(client)

    assert fake.count == 1
    assert "1 s" in str(info.value)


# --- error mapping and messages --------------------------------------------------------------------


async def test_401_is_auth_error_naming_hardal_api_key(make_client):
    fake = FakeHardal(reply_json(401, {"error": {"code": 401, "message": "Invalid API key"}}))
    client = make_client(fake)

    with pytest.raises(AuthError) as info:
        await get_sessions(client)

    message = str(info.value)
    assert "HARDAL_API_KEY" in message
    assert "Invalid API key" in message
    assert "401" in message


async def test_403_is_auth_error_naming_the_website(make_client):
    fake = FakeHardal(reply_json(403, {"error": {"code": 403, "message": "Forbidden"}}))
    client = make_client(fake)

    with pytest.raises(AuthError) as info:
        await get_sessions(client, "shop_signal")

    assert "shop_signal" in str(info.value)
    assert info.value.status == 403


async def test_404_on_sessions_names_the_website(make_client):
    fake = FakeHardal(reply_json(404, {"message": "Not found"}))
    client = make_client(fake)

    with pytest.raises(NotFoundError) as info:
        await get_sessions(client, "no_such_site")

    assert "no_such_site" in str(info.value)
    assert "404" in str(info.value)


async def test_404_on_activity_names_the_session_and_website(make_client):
    fake = FakeHardal(reply_json(404, {"message": "Not found"}))
    client = make_client(fake)

    with pytest.raises(NotFoundError) as info:
        await get_activity(client, "shop_signal", "sess_gone")

    assert "sess_gone" in str(info.value)
    assert "shop_signal" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "error_type", "expected"),
    [
        (401, b'{"error":{"code":401,"message":"Invalid API key"}}', AuthError, "Invalid API key"),
        (400, b'{"message":"limit must be at most 1000"}', UpstreamError, "limit must be at most 1000"),
        (400, b'{"error":"bad timeframe value"}', UpstreamError, "bad timeframe value"),
        (
            403,
            b'{"success":false,"error":{"code":"FORBIDDEN","message":"Signal not in project"}}',
            AuthError,
            "Signal not in project",
        ),
        (401, b'{"error":{"code":"invalid-token-signature"}}', AuthError, "invalid-token-signature"),
        (
            200,
            b'{"success":false,"error":{"code":"VALIDATION_ERROR","message":"Validation failed for \'category\'"}}',
            UpstreamError,
            "Validation failed for 'category'",
        ),
        (404, b'{"error": {"message": "  Website\\n   not   found  "}}', NotFoundError, "Website not found"),
    ],
)
async def test_error_body_shapes_give_the_upstream_message(make_client, status, body, error_type, expected):
    fake = FakeHardal(reply(status, body, {"Content-Type": "application/json"}), ok())
    client = make_client(fake)

    with pytest.raises(error_type) as info:
        await get_sessions(client)

    assert expected in str(info.value)
    assert fake.count == 1, "none of these may be retried"


async def test_http_200_failure_envelope_is_an_error_on_activity_too(make_client):
    fake = FakeHardal(reply_json(200, {"success": False, "error": {"code": "x", "message": "Session expired"}}))
    client = make_client(fake)

    with pytest.raises(UpstreamError) as info:
        await get_activity(client)

    assert "Session expired" in str(info.value)


async def test_html_error_page_gives_the_status_only(make_client):
    html = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    fake = FakeHardal(reply(502, html, {"Content-Type": "text/html"}))
    client = make_client(fake, retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01))

    with pytest.raises(ServerError) as info:
        await get_sessions(client)

    message = str(info.value)
    assert "HTTP 502" in message
    assert "<" not in message
    assert "Bad Gateway" not in message


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'{"error": null}', b'{"message": ["a", "b"]}'])
async def test_error_without_a_usable_message_gives_the_status_only(make_client, body):
    fake = FakeHardal(reply(400, body))
    client = make_client(fake)

    with pytest.raises(UpstreamError) as info:
        await get_sessions(client)

    message = str(info.value)
    assert "HTTP 400" in message
    assert "HTTP 400:" not in message  # no empty or junk detail appended
    assert "None" not in message


async def test_upstream_message_echoing_the_key_is_masked(make_client):
    body = {"error": {"code": 401, "message": f"Invalid API key {KEY_VALUE} for this signal"}}
    fake = FakeHardal(reply_json(401, body))
    client = make_client(fake)

    with pytest.raises(AuthError) as info:
        await get_sessions(client)

    assert KEY_VALUE not in str(info.value)
    assert "Invalid API key" in str(info.value)
    assert "for this signal" in str(info.value)


async def test_key_cut_by_the_message_limit_does_not_leak_a_prefix(make_client):
    body = {"message": "x" * 184 + KEY_VALUE}  # the 200-char cut falls inside the key
    fake = FakeHardal(reply_json(400, body))
    client = make_client(fake)

    with pytest.raises(UpstreamError) as info:
        await get_sessions(client)

    assert KEY_VALUE[:12] not in str(info.value)


async def test_api_key_never_in_any_exception_or_log_record(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"code": 401, "message": f"bad key {KEY_VALUE}"}}
    scenarios: list[tuple[Step, ...]] = [
        (reply_json(400, {"message": f"rejected {KEY_VALUE}"}),),
        (reply_json(401, echo),),
        (reply_json(403, {"error": f"key {KEY_VALUE} cannot read this"}),),
        (reply_json(404, {"success": False, "error": {"code": "nf", "message": KEY_VALUE}}),),
        (reply_json(429, {"message": f"slow down {KEY_VALUE}"}),),
        (reply_json(429, {"message": KEY_VALUE}, headers={"Retry-After": "9999"}),),
        (reply_json(500, {"message": f"boom {KEY_VALUE}"}),),
        (reply(502, b"<html>" + KEY_VALUE.encode() + b"</html>"),),
        (reply(503),),
        (reply_json(200, {"success": False, "error": {"code": "x", "message": f"no {KEY_VALUE}"}}),),
        (reply(200, b"not json " + KEY_VALUE.encode()),),
        (reply_json(200, {"unexpected": KEY_VALUE}),),
        (fail(httpx2.ConnectError),),
        (fail(httpx2.ReadTimeout),),
        (fail(httpx2.RemoteProtocolError),),
    ]
    errors: list[BaseException] = []
    for steps in scenarios:
        client = make_client(FakeHardal(*steps), retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01))
        for call in (get_sessions, get_activity):
            try:
                await call(client)
            except HardalError as exc:
                errors.append(exc)

    assert len(errors) >= 2 * (len(scenarios) - 1)  # every scenario but the odd 200 object failed both calls
    assert any(r.levelno >= logging.WARNING for r in caplog.records), "retries must have been logged"
    for exc in errors:
        for text in (str(exc), repr(exc), *map(str, exc.args), getattr(exc, "message", "")):
            assert KEY_VALUE not in text, f"{type(exc).__name__} leaks the key: {text}"
    for record in caplog.records:
        assert KEY_VALUE not in record.getMessage()
        assert KEY_VALUE not in str(record.args)
    assert KEY_VALUE not in caplog.text


# --- per-key limiter in the client -----------------------------------------------------------------


class WouldWait(Exception):
    """A limiter asked to wait: `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


async def refuse_to_wait(seconds: float) -> None:
    """A limiter's sleep that turns any wait into WouldWait, so a test sees it instead of waiting."""
    raise WouldWait(seconds)


def one_a_minute(_: str) -> RateLimiter:
    return RateLimiter(1, clock=FakeClock(), sleep=refuse_to_wait)


async def completes_quickly(limiter: RateLimiter) -> bool:
    """Whether a request (answered at once) gets its slot without waiting (`limiter` refuses to wait)."""
    try:
        async with limiter.slot():
            pass
    except WouldWait:
        return False
    return True


async def test_each_key_has_its_own_rate_limit(make_client):
    fake = FakeHardal(ok())
    client = make_client(fake, budgets=one_a_minute)
    other = SecretStr("hk_test_another_key_0000000000")

    await client.sessions(KEY, "demo", WINDOW, limit=10)
    await client.sessions(other, "demo", WINDOW, limit=10)  # another key is not held back by the first's budget
    with pytest.raises(WouldWait) as waited:
        await client.sessions(KEY, "demo", WINDOW, limit=10)

    assert waited.value.seconds == 60.0  # the first key's budget is spent for a minute
    assert fake.count == 2
    assert client.requests_sent == 2
    assert [r.headers["Authorization"] for r in fake.requests] == [
        f"Bearer {KEY_VALUE}",
        f"Bearer {other.get_secret_value()}",
    ]


async def test_retries_spend_the_rate_limit_budget(make_client):
    fake = FakeHardal(reply(503), ok())
    client = make_client(fake, budgets=lambda _: RateLimiter(2, clock=FakeClock(), sleep=refuse_to_wait))

    await get_sessions(client)  # two requests: the retry counts
    with pytest.raises(WouldWait):
        await get_sessions(client)

    assert fake.count == 2


# --- RateLimiter ----------------------------------------------------------------------------------


async def test_rate_limiter_allows_per_minute_then_blocks():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock, sleep=refuse_to_wait)

    assert [await completes_quickly(limiter) for _ in range(3)] == [True, True, True]
    assert not await completes_quickly(limiter)
    clock.now += 59.9
    assert not await completes_quickly(limiter)
    clock.now += 0.1  # a full minute after the first three
    assert [await completes_quickly(limiter) for _ in range(3)] == [True, True, True]
    assert not await completes_quickly(limiter)


async def test_rate_limiter_window_slides():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=refuse_to_wait)

    assert await completes_quickly(limiter)  # t=0
    clock.now += 30
    assert await completes_quickly(limiter)  # t=30
    clock.now += 29.5
    assert not await completes_quickly(limiter)  # t=59.5: both still in the window
    clock.now += 0.5
    assert await completes_quickly(limiter)  # t=60: the t=0 start left the window
    assert not await completes_quickly(limiter)  # t=30 and t=60 are in the window
    clock.now += 30
    assert await completes_quickly(limiter)  # t=90: the t=30 start left


async def test_rate_limiter_waits_exactly_until_the_oldest_start_leaves():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)

    async with limiter.slot():
        pass
    clock.now += 59.8  # the first answer now leaves the window 0.2 s from now
    async with limiter.slot():
        pass

    assert clock.waits == [pytest.approx(0.2)]


async def test_rate_limiter_serves_waiters_in_arrival_order():
    clock = FakeClock()
    released = anyio.Event()

    async def sleep(seconds: float) -> None:  # the first waiter waits here until all three have arrived
        await released.wait()
        clock.now += seconds

    limiter = RateLimiter(1, clock=clock, sleep=sleep)
    async with limiter.slot():
        pass
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with limiter.slot():
            order.append(n)

    async with anyio.create_task_group() as tg:
        for n in (2, 0, 1):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()  # it waits, or queues, before the next one arrives
        assert order == []
        released.set()

    assert order == [2, 0, 1]


async def test_a_request_holds_its_slot_in_flight_and_is_dated_by_its_answer():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, sleep=refuse_to_wait)
    async with limiter.slot():
        assert not await completes_quickly(limiter)  # in flight: the only slot is taken
        clock.now += 10  # the answer comes 10 s later
    clock.now += 55  # 65 s after the start but 55 s after the answer
    assert not await completes_quickly(limiter)
    clock.now += 5
    assert await completes_quickly(limiter)


# --- RetryPolicy -----------------------------------------------------------------------------------


def test_backoff_is_jittered_within_the_capped_exponential_bound():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    for attempt in range(8):
        bound = min(3.0, 0.5 * 2**attempt)
        samples = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= s <= bound for s in samples)
        assert len(set(samples)) > 1, "full jitter: waits must vary"


# -- response cache ------------------------------------------------------------------------------------


async def test_a_repeated_question_costs_no_request(make_client):
    fake = FakeHardal(ok())
    client = make_client(fake, cache=ResponseCache())
    first = await get_sessions(client)
    again = await get_sessions(client)
    assert fake.count == 1 == client.requests_sent
    assert again == first
    await get_sessions(client, offset=100)  # other parameters: another request
    assert fake.count == 2


async def test_cache_never_serves_one_keys_answer_to_another(make_client):
    fake = FakeHardal(ok())
    client = make_client(fake, cache=ResponseCache())
    await get_sessions(client)
    await client.sessions(SecretStr("another-tenant-key"), "demo", WINDOW, limit=100)
    assert fake.count == 2
    assert fake.requests[1].headers["Authorization"] == "Bearer another-tenant-key"


async def test_failures_are_not_cached(make_client):
    fake = FakeHardal(reply_json(404, {"error": {"code": 404, "message": "nope"}}), ok())
    client = make_client(fake, cache=ResponseCache())
    with pytest.raises(NotFoundError):
        await get_sessions(client)
    await get_sessions(client)
    assert fake.count == 2


def test_cache_entries_expire_and_the_cache_stays_within_its_bound():
    now = [0.0]
    cache = ResponseCache(max_bytes=10, clock=lambda: now[0])
    cache.put("a", b"12345", len(b"12345"), ttl=60)
    cache.put("b", b"12345", len(b"12345"), ttl=3600)
    assert cache.get("a") == b"12345"  # touching a makes b the least recently used
    cache.put("c", b"123", len(b"123"), ttl=60)
    assert cache.get("b") is None
    assert cache.get("a") == b"12345" and cache.get("c") == b"123"
    now[0] = 61.0
    assert cache.get("a") is None and cache.get("c") is None
    cache.put("huge", b"x" * 11, len(b"x" * 11), ttl=60)
    assert cache.get("huge") is None


def test_expired_bodies_are_swept_even_if_never_asked_for_again():
    now = [0.0]
    cache = ResponseCache(max_bytes=1000, clock=lambda: now[0])
    cache.put("old", b"x" * 100, len(b"x" * 100), ttl=10)
    now[0] = 61.0  # past the entry's lifetime and the sweep interval
    cache.put("new", b"y" * 10, len(b"y" * 10), ttl=10)
    assert cache.size == 10  # the expired body no longer holds memory


async def test_idle_keys_limiters_are_forgotten_but_active_ones_kept(make_client, monkeypatch):
    monkeypatch.setattr("hardal_mcp.client.MAX_IDLE_LIMITERS", 2)
    fake = FakeHardal(ok())
    client = make_client(fake)
    keys = [SecretStr(f"tenant-key-{i}") for i in range(4)]
    for key in keys:  # every limiter answered just now: none is idle, none may go
        await client.sessions(key, "demo", WINDOW, limit=10)
    assert len(client._limiters) == 4
    clock = FakeClock(time.monotonic() + 61)  # a minute later the early ones are idle
    for limiter in client._limiters.values():
        limiter._clock = clock
    await client.sessions(SecretStr("tenant-key-new"), "demo", WINDOW, limit=10)
    assert len(client._limiters) == 2
    assert client.fingerprints.of(SecretStr("tenant-key-new")) in client._limiters
