"""Drills' decisions (issue 12), pure: when an occurrence fires, whom it asks and when
(quiet hours hold, never wake), and the 5/15/60-minute results."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.drill_runs import DrillClock
from services.alerts.drills import (
    Asked,
    MemberRecord,
    RecurrenceError,
    firing,
    first_due,
    needs_attention,
    recipients,
    recurrence_rule,
    release_at,
    results,
)
from services.alerts.selection import is_quiet
from tests.alerts.members import member

START = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)  # 10:00 in Tirana, a Saturday


def test_a_single_drill_fires_once_at_its_time() -> None:
    assert firing(
        starts_at=START, recurrence=None, timezone="UTC", next_at=START, now=START - timedelta(1)
    ) is None  # fmt: skip
    due = firing(starts_at=START, recurrence=None, timezone="UTC", next_at=START, now=START)
    assert due is not None and due.occurs_at == START and due.next_at is None
    assert firing(
        starts_at=START, recurrence=None, timezone="UTC", next_at=None, now=START
    ) is None  # fmt: skip


def test_a_monthly_drill_keeps_its_local_time_and_fires_the_latest_missed_only() -> None:
    rule = "FREQ=MONTHLY;BYDAY=1SA"
    first = first_due(START, rule, "Europe/Tirane")
    assert first == START
    due = firing(
        starts_at=START, recurrence=rule, timezone="Europe/Tirane", next_at=first, now=START
    )
    assert due is not None and due.occurs_at == START
    # first Saturday of January, 10:00 in Tirana
    assert due.next_at == datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
    # alerts was down from January to mid-March: March's fires, not January's and February's
    late = firing(
        starts_at=START, recurrence=rule, timezone="Europe/Tirane", next_at=due.next_at,
        now=datetime(2027, 3, 15, tzinfo=UTC),
    )  # fmt: skip
    assert late is not None and late.occurs_at == datetime(2027, 3, 6, 9, 0, tzinfo=UTC)
    # April, after the change to summer time: still 10:00 in Tirana (08:00 UTC)
    assert late.next_at == datetime(2027, 4, 3, 8, 0, tzinfo=UTC)


def test_a_rule_with_a_count_ends() -> None:
    rule = "FREQ=DAILY;COUNT=2"
    due = firing(
        starts_at=START, recurrence=rule, timezone="UTC", next_at=START,
        now=START + timedelta(days=1, hours=1),
    )  # fmt: skip
    assert due is not None and due.occurs_at == START + timedelta(days=1) and due.next_at is None


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MINUTELY",
        "FREQ=HOURLY;INTERVAL=2",
        "FREQ=DAILY;BYHOUR=9,10",
        "DTSTART:20261205T090000Z\nRRULE:FREQ=MONTHLY",
        "RRULE:FREQ=MONTHLY\nRRULE:FREQ=WEEKLY",
        "EVERY MONTH",
        "",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",  # never: refused, not searched to 9999
        "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MONTHLY;UNTIL=20261201T000000Z",  # ended before it starts
        "FREQ=MONTHLY;BYSETPOS=999",
    ],
)
def test_refused_rules(rule: str) -> None:
    with pytest.raises(RecurrenceError):
        recurrence_rule(rule, START, "UTC")


def test_quiet_hours_hold_until_they_end_in_the_members_zone() -> None:
    night = member(quiet=(time(22, 0), time(7, 0)), timezone="Europe/Tirane")
    late = datetime(2026, 12, 5, 22, 30, tzinfo=UTC)  # 23:30 in Tirana
    assert release_at(night, late) == datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert release_at(night, START) == START
    assert release_at(member(), late) == late


@settings(max_examples=200, deadline=None)
@given(
    start=st.times(), end=st.times(),
    moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
    zone=st.sampled_from(["Europe/Tirane", "Europe/Paris", "America/New_York", "UTC"]),
)  # fmt: skip
def test_release_is_never_inside_quiet_hours_nor_a_day_late(
    start: time, end: time, moment: datetime, zone: str
) -> None:
    now = moment.replace(tzinfo=UTC)
    person = member(quiet=(start, end), timezone=zone)
    released = release_at(person, now)
    assert now <= released <= now + timedelta(hours=25)
    # a wall-clock end skipped by a DST jump may land an hour off; otherwise never quiet
    if released > now:
        assert not is_quiet(person, released) or not is_quiet(person, released + timedelta(hours=1))
    else:
        assert not is_quiet(person, now)


def test_who_is_asked() -> None:
    ok = member()
    busy = member()
    stopped = member()
    others = [
        member(section="IT"),
        member(status="suspended"),
        member(consent_alerts=False),
        member(phone=None),
        member(channels=["web"]),
    ]
    unavailable = member(availability="unavailable")  # a test of reachability asks them too
    asking = recipients(
        [ok, ok, busy, stopped, unavailable, *others],
        {"AL"},
        START,
        on_emergency={busy.member_id},
        opted_out_phones={stopped.phone or ""},
    )
    assert {r.member.member_id for r in asking.recipients} == {ok.member_id, unavailable.member_id}
    assert (asking.skipped_on_emergency, asking.skipped_opted_out) == (1, 1)
    assert all(r.qualifications == ("FIRST_AID",) for r in asking.recipients)


def asked(
    section: str,
    minutes: float | None,
    status: str = "sent",
    quals: tuple[str, ...] = ("FIRST_AID",),
) -> Asked:
    sent = START if status == "sent" else None
    answered = START + timedelta(minutes=minutes) if minutes is not None and sent else None
    return Asked(section, quals, status, sent, answered)


def test_results_by_window_section_and_qualification() -> None:
    got = results(
        [
            asked("AL", 2), asked("AL", 5), asked("AL", 14), asked("AL", 59), asked("AL", 61),
            asked("AL", None), asked("AL", None, "failed"), asked("AL", None, "skipped"),
            asked("IT", 1, quals=("SAR",)), asked("IT", None, "pending", quals=("SAR",)),
        ]
    )  # fmt: skip
    assert got.overall.asked == 9
    assert got.overall.within == {"5": 3, "15": 4, "60": 5}
    assert got.overall.answered == 6
    assert (got.overall.failed, got.overall.waiting) == (1, 1)
    assert got.by_section["AL"].within == {"5": 2, "15": 3, "60": 4}
    assert got.by_section["AL"].shares["60"] == round(4 / 7, 4)
    assert got.by_qualification["SAR"].within == {"5": 1, "15": 1, "60": 1}
    assert got.by_qualification["SAR"].asked == 2
    assert got.by_section["IT"].median_answer_seconds == 60.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 200)), max_size=60))
def test_results_never_exceed_what_was_asked(answers: list[float | None]) -> None:
    got = results(asked("AL", m) for m in answers).overall
    assert got.within["5"] <= got.within["15"] <= got.within["60"] <= got.answered <= got.asked
    assert got.within["60"] == sum(1 for m in answers if m is not None and m <= 60)
    assert all(0 <= share <= 1 for share in got.shares.values())


def test_who_needs_attention() -> None:
    record = MemberRecord
    mid = member().member_id
    assert needs_attention(record(mid, "AL", [("sent", False)] * 3), 3) == "never_answered"
    assert needs_attention(record(mid, "AL", [("sent", False)] * 2), 3) is None
    assert needs_attention(record(mid, "AL", [("sent", True), ("sent", False)]), 2) is None
    assert (
        needs_attention(record(mid, "AL", [("sent", True), ("failed", False)]), 3) == "sms_failed"
    )
    # older than the last N: forgotten
    old_failure = [("sent", True), ("sent", True), ("failed", False)]
    assert needs_attention(record(mid, "AL", old_failure), 2) is None


def test_the_drill_clock_caught_mid_write_keeps_the_offset_it_read_last(tmp_path: Path) -> None:
    """A test moves the drills' clock by rewriting a file; a read between the file's
    truncation and its new text once recorded an SMS as sent days before the drill."""
    offset_file = tmp_path / "clock"
    clock = DrillClock(str(offset_file))
    assert clock.offset() == timedelta(0)  # no file yet
    offset_file.write_text("86400")
    assert clock.offset() == timedelta(days=1)
    offset_file.write_text("")  # truncated, not yet rewritten
    assert clock.offset() == timedelta(days=1)
    offset_file.write_text("not a number")
    assert clock.offset() == timedelta(days=1)
    offset_file.write_text("60")
    assert clock.offset() == timedelta(minutes=1)
