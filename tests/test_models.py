"""Tolerant parsing of upstream pages (reference §2.1, §2.2, §6): the documented example, lenient
durations, casing aliases, per-item and per-field tolerance, and ProtocolError for what is not a page."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardal_mcp.errors import ProtocolError
from hardal_mcp.frames import SessionsPage, parse_sessions_page
from hardal_mcp.models import (
    ActivityPage,
    parse_activity_page,
    parse_duration,
    parse_session_items,
)

# Verbatim from the Sessions API page (/work/shared/seed-sessions-api.txt, reference §2.1).
DOCUMENTED_EXAMPLE = b"""
{
  "sessions": [
    {
      "id": "sess_abc123456",
      "visitorId": "visitor_789",
      "startedAt": "2024-01-15T10:30:00+03:00",
      "duration": "180s",
      "pageViews": 5,
      "events": 12,
      "pages": [
        "/",
        "/products",
        "/products/item-1",
        "/cart",
        "/checkout"
      ],
      "browser": "Chrome",
      "os": "Windows",
      "device": "Desktop",
      "country": "Turkey",
      "fields": {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "summer_sale",
        "user_id": "user_456"
      }
    },
    {
      "id": "sess_def789012",
      "visitorId": "visitor_123",
      "startedAt": "2024-01-15T10:25:00+03:00",
      "duration": "45s",
      "pageViews": 2,
      "events": 3,
      "pages": [
        "/",
        "/about"
      ],
      "browser": "Safari",
      "os": "macOS",
      "device": "Desktop",
      "country": "United States",
      "fields": {
        "utm_source": "twitter",
        "utm_medium": "social"
      }
    }
  ],
  "pagination": {
    "total": 1250,
    "limit": 10,
    "offset": 0,
    "currentPage": 1,
    "totalPages": 125,
    "hasMore": true
  }
}
"""

ISTANBUL = timezone(timedelta(hours=3))


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def one_session(item: dict[str, object]):
    page = parse_sessions_page(dumps({"sessions": [item]}))
    assert page.dropped == 0
    assert len(page.sessions) == 1
    return page.sessions[0]


# --- the documented example --------------------------------------------------------------------------


def test_documented_sessions_example_parses_to_the_documented_values():
    page = parse_sessions_page(DOCUMENTED_EXAMPLE)

    assert page.dropped == 0
    first, second = page.sessions
    assert first.id == "sess_abc123456"
    assert first.visitor_id == "visitor_789"
    assert first.started_at == datetime(2024, 1, 15, 10, 30, tzinfo=ISTANBUL)
    assert first.started_at.utcoffset() == timedelta(hours=3)  # the offset is kept, not assumed UTC
    assert first.duration == 180.0
    assert first.page_views == 5
    assert first.events == 12
    assert first.pages == ["/", "/products", "/products/item-1", "/cart", "/checkout"]
    assert (first.browser, first.os, first.device, first.country) == ("Chrome", "Windows", "Desktop", "Turkey")
    assert first.fields == {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "summer_sale",
        "user_id": "user_456",
    }

    assert second.id == "sess_def789012"
    assert second.visitor_id == "visitor_123"
    assert second.started_at == datetime(2024, 1, 15, 7, 25, tzinfo=UTC)
    assert second.duration == 45.0
    assert second.page_views == 2
    assert second.events == 3
    assert second.pages == ["/", "/about"]
    assert (second.browser, second.os, second.device, second.country) == ("Safari", "macOS", "Desktop", "United States")
    assert second.fields == {"utm_source": "twitter", "utm_medium": "social"}

    p = page.pagination
    assert p is not None
    assert (p.total, p.limit, p.offset, p.current_page, p.total_pages, p.has_more) == (1250, 10, 0, 1, 125, True)


# --- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("180s", 180.0),
        (180, 180.0),
        (180.5, 180.5),
        (0, 0.0),
        ("180", 180.0),
        ("180.5", 180.5),
        ("3m", 180.0),
        ("1h 2m", 3720.0),
        ("1h2m3s", 3723.0),
        ("00:03:00", 180.0),
        ("01:02:03", 3723.0),
        ("3:00", 180.0),
        ("  180S ", 180.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("2 min", 120.0),
    ],
)
def test_parse_duration_reads_documented_and_defensive_forms(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        None,
        "abc",
        "",
        "   ",
        -1,
        -0.5,
        "-5",
        "-5s",
        float("nan"),
        float("inf"),
        float("-inf"),
        "nan",
        "inf",
        "1e400",
        True,
        False,
        [],
        {},
        [180],
        {"seconds": 180},
        "3 parsecs",
        "1h abc",
        "s",
        "180s extra",
    ],
)
def test_parse_duration_returns_none_for_unreadable_values(value):
    assert parse_duration(value) is None


def test_parse_duration_of_a_huge_integer_is_none():
    assert parse_duration(10**400) is None


def test_parse_duration_of_an_overflowing_unit_string_is_none():
    assert parse_duration("9" * 400 + "s") is None


def test_huge_integer_duration_in_a_page_drops_only_that_field():
    body = b'{"sessions": [{"id": "a", "browser": "Chrome", "duration": ' + b"9" * 400 + b"}]}"
    page = parse_sessions_page(body)
    assert page.sessions[0].duration is None
    assert page.sessions[0].browser == "Chrome"


DURATION_INPUTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),  # huge integers have their own test above
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet="0123456789.:hmsdinrec -", max_size=20),
    st.from_regex(r"\A\d{1,6}(\.\d{1,3})? ?(ms|s|sec|m|min|h|hr|d)( \d{1,4}(s|m|h))?\Z"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


@given(DURATION_INPUTS)
def test_parse_duration_is_none_or_finite_non_negative(value):
    result = parse_duration(value)
    assert result is None or (isinstance(result, float) and math.isfinite(result) and result >= 0)


# --- tolerance: aliases, missing and extra fields ---------------------------------------------------


def test_snake_case_aliases_are_read():
    session = one_session(
        {
            "id": "s1",
            "visitor_id": "v1",
            "started_at": "2026-11-25T22:30:00Z",
            "page_views": 7,
        }
    )
    assert session.visitor_id == "v1"
    assert session.started_at == datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
    assert session.page_views == 7
    page = parse_sessions_page(
        dumps({"sessions": [], "pagination": {"current_page": 2, "total_pages": 3, "has_more": False}})
    )
    assert page.pagination is not None
    assert (page.pagination.current_page, page.pagination.total_pages, page.pagination.has_more) == (2, 3, False)


def test_lowercase_pageviews_alias_is_read():
    assert one_session({"id": "s1", "pageviews": 4}).page_views == 4


def test_only_id_is_required():
    session = one_session({"id": "s1"})
    assert session.id == "s1"
    assert session.visitor_id is None
    assert session.started_at is None
    assert session.duration is None
    assert session.page_views is None
    assert session.events is None
    assert session.pages == []
    assert (session.browser, session.os, session.device, session.country) == (None, None, None, None)
    assert session.fields == {}


def test_explicit_nulls_are_absent_values():
    session = one_session({"id": "s1", "duration": None, "pages": None, "fields": None, "browser": None})
    assert session.duration is None
    assert session.pages == []
    assert session.fields == {}
    assert session.browser is None


def test_extra_fields_are_ignored():
    page = parse_sessions_page(
        dumps(
            {
                "sessions": [
                    {"id": "s1", "bounceRate": 0.5, "nested": {"deep": [1, 2]}, "engagement": "high", "browser": "Edge"}
                ],
                "pagination": {"total": 1, "cursor": "abc"},
                "meta": {"generatedAt": "now"},
            }
        )
    )
    assert page.dropped == 0
    assert page.sessions[0].id == "s1"
    assert page.sessions[0].browser == "Edge"
    assert not hasattr(page.sessions[0], "bounceRate")
    assert page.pagination is not None
    assert page.pagination.total == 1


def test_numeric_ids_and_strings_are_kept_as_text():
    session = one_session({"id": 12345, "visitorId": 678, "browser": 5})
    assert session.id == "12345"
    assert session.visitor_id == "678"
    assert session.browser == "5"


def test_fields_with_numbers_null_and_nested_values():
    session = one_session(
        {
            "id": "s1",
            "fields": {
                "utm_source": "google",
                "order_value": 129.9,
                "items": 3,
                "vip": True,
                "gone": None,
                "address": {"city": "Istanbul"},
                "tags": ["a", "b"],
            },
        }
    )
    fields = session.fields
    assert all(isinstance(v, str) for v in fields.values())  # string → string, as documented
    assert fields["utm_source"] == "google"
    assert fields["order_value"] == "129.9"
    assert fields["items"] == "3"
    assert fields["vip"] == "true"
    assert "gone" not in fields  # null is no value
    # nested values survive as JSON text (the `_string_map` docstring says they are dropped; the code keeps them)
    assert json.loads(fields["address"]) == {"city": "Istanbul"}
    assert json.loads(fields["tags"]) == ["a", "b"]


def test_pages_with_non_string_entries():
    assert one_session({"id": "s1", "pages": ["/", 42, None, "/cart"]}).pages == ["/", "42", "/cart"]


# --- tolerance: bad items and bad fields -----------------------------------------------------------


def test_unreadable_items_are_dropped_and_counted_the_rest_kept():
    body = {
        "sessions": [
            {"id": "keep_1", "duration": "10s"},
            {"visitorId": "no_id"},
            {"id": ""},
            {"id": None},
            {"id": ["x"]},
            "sess_as_a_string",
            42,
            None,
            [{"id": "nested"}],
            {"id": "keep_2", "pageViews": 3},
        ],
        "pagination": {"total": 10},
    }
    page = parse_sessions_page(dumps(body))

    assert [s.id for s in page.sessions] == ["keep_1", "keep_2"]
    assert page.sessions[0].duration == 10.0
    assert page.sessions[1].page_views == 3
    assert page.dropped == 8
    assert page.pagination is not None
    assert page.pagination.total == 10


GOOD_SESSION = {
    "id": "s1",
    "visitorId": "v1",
    "startedAt": "2024-01-15T10:30:00+03:00",
    "duration": "180s",
    "pageViews": 5,
    "events": 12,
    "pages": ["/", "/cart"],
    "browser": "Chrome",
    "os": "Windows",
    "device": "Desktop",
    "country": "Turkey",
    "fields": {"utm_source": "google"},
}


@pytest.mark.parametrize(
    ("key", "bad", "attribute", "empty"),
    [
        ("pageViews", "many", "page_views", None),
        ("pageViews", 5.5, "page_views", None),
        ("events", "lots", "events", None),
        ("events", [1, 2], "events", None),
        ("startedAt", "garbage", "started_at", None),
        ("startedAt", {"at": 1}, "started_at", None),
        ("pages", "x", "pages", []),
        ("pages", {"a": "/"}, "pages", []),
        ("fields", "x", "fields", {}),
        ("fields", ["utm_source"], "fields", {}),
        ("visitorId", {"id": 1}, "visitor_id", None),
        ("browser", ["Chrome"], "browser", None),
        ("duration", "abc", "duration", None),
        ("duration", -5, "duration", None),
        ("duration", {"s": 1}, "duration", None),
    ],
)
def test_a_wrong_typed_field_drops_only_that_field(key, bad, attribute, empty):
    item = {**GOOD_SESSION, key: bad}
    page = parse_sessions_page(dumps({"sessions": [item, GOOD_SESSION]}))

    assert page.dropped == 0
    assert [s.id for s in page.sessions] == ["s1", "s1"]
    broken, intact = page.sessions
    assert getattr(broken, attribute) == empty
    for name in ("visitor_id", "started_at", "duration", "page_views", "events", "pages", "browser", "fields"):
        if name != attribute:
            assert getattr(broken, name) == getattr(intact, name), name
    assert getattr(intact, attribute) not in (None, [], {})


def test_two_wrong_fields_in_one_item_are_both_dropped():
    session = one_session({**GOOD_SESSION, "pageViews": "many", "startedAt": "garbage"})
    assert session.page_views is None
    assert session.started_at is None
    assert session.browser == "Chrome"
    assert session.duration == 180.0


# --- pagination and page shapes ---------------------------------------------------------------------


def test_pagination_missing():
    page = parse_sessions_page(dumps({"sessions": [{"id": "a"}]}))
    assert page.pagination is None
    assert [s.id for s in page.sessions] == ["a"]


def test_pagination_partial():
    page = parse_sessions_page(dumps({"sessions": [], "pagination": {"hasMore": False}}))
    assert page.pagination is not None
    assert page.pagination.has_more is False
    assert page.pagination.total is None
    assert page.pagination.limit is None


@pytest.mark.parametrize(
    ("pagination", "expected_total", "expected_more"),
    [
        ({"total": "many", "hasMore": True}, None, True),
        ({"total": -1, "hasMore": True}, None, True),
        ({"total": 20, "hasMore": "perhaps"}, 20, None),
    ],
)
def test_pagination_wrong_typed_field_drops_only_that_field(pagination, expected_total, expected_more):
    page = parse_sessions_page(dumps({"sessions": [{"id": "a"}], "pagination": pagination}))
    assert [s.id for s in page.sessions] == ["a"]
    assert page.pagination is not None
    assert page.pagination.total == expected_total
    assert page.pagination.has_more == expected_more


@pytest.mark.parametrize("pagination", ["page 1", 3, [1, 2]])
def test_pagination_that_is_not_an_object_is_ignored(pagination):
    page = parse_sessions_page(dumps({"sessions": [{"id": "a"}], "pagination": pagination}))
    assert page.pagination is None
    assert [s.id for s in page.sessions] == ["a"]


def test_bare_array_of_sessions():
    page = parse_sessions_page(dumps([{"id": "a"}, {"id": "b", "duration": 3}]))
    assert [s.id for s in page.sessions] == ["a", "b"]
    assert page.sessions[1].duration == 3.0
    assert page.pagination is None


def test_bare_array_of_non_objects_is_a_page_of_dropped_items():
    # a bare array is accepted as the sessions list; items that are not objects are dropped and counted
    page = parse_sessions_page(b"[1, 2]")
    assert page.sessions == []
    assert page.dropped == 2


def test_nexus_envelope_sessions():
    body = {"success": True, "data": {"sessions": [{"id": "a"}], "pagination": {"total": 1}}}
    page = parse_sessions_page(dumps(body))
    assert [s.id for s in page.sessions] == ["a"]
    assert page.pagination is not None
    assert page.pagination.total == 1


def test_nexus_envelope_with_a_bad_item():
    body = {"success": True, "data": {"sessions": [{"id": "a"}, {"no": "id"}]}}
    page = parse_sessions_page(dumps(body))
    assert [s.id for s in page.sessions] == ["a"]
    assert page.dropped == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"foo": 1}',
        b"{}",
        b'{"error": "Invalid API key"}',
        b'{"sessions": "none"}',
        b'{"sessions": {"id": "a"}}',
        b'{"sessions": null}',
        b"null",
        b'"sessions"',
        b"42",
        b"true",
    ],
)
def test_json_of_the_wrong_shape_is_a_protocol_error(body):
    with pytest.raises(ProtocolError) as info:
        parse_sessions_page(body)
    assert "sessions" in str(info.value)


def test_wrong_shape_message_describes_what_came_back():
    with pytest.raises(ProtocolError) as info:
        parse_sessions_page(b'{"sessions": 5, "total": 3}')
    assert "`sessions`" in str(info.value)
    assert "total" in str(info.value)  # names the keys it did get


@pytest.mark.parametrize(
    "body", [b"", b"<html><body>Bad Gateway</body></html>", b"\xff\xfe\x00", b'{"sessions": [', b"sessions"]
)
def test_not_json_is_a_protocol_error(body):
    with pytest.raises(ProtocolError) as info:
        parse_sessions_page(body)
    assert "not JSON" in str(info.value)
    with pytest.raises(ProtocolError):
        parse_activity_page(body)


@pytest.mark.parametrize("parse", [parse_sessions_page, parse_activity_page])
def test_deeply_nested_json_is_a_protocol_error(parse):
    with pytest.raises(ProtocolError):
        parse(b"[" * 100_000)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_sessions_page, {"sessions": [{"id": "a"}], "dropped": 5}),
        (parse_activity_page, {"events": [{"id": "e"}], "dropped": 5}),
    ],
)
def test_an_upstream_dropped_key_does_not_set_the_dropped_count(parse, body):
    assert parse(dumps(body)).dropped == 0


# --- activity pages ---------------------------------------------------------------------------------


def test_activity_page_with_flat_pagination():
    body = {
        "events": [
            {
                "id": "evt_1",
                "type": "pageview",
                "name": "page_view",
                "timestamp": "2024-01-15T10:30:05+03:00",
                "url": "/products",
                "properties": {"title": "Products", "scroll": 80},
                "referrer": "https://google.com",
                "meta": {"x": 1},
            },
            {"id": "evt_2", "type": "click"},
        ],
        "totalCount": 12,
        "page": 1,
        "pageSize": 2,
        "hasMore": True,
    }
    page = parse_activity_page(dumps(body))

    assert (page.total_count, page.page, page.page_size, page.has_more, page.dropped) == (12, 1, 2, True, 0)
    first, second = page.events
    assert first.id == "evt_1"
    assert first.type == "pageview"
    assert first.name == "page_view"
    assert first.timestamp == datetime(2024, 1, 15, 10, 30, 5, tzinfo=ISTANBUL)
    assert first.url == "/products"
    assert first.properties == {"title": "Products", "scroll": "80"}
    assert first.model_extra is not None
    assert first.model_extra["referrer"] == "https://google.com"  # extra keys are kept on events
    assert first.model_extra["meta"] == {"x": 1}
    assert (second.id, second.type, second.name, second.timestamp, second.url) == ("evt_2", "click", None, None, None)
    assert second.properties == {}


@pytest.mark.parametrize(
    "meta",
    [
        {"total_count": 7, "page": 2, "page_size": 3, "has_more": False},
        {"total": 7, "page": 2, "limit": 3, "hasMore": False},
    ],
)
def test_activity_snake_case_and_alternative_pagination_names(meta):
    page = parse_activity_page(dumps({"events": [], **meta}))
    assert (page.total_count, page.page, page.page_size, page.has_more) == (7, 2, 3, False)


def test_activity_event_aliases():
    event = {
        "id": 99,
        "event_type": "track",
        "eventName": "add_to_cart",
        "created_at": "2026-11-25T22:30:00Z",
        "path": "/cart",
        "props": {"sku": "A-1", "qty": 2},
    }
    (parsed,) = parse_activity_page(dumps({"events": [event]})).events
    assert parsed.id == "99"
    assert parsed.type == "track"
    assert parsed.name == "add_to_cart"
    assert parsed.timestamp == datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
    assert parsed.url == "/cart"
    assert parsed.properties == {"sku": "A-1", "qty": "2"}


def test_activity_unreadable_items_dropped_and_bad_fields_dropped():
    body = {
        "events": [
            {"id": "e1", "type": "pageview", "timestamp": "yesterday-ish"},
            "e2",
            None,
            7,
            {"type": "click", "properties": "not-a-map"},
        ],
        "totalCount": "unknown",
        "page": 1,
    }
    page = parse_activity_page(dumps(body))

    assert page.dropped == 3
    assert [(e.id, e.type) for e in page.events] == [("e1", "pageview"), (None, "click")]
    assert page.events[0].timestamp is None
    assert page.events[1].properties == {}
    assert page.total_count is None  # wrong-typed meta field dropped, the rest kept
    assert page.page == 1


def test_activity_bare_array():
    page = parse_activity_page(dumps([{"id": "e1"}, {"id": "e2"}]))
    assert [e.id for e in page.events] == ["e1", "e2"]
    assert page.total_count is None


def test_nexus_envelope_activity():
    page = parse_activity_page(dumps({"success": True, "data": {"events": [{"id": "e1"}], "totalCount": 1}}))
    assert [e.id for e in page.events] == ["e1"]
    assert page.total_count == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"foo": 1}',
        b'{"events": 12}',
        b'{"events": {"id": "e"}}',
        b"null",
        b"3.5",
    ],
)
def test_activity_json_of_the_wrong_shape_is_a_protocol_error(body):
    with pytest.raises(ProtocolError) as info:
        parse_activity_page(body)
    assert "events" in str(info.value)


# --- properties: nothing but ProtocolError ----------------------------------------------------------

# Integers are bounded to 64 bits here: a JSON number beyond float range as a `duration` is a known bug
# (see test_huge_integer_duration_in_a_page_drops_only_that_field).
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
SESSION_KEYS = st.sampled_from(
    [
        *("id", "visitorId", "visitor_id", "startedAt", "duration", "pageViews", "pageviews", "events", "pages"),
        *("browser", "os", "device", "country", "fields", "extra"),
    ]
)
PAGINATION_KEYS = st.sampled_from(["total", "limit", "offset", "currentPage", "total_pages", "hasMore", "x"])
EVENT_KEYS = st.sampled_from(
    [
        *("id", "type", "event_type", "name", "eventName", "timestamp", "created_at", "time", "url", "path"),
        *("properties", "props", "data", "extra"),
    ]
)
ACTIVITY_META_KEYS = st.sampled_from(["totalCount", "total_count", "total", "page", "pageSize", "limit", "hasMore"])


def objects(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(keys, JSON_VALUES, max_size=8)


NEAR_SESSIONS = st.fixed_dictionaries(
    {"sessions": st.lists(objects(SESSION_KEYS) | JSON_VALUES, max_size=5)},
    optional={"pagination": objects(PAGINATION_KEYS) | JSON_VALUES},
)
NEAR_ACTIVITY = st.builds(
    lambda events, meta: {"events": events, **meta},
    st.lists(objects(EVENT_KEYS) | JSON_VALUES, max_size=5),
    objects(ACTIVITY_META_KEYS),
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_protocol_error(parse, content: bytes):
    try:
        return parse(content)
    except ProtocolError:
        return None


@PROPERTY_SETTINGS
@given(st.one_of(JSON_VALUES.map(dumps), st.binary(max_size=200)))
def test_parse_sessions_page_raises_only_protocol_error(content):
    page = parse_or_protocol_error(parse_sessions_page, content)
    assert page is None or isinstance(page, SessionsPage)


@PROPERTY_SETTINGS
@given(NEAR_SESSIONS)
def test_near_valid_sessions_pages_keep_or_count_every_item(body):
    page = parse_sessions_page(dumps(body))
    assert len(page.sessions) + page.dropped == len(body["sessions"])
    assert all(s.id for s in page.sessions)
    for session in page.sessions:
        assert session.duration is None or (math.isfinite(session.duration) and session.duration >= 0)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in session.fields.items())


@PROPERTY_SETTINGS
@given(st.one_of(JSON_VALUES.map(dumps), st.binary(max_size=200)))
def test_parse_activity_page_raises_only_protocol_error(content):
    page = parse_or_protocol_error(parse_activity_page, content)
    assert page is None or isinstance(page, ActivityPage)


@PROPERTY_SETTINGS
@given(NEAR_ACTIVITY)
def test_near_valid_activity_pages_keep_or_count_every_item(body):
    page = parse_activity_page(dumps(body))
    assert len(page.events) + page.dropped == len(body["events"])
    for event in page.events:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.properties.items())


# --- the columnar read agrees with the tolerant one -----------------------------------------------

_ANY_VALUE = st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats(allow_nan=False) | st.text(max_size=6)
_TEXT_OR_ODD = st.one_of(st.text(max_size=8), _ANY_VALUE, st.lists(st.text(max_size=3), max_size=2))
_SESSION_ITEMS = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=6), st.integers(0, 99), st.none())},
    optional={
        "visitorId": _TEXT_OR_ODD,
        "startedAt": st.one_of(
            st.sampled_from(["2026-10-01T10:00:00+03:00", "2026-10-01T07:00:00Z", "2026-10-01T10:00:00.5-02:30",
                             "2026-10-01T10:00:00", "2026-10-01", "yesterday", "2026-10-01T24:00:00+00:00"]),
            _ANY_VALUE,
        ),
        "duration": st.one_of(st.sampled_from(["180s", "3m", "1h 2m", "00:03:00", "-4", "x"]), _ANY_VALUE),
        "pageViews": _ANY_VALUE,
        "events": _ANY_VALUE,
        "pages": st.one_of(st.lists(st.one_of(st.text(max_size=5), st.none(), st.integers(0, 9)), max_size=4),
                           _ANY_VALUE),
        "browser": _TEXT_OR_ODD,
        "os": _TEXT_OR_ODD,
        "device": _TEXT_OR_ODD,
        "country": _TEXT_OR_ODD,
        "fields": st.one_of(st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.none(),
                                                                         st.integers(0, 9)), max_size=3),
                            _ANY_VALUE),
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_SESSION_ITEMS, _ANY_VALUE), max_size=6), st.booleans())
def test_the_columnar_read_agrees_with_the_tolerant_one(items: list[object], paginated: bool) -> None:
    """Whatever a page holds, reading it into columns gives exactly the sessions the item-by-item reading
    gives (the columns take the documented shape themselves and hand anything else to the tolerant read)."""
    body = {"sessions": items, **({"pagination": {"total": len(items), "hasMore": False}} if paginated else {})}
    content = json.dumps(body, separators=(",", ":")).encode()
    try:
        expected = parse_session_items(content)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            parse_sessions_page(content)
        return
    page = parse_sessions_page(content)
    assert page.sessions == expected.sessions
    assert [None if s.started_at is None else s.started_at.utcoffset() for s in page.sessions] == [
        None if s.started_at is None else s.started_at.utcoffset() for s in expected.sessions
    ]
    assert (page.pagination, page.dropped) == (expected.pagination, expected.dropped)
