"""sanitize: visitor-typed text becomes one visible, bounded line; PII redaction on request."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardal_mcp.models import Session
from hardal_mcp.privacy import redact_session
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
        # A parameter named like an id ties the visit to a person.
        ("/account?session_id=a9f3k2&lang=tr", "/account?session_id=[redacted]&lang=tr"),
        ("/p?user_id=42&ref-id=7&id=3", "/p?user_id=[redacted]&ref-id=[redacted]&id=3"),
        # URL-encoded (`%2B` for `+`, `+` or `%20` for a space, `%3A` for `:`), in a value or a path segment.
        ("/search?q=%2B1+415+555+0199", "/search?q=[phone]"),
        ("/search?q=415+555+0199&page=2", "/search?q=[phone]&page=2"),
        ("/s?q=call+me+%2B44%2020%207946%200958+today", "/s?q=call+me+[phone]+today"),
        ("/call/%2B90%20532%20123%2045%2067/ok", "/call/[phone]/ok"),
        ("/u/tel:%2B1%20415%20555%200199", "/u/tel:[phone]"),  # what was not encoded stays so
        ("/geo?ip=2001%3Adb8%3A%3A1", "/geo?ip=[ip]"),
        ("/login?next=%2Fcb%3Ftoken%3Dabc123", "/login?next=%2Fcb%3Ftoken%3D[redacted]"),
        # An address after a separator, or ending a sentence.
        ("v.10.1.2.3", "v.[ip]"),
        ("ip_10.1.2.3-x", "ip_[ip]-x"),
        ("seen at 10.0.0.1.", "seen at [ip]."),
        ("v-2001:db8::1", "v-[ip]"),
        ("v:2001:db8::1", "v:[ip]"),
        # US social security numbers, and anything passed as `ssn=`.
        ("/verify?ssn=123-45-6789", "/verify?ssn=[redacted]"),
        ("/verify?user_ssn=123456789&ok=1", "/verify?user_ssn=[redacted]&ok=1"),
        ("SSN 123-45-6789, thanks", "SSN [ssn], thanks"),
        ("v-123-45-6789", "v-[ssn]"),
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
        "/blog/2024/10/12",
        "/shop?sku=12345&price=19.99&qty=2",
        "/p?price=%2419.99&currency=USD",
        "v1.2.3",
        "v10.1.2.3",  # a four-part version glued to its `v`
        "1.10.1.2.3",  # five dotted numbers are no address
        "14:03:22",
        "/events?from=2024-10-12+14%3A03%3A22&to=2024-10-13",
        "/search?q=red+running+shoes",
        "C++ and a+b",
        "/docs/%E2%82%AC-pricing",
        "order 2024-10-12 #123-4567-89",
        "isbn 978-123-45-6789-0",
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


def test_an_id_with_a_separator_is_redacted_and_a_plain_one_kept() -> None:
    # Ids of only letters, digits and `_` skip redaction: `v.10.1.2.3` must not be taken for one.
    plain = "sess_abc123456"
    s = redact_session(Session(id=plain, visitor_id="v.10.1.2.3"))
    assert s.id is plain
    assert s.visitor_id == "v.[ip]"
    s = redact_session(Session(id="s-198.51.100.7", visitor_id="visitor_789"))
    assert (s.id, s.visitor_id) == ("s-[ip]", "visitor_789")


# --- PII redaction: properties ---------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
EMAILS = st.builds("{}.{}@{}.{}".format, _LABEL, _LABEL, _LABEL, st.sampled_from(["com", "co.uk", "org", "io"]))
PHONES = st.builds(
    lambda cc, a, b, c, sep: f"+{cc}{sep}{a}{sep}{b}{sep}{c}",
    st.integers(1, 99), st.integers(100, 999), st.integers(100, 999), st.integers(1000, 9999), st.sampled_from(" -."),
) | st.builds(
    lambda a, b, c, style: style.format(a, b, c),
    st.integers(200, 999), st.integers(100, 999), st.integers(1000, 9999),
    st.sampled_from(["({}) {}-{}", "{}-{}-{}", "{}.{}.{}", "{} {} {}"]),
)  # fmt: skip
_OCTETS = st.integers(0, 255)
IPV4 = st.builds("{}.{}.{}.{}".format, st.integers(1, 255), _OCTETS, _OCTETS, _OCTETS)
IPV6 = st.builds(
    lambda head, tail: f"{':'.join(head)}::{':'.join(tail)}",
    st.lists(st.from_regex(r"[1-9a-f][0-9a-f]{0,3}", fullmatch=True), min_size=1, max_size=3),
    st.lists(st.from_regex(r"[1-9a-f][0-9a-f]{0,3}", fullmatch=True), min_size=1, max_size=3),
)
SSNS = st.builds("{:03}-{:02}-{:04}".format, st.integers(1, 899), st.integers(1, 99), st.integers(1, 9999))
PII = st.one_of(
    st.tuples(st.just("[email]"), EMAILS),
    st.tuples(st.just("[phone]"), PHONES),
    st.tuples(st.just("[ip]"), IPV4 | IPV6),
    st.tuples(st.just("[ssn]"), SSNS),
)
# Where a visitor's text lands, and how it is spelled there: as typed, or URL-encoded in a query or a path.
SPELLINGS = st.sampled_from([lambda v: v, quote_plus, lambda v: quote(v, safe="")])
POSITIONS = st.sampled_from([
    "/contact/{}/thanks", "/search?q={}&page=2", "/s?ref=x&q={}", "{}", "note: {} (from the form)",
    "v.{}", "v-{}", "v:{}",
])  # fmt: skip


@given(PII, SPELLINGS, POSITIONS)
def test_personal_data_is_masked_wherever_and_however_it_is_written(
    pii: tuple[str, str], spell: Callable[[str], str], position: str
) -> None:
    mask, value = pii
    if mask == "[email]" and position.startswith("v"):
        position = "{}"  # `v.jane@x.io` is an address as a whole: the mask would take the `v.` too
    assert redact(position.format(spell(value)), 1 << 20) == position.format(mask)


@given(_LABEL, st.text("abcdefXYZ0123456789_.-~", min_size=1, max_size=20), st.sampled_from(["_id", "-id"]))
def test_a_parameter_named_like_an_id_loses_its_value(name: str, value: str, suffix: str) -> None:
    assert redact(f"/p?{name}{suffix}={value}&lang=tr") == f"/p?{name}{suffix}=[redacted]&lang=tr"


ORDINARY = st.one_of(
    st.dates().map(lambda d: f"/blog/{d:%Y/%m/%d}"),
    st.dates().map(str),
    st.times().map(lambda t: t.strftime("%H:%M:%S")),
    st.builds("v{}.{}.{}".format, st.integers(0, 99), st.integers(0, 99), st.integers(0, 999)),
    st.builds("{}.{:02}".format, st.integers(0, 99999), st.integers(0, 99)),
    st.integers(0, 10**9).map("sku={}".format),
    st.integers(0, 10**9).map("/orders/{}".format),
)
ORDINARY_POSITIONS = st.sampled_from([
    "{}", "/shop?sku=1&p={}", "/p?at={}&lang=tr", "{} ok", "/events/{}/", "/e?d={}+{}",
])  # fmt: skip


@given(ORDINARY, ORDINARY, ORDINARY_POSITIONS, SPELLINGS)
def test_values_that_are_not_personal_data_are_left_as_they_are(
    a: str, b: str, position: str, spell: Callable[[str], str]
) -> None:
    value = position.format(spell(a), spell(b))
    assert redact(value, 1 << 20) == value
