"""No personal data or secret reaches the disk: a fake Hardal (a plain request → response handler at the
transport) serves a closed window whose sessions carry PII and secrets in every field a visitor can type,
a real MCP client asks about it with the day store on, and the store's file is then read as raw bytes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import httpx2
from mcp.client import Client

from hardal_mcp.server import build_server
from hardal_mcp.store import DayStore

from .conftest import make_settings

API_KEY = "hk_live_Zq8rT3vW9pLm2Xy7"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.Qm9ndXNTaWduYXR1cmU"
BEARER = "Authorization: Bearer tok3n9Vx7Qe2Lw8Rk4"
DAYS = [date.today() - timedelta(days=12 - i) for i in range(3)]  # closed: the store keeps days ≥ 48 h old
WINDOW = {"start_date": DAYS[0].isoformat(), "end_date": DAYS[-1].isoformat(), "timezone": "UTC"}

# The parts of each planted value that must not survive in any spelling (the masks keep the rest).
SECRETS = [
    "a9f3k2m7q1z8",  # session_id= in a query string
    "Vx7Qe2Lw8Rk4",  # a bearer token
    "OiJIUzI1NiJ9", "Qm9ndXNTaWduYXR1cmU",  # a JWT
    "pr1v4t3Tok",  # token=
    "123-45-6789", "987-65-4321", "987654321",  # ssn= and a US social security number in text
    "jane.doe", "ayse.yilmaz",  # e-mail addresses
    "415 555 0199", "415+555+0199", "4155550199",  # a phone number, URL-encoded in a query
    "532 123 45 67", "123-4567", "7946", "555.0142",  # phone numbers in other spellings
    "203.0.113.42", "198.51.100.7", "10.1.2.3",  # IPv4, in a field, a session id, a visitor id
    "8a2e", "370:7334", "db8:85a3",  # IPv6, plain and URL-encoded
    "u_77231",  # user_id= in a query string
    API_KEY,
]  # fmt: skip


def session(day: date, i: int) -> dict[str, Any]:
    return {
        "id": f"s{day:%d}-198.51.100.7" if i == 0 else f"sess_{day:%m%d}_{i}",
        "visitorId": ["v.10.1.2.3", "jane.doe@example.com", f"visitor_{i}"][i % 3],
        "startedAt": f"{day.isoformat()}T1{i}:00:00+00:00",
        "duration": "95s",
        "pageViews": 9,
        "events": 4,
        "pages": [
            "/",
            "/account?session_id=a9f3k2m7q1z8&lang=tr",
            "/search?q=%2B1+415+555+0199",
            "/verify?ssn=123-45-6789",
            "/reset?token=pr1v4t3Tok&step=2",
            "/newsletter?email=ayse.yilmaz%40example.com",
            "/geo?ip=2001%3Adb8%3A85a3%3A%3A8a2e%3A370%3A7334",
            f"/sso?jwt={JWT}",
            "/profile?user_id=u_77231",
        ],
        "browser": f"Mozilla/5.0 {BEARER}",
        "os": "Windows 203.0.113.42",
        "device": "Desktop",
        "country": "Turkey",
        "fields": {
            "utm_source": "newsletter",
            "utm_term": "jane.doe@example.com",
            "utm_content": "call +90 532 123 45 67 or (555) 123-4567",
            "phone": "%2B44%2020%207946%200958",
            "hotline": "415.555.0142",
            "whatsapp": "wa.me/+14155550199",
            "ip": "2001:db8:85a3::8a2e:370:7334",
            "note": "SSN 987-65-4321 / ssn=987654321",
            "echo": f"debug {API_KEY}",
        },
    }


def sessions_for(start: str, end: str) -> list[dict[str, Any]]:
    return [session(day, i) for day in DAYS if start <= day.isoformat() <= end for i in range(4)]


def hardal(request: httpx2.Request) -> httpx2.Response:
    params = request.url.params
    found = sessions_for(params["startDate"], params["endDate"])
    offset, limit = int(params.get("offset", "0")), int(params.get("limit", "1000"))
    pagination = {"total": len(found), "limit": limit, "offset": offset, "hasMore": offset + limit < len(found)}
    return httpx2.Response(200, json={"sessions": found[offset : offset + limit], "pagination": pagination})


def spellings(secret: str) -> set[bytes]:
    """The ways a file could hold `secret`: raw, JSON-escaped (`@` as `\\u0040` too), percent-encoded."""
    forms = {secret, unquote_plus(secret), quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= {form.replace("@", "\\u0040") for form in forms} | {form.replace("/", "\\/") for form in forms}
    return {form.encode() for form in forms}


def leaks(directory: Path) -> list[tuple[str, str]]:
    """(file, secret) for every planted secret that some file of the store holds in some spelling."""
    files = [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]
    return [(name, s) for name, content in files for s in SECRETS if any(f in content for f in spellings(s))]


async def test_no_planted_secret_or_personal_data_reaches_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store" / "store.sqlite3"
    settings = make_settings(api_key=API_KEY, store=str(path))
    requests: list[httpx2.Request] = []

    def counted(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return hardal(request)

    async with Client(build_server(settings, transport=httpx2.MockTransport(counted))) as client:
        first = await client.call_tool("summarize_sessions", WINDOW)
        assert not first.is_error, first.content
        with DayStore(path) as day_store:
            assert day_store.status().days == len(DAYS)
        # The journal and the file as they are while the server holds the store open ...
        assert not leaks(path.parent)
        asked = len(requests)
        again = await client.call_tool("summarize_sessions", WINDOW)
        assert not again.is_error
        assert len(requests) == asked, "the stored days answer the second question"
    # ... and once it has let go of it.
    assert not leaks(path.parent)


async def test_the_check_sees_what_is_planted(tmp_path: Path) -> None:
    # With masking off the store keeps nothing at all; written raw, every secret would be found.
    (tmp_path / "raw.json").write_bytes(json.dumps(sessions_for(WINDOW["start_date"], WINDOW["end_date"])).encode())
    assert {s for _, s in leaks(tmp_path)} == set(SECRETS)
