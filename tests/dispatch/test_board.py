"""The board state machine and the summaries, as pure functions (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch import board, summaries
from services.dispatch.board import RANK, BoardEvent

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EMERGENCY = uuid.UUID("00000000-0000-4000-8000-000000000001")
MEMBERS = [uuid.UUID(f"00000000-0000-4000-8000-0000000001{i:02d}") for i in range(6)]
QUALIFICATIONS = ("FIRST_AID", "SAR", "INCIDENT_COMMAND")


def event(
    kind: str, member: uuid.UUID, at: int, *, answer: str | None = None, eta: int | None = None,
    wave: int = 1, distance: int = 1000, quals: tuple[str, ...] = ("FIRST_AID",),
    reason: str = "not_needed",
) -> BoardEvent:  # fmt: skip
    return BoardEvent(
        kind=kind,  # type: ignore[arg-type]
        event_id=str(uuid.uuid4()),
        emergency_id=EMERGENCY,
        member_id=member,
        alert_id=f"alert-{member}",
        at=T0 + timedelta(seconds=at),
        wave=wave,
        distance_m=distance,
        qualifications=quals,
        answer=answer,
        eta_minutes=eta,
        reason=reason if kind == "stood_down" else None,
    )


events_strategy = st.lists(
    st.builds(
        event,
        kind=st.sampled_from(["sent", "delivered", "failed", "stood_down", "response"]),
        member=st.sampled_from(MEMBERS),
        at=st.integers(0, 600),
        answer=st.sampled_from(["accepted", "declined", "arrived"]),
        eta=st.one_of(st.none(), st.integers(0, 90)),
        wave=st.integers(1, 3),
        distance=st.integers(0, 50_000),
        quals=st.lists(st.sampled_from(QUALIFICATIONS), max_size=2, unique=True).map(tuple),
        reason=st.sampled_from(["not_needed", "closed", "false_alarm"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, data=st.data(), needed=st.integers(1, 4))
def test_any_order_and_duplication_gives_the_same_board(
    events: list[BoardEvent], data: st.DataObject, needed: int
) -> None:
    expected = board.replay(events, needed)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=20))
    shuffled = data.draw(st.permutations(events + duplicates))
    assert board.replay(list(shuffled), needed) == expected


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, needed=st.integers(1, 4))
def test_status_never_moves_back_in_rank(events: list[BoardEvent], needed: int) -> None:
    facts: dict[uuid.UUID, board.RowFacts] = {}
    seen: dict[uuid.UUID, float] = {}
    for item in events:
        facts[item.member_id] = board.apply(facts.get(item.member_id), item)
        for member, status in board.statuses(facts, needed).items():
            level = board.level(facts[member])
            assert level >= seen.get(member, -1), (member, status)
            if status not in ("stood_down",):
                assert level == RANK[status]
            seen[member] = level


@given(events=events_strategy)
def test_facts_survive_their_json_form(events: list[BoardEvent]) -> None:
    facts: dict[uuid.UUID, board.RowFacts] = {}
    for item in events:
        facts[item.member_id] = board.apply(facts.get(item.member_id), item)
    for value in facts.values():
        assert board.facts_from_json(board.facts_to_json(value)) == value


def test_late_delivered_does_not_undo_accepted() -> None:
    a = MEMBERS[0]
    rows = board.replay(
        [event("sent", a, 0), event("response", a, 30, answer="accepted", eta=12),
         event("delivered", a, 5)],
        members_needed=3,
    )  # fmt: skip
    assert rows[a].status == "accepted"
    assert rows[a].eta_minutes == 12
    assert rows[a].expected_arrival_at == T0 + timedelta(seconds=30, minutes=12)


def test_latest_answer_by_its_own_time_wins() -> None:
    a = MEMBERS[0]
    accepted, declined = (
        event("response", a, 10, answer="accepted", eta=5),
        event("response", a, 20, answer="declined"),
    )
    assert board.replay([accepted, declined], 2)[a].status == "declined"
    # the decline arrives first, the older accept late: still declined
    assert board.replay([declined, accepted], 2)[a].status == "declined"
    again = event("response", a, 30, answer="accepted", eta=7)
    assert board.replay([accepted, declined, again], 2)[a].status == "accepted"


def test_failed_then_delivered_and_arrived_on_top() -> None:
    a = MEMBERS[0]
    assert board.replay([event("failed", a, 1), event("delivered", a, 2)], 1)[a].status == (
        "delivered"
    )
    rows = board.replay(
        [event("response", a, 10, answer="accepted", eta=5),
         event("response", a, 40, answer="arrived"),
         event("response", a, 50, answer="declined")],
        1,
    )  # fmt: skip
    assert rows[a].status == "arrived"


def test_standby_after_the_quota_and_call_up_after_a_drop_out() -> None:
    a, b, c = MEMBERS[:3]
    first = [
        event("sent", a, 0, distance=3000),
        event("sent", b, 0, distance=1000),
        event("sent", c, 0, distance=500),
        event("response", a, 10, answer="accepted", eta=20),
        event("response", b, 12, answer="accepted", eta=10),
        event("response", c, 15, answer="accepted", eta=5),
    ]
    facts: dict[uuid.UUID, board.RowFacts] = {}
    for item in first:
        facts[item.member_id] = board.apply(facts.get(item.member_id), item)
    before = board.statuses(facts, 2)
    assert before == {a: "accepted", b: "accepted", c: "standby"}
    facts[a] = board.apply(facts[a], event("response", a, 60, answer="declined"))
    after = board.statuses(facts, 2)
    assert after == {a: "declined", b: "accepted", c: "accepted"}
    change = board.quota_change(before, after, 2)
    assert change.call_up == (c,)
    assert change.staffed_before and change.staffed_after
    # a second drop-out with nobody on standby re-opens the quota
    facts[b] = board.apply(facts[b], event("response", b, 70, answer="declined"))
    reopened = board.quota_change(after, board.statuses(facts, 2), 2)
    assert reopened.staffed_before and not reopened.staffed_after and reopened.call_up == ()


def test_not_needed_then_yes_is_standby_but_the_close_is_final() -> None:
    a, b = MEMBERS[:2]
    rows = board.replay(
        [event("response", b, 5, answer="accepted", eta=5),
         event("stood_down", a, 10, reason="not_needed"),
         event("response", a, 20, answer="accepted", eta=3)],
        1,
    )  # fmt: skip
    assert (rows[a].status, rows[b].status) == ("standby", "accepted")
    closed = board.replay(
        [event("response", b, 5, answer="accepted", eta=5),
         event("stood_down", b, 30, reason="closed"),
         event("response", b, 40, answer="declined")],
        1,
    )  # fmt: skip
    assert closed[b].status == "stood_down"


def test_same_acceptance_time_ranks_by_eta_then_distance() -> None:
    a, b, c = MEMBERS[:3]
    rows = board.replay(
        [event("sent", a, 0, distance=900), event("sent", b, 0, distance=100),
         event("sent", c, 0, distance=50),
         event("response", a, 10, answer="accepted", eta=10),
         event("response", b, 10, answer="accepted", eta=10),
         event("response", c, 10, answer="accepted", eta=30)],
        2,
    )  # fmt: skip
    assert {m: r.status for m, r in rows.items()} == {a: "accepted", b: "accepted", c: "standby"}


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, needed=st.integers(1, 4))
def test_a_summary_never_names_a_member(events: list[BoardEvent], needed: int) -> None:
    rows = board.replay(events, needed)
    summary = summaries.summarize(
        rows.values(), emergency_id=EMERGENCY, section="AL", drill=False, needed=needed,
        declared_at=T0, updated_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    text = summary.model_dump_json()
    for item in events:
        assert str(item.member_id) not in text
        assert item.alert_id not in text
        assert str(item.member_id.hex) not in text
    assert summary.counts["alerted"] == len(rows)
    assert sum(summary.counts[s] for s in board.STATUSES) == len(rows)
    accepted = [r for r in rows.values() if r.status == "accepted"]
    assert sum(summary.eta_bands.values()) == len(accepted)


def test_summary_counts_bands_and_first_acceptance() -> None:
    a, b, c, d, e = MEMBERS[:5]
    rows = board.replay(
        [event("sent", m, 0, quals=("FIRST_AID",) if m != e else ("SAR",)) for m in MEMBERS[:5]]
        + [event("delivered", b, 3), event("failed", d, 4),
           event("response", a, 42, answer="accepted", eta=8),
           event("response", b, 50, answer="accepted", eta=25),
           event("response", c, 55, answer="declined"),
           event("response", e, 60, answer="accepted", eta=45)],
        2,
    )  # fmt: skip
    summary = summaries.summarize(
        rows.values(), emergency_id=EMERGENCY, section="AL", drill=True, needed=2,
        declared_at=T0, updated_at=T0,
    )  # fmt: skip
    assert summary.counts["accepted"] == 2
    assert summary.counts["standby"] == 1
    assert summary.counts["declined"] == 1
    assert summary.counts["failed"] == 1
    assert summary.counts["no_answer"] == 0
    assert summary.eta_bands == {"0-10": 1, "11-20": 0, "21-30": 1, "31+": 0, "unknown": 0}
    assert summary.by_qualification["FIRST_AID"]["accepted"] == 2
    assert summary.by_qualification["SAR"]["standby"] == 1
    assert summary.first_accept_seconds == 42.0
    assert summary.needed == 2 and summary.drill is True
