"""Exact values (issue 10, items 4 and 8): a hostile segment is refused before it costs anything; segments
match, and lists group, on the exact (PII-redacted) value; only what is shown is cleaned, and two values
that would show alike are told apart, never merged."""

from __future__ import annotations

import hashlib
import itertools
import re
import tracemalloc
from datetime import date
from typing import Any

import pytest

from hardal_mcp.analytics import Breakdown, Digest, Funnel, PathAnalysis, Segment, Summary
from hardal_mcp.analytics.estimate import Design, Estimator, Group, Record, estimate_breakdown
from hardal_mcp.analytics.funnel import estimate_funnel
from hardal_mcp.analytics.segment import MAX_SEGMENT_VALUES, MAX_VALUE_CHARS
from hardal_mcp.errors import InputError
from hardal_mcp.frames import from_sessions
from hardal_mcp.models import Session
from hardal_mcp.params import Window
from hardal_mcp.privacy import redact, redact_session

WEEK = Window("last7days", date(2026, 11, 20), date(2026, 11, 26), "Europe/Istanbul")
ZW = "\u200b"  # zero-width space: invisible, removed by `clean`


def session(sid: str, *, redacted: bool = True, **values: Any) -> Session:
    """A session as the product works on it: parsed, then PII-redacted as it is read."""
    s = Session.model_validate({"id": sid, **values})
    return redact_session(s) if redacted else s


def summary(sessions: list[Session], top: int = 10, **options: Any) -> Summary:
    digest = Digest(WEEK, top=top, **options)
    digest.add(sessions)
    return digest.summary(website_id="d", total=None)


def listed(b: Breakdown | None) -> list[tuple[str, int]]:
    assert b is not None
    return [(e.v, e.n) for e in b.top]


def by_key(lists: list[Breakdown]) -> dict[str, Breakdown]:
    return {b.key: b for b in lists}


def matched(criteria: dict[str, Any], sessions: list[Session]) -> int:
    segment = Segment.parse(criteria)
    assert segment is not None
    return segment.keep(from_sessions(sessions)).height


# --- item 4: a hostile segment costs O(small) -----------------------------------------------------


