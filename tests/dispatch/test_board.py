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
    reason: str = "not_needed", channel: str = "sms", roll_call: str = "rc-1",
    outcome: str = "no_answer",
) -> BoardEvent:  # fmt: skip
    return BoardEvent(
        kind=kind,  # type: ignore[arg-type]
        event_id=str(uuid.uuid4()),
        emergency_id=EMERGENCY,
        member_id=member,
        alert_id=f"alert-{member}" if kind not in ("status_set", "overdue") else "",
        at=T0 + timedelta(seconds=at),
        wave=wave,
        distance_m=distance,
        qualifications=quals,
        answer=board.status_name(answer) if answer else None,
        eta_minutes=eta,
        reason=reason if kind == "stood_down" else outcome if kind == "call_ended" else None,
        channel="coordinator" if kind == "status_set" else channel,
        roll_call_id=roll_call if kind == "roll_call_confirmed" else None,
    )


events_strategy = st.lists(
    st.builds(
        event,
        kind=st.sampled_from(
            [
                "sent",
                "delivered",
                "failed",
                "stood_down",
                "response",
                "response",
                "call_placed",
                "call_ended",
                "status_set",
                "roll_call_confirmed",
                "overdue",
            ]
        ),
        member=st.sampled_from(MEMBERS),
        at=st.integers(0, 600),
        answer=st.sampled_from(
            ["accepted", "declined", "arrived", "en_route", "on_scene", "released", "home_safe"]
        ),
        eta=st.one_of(st.none(), st.integers(0, 90)),
        wave=st.integers(1, 3),
        distance=st.integers(0, 50_000),
        quals=st.lists(st.sampled_from(QUALIFICATIONS), max_size=2, unique=True).map(tuple),
        reason=st.sampled_from(["not_needed", "closed", "false_alarm"]),
        channel=st.sampled_from(["sms", "web", "voice"]),
        roll_call=st.sampled_from(["rc-1", "rc-2"]),
        outcome=st.sampled_from(["answered", "no_answer", "busy", "failed"]),
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


def test_failed_then_delivered_and_on_scene_on_top() -> None:
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
    # `arrived` is the old name of on_scene
    assert rows[a].status == "on_scene"


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
        assert not item.alert_id or item.alert_id not in text
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


# -- the safety loop (issue 11) ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, needed=st.integers(1, 4))
def test_the_quota_never_stands_down_a_member_on_the_loop(
    events: list[BoardEvent], needed: int
) -> None:
    rows = board.replay(events, needed)
    facts: dict[uuid.UUID, board.RowFacts] = {}
    for item in events:
        facts[item.member_id] = board.apply(facts.get(item.member_id), item)
    for member, row in rows.items():
        state = board.safety_state(facts[member])
        if state is not None:
            # on the road, on scene, released or home: that state, never standby
            assert row.status == state
    in_loop = sum(1 for r in rows.values() if r.status in board.SAFETY_STATES)
    accepted = sum(1 for r in rows.values() if r.status == "accepted")
    assert accepted <= max(0, needed - in_loop)


def test_the_loop_goes_forward_and_a_late_step_never_moves_it_back() -> None:
    a = MEMBERS[0]
    steps = [
        event("response", a, 10, answer="accepted", eta=15),
        event("response", a, 20, answer="en_route", channel="web"),
        event("response", a, 900, answer="on_scene", channel="voice"),
        event("status_set", a, 4000, answer="released"),
        event("response", a, 9000, answer="home_safe", channel="sms"),
    ]
    for upto, expected in ((2, "en_route"), (3, "on_scene"), (4, "released"), (5, "home_safe")):
        assert board.replay(steps[:upto], 1)[a].status == expected
    # the en_route text arrives last (a phone back in coverage): still home safe
    late = board.replay([steps[0], *steps[2:], steps[1]], 1)[a]
    assert late.status == "home_safe"
    assert late.channel == "sms" and late.status_at == T0 + timedelta(seconds=9000)
    released = board.replay(steps[:4], 1)[a]
    assert released.channel == "coordinator"
    # a decline after arriving changes nothing: the member is still out there
    assert (
        board.replay([*steps[:3], event("response", a, 1000, answer="declined")], 1)[a].status
        == "on_scene"
    )


def test_the_close_does_not_hide_someone_on_the_road() -> None:
    a, b = MEMBERS[:2]
    rows = board.replay(
        [event("response", a, 5, answer="accepted", eta=5),
         event("response", a, 6, answer="en_route"),
         event("response", b, 5, answer="accepted", eta=9),
         event("stood_down", a, 30, reason="closed"),
         event("stood_down", b, 30, reason="closed")],
        2,
    )  # fmt: skip
    assert (rows[a].status, rows[b].status) == ("en_route", "stood_down")


def test_members_in_the_loop_hold_their_places_and_released_ones_keep_theirs() -> None:
    a, b, c = MEMBERS[:3]
    steps = [
        event("response", a, 10, answer="accepted", eta=5),
        event("response", b, 20, answer="accepted", eta=5),
        event("response", c, 30, answer="accepted", eta=5),
        # c, the latest acceptor (standby at first), sets off anyway
        event("response", c, 40, answer="en_route"),
    ]
    current = board.statuses(_facts(steps), 2)
    assert current == {a: "accepted", b: "standby", c: "en_route"}
    released = _facts([*steps, event("status_set", c, 50, answer="released")])
    assert board.statuses(released, 2) == {a: "accepted", b: "standby", c: "released"}
    # releasing does not free a place: no drop-out, no call-up, no new wave
    assert board.quota_change(current, board.statuses(released, 2), 2).changed is False
    assert board.filled(board.statuses(released, 2)) == 2


def _facts(events: list[BoardEvent]) -> dict[uuid.UUID, board.RowFacts]:
    facts: dict[uuid.UUID, board.RowFacts] = {}
    for item in events:
        facts[item.member_id] = board.apply(facts.get(item.member_id), item)
    return facts


def test_the_contact_step_says_why_someone_has_not_answered() -> None:
    a = MEMBERS[0]
    sent = event("sent", a, 0)
    assert board.replay([sent], 1)[a].contact_step == "sms_sent"
    assert board.replay([sent, event("delivered", a, 3)], 1)[a].contact_step == "sms_delivered"
    ladder = [sent, event("delivered", a, 3), event("call_placed", a, 300)]
    assert board.replay(ladder, 1)[a].contact_step == "call_placed"
    for outcome in ("answered", "no_answer", "busy", "failed"):
        ended = event("call_ended", a, 330, outcome=outcome)
        assert board.replay([ended, *reversed(ladder)], 1)[a].contact_step == f"call_{outcome}"
    # a delivery receipt late from the network does not hide the call
    assert board.replay([*ladder, event("delivered", a, 2)], 1)[a].contact_step == "call_placed"
    assert board.replay([sent, event("failed", a, 1)], 1)[a].contact_step == "sms_failed"


def test_an_answer_by_voice_shows_its_channel() -> None:
    a = MEMBERS[0]
    rows = board.replay(
        [event("sent", a, 0), event("call_placed", a, 300), event("call_ended", a, 330,
         outcome="answered"), event("response", a, 325, answer="accepted", eta=15,
         channel="voice")],
        1,
    )  # fmt: skip
    assert (rows[a].status, rows[a].eta_minutes, rows[a].channel) == ("accepted", 15, "voice")


def test_old_rows_and_events_named_arrived_read_as_on_scene() -> None:
    a = MEMBERS[0]
    stored = {
        "member_id": str(a), "alert_id": "x", "sent": None, "delivered_at": None,
        "failed_at": None,
        "answer": {"responded_at": T0.isoformat(), "event_id": "e1", "answer": "accepted",
                   "eta_minutes": 5},
        "first_accepted_at": T0.isoformat(), "arrived_at": (T0 + timedelta(minutes=9)).isoformat(),
        "stood_down_at": None, "stood_down_reason": None, "not_needed_at": None,
        "updated_at": T0.isoformat(),
    }  # fmt: skip
    facts = board.facts_from_json(stored)
    assert board.base_status(facts) == "on_scene"
    assert facts.on_scene is not None and facts.on_scene.at == T0 + timedelta(minutes=9)
    assert board.facts_from_json(board.facts_to_json(facts)) == facts


def test_overdue_is_flagged_until_home_safe() -> None:
    a = MEMBERS[0]
    after = timedelta(hours=3)
    released = [event("response", a, 0, answer="on_scene"), event("status_set", a, 60,
                answer="released")]  # fmt: skip
    facts = _facts(released)[a]
    assert board.overdue_due_at(facts, after) == T0 + timedelta(seconds=60) + after
    overdue = [*released, event("overdue", a, 60 + 3 * 3600)]
    assert board.replay(overdue, 1)[a].overdue is True
    assert board.overdue_due_at(_facts(overdue)[a], after) is None  # fired: never again
    home = board.replay([*overdue, event("response", a, 20_000, answer="home_safe")], 1)[a]
    assert (home.status, home.overdue) == ("home_safe", False)
    assert board.overdue_due_at(_facts([*released, event("response", a, 99,
                                answer="home_safe")])[a], after) is None  # fmt: skip


def test_a_coordinator_moves_responders_forward_only() -> None:
    assert board.coordinator_may_set("accepted", "on_scene")
    assert board.coordinator_may_set("standby", "en_route")
    assert board.coordinator_may_set("on_scene", "released")
    assert board.coordinator_may_set("en_route", "home_safe")
    assert not board.coordinator_may_set("released", "on_scene")
    assert not board.coordinator_may_set("home_safe", "home_safe")
    assert not board.coordinator_may_set("declined", "on_scene")
    assert not board.coordinator_may_set("delivered", "on_scene")
    assert not board.coordinator_may_set("accepted", "accepted")


@settings(max_examples=100, deadline=None)
@given(
    asked=st.sets(st.sampled_from(MEMBERS), min_size=1),
    confirming=st.sets(st.sampled_from(MEMBERS)),
    elapsed=st.integers(0, 900),
)
def test_a_roll_call_shows_who_has_not_confirmed(
    asked: set[uuid.UUID], confirming: set[uuid.UUID], elapsed: int
) -> None:
    roll_call = board.RollCall("rc-1", T0, tuple(sorted(asked, key=str)))
    events = [event("roll_call_confirmed", m, 30, roll_call="rc-1") for m in confirming]
    events += [event("roll_call_confirmed", m, 40, roll_call="rc-0") for m in asked]
    view = board.roll_call_view(
        roll_call, _facts(events), T0 + timedelta(seconds=elapsed), timedelta(minutes=5)
    )
    assert set(view.confirmed) == asked & confirming
    unconfirmed = asked - confirming
    assert set(view.waiting) | set(view.missing) == unconfirmed
    # missing only once the deadline has passed, and then every unconfirmed member
    assert set(view.missing) == (unconfirmed if elapsed >= 300 else set())
    assert view.missing_after == T0 + timedelta(minutes=5)


def test_summary_counts_each_state_and_keeps_the_old_name() -> None:
    a, b, c, d = MEMBERS[:4]
    rows = board.replay(
        [event("sent", m, 0) for m in (a, b, c, d)]
        + [event("response", m, 5, answer="accepted", eta=5) for m in (a, b, c, d)]
        + [event("response", a, 6, answer="en_route"), event("response", b, 7, answer="arrived"),
           event("response", c, 8, answer="on_scene"), event("status_set", c, 9, answer="released"),
           event("response", d, 9, answer="home_safe")],
        4,
    )  # fmt: skip
    summary = summaries.summarize(
        rows.values(), emergency_id=EMERGENCY, section="AL", drill=False, needed=4,
        declared_at=T0, updated_at=T0,
    )  # fmt: skip
    counts = summary.counts
    assert (counts["en_route"], counts["on_scene"], counts["released"], counts["home_safe"]) == (
        1, 1, 1, 1,
    )  # fmt: skip
    assert counts["arrived"] == counts["on_scene"]
    assert summary.by_qualification["FIRST_AID"]["on_scene"] == 1


def one_by_one(
    facts: dict[uuid.UUID, board.RowFacts],
    stored: dict[uuid.UUID, str],
    events: list[BoardEvent],
    needed: int | None,
    overdue_after: timedelta,
) -> tuple[list[tuple[list[board.BoardRow], board.QuotaChange | None]], dict[uuid.UUID, str]]:
    """What board_store.apply_events does for each event in turn, on the whole board:
    the rows it writes and announces (the event's own, and each row whose stored status
    differs from the new one) and the quota before and after; and the overdue times."""
    current = dict(facts)
    table = dict(stored)
    steps: list[tuple[list[board.BoardRow], board.QuotaChange | None]] = []
    due: dict[uuid.UUID, str] = {}
    for e in events:
        before = board.statuses(current, needed)
        current[e.member_id] = board.apply(current.get(e.member_id), e)
        after = board.statuses(current, needed)
        changed = [
            board.to_row(current[m], after[m])
            for m in current
            if m == e.member_id or table.get(m) != after[m]
        ]
        for row in changed:
            table[row.member_id] = row.status
        quota = None if needed is None else board.quota_change(before, after, needed)
        steps.append((changed, quota))
        at = board.overdue_due_at(current[e.member_id], overdue_after)
        if at is not None:
            due[e.member_id] = min(due.get(e.member_id, at.isoformat()), at.isoformat())
    return steps, due


@settings(max_examples=150)
@given(
    earlier=events_strategy,
    events=events_strategy,
    needed=st.one_of(st.none(), st.integers(1, 4)),
    stale=st.booleans(),
)
def test_a_batch_planned_as_one_step_does_what_one_by_one_does(
    earlier: list[BoardEvent],
    events: list[BoardEvent],
    needed: int | None,
    stale: bool,
) -> None:
    """Whatever the board before (stored statuses possibly stale: the first step writes
    what one by one writes), each step announces the same rows and the same quota change
    as one event applied alone, the rows written are the final state of every row
    announced, and the overdue timers are armed at the earliest release."""
    facts: dict[uuid.UUID, board.RowFacts] = {}
    for e in earlier:
        facts[e.member_id] = board.apply(facts.get(e.member_id), e)
    stored = board.statuses(facts, needed)
    if stale and stored:
        first = sorted(stored, key=str)[0]
        stored[first] = "notified" if stored[first] != "notified" else "accepted"
    overdue_after = timedelta(minutes=30)
    plan = board.plan_batch(facts, stored, events, needed, overdue_after)
    steps, due = one_by_one(facts, stored, events, needed, overdue_after)

    assert len(plan.steps) == len(steps)
    for step, (changed, quota) in zip(plan.steps, steps, strict=True):
        assert sorted(step.announced, key=lambda r: str(r.member_id)) == sorted(
            changed, key=lambda r: str(r.member_id)
        )
        assert step.quota == quota
    final = dict(facts)
    for e in events:
        final[e.member_id] = board.apply(final.get(e.member_id), e)
    final_rows = board.rows(final, needed)
    announced = {row.member_id for step in plan.steps for row in step.announced}
    assert set(plan.written) == announced
    for member, (row, row_facts) in plan.written.items():
        assert row == final_rows[member]
        assert row_facts == final[member]
    assert {m: at.isoformat() for m, at in plan.overdue_due.items()} == due
