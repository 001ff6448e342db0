"""sanitize: visitor-typed text becomes one visible, bounded line; PII redaction on request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardal_mcp.sanitize import ELLIPSIS, Sanitizer, clean, elide


def test_plain_ascii_is_returned_as_is() -> None:
    value = "/products/item-1?utm_source=google"
    assert clean(value) is value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\tb\nc\r\nd", "a b c d"),
        ("line\u2028break\u2029para\x85next\x0bvt\x0cff\x1crs", "line break para next vt ff rs"),
        ("  lots   of\t\tspace  ", "lots of space"),
        ("nul\x00bell\x07del\x7fc1\x9b", "nulbelldelc1"),
        ("\x1b[31mred\x1b[0m plain", "red plain"),
        ("\x1b]0;window title\x07after", "after"),
        ("\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x9b2Jcleared", "cleared"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff\u180e", "zerowidth"),
        ("bidi \u202eevil\u202c \u2066iso\u2069 \u061cmark", "bidi evil iso mark"),
        ("tag\U000e0041\U000e0042 smuggling", "tag smuggling"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("Türkiye 🇹🇷 café", "Türkiye 🇹🇷 café"),
        ("\u00a0nbsp\u3000ideographic\u00a0", "nbsp ideographic"),
        ("", ""),
    ],
)
def test_clean_removes_what_could_hide_or_fake_text(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_elision_is_in_the_middle_and_visible() -> None:
    value = "/blog/very-long-article-title-about-something/end"
    out = clean(value, 20)
    assert len(out) == 20
    assert out == "/blog/very-lo" + ELLIPSIS + "ng/end"
    assert out.startswith("/blog/")
    assert out.endswith("/end")


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 10])
def test_small_limits(limit: int) -> None:
    assert len(elide("x" * 50, limit)) <= limit
    assert len(clean("y" * 50, limit)) <= limit


def test_cap_applies_after_cleaning() -> None:
    # 100 invisible characters do not eat the budget of the visible ones.
    assert clean("\u200b" * 100 + "visible", 10) == "visible"


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_clean_always_gives_one_bounded_line(value: str, limit: int) -> None:
    out = clean(value, limit)
    assert len(out) <= limit
    assert len(out.splitlines()) <= 1
    assert not any(c in out for c in "\t\r\n\x1b\u2028\u2029\u202e\u200b")
    assert out == out.strip()
    assert "  " not in out
    out.encode("utf-8")  # no lone surrogate survives
    assert clean(out, limit) == out  # idempotent


# --- PII redaction -------------------------------------------------------------------------------

redact = Sanitizer(redact_pii=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("contact john.doe+shop@example.co.uk now", "contact [email] now"),
        ("/signup?email=jane%40example.com&step=2", "/signup?email=[email]&step=2"),
        ("call +90 532 123 45 67 today", "call [phone] today"),
        ("us: (555) 123-4567", "us: [phone]"),
        ("us: 555.123.4567", "us: [phone]"),
        ("from 192.168.1.10 via 10.0.0.1", "from [ip] via [ip]"),
        ("v6 2001:db8::8a2e:370:7334 and ::1 and fe80::1", "v6 [ip] and [ip] and [ip]"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full [ip]"),
        ("/reset?token=abc123&lang=tr", "/reset?token=[redacted]&lang=tr"),
        ("/cb?code=xyz&state=1#access_token=secret", "/cb?code=[redacted]&state=1#access_token=[redacted]"),
        ("/a?api_key=K&key=K2&password=p&secret=s&auth=a&session=s1", None),
        ("/a?X-Api-Key=K&sessionid=1&sig=2", "/a?X-Api-Key=[redacted]&sessionid=[redacted]&sig=[redacted]"),
    ],
)
def test_redaction(raw: str, expected: str | None) -> None:
    out = redact(raw)
    if expected is None:
        assert "=[redacted]" in out
        assert not any(secret in out for secret in ("=K", "=p", "=s", "=a", "=s1"))
    else:
        assert out == expected


@pytest.mark.parametrize(
    "value",
    [
        "/products/item-1?utm_source=google&utm_campaign=summer_sale",
        "2026-11-20 14:03:22",  # a date and a clock time are neither phone nor IPv6
        "/orders/12345",
        "a :: b",
        "/page?keyword=shoes&q=red",
        "version 1.2.3",
    ],
)
def test_redaction_leaves_ordinary_values(value: str) -> None:
    assert redact(value) == value


def test_redaction_happens_before_the_cap() -> None:
    # Capped first, the tail of the address would survive the cut; redacted first, nothing does.
    out = redact("x" * 40 + " someone@example.com", 30)
    assert "@" not in out
    assert "example" not in out


def test_redaction_is_off_by_default() -> None:
    assert clean("someone@example.com") == "someone@example.com"
    assert Sanitizer().redact_pii is False
