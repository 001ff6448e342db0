"""Tool arguments made safe: time windows resolved to explicit dates in a zone, ids and zones checked."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck

from hardal_mcp.errors import InputError
from hardal_mcp.params import Window, check_id, check_timezone, resolve_window

# 22:30 UTC on 25 November is already 01:30 on 26 November in Istanbul (UTC+3, no DST since 2016),
# and still 17:30 on 25 November in New York (UTC-5 in November).
NOW = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
IST = "Europe/Istanbul"


def window(timeframe=None, start=None, end=None, tz=IST, now=NOW) -> Window:
    return resolve_window(timeframe, start, end, tz, now=now)


@pytest.mark.parametrize(
    ("timeframe", "tz", "start", "end"),
    [
        ("today", IST, date(2026, 11, 26), date(2026, 11, 26)),
        ("today", "UTC", date(2026, 11, 25), date(2026, 11, 25)),
        ("today", "America/New_York", date(2026, 11, 25), date(2026, 11, 25)),
        ("today", "Pacific/Kiritimati", date(2026, 11, 26), date(2026, 11, 26)),  # UTC+14
        ("yesterday", IST, date(2026, 11, 25), date(2026, 11, 25)),
        ("yesterday", "UTC", date(2026, 11, 24), date(2026, 11, 24)),
        ("last7days", IST, date(2026, 11, 20), date(2026, 11, 26)),
        ("last7days", "UTC", date(2026, 11, 19), date(2026, 11, 25)),
        ("last30days", IST, date(2026, 10, 28), date(2026, 11, 26)),
        ("last30days", "UTC", date(2026, 10, 27), date(2026, 11, 25)),
    ],
)
def test_presets_resolve_in_the_given_zone(timeframe, tz, start, end):
    resolved = window(timeframe, tz=tz)
    assert resolved == Window(timeframe, start, end, tz)


@pytest.mark.parametrize(("timeframe", "days"), [("today", 1), ("yesterday", 1), ("last7days", 7), ("last30days", 30)])
def test_preset_lengths(timeframe, days):
    assert window(timeframe).days == days


def test_presets_across_a_month_and_year_boundary():
    new_year = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    assert window("yesterday", tz="UTC", now=new_year) == Window(
        "yesterday", date(2026, 12, 31), date(2026, 12, 31), "UTC"
    )
    assert window("last7days", tz="UTC", now=new_year).start == date(2026, 12, 26)


def test_leap_day_in_last30days():
    resolved = window("last30days", tz="UTC", now=datetime(2028, 3, 1, 12, tzinfo=UTC))
    assert (resolved.start, resolved.end) == (date(2028, 2, 1), date(2028, 3, 1))


def test_now_in_another_offset_is_converted_not_reinterpreted():
    from zoneinfo import ZoneInfo

    tokyo_now = NOW.astimezone(ZoneInfo("Asia/Tokyo"))  # 07:30 on 26 Nov in Tokyo, same instant
    assert window("today", tz="UTC", now=tokyo_now).start == date(2026, 11, 25)


def test_default_is_last7days():
    assert window() == Window("last7days", date(2026, 11, 20), date(2026, 11, 26), IST)


def test_default_uses_the_real_clock_without_now():
    resolved = resolve_window(None, None, None, "UTC")
    today = datetime.now(UTC).date()
    assert resolved.timeframe == "last7days"
    assert resolved.end in {today, date.fromordinal(today.toordinal() - 1)}  # a run across midnight UTC
    assert resolved.days == 7


def test_start_date_alone_means_custom_up_to_today_in_the_zone():
    assert window(start="2026-11-20") == Window("custom", date(2026, 11, 20), date(2026, 11, 26), IST)
    assert window(start="2026-11-20", tz="UTC") == Window("custom", date(2026, 11, 20), date(2026, 11, 25), "UTC")


def test_custom_with_both_dates():
    assert window("custom", "2026-11-01", "2026-11-07") == Window("custom", date(2026, 11, 1), date(2026, 11, 7), IST)


def test_custom_single_day_and_future_end_allowed():
    assert window(None, "2026-11-26", "2026-11-26").days == 1
    # start is today, so not in the future; an end after today is accepted as given
    assert window(None, "2026-11-26", "2026-11-30").end == date(2026, 11, 30)


def test_dates_with_a_time_part_use_the_date():
    resolved = window(None, "2026-11-01T00:00:00+03:00", "2026-11-07 23:59:59")
    assert (resolved.start, resolved.end) == (date(2026, 11, 1), date(2026, 11, 7))


def test_dates_are_stripped():
    assert window(None, " 2026-11-01 ", "2026-11-02\n").days == 2


def test_exactly_366_days_is_allowed():
    resolved = window(None, "2025-11-26", "2026-11-26")
    assert resolved.days == 366


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        (("custom", "2026-11-07", "2026-11-01"), "end_date"),  # end before start
        (("custom", "2026-13-01", None), "start_date"),
        (("custom", "01/11/2026", None), "start_date"),
        (("custom", "yesterday", None), "start_date"),
        (("custom", "", None), "start_date"),
        (("custom", "2026-11-01", "2026-02-30"), "end_date"),
        (("custom", "2026-11-01", "next week"), "end_date"),
        (("custom", None, "2026-11-07"), "start_date"),  # custom needs a start
        ((None, None, "2026-11-07"), "start_date"),  # end alone
        (("custom", "2026-11-27", None), "start_date"),  # tomorrow here
        (("custom", "2026-12-01", "2026-12-02"), "start_date"),  # future start
        (("custom", "2025-11-25", "2026-11-26"), "end_date"),  # 367 days
        (("custom", "2020-01-01", "2026-11-01"), "end_date"),
        (("lastweek", None, None), "timeframe"),
        (("Today", None, None), "timeframe"),
        (("", None, None), "timeframe"),
        (("last7days", "2026-11-01", None), "timeframe"),  # dates with a preset
        (("today", None, "2026-11-01"), "timeframe"),
    ],
)
def test_invalid_arguments_name_the_parameter(args, parameter):
    with pytest.raises(InputError) as info:
        window(*args)
    assert info.value.parameter == parameter
    assert f"`{parameter}`" in str(info.value)


def test_future_start_message_names_today_in_the_zone():
    with pytest.raises(InputError) as info:
        window("custom", "2026-11-27", "2026-11-28")
    assert "2026-11-26" in str(info.value)
    assert IST in str(info.value)


def test_start_that_is_today_in_istanbul_is_still_the_future_in_utc():
    # 2026-11-26 is already today in Istanbul while it is still the 25th in UTC
    assert window("custom", "2026-11-26", None).start == date(2026, 11, 26)
    with pytest.raises(InputError):
        window("custom", "2026-11-26", None, tz="UTC")
    with pytest.raises(InputError) as info:
        window("custom", "2026-11-26", "2026-11-26", tz="UTC")
    assert info.value.parameter == "start_date"


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "Europe/", "../../etc/passwd", "/etc/localtime", "UTC+3"])
def test_unknown_timezone_is_an_input_error(tz):
    with pytest.raises(InputError) as info:
        window("today", tz=tz)
    assert info.value.parameter == "timezone"
    with pytest.raises(InputError) as info:
        check_timezone(tz, "tz_param")
    assert info.value.parameter == "tz_param"


@pytest.mark.parametrize("tz", ["UTC", "Europe/Istanbul", "Asia/Istanbul", "America/New_York", "Asia/Kolkata"])
def test_known_timezones_pass(tz):
    assert check_timezone(tz) == tz


def test_window_previous_is_the_same_length_just_before():
    last7 = window("last7days")
    previous = last7.previous()
    assert previous == Window("custom", date(2026, 11, 13), date(2026, 11, 19), IST)
    assert previous.days == last7.days

    today = window("today").previous()
    assert (today.start, today.end) == (date(2026, 11, 25), date(2026, 11, 25))

    march = Window("custom", date(2028, 3, 1), date(2028, 3, 31), "UTC").previous()
    assert (march.start, march.end) == (date(2028, 1, 30), date(2028, 2, 29))
    assert march.timezone == "UTC"


@pytest.mark.parametrize(
    ("start", "end"),
    [(date(1, 1, 1), date(1, 1, 7)), (date(1, 1, 5), date(1, 1, 11)), (date(1, 1, 1), date(1, 1, 1))],
)
def test_window_previous_before_year_one_is_an_input_error_naming_start_date(start, end):
    with pytest.raises(InputError) as info:
        Window("custom", start, end, "UTC").previous()
    assert info.value.parameter == "start_date"
    assert info.value.message.startswith("Invalid `start_date`: ")
    assert str(start) in info.value.message
    assert "later start_date" in info.value.message


def test_window_previous_right_at_year_one_is_still_representable():
    previous = Window("custom", date(1, 1, 8), date(1, 1, 14), "UTC").previous()
    assert (previous.start, previous.end) == (date(1, 1, 1), date(1, 1, 7))


def test_window_days_and_describe():
    w = Window("custom", date(2026, 11, 1), date(2026, 11, 7), IST)
    assert w.days == 7
    text = w.describe()
    assert "2026-11-01" in text
    assert "2026-11-07" in text
    assert IST in text
    assert "7 days" in text
    one = window("today").describe()
    assert one.startswith("today")
    assert "1 day" in one
    assert "1 days" not in one


@pytest.mark.parametrize(
    "value",
    ["demo", "cm6gihhlq000aue9wkelb4ay3", "sess_abc123456", "a", "A1-b_c.d:e~f@g", "x" * 128, "9"],
)
def test_check_id_accepts_real_ids(value):
    assert check_id("website_id", value) == value


def test_check_id_strips_surrounding_whitespace():
    assert check_id("website_id", "  demo\n") == "demo"


@pytest.mark.parametrize(
    "value",
    [
        "../x",
        "..",
        ".",
        ".hidden",
        "a/b",
        "a\\b",
        "a?b",
        "a#b",
        "a&b",
        "a=b",
        "a%2Fb",
        "",
        "   ",
        "a b",
        "a\tb",
        "a\nb",
        "x" * 129,
        "-flag",
        "_x",
        "ü",
        "sess_abc\x00",
    ],
)
def test_check_id_rejects_unsafe_ids(value):
    with pytest.raises(InputError) as info:
        check_id("session_id", value)
    assert info.value.parameter == "session_id"
    assert "`session_id`" in str(info.value)


# --- The suite's Hypothesis profile (tests/conftest.py) --------------------------------------------------
# On a fresh checkout the first draw of a text strategy builds Hypothesis' Unicode cache, which takes
# seconds; with the stock settings that trips HealthCheck.too_slow and the README's test command fails.


class SlowDraws:
    """Hypothesis times its draws with `time.perf_counter`, which it offers no other way to replace: this
    stands in for it, real time plus the seconds a draw pretends to take."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        self._real = time.perf_counter
        monkeypatch.setattr(time, "perf_counter", self)

    def __call__(self) -> float:
        return self._real() + self.offset


def _property_with_a_slow_first_draw(parent: settings, clock: SlowDraws) -> list[int]:
    calls: list[int] = []
    seen: list[int] = []

    def draw(n: int) -> int:
        calls.append(n)
        # Like building the Unicode cache: once, on the first random draw (Hypothesis times its draws
        # for the health check from there; the very first call is its fixed "simplest" example).
        if len(calls) == 2:
            clock.offset += 1.1
        return n

    @settings(parent, max_examples=3, database=None)
    @given(st.builds(draw, st.integers()))
    def prop(n: int) -> None:
        seen.append(n)

    prop()
    return seen


def test_the_suite_profile_has_no_deadline_and_tolerates_slow_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check
    assert _property_with_a_slow_first_draw(settings.default, SlowDraws(monkeypatch))


def test_the_stock_profile_would_fail_a_slow_first_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: the same property under Hypothesis' own defaults is what broke on a fresh checkout.
    with pytest.raises(FailedHealthCheck):
        _property_with_a_slow_first_draw(settings.get_profile("default"), SlowDraws(monkeypatch))