def refused(criteria: Any) -> tuple[InputError, int]:
    """The InputError, and the peak bytes allocated while `Segment.parse` refused `criteria`: what shows that
    nothing proportional to the input was built (no stopwatch; a shared CI machine's timings are noise)."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            Segment.parse(criteria)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, peak


def test_a_segment_of_230k_unknown_keys_is_refused_at_once() -> None:
    # ≈3 MB of JSON, under the HTTP cap: pydantic used to build an error per key (≈190 MB, seconds)
    hostile = {f"unknown_key_{i:06d}": 1 for i in range(230_000)}
    error, peak = refused(hostile)
    assert peak < 1_000_000, peak  # bytes: nothing proportional to the keys
    assert error.parameter == "segment"
    message = str(error)
    assert len(message) < 400
    assert '"unknown_key_000000", "unknown_key_000001", "unknown_key_000002" (+229,997 more)' in message
    assert "allowed: country, device, browser, os, fields, visited" in message
    assert "unknown_key_000003" not in message


def test_unknown_keys_are_named_with_the_known_ones_around_them() -> None:
    with pytest.raises(InputError) as caught:
        Segment.parse({"country": "Turkey", "colour": "red"})
    assert caught.value.parameter == "segment.colour"
    assert 'unknown criterion "colour"; allowed: country' in str(caught.value)
    # a hostile key is cleaned and elided in the message
    with pytest.raises(InputError) as caught:
        Segment.parse({"x" * 10_000 + "\n## fake": 1, "y": 2})
    assert caught.value.parameter == "segment"
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_a_fields_mapping_of_100k_keys_is_refused_at_once() -> None:
    error, peak = refused({"fields": {f"key_{i}": "value" for i in range(100_000)}})
    assert peak < 1_000_000, peak
    assert error.parameter == "segment.fields"
    assert f"give 1 to {MAX_SEGMENT_VALUES} field keys; got 100,000" in str(error)


@pytest.mark.parametrize(
    ("criteria", "parameter"),
    [
        ({"country": [1] * 100_000}, "segment.country"),  # pydantic would build 200,000 errors
        ({"visited": ["/x"] * 100_000}, "segment.visited"),
        ({"fields": {"utm_source": [{}] * 100_000}}, "segment.fields"),
        ({"device": "d" * 3_000_000}, "segment.device"),
        ({"fields": {"k" * 3_000_000: "v"}}, "segment.fields"),
        ({"fields": {"utm_source": ["x" * 3_000_000]}}, "segment.fields"),
        ({"min_duration": "9" * 3_000_000}, "segment.min_duration"),
    ],
)
def test_every_list_and_text_is_bounded_before_validation(criteria: dict[str, Any], parameter: str) -> None:
    error, peak = refused(criteria)
    assert error.parameter == parameter
    assert peak < 1_000_000, peak
    assert len(str(error)) < 300


def test_the_bounds_hold_for_segments_built_directly_too() -> None:
    with pytest.raises(ValueError, match=f"longer than {MAX_VALUE_CHARS}"):
        Segment(country="x" * (MAX_VALUE_CHARS + 1))
    with pytest.raises(ValueError, match="field key"):
        Segment(fields={"k" * (MAX_VALUE_CHARS + 1): "v"})
    assert Segment.parse({"country": ["x" * MAX_VALUE_CHARS] * MAX_SEGMENT_VALUES}) is not None


@pytest.mark.parametrize("criteria", [["country"], "country=Turkey", 7])
def test_a_segment_that_is_not_an_object(criteria: Any) -> None:
    with pytest.raises(InputError) as caught:
        Segment.parse(criteria)
    assert caught.value.parameter == "segment"
    assert "allowed: country" in str(caught.value)


# --- item 8: redaction keeps exact values -----------------------------------------------------------


def test_redaction_masks_personal_data_and_changes_nothing_else() -> None:
    assert redact("/checkout" + ZW) == "/checkout" + ZW  # a variant of a page is another page
    assert redact("  two  spaces ") == "  two  spaces "
    assert redact("/reset?email=ann@example.com") == "/reset?email=[email]"
    assert redact("/reset?token=abc123&lang=tr") == "/reset?token=[redacted]&lang=tr"
    # what is masked is read cleaned, so an invisible character cannot hide an address
    assert redact("/u/ann" + ZW + "@example.com") == "/u/[email]"


# --- item 8: segments match the exact value ----------------------------------------------------------

# The case: the API has 54 sessions exiting on /checkout; 4 more exit on a zero-width variant.
CHECKOUT = [session(f"a{i}", pages=["/", "/checkout"]) for i in range(54)] + [
    session(f"b{i}", pages=["/", "/checkout" + ZW]) for i in range(4)
]


def test_exit_page_matches_the_exact_page_only() -> None:
    assert matched({"exit_page": "/checkout"}, CHECKOUT) == 54
    assert matched({"exit_page": "/checkout" + ZW}, CHECKOUT) == 4
    assert matched({"visited": "/checkout*"}, CHECKOUT) == 58  # a pattern may still ask for both
    assert matched({"not_visited": "/checkout"}, CHECKOUT) == 4
    assert matched({"landing_page": "/" + ZW}, CHECKOUT) == 0


def test_a_url_with_an_email_matches_its_redacted_sessions() -> None:
    sessions = [
        session("ann", pages=["/", "/reset?email=ann@example.com"]),
        session("bob", pages=["/reset?email=bob@example.com"]),  # redacted alike: the same page now
        session("other", pages=["/reset"]),
    ]
    assert sessions[0].pages[1] == "/reset?email=[email]"
    assert matched({"visited": "/reset?email=ann@example.com"}, sessions) == 2
    assert matched({"visited": ["/", "/reset?email=ann@example.com"]}, sessions) == 1
    assert matched({"exit_page": "/reset?email=*"}, sessions) == 2
    assert matched({"not_visited": "/reset?email=ann@example.com"}, sessions) == 1
    # with HARDAL_REDACT_PII off the data is raw, and the value as given matches it
    raw = [session("ann", redacted=False, pages=["/reset?email=ann@example.com"])]
    assert matched({"visited": "/reset?email=ann@example.com"}, raw) == 1


def test_fields_match_exactly_and_only_enumerations_ignore_case() -> None:
    sessions = [
        session("1", country="Turkey", device="Desktop", fields={"utm_source": "google"}),
        session("2", country="turkey", device="desktop", fields={"utm_source": "Google"}),
        session("3", country="Turkey" + ZW, device="Desktop ", fields={"utm_source": "google" + ZW}),
        session("4", fields={"utm_source": ""}),
    ]
    assert matched({"country": "TURKEY"}, sessions) == 2  # enumerations: case folded, nothing else
    assert matched({"device": "desktop"}, sessions) == 2
    assert matched({"fields": {"utm_source": "google"}}, sessions) == 1
    assert matched({"fields": {"utm_source": "Google"}}, sessions) == 1
    assert matched({"fields": {"utm_source": "(none)"}}, sessions) == 1  # empty reads as missing
    assert matched({"country": "(none)"}, sessions) == 1


def test_field_values_and_keys_are_redacted_like_the_data() -> None:
    sessions = [session("1", fields={"contact": "ann@example.com", "ann@example.com": "yes"})]
    assert sessions[0].fields == {"contact": "[email]", "[email]": "yes"}
    assert matched({"fields": {"contact": "bob@example.com"}}, sessions) == 1
    assert matched({"fields": {"ann@example.com": "yes"}}, sessions) == 1


def test_the_segment_documents_the_redaction() -> None:
    assert "as PII redaction masks it" in (Segment.__doc__ or "")


# --- item 8: lists group the exact value, labels tell lookalikes apart ------------------------------


def test_lookalike_pages_are_counted_apart_and_shown_apart() -> None:
    pages = by_key(summary(CHECKOUT).pages)
    exit_ = listed(pages["exit"])
    assert [n for _, n in exit_] == [54, 4]
    plain, variant = (v for v, _ in exit_)
    assert plain == "/checkout"  # the exact value keeps its plain label: it is what a segment matches
    assert variant.startswith("/checkout #") and ZW not in variant
    viewed = dict(listed(pages["viewed"]))
    assert (viewed["/checkout"], viewed[variant]) == (54, 4)
    paths = listed(pages["path"])
    assert paths[0] == ("/ → /checkout", 54)
    assert paths[1][0].startswith("/ → /checkout #") and paths[1][1] == 4


def test_a_cleaned_value_is_marked_even_alone() -> None:
    # Shown plainly, `/checkout` would read as the page `/checkout`, which a segment would then not find.
    alone = listed(by_key(summary(CHECKOUT[54:]).pages)["exit"])
    both = listed(by_key(summary(CHECKOUT).pages)["exit"])
    assert re.fullmatch(r"/checkout #[0-9a-f]{4}", alone[0][0])
    assert alone[0] == both[1]  # the same label in every read: compare and estimates meet it again
    # a value spelled like the marker of a missing value is marked too, missing values or not
    spelled = listed(by_key(summary([session("1", country="(none)")]).breakdowns)["country"])
    assert re.fullmatch(r"\(none\) #[0-9a-f]{4}", spelled[0][0])


def test_lookalikes_whose_short_hashes_collide_get_longer_ones() -> None:
    def short(value: str) -> str:
        return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()[:4]

    seen: dict[str, str] = {}
    for k in itertools.count(1):  # pages that all show as `/a`: find two whose 4-digit hashes agree
        page = "/a" + ZW * k
        if short(page) in seen:
            break
        seen[short(page)] = page
    pair = [seen[short(page)], page]
    shown = [v for v, _ in listed(by_key(summary([session("1", pages=pair)]).pages)["viewed"])]
    assert len(set(shown)) == 2
    assert all(re.fullmatch(r"/a #[0-9a-f]{8}", v) for v in shown), shown


def test_two_long_paths_elided_alike_are_not_merged() -> None:
    one, two = ("/article/" + "x" * 120 + f"/{n}" + "y" * 40 for n in (1, 2))
    sessions = [session("1", pages=[one]), session("2", pages=[two]), session("3", pages=[two])]
    landing = listed(by_key(summary(sessions).pages)["landing"])
    assert [n for _, n in landing] == [2, 1]
    assert len({v for v, _ in landing}) == 2
    assert all(len(v) <= 100 and "…" in v and " #" in v for v, _ in landing)
    # the suffix is a hash of the value: the same in every read
    again = listed(by_key(summary(sessions[:2]).pages)["landing"])
    assert {v for v, _ in again} == {v for v, _ in landing}
    flows = PathAnalysis(WEEK, None)
    flows.add(sessions)
    result = flows.result(website_id="d", total=None)
    assert [n for _, n in listed(result.flows)] == [2, 1]
    assert [n for _, n in listed(result.paths)] == [2, 1]
    assert len({v for v, _ in listed(result.paths)}) == 2


def test_enumerations_fold_case_but_not_invisible_characters() -> None:
    sessions = [
        session("1", country="Turkey"),
        session("2", country="turkey"),
        session("3", country="Turkey"),
        session("4", country="Turkey" + ZW),
        session("5", country=" "),  # shows as nothing, but is not missing
        session("6"),
        session("7", country="(none)"),  # spelled like the marker, still a value
    ]
    country = listed(by_key(summary(sessions).breakdowns)["country"])
    assert country[0] == ("Turkey", 3)  # Turkey and turkey: one group, in its most frequent spelling
    labels = [v for v, _ in country]
    assert len(set(labels)) == len(labels) == 5
    assert ("(none)", 1) in country  # the missing value keeps the marker's label
    assert sum(v.startswith("(none) #") for v in labels) == 2
    assert sum(v.startswith("Turkey #") for v in labels) == 1


def test_field_values_and_keys_are_grouped_exactly() -> None:
    sessions = [
        session("1", fields={"plan": "pro"}),
        session("2", fields={"plan": "Pro"}),
        session("3", fields={"plan": "pro" + ZW, "plan" + ZW: "x"}),
        session("4", fields={"country": "a field, not the dimension"}),
    ]
    breakdowns = by_key(summary(sessions).breakdowns)
    assert listed(breakdowns["plan"]) == [("(none)", 1), ("Pro", 1), ("pro", 1), (listed(breakdowns["plan"])[3][0], 1)]
    assert listed(breakdowns["plan"])[3][0].startswith("pro #")
    keys = [b.key for b in summary(sessions).breakdowns]
    assert keys[:4] == ["country", "device", "browser", "os"]
    assert len(set(keys)) == len(keys)  # a field called country, and plan's lookalike key, are told apart
    assert any(k.startswith("country #") for k in keys[4:]) and any(k.startswith("plan #") for k in keys)


def test_a_field_name_is_the_same_whatever_other_keys_a_read_has() -> None:
    # Field names key a `Record`: a page's name for a key must be the master's, so an elided key is
    # marked even alone (two long keys elided alike would otherwise be marked in one read, not another).
    one, two = ("campaign_" + "x" * 60 + f"_{n}" for n in (1, 2))
    alone = [b.key for b in summary([session("1", fields={one: "a"})]).breakdowns[4:]]
    both = [b.key for b in summary([session("1", fields={one: "a", two: "b"})]).breakdowns[4:]]
    assert len(set(both)) == 2
    assert alone[0] in both and re.fullmatch(r"campaign_x+…x+_1 #[0-9a-f]{4}", alone[0])


def test_funnel_groups_are_exact() -> None:
    sessions = [
        session("1", pages=["/", "/buy"], fields={"utm_source": "google"}),
        session("2", pages=["/"], fields={"utm_source": "google" + ZW}),
        session("3", pages=["/", "/buy"], fields={"utm_source": "(other)"}),
        session("4", pages=["/"], fields={"utm_source": "bing"}),
    ]
    funnel = Funnel(WEEK, ["/", "/buy"], breakdown="utm_source", top=3)
    funnel.add(sessions)
    groups = funnel.result(website_id="d", total=None).groups
    # ranked by sessions reaching step 1 (all 1 here), then by label; the fourth is the rest
    labels = [g.v for g in groups]
    assert labels[1:3] == ["bing", "google"]
    assert labels[0].startswith("(other) #")  # a value spelled like the rest's marker is told apart
    assert labels[3] == "(other)"
    assert [g.steps for g in groups] == [[1, 1], [1, 0], [1, 1], [1, 0]]  # the rest is google + ZW


def test_entered_and_exited_are_not_pages() -> None:
    sessions = [
        session("1", pages=["/a"]),
        session("2", pages=["(entered here)", "/a", "(exited here)"]),
    ]
    paths = PathAnalysis(WEEK, "/a")
    paths.add(sessions)
    result = paths.result(website_id="d", total=None)
    previous, next_ = listed(result.previous), listed(result.next)
    assert ("(entered here)", 1) in previous and ("(exited here)", 1) in next_
    assert len({v for v, _ in previous}) == len({v for v, _ in next_}) == 2


# --- item 8: estimates keep working on identities ----------------------------------------------------


def certain_design(pages: list[list[Session]]) -> Design:
    """Every page read, but as a sample of one stratum: weights are 1, so estimates equal the truth."""
    total = sum(map(len, pages))
    return Design(
        total=total,
        read=total,
        days=1,
        groups=(Group(population=total, pages=len(pages)),),
        clusters=tuple((len(p), 0) for p in pages),
        day_totals=(total,),
    )


def half_design(pages: list[list[Session]], population: int) -> Design:
    """The pages given are a sample of a day of `population` sessions over twice as many pages."""
    return Design(
        total=population,
        read=sum(map(len, pages)),
        days=1,
        groups=(Group(population=population, pages=2 * len(pages)),),
        clusters=tuple((len(p), 0) for p in pages),
        day_totals=(population,),
    )


LOOKALIKES = [
    session(
        f"s{i}",
        pages=["/", "/checkout" + ZW * (i % 3 == 0)],
        country=["Turkey", "turkey", "Turkey" + ZW, "Germany"][i % 4],
        fields={"utm_source": ["google", "google" + ZW, "bing"][i % 3]},
    )
    for i in range(40)
]


def test_summary_estimates_map_lookalikes_to_their_own_counts() -> None:
    pages = [LOOKALIKES[i : i + 10] for i in range(0, 40, 10)]
    master = Record()
    digest = Digest(WEEK, top=10)
    for page in pages:
        digest.add(page)
    truth = digest.summary(website_id="d", total=None, record=master)
    records = {}
    for i, page in enumerate(pages):
        alone = Digest(WEEK, top=10)
        alone.add(page)
        records[i] = alone.record()
    assert master.shown["country"] == ["turkey", "germany", "turkey" + ZW]  # identities, folded; ties by label
    est = Estimator(certain_design(pages), master, records)
    for b in truth.breakdowns + truth.pages:
        estimated = estimate_breakdown(b, est)
        assert sorted((e.v, e.n) for e in estimated.top) == sorted((e.v, e.n) for e in b.top), b.key


def test_funnel_estimates_use_identities_and_the_rest_adds_up() -> None:
    pages = [LOOKALIKES[i : i + 10] for i in range(0, 40, 10)]

    def funnel() -> Funnel:
        return Funnel(WEEK, ["/", "/checkout"], breakdown="utm_source", top=1)

    master = Record()
    whole = funnel()
    for page in pages:
        whole.add(page)
    truth = whole.result(website_id="d", total=None, record=master)
    records = {}
    for i, page in enumerate(pages):
        alone = funnel()
        alone.add(page)
        records[i] = alone.record()
    assert [g.v for g in truth.groups][-1] == "(other)"
    exact = estimate_funnel(truth, Estimator(certain_design(pages), master, records))
    assert [(g.v, g.sessions, g.steps) for g in exact.groups] == [(g.v, g.sessions, g.steps) for g in truth.groups]
    # scaled from a sample, the groups still add up to the estimated sessions: `(other)` is the rest
    scaled = estimate_funnel(truth, Estimator(half_design(pages, 100), master, records))
    assert scaled.sessions == 100
    assert sum(g.sessions for g in scaled.groups) == 100
    assert all(g.moe is not None for g in scaled.groups)
