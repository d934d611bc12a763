"""After-action reports, the pure part (services/dispatch/reports.py): figures from board
facts built the way the board builds them (board.apply), and the authority's version."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch import board, reports
from services.dispatch.board import BoardEvent, RowFacts

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
EMERGENCY = uuid.UUID("00000000-0000-4000-8000-00000000e001")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def emergency(**changes: object) -> reports.EmergencyFacts:
    base = reports.EmergencyFacts(
        id=EMERGENCY,
        title="Flood in Fier",
        section="fier",
        assisting_sections=(),
        drill=False,
        status="closed",
        members_needed=2,
        required_qualifications=("first_aid",),
        created_at=at(0),
        declared_at=at(0),
        approved_at=None,
        closed_at=at(3600),
        close_reason="resolved",
        wave_one_radius_m=2000,
    )
    return reports.EmergencyFacts(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def facts_of(events: list[BoardEvent]) -> list[RowFacts]:
    rows: dict[uuid.UUID, RowFacts] = {}
    for event in events:
        rows[event.member_id] = board.apply(rows.get(event.member_id), event)
    return list(rows.values())


def ev(kind: str, member: uuid.UUID, seconds: float, **extra: object) -> BoardEvent:
    return BoardEvent(
        kind,  # type: ignore[arg-type]
        str(uuid.uuid4()),
        EMERGENCY,
        member,
        str(uuid.uuid5(EMERGENCY, str(member))),
        at(seconds),
        **extra,  # type: ignore[arg-type]
    )


M = [uuid.UUID(f"00000000-0000-4000-8000-0000000000{i:02d}") for i in range(1, 7)]


def scenario() -> list[BoardEvent]:
    """Six members: two arrive, one declines, one opted out, one failed, one silent."""
    quals = ("first_aid",)
    return [
        *(ev("sent", m, 10 + i, wave=1, distance_m=100 * i, qualifications=quals)
          for i, m in enumerate(M[:4])),
        ev("sent", M[4], 20, wave=2, distance_m=900),
        ev("sent", M[5], 21, wave=2, distance_m=950),
        ev("delivered", M[0], 15),
        ev("delivered", M[1], 16),
        ev("response", M[0], 70, answer="accepted", eta_minutes=10, channel="sms"),
        ev("response", M[1], 130, answer="accepted", eta_minutes=15, channel="web"),
        ev("response", M[2], 200, answer="declined", channel="voice"),
        ev("failed", M[3], 14, reason="undelivered 30003"),
        ev("failed", M[4], 22, reason="opted out (STOP)"),
        ev("response", M[0], 400, answer="en_route", channel="sms"),
        ev("response", M[0], 670, answer="on_scene", channel="sms"),
        ev("status_set", M[1], 1211, answer="on_scene", channel="coordinator"),
    ]  # fmt: skip


def audit() -> list[reports.AuditFact]:
    return [
        reports.AuditFact(at(0), "declared", "acct-coord", "coordinator", {"title": "Flood"}),
        reports.AuditFact(
            at(300), "escalated", "dispatch", "system", {"wave": 2, "radius_m": 4000}
        ),
        reports.AuditFact(at(1211), "responder_status_set", "acct-coord", "coordinator"),
        reports.AuditFact(at(1211), "staffed", "dispatch", "system"),
        reports.AuditFact(at(3600), "closed", "acct-coord", "coordinator"),
    ]  # fmt: skip


def test_the_figures_and_timeline_of_a_known_emergency() -> None:
    report = reports.build(emergency(), facts_of(scenario()), audit(), as_of=at(4000))

    assert report.turnout.model_dump() == {
        "alerted": 6, "delivered": 2, "failed": 1, "opted_out": 1, "answered": 3,
        "accepted": 2, "declined": 1, "no_answer": 3, "en_route": 1, "on_scene": 2,
        "released": 0, "home_safe": 0,
    }  # fmt: skip
    # answers 60 s, 119 s, 188 s after each member's own SMS: median 119, p90 188
    assert report.time_to_first_answer.model_dump() == {
        "count": 3,
        "median_s": 119.0,
        "p90_s": 188.0,
    }
    # arrivals 660 s and 1200 s after the SMS
    assert report.time_to_arrival.model_dump() == {"count": 2, "median_s": 930.0, "p90_s": 1200.0}
    assert report.arrived_share == 1.0
    assert report.answers_by_channel["sms"].model_dump() == {
        "accepted": 1, "declined": 0, "status_reports": 2,
    }  # fmt: skip
    assert report.answers_by_channel["web"].accepted == 1
    assert report.answers_by_channel["voice"].declined == 1
    assert report.answers_by_channel["coordinator"].status_reports == 1
    assert report.failures.model_dump() == {
        "failed": 1, "opted_out": 1,
        "reasons": {"opted out (STOP)": 1, "undelivered 30003": 1},
    }  # fmt: skip
    assert report.by_qualification["first_aid"].alerted == 4
    assert report.by_qualification["first_aid"].on_scene == 2
    assert report.by_section == {"fier": report.turnout}

    milestones = [(e.event, e.wave, e.at) for e in report.timeline if e.event != "status_change"]
    assert milestones == [
        ("declared", None, at(0)),
        ("wave", 1, at(0)),
        ("first_sms", None, at(10)),
        ("first_acceptance", None, at(70)),
        ("wave", 2, at(300)),
        ("first_on_scene", None, at(670)),
        ("staffed", None, at(1211)),
        ("closed", None, at(3600)),
    ]
    changes = [(e.status, e.member_id, e.channel) for e in report.timeline
               if e.event == "status_change"]  # fmt: skip
    assert changes == [
        ("accepted", M[0], "sms"), ("accepted", M[1], "web"), ("declined", M[2], "voice"),
        ("en_route", M[0], "sms"), ("on_scene", M[0], "sms"), ("on_scene", M[1], "coordinator"),
    ]  # fmt: skip
    # the service's own decisions are not staff actions
    assert [(a.action, a.actor) for a in report.staff_actions] == [
        ("declared", "acct-coord"), ("responder_status_set", "acct-coord"),
        ("closed", "acct-coord"),
    ]  # fmt: skip
    assert report.answers_cumulative == {1: 1, 2: 2, 3: 3}
    assert report.arrivals_cumulative == {11: 1, 20: 2}
    lines = {line.member_id: line for line in report.responders}
    assert lines[M[4]].failed_reason == "opted out (STOP)"
    assert lines[M[1]].on_scene_at == at(1211)


def test_the_authority_sees_counts_only_small_ones_suppressed() -> None:
    coordinator = reports.build(emergency(), facts_of(scenario()), audit(), as_of=at(4000))
    report = reports.for_authority(coordinator, k=3)
    body = report.model_dump_json()
    for member in M:
        assert str(member) not in body
    assert "acct-coord" not in body
    assert "30003" not in body
    assert report.turnout["alerted"] == 6
    assert report.turnout["answered"] == 3
    assert report.turnout["on_scene"] == "< 3"
    assert report.turnout["released"] == "< 3"  # zero is suppressed too
    assert report.time_to_first_answer.model_dump() == {
        "count": 3,
        "median_s": 119.0,
        "p90_s": 188.0,
    }
    assert report.time_to_arrival.model_dump() == {"count": "< 3", "median_s": None, "p90_s": None}
    assert report.arrived_share is None
    assert {e.event for e in report.timeline} <= reports.MILESTONES
    assert [a.action for a in report.staff_actions] == [
        "declared",
        "responder_status_set",
        "closed",
    ]
    # the curves start where they reach k: no minute of the first few answers is shown
    assert report.answers_cumulative == {3: 3}
    assert report.arrivals_cumulative == {}


def test_an_emergency_held_for_approval_starts_its_first_wave_at_the_approval() -> None:
    held = emergency(approved_at=at(120), declared_at=at(120))
    trail = [
        reports.AuditFact(at(0), "held_for_approval", "acct-a", "coordinator"),
        reports.AuditFact(at(120), "approved", "acct-b", "coordinator"),
    ]
    report = reports.build(held, [], trail, as_of=at(200))
    assert [(e.event, e.at) for e in report.timeline][:4] == [
        ("declared", at(0)), ("held_for_approval", at(0)), ("approved", at(120)),
        ("wave", at(120)),
    ]  # fmt: skip
    assert report.time_to_first_answer.median_s is None
    assert report.turnout.alerted == 0


def test_nearest_rank_is_an_observed_value() -> None:
    assert reports.nearest_rank([], 0.9) is None
    assert reports.nearest_rank([5.0], 0.9) == 5.0
    assert reports.nearest_rank([float(i) for i in range(1, 11)], 0.9) == 9.0
    assert reports.nearest_rank([float(i) for i in range(1, 12)], 0.9) == 10.0


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60), st.floats(0.01, 1))
def test_nearest_rank_has_at_least_its_share_at_or_below(values: list[float], share: float) -> None:
    result = reports.nearest_rank(values, share)
    assert result in values
    assert sum(v <= result for v in values) >= share * len(values) - 1e-9


KINDS = ("sent", "delivered", "failed", "response", "status_set", "stood_down")
ANSWERS = ("accepted", "declined", "en_route", "on_scene", "released", "home_safe")


@st.composite
def board_events(draw: st.DrawFn) -> list[BoardEvent]:
    members = draw(st.lists(st.uuids(), min_size=1, max_size=12, unique=True))
    events = []
    for member in members:
        qualifications = tuple(sorted(draw(st.sets(st.sampled_from(["a", "b"])))))
        sent_at = draw(st.integers(0, 600))
        wave = draw(st.integers(1, 3))
        distance = draw(st.integers(0, 9000))
        events.append(
            ev(
                "sent",
                member,
                sent_at,
                wave=wave,
                distance_m=distance,
                qualifications=qualifications,
            )
        )
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(KINDS[1:]))
            events.append(
                ev(
                    kind,
                    member,
                    draw(st.integers(0, 7200)),
                    answer=draw(st.sampled_from(ANSWERS)),
                    channel=draw(st.sampled_from(["sms", "web", "voice"])),
                    reason=draw(
                        st.sampled_from(["opted out (STOP)", "undelivered 30005", "closed"])
                    ),
                    eta_minutes=draw(st.none() | st.integers(0, 90)),
                )
            )
    return events


@settings(max_examples=150, deadline=None)
@given(board_events(), st.integers(1, 10), st.integers(1, 8))
def test_no_member_id_reaches_the_authority_and_the_figures_add_up(
    events: list[BoardEvent], needed: int, k: int
) -> None:
    rows = facts_of(events)
    coordinator = reports.build(emergency(members_needed=needed), rows, audit(), as_of=at(9000))
    turnout = coordinator.turnout
    assert turnout.alerted == len(rows)
    assert turnout.answered + turnout.no_answer == turnout.alerted
    assert turnout.accepted + turnout.declined <= turnout.answered
    assert turnout.on_scene <= turnout.accepted
    assert coordinator.time_to_first_answer.count == turnout.answered
    assert coordinator.time_to_arrival.count == turnout.on_scene
    assert sum(1 for e in coordinator.timeline if e.status == "on_scene") == turnout.on_scene
    authority = reports.for_authority(coordinator, k)
    body = json.dumps(authority.model_dump(mode="json"))
    for row in rows:
        assert str(row.member_id) not in body
        assert row.alert_id is None or row.alert_id not in body
    for count in authority.turnout.values():
        assert count == f"< {k}" or (isinstance(count, int) and count >= k)
    durations = authority.time_to_arrival
    assert (durations.median_s is None) == (not isinstance(durations.count, int))


def test_members_count_under_their_own_section_when_sections_assist() -> None:
    fier, vlore, before = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [
        ev("sent", fier, 10, section="fier", qualifications=("first_aid",)),
        ev("sent", vlore, 12, section="vlore"),
        ev("response", vlore, 70, answer="accepted", channel="sms"),
        # an event from before alerts carried the section
        ev("sent", before, 14),
    ]
    report = reports.build(
        emergency(assisting_sections=("vlore",)), facts_of(events), [], as_of=at(4000)
    )
    assert set(report.by_section) == {"fier", "vlore", "fier+vlore"}
    assert report.by_section["fier"].alerted == 1
    assert report.by_section["vlore"].accepted == 1
    assert report.by_section["fier+vlore"].alerted == 1
    assert sum(t.alerted for t in report.by_section.values()) == report.turnout.alerted


def test_a_send_event_with_and_without_the_section_gives_the_same_row_in_any_order() -> None:
    """A redelivered old copy (no section) and the new one differ only in the section:
    the board keeps the send with the section, whichever comes first."""
    member = uuid.uuid4()
    new = ev("sent", member, 10, section="vlore")
    old = replace(new, event_id=str(uuid.uuid4()), section=None)
    assert facts_of([new, old]) == facts_of([old, new])
    sent = facts_of([old, new])[0].sent
    assert sent is not None and sent.section == "vlore"
