"""A drill's call to a member who has not answered, decided without I/O (drills.py), and
what the call says (voice_script.py); the answers by channel in the results; the
members to look at after an unanswered call."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.drills import (
    CALL_LATEST,
    Asked,
    DrillCallFacts,
    MemberRecord,
    needs_attention,
    plan_drill_call,
    results,
)
from services.alerts.voice_script import CallContext, closing, line, menu, speaker
from tests.alerts.members import member

SENT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
DUE = DrillCallFacts(
    call_after=timedelta(minutes=10),
    sms_sent_at=SENT,
    answered=False,
    already_called=False,
    has_phone=True,
    on_emergency=False,
    quiet_hours_now=False,
)


def test_an_unanswered_member_is_called_after_the_delay_and_not_before() -> None:
    waiting = plan_drill_call(DUE, SENT + timedelta(minutes=9))
    assert (waiting.decision, waiting.at) == ("wait", SENT + timedelta(minutes=10))
    assert plan_drill_call(DUE, SENT + timedelta(minutes=10)).decision == "due"
    assert plan_drill_call(DUE, SENT + timedelta(minutes=10) + CALL_LATEST).decision == "due"
    late = SENT + timedelta(minutes=10) + CALL_LATEST + timedelta(seconds=1)
    assert plan_drill_call(DUE, late).decision == "never"


def test_what_stops_or_holds_a_drill_call() -> None:
    now = SENT + timedelta(minutes=11)
    never = [
        replace(DUE, call_after=None),
        replace(DUE, answered=True),
        replace(DUE, already_called=True),
        replace(DUE, has_phone=False),
        replace(DUE, sms_sent_at=None),
    ]
    for facts in never:
        assert plan_drill_call(facts, now).decision == "never", facts
    # a drill is never urgent: quiet hours and an emergency hold the call
    for facts in (replace(DUE, on_emergency=True), replace(DUE, quiet_hours_now=True)):
        assert plan_drill_call(facts, now).decision == "held", facts


@settings(max_examples=300, deadline=None)
@given(
    after=st.integers(1, 120),
    minutes=st.integers(-60, 24 * 60),
    answered=st.booleans(),
    called=st.booleans(),
    busy=st.booleans(),
    quiet=st.booleans(),
)
def test_a_call_is_due_only_for_an_unanswered_uncalled_free_awake_member_past_the_delay(
    after: int, minutes: int, answered: bool, called: bool, busy: bool, quiet: bool
) -> None:
    facts = replace(
        DUE,
        call_after=timedelta(minutes=after),
        answered=answered,
        already_called=called,
        on_emergency=busy,
        quiet_hours_now=quiet,
    )
    now = SENT + timedelta(minutes=minutes)
    due = plan_drill_call(facts, now).decision == "due"
    in_time = timedelta(minutes=after) <= now - SENT <= timedelta(minutes=after) + CALL_LATEST
    assert due == (in_time and not (answered or called or busy or quiet))


def test_the_results_count_the_answers_by_channel() -> None:
    def asked(minutes: float | None, channel: str | None) -> Asked:
        answered = SENT + timedelta(minutes=minutes) if minutes is not None else None
        return Asked("AL", (), "sent", SENT, answered, channel)

    got = results([asked(3, "sms"), asked(12, "voice"), asked(20, "web"), asked(None, None)])
    assert got.overall.by_channel == {"sms": 1, "web": 1, "voice": 1}
    assert got.overall.within == {"5": 1, "15": 2, "60": 3}
    assert got.by_section["AL"].by_channel == got.overall.by_channel


def test_an_unanswered_call_puts_the_member_on_the_list() -> None:
    mid = member().member_id
    answered_before = [("sent", False), ("sent", True)]
    record = MemberRecord(mid, "AL", answered_before, calls=["no_answer", None])
    assert needs_attention(record, 3) == "call_unanswered"
    # a call they did not pick up but an OK by SMS later: reached
    reached = MemberRecord(mid, "AL", [("sent", True)], calls=["no_answer"])
    assert needs_attention(reached, 3) is None
    assert needs_attention(MemberRecord(mid, "AL", answered_before), 3) is None
    # the stronger reasons first
    never = MemberRecord(mid, "AL", [("sent", False)] * 2, calls=["busy", "failed"])
    assert needs_attention(never, 2) == "never_answered"


def test_the_drill_call_says_it_is_a_test_in_the_members_language() -> None:
    context = CallContext(language="en", title="", distance_m=0, members_needed=0, drill=True)
    twiml = menu(context, speaker(None), action="https://x/menu", prompt="drill_test")
    said = [s.text or "" for s in ET.fromstring(twiml).iter("Say")]
    assert said[0] == (
        "This is a Muster test, a drill, not an emergency. Press 1 if you received this."
    )
    # played twice, then goodbye and the end of the call
    assert len(list(ET.fromstring(twiml).iter("Gather"))) == 2
    assert "<Hangup" in twiml
    assert "received" not in line(replace(context, language="fr"), "drill_test")
    assert "Shtypni 1" in line(replace(context, language="sq"), "drill_test")
    thanks = closing(context, speaker(None), "drill_thanks")
    assert "your answer is recorded" in thanks and "<Hangup" in thanks
    # Albanian has no provider voice: alerts' own audio is played
    played = menu(
        replace(context, language="sq"),
        speaker(lambda part, _c: f"https://x/audio/{part}.wav"),
        action="https://x/menu",
        prompt="drill_test",
    )
    assert "https://x/audio/drill_test.wav" in played
