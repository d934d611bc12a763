"""The response board as a pure state machine: no I/O, fed events, gives rows.

Each row keeps the *facts* seen for one alerted member (when the alert was sent and in
which wave, delivered, failed, the call the channel ladder placed and how it ended, the
latest answer by the member's own time, each safety-loop state reached, roll calls
confirmed, overdue, stood down). Merging a fact is commutative, associative and
idempotent (earliest time wins for one-off facts, latest `responded_at` wins for
answers), so any order or duplication of the same events gives the same facts; the
status is then a function of the facts, with this precedence (its rank never goes down
as facts accumulate):

    notified 0 < failed 1 < delivered 2 < stood_down (not needed) 2.5
             < accepted | standby | declined 3 < stood_down (closed) 4
             < en_route 5 < on_scene 6 < released 7 < home_safe 8

`stood_down` has two places: a member told "not needed" (the quota was met before they
answered) may still say yes and goes on standby, as the alerts service records it, so
that stand-down sits below an answer; the stand-down at the close (or a false-alarm
correction) is final and sits above one. The safety loop (en_route → on_scene →
released → home_safe, by the member or set by a coordinator) sits above both: a member
who is on the road or on scene when the emergency closes is still out there, and the
board must keep them in sight until they are home. `level` gives a row's place.

`arrived` is the name older events and rows gave `on_scene`: read as `on_scene`.

A member who accepted and then declines is `declined` (same rank: the latest answer by
`responded_at` wins); an answer older than the current one is ignored; a late
`delivered` never undoes an answer, a late `en_route` never undoes `on_scene`.

Quota: members in the safety loop hold their places whatever happens (the quota never
stands down someone on the road or on scene, nor counts a released member's place as
free: releasing everyone at the end must not send a new wave). The other places
(`members_needed`, less those) go to the members whose current acceptance is oldest —
ties broken by ETA, then distance, then member id — and the other acceptors are
`standby`. So "later acceptances are standby", and the assignment depends only on the
facts, never on the order they came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple
from uuid import UUID

from shared.events.alerts import (
    AlertCallEnded,
    AlertCallPlaced,
    AlertDelivered,
    AlertFailed,
    AlertSent,
    AlertStoodDown,
)
from shared.events.catalog import EventData
from shared.events.emergencies import ResponderOverdue, ResponderStatusSet
from shared.events.responses import ResponseReceived, RollCallConfirmed

Status = Literal[
    "notified", "failed", "delivered", "accepted", "standby", "declined", "stood_down",
    "en_route", "on_scene", "released", "home_safe",
]  # fmt: skip
RANK: dict[str, int] = {
    "notified": 0,
    "failed": 1,
    "delivered": 2,
    "accepted": 3,
    "standby": 3,
    "declined": 3,
    "stood_down": 4,
    "en_route": 5,
    "on_scene": 6,
    "released": 7,
    "home_safe": 8,
}
STATUSES: tuple[str, ...] = tuple(RANK)
#: the safety loop, in order; a row in one of these holds its place in the quota
SAFETY_STATES: tuple[str, ...] = ("en_route", "on_scene", "released", "home_safe")
#: statuses that fill a place (`members_needed`)
FILLED: tuple[str, ...] = ("accepted", *SAFETY_STATES)
#: older names of statuses, as events and stored rows may still carry them
LEGACY_NAMES: dict[str, str] = {"arrived": "on_scene"}
#: the channel the board shows for a state a coordinator set
COORDINATOR = "coordinator"
#: how the member was last contacted, in the order of the channel ladder (a tie in time
#: goes to the later step)
CONTACT_STEPS: tuple[str, ...] = (
    "sms_sent", "sms_delivered", "sms_failed", "call_placed",
    "call_answered", "call_no_answer", "call_busy", "call_failed",
)  # fmt: skip


def status_name(name: str) -> str:
    """A status or answer as the board names it now (`arrived` is `on_scene`)."""
    return LEGACY_NAMES.get(name, name)


@dataclass(frozen=True, order=True)
class Sent:
    """The first alert (lowest wave, then earliest): where the member was reached from."""

    wave: int
    sent_at: datetime
    alert_id: str
    distance_m: int
    qualifications: tuple[str, ...] = ()
    #: the member's own section (None in events from before alerts carried it); not
    #: compared: which copy of a send comes first is decided by the fields above
    section: str | None = field(default=None, compare=False)


@dataclass(frozen=True, order=True)
class Answer:
    """An accept or decline; compared by the member's own time, then event id."""

    responded_at: datetime
    event_id: str
    answer: str
    eta_minutes: int | None = None
    channel: str | None = None


@dataclass(frozen=True, order=True)
class Reached:
    """A safety-loop state reached: the earliest (time, event id) of it wins."""

    at: datetime
    event_id: str
    channel: str | None = None


@dataclass(frozen=True, order=True)
class CallEnded:
    ended_at: datetime
    outcome: str


class RowFacts(NamedTuple):
    """Immutable (a tuple: cheap to build, and every board read builds every row's)."""

    member_id: UUID
    alert_id: str | None = None
    sent: Sent | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    #: the earliest failure's reason, as alerts gave it (after-action reports tell an
    #: opt-out, `opted out (STOP)`, from a number that failed)
    failed_reason: str | None = None
    call_placed_at: datetime | None = None
    call_ended: CallEnded | None = None
    answer: Answer | None = None
    first_accepted_at: datetime | None = None
    en_route: Reached | None = None
    on_scene: Reached | None = None
    released: Reached | None = None
    home_safe: Reached | None = None
    #: (roll call id, earliest confirmation), sorted by id
    confirmed: tuple[tuple[str, datetime], ...] = ()
    overdue_at: datetime | None = None
    stood_down_at: datetime | None = None
    stood_down_reason: str | None = None
    not_needed_at: datetime | None = None
    updated_at: datetime | None = None

    def reached(self, state: str) -> Reached | None:
        value: Reached | None = getattr(self, state)
        return value


BoardEventKind = Literal[
    "sent", "delivered", "failed", "stood_down", "response", "call_placed", "call_ended",
    "status_set", "roll_call_confirmed", "overdue",
]  # fmt: skip


@dataclass(frozen=True)
class BoardEvent:
    """One alert, response or safety-loop event, reduced to what the board uses."""

    kind: BoardEventKind
    event_id: str
    emergency_id: UUID
    member_id: UUID
    alert_id: str
    at: datetime
    wave: int = 1
    distance_m: int = 0
    qualifications: tuple[str, ...] = ()
    answer: str | None = None
    eta_minutes: int | None = None
    reason: str | None = None
    channel: str | None = None
    roll_call_id: str | None = None
    section: str | None = None


class BoardRow(NamedTuple):
    member_id: UUID
    status: str
    eta_minutes: int | None
    expected_arrival_at: datetime | None
    distance_m: int | None
    wave: int | None
    qualifications: tuple[str, ...]
    answered_at: datetime | None
    accepted_at: datetime | None
    first_accepted_at: datetime | None
    updated_at: datetime | None
    alert_id: str | None = None
    #: how the member last told us something (sms, web, voice) or `coordinator`
    channel: str | None = None
    #: the last step of the channel ladder (CONTACT_STEPS): why someone has not answered
    contact_step: str | None = None
    #: when the current safety-loop state was reached
    status_at: datetime | None = None
    #: released and not home safe after the configured time (and not home safe since)
    overdue: bool = False
    #: the roll calls this member confirmed
    confirmed_roll_calls: tuple[str, ...] = ()


def from_event(data: EventData, event_id: str) -> BoardEvent | None:
    """The board's view of an alerts / responses / safety-loop event (None: not one)."""
    if isinstance(data, AlertSent):
        return BoardEvent(
            "sent", event_id, data.emergency_id, data.member_id, str(data.alert_id), data.sent_at,
            wave=data.wave, distance_m=data.distance_m,
            qualifications=tuple(sorted(set(data.qualifications))), section=data.section,
        )  # fmt: skip
    if isinstance(data, AlertDelivered):
        return BoardEvent(
            "delivered", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.delivered_at,
        )  # fmt: skip
    if isinstance(data, AlertFailed):
        return BoardEvent(
            "failed", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.failed_at, reason=data.reason,
        )  # fmt: skip
    if isinstance(data, AlertStoodDown):
        return BoardEvent(
            "stood_down", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.stood_down_at, reason=data.reason,
        )  # fmt: skip
    if isinstance(data, AlertCallPlaced):
        return BoardEvent(
            "call_placed", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.placed_at,
        )  # fmt: skip
    if isinstance(data, AlertCallEnded):
        return BoardEvent(
            "call_ended", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.ended_at, reason=data.outcome,
        )  # fmt: skip
    if isinstance(data, ResponseReceived):
        return BoardEvent(
            "response", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.responded_at, answer=status_name(data.answer), eta_minutes=data.eta_minutes,
            channel=data.channel,
        )  # fmt: skip
    if isinstance(data, RollCallConfirmed):
        return BoardEvent(
            "roll_call_confirmed", event_id, data.emergency_id, data.member_id,
            str(data.alert_id), data.confirmed_at, channel=data.channel,
            roll_call_id=str(data.roll_call_id),
        )  # fmt: skip
    # dispatch's own events (it applies them when it writes them; a replay of the
    # emergencies topic applies them again to the same effect)
    if isinstance(data, ResponderStatusSet):
        return BoardEvent(
            "status_set", event_id, data.emergency_id, data.member_id, "", data.set_at,
            answer=data.status, channel=COORDINATOR,
        )  # fmt: skip
    if isinstance(data, ResponderOverdue):
        return BoardEvent(
            "overdue", event_id, data.emergency_id, data.member_id, "", data.overdue_at
        )
    return None


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _reach(row: RowFacts, state: str, event: BoardEvent) -> RowFacts:
    reached = Reached(event.at, event.event_id, event.channel)
    current = row.reached(state)
    if current is not None and current <= reached:
        return row
    if state == "en_route":
        return row._replace(en_route=reached)
    if state == "on_scene":
        return row._replace(on_scene=reached)
    if state == "released":
        return row._replace(released=reached)
    return row._replace(home_safe=reached)


def apply(facts: RowFacts | None, event: BoardEvent) -> RowFacts:
    """Merge one event into a row's facts (commutative, idempotent)."""
    row = facts or RowFacts(member_id=event.member_id)
    row = row._replace(updated_at=_latest(row.updated_at, event.at))
    if event.kind == "sent":
        sent = Sent(
            event.wave, event.at, event.alert_id, event.distance_m, event.qualifications,
            event.section,
        )  # fmt: skip
        if (
            row.sent is None
            or sent < row.sent
            # the same send, from an event that also names the section (compare=False)
            or (sent == row.sent and row.sent.section is None and sent.section is not None)
        ):
            row = row._replace(sent=sent)
    elif event.kind == "delivered":
        row = row._replace(delivered_at=_earliest(row.delivered_at, event.at))
    elif event.kind == "failed":
        if row.failed_at is None or (event.at, event.reason or "") < (
            row.failed_at,
            row.failed_reason or "",
        ):
            row = row._replace(failed_at=event.at, failed_reason=event.reason)
    elif event.kind == "call_placed":
        row = row._replace(call_placed_at=_earliest(row.call_placed_at, event.at))
    elif event.kind == "call_ended":
        ended = CallEnded(event.at, event.reason or "failed")
        if row.call_ended is None or ended < row.call_ended:
            row = row._replace(call_ended=ended)
    elif event.kind == "stood_down" and event.reason == "not_needed":
        row = row._replace(not_needed_at=_earliest(row.not_needed_at, event.at))
    elif event.kind == "stood_down":
        if row.stood_down_at is None or (event.at, event.reason or "") < (
            row.stood_down_at,
            row.stood_down_reason or "",
        ):
            row = row._replace(stood_down_at=event.at, stood_down_reason=event.reason)
    elif event.kind in ("response", "status_set"):
        answer_name = status_name(event.answer or "declined")
        if answer_name in SAFETY_STATES:
            row = _reach(row, answer_name, event)
        elif event.kind == "response":
            answer = Answer(event.at, event.event_id, answer_name, event.eta_minutes, event.channel)
            if row.answer is None or answer > row.answer:
                row = row._replace(answer=answer)
            if answer_name == "accepted":
                row = row._replace(first_accepted_at=_earliest(row.first_accepted_at, event.at))
    elif event.kind == "roll_call_confirmed" and event.roll_call_id:
        confirmed = dict(row.confirmed)
        confirmed[event.roll_call_id] = _earliest(confirmed.get(event.roll_call_id), event.at)
        row = row._replace(confirmed=tuple(sorted(confirmed.items())))
    elif event.kind == "overdue":
        row = row._replace(overdue_at=_earliest(row.overdue_at, event.at))
    alert_ids = [a for a in (row.alert_id, event.alert_id) if a]
    alert_id = row.sent.alert_id if row.sent else (min(alert_ids) if alert_ids else None)
    return row._replace(alert_id=alert_id)


def safety_state(facts: RowFacts) -> str | None:
    """The furthest safety-loop state the member reached (None: not in the loop)."""
    # attribute by attribute, not by name: this runs for every row of every board read
    if facts.home_safe is not None:
        return "home_safe"
    if facts.released is not None:
        return "released"
    if facts.on_scene is not None:
        return "on_scene"
    if facts.en_route is not None:
        return "en_route"
    return None


def base_status(facts: RowFacts) -> str:
    """The status before the quota splits acceptors into accepted and standby."""
    state = safety_state(facts)
    if state is not None:
        return state
    if facts.stood_down_at is not None:
        return "stood_down"
    if facts.answer is not None:
        return facts.answer.answer
    if facts.not_needed_at is not None:
        return "stood_down"
    if facts.delivered_at is not None:
        return "delivered"
    if facts.failed_at is not None:
        return "failed"
    return "notified"


def level(facts: RowFacts) -> float:
    """The row's place in the precedence order (never goes down as facts accumulate)."""
    status = base_status(facts)
    if status == "stood_down" and facts.stood_down_at is None:
        return 2.5
    return RANK[status]


def contact_step(facts: RowFacts) -> str | None:
    """The channel ladder's latest step for this member (a tie in time: the later step)."""
    steps: list[tuple[datetime, int]] = []
    if facts.sent is not None:
        steps.append((facts.sent.sent_at, 0))
    if facts.delivered_at is not None:
        steps.append((facts.delivered_at, 1))
    if facts.failed_at is not None:
        steps.append((facts.failed_at, 2))
    if facts.call_placed_at is not None:
        steps.append((facts.call_placed_at, 3))
    if facts.call_ended is not None:
        outcome = f"call_{facts.call_ended.outcome}"
        index = CONTACT_STEPS.index(outcome) if outcome in CONTACT_STEPS else 7
        steps.append((facts.call_ended.ended_at, index))
    return CONTACT_STEPS[max(steps)[1]] if steps else None


def channel(facts: RowFacts) -> str | None:
    """The channel of the member's latest word (an answer or a safety-loop state)."""
    said: list[tuple[datetime, str, str | None]] = []
    if facts.answer is not None:
        said.append((facts.answer.responded_at, facts.answer.event_id, facts.answer.channel))
    if safety_state(facts) is not None:
        for reached in (facts.en_route, facts.on_scene, facts.released, facts.home_safe):
            if reached is not None:
                said.append((reached.at, reached.event_id, reached.channel))
    return max(said)[2] if said else None


def _acceptance_order(facts: RowFacts) -> tuple[datetime, int, int, str]:
    assert facts.answer is not None
    eta = facts.answer.eta_minutes
    distance = facts.sent.distance_m if facts.sent else None
    return (
        facts.answer.responded_at,
        eta if eta is not None else 1 << 30,
        distance if distance is not None else 1 << 30,
        str(facts.member_id),
    )


def statuses(board: dict[UUID, RowFacts], members_needed: int | None) -> dict[UUID, str]:
    """Every row's status; `members_needed` None (emergency unknown here): no standby."""
    result = {member: base_status(facts) for member, facts in board.items()}
    if members_needed is None:
        return result
    in_loop = sum(1 for s in result.values() if s in SAFETY_STATES)
    places = max(0, members_needed - in_loop)
    acceptors = sorted(
        (facts for member, facts in board.items() if result[member] == "accepted"),
        key=_acceptance_order,
    )
    for position, facts in enumerate(acceptors):
        result[facts.member_id] = "accepted" if position < places else "standby"
    return result


def to_row(facts: RowFacts, status: str) -> BoardRow:
    answer = facts.answer
    eta = answer.eta_minutes if answer and answer.answer == "accepted" else None
    expected = answer.responded_at + timedelta(minutes=eta) if answer and eta is not None else None
    state = facts.reached(status) if status in SAFETY_STATES else None
    return BoardRow(
        member_id=facts.member_id,
        status=status,
        eta_minutes=eta,
        expected_arrival_at=expected,
        distance_m=facts.sent.distance_m if facts.sent else None,
        wave=facts.sent.wave if facts.sent else None,
        qualifications=facts.sent.qualifications if facts.sent else (),
        answered_at=answer.responded_at if answer else None,
        accepted_at=answer.responded_at if answer and answer.answer == "accepted" else None,
        first_accepted_at=facts.first_accepted_at,
        updated_at=facts.updated_at,
        alert_id=facts.alert_id,
        channel=channel(facts),
        contact_step=contact_step(facts),
        status_at=state.at if state else None,
        overdue=status == "released" and facts.overdue_at is not None,
        confirmed_roll_calls=tuple(roll_call for roll_call, _ in facts.confirmed),
    )


def rows(board: dict[UUID, RowFacts], members_needed: int | None) -> dict[UUID, BoardRow]:
    current = statuses(board, members_needed)
    return {member: to_row(facts, current[member]) for member, facts in board.items()}


def replay(events: list[BoardEvent], members_needed: int | None) -> dict[UUID, BoardRow]:
    """The board after `events`, in the order given (tests and the bench use this)."""
    board: dict[UUID, RowFacts] = {}
    for event in events:
        board[event.member_id] = apply(board.get(event.member_id), event)
    return rows(board, members_needed)


def filled(current: dict[UUID, str]) -> int:
    return sum(1 for s in current.values() if s in FILLED)


@dataclass(frozen=True)
class QuotaChange:
    staffed_before: bool
    staffed_after: bool
    call_up: tuple[UUID, ...]

    @property
    def changed(self) -> bool:
        return self.staffed_before != self.staffed_after or bool(self.call_up)


def quota_change(
    before: dict[UUID, str], after: dict[UUID, str], members_needed: int
) -> QuotaChange:
    """Staffed reached or lost, and the standby members promoted by a drop-out (ranked as
    the board ranks them)."""
    call_up = tuple(
        sorted(
            (m for m, s in after.items() if s == "accepted" and before.get(m) == "standby"),
            key=str,
        )
    )
    return QuotaChange(filled(before) >= members_needed, filled(after) >= members_needed, call_up)


# -- the safety loop's decisions --------------------------------------------------------


def coordinator_may_set(current: str, target: str) -> bool:
    """A coordinator moves a responder forward on the safety loop: from an acceptance
    (accepted or standby) or from an earlier state. Backwards would be ignored by the
    board anyway; refusing says so instead of pretending."""
    if target not in SAFETY_STATES:
        return False
    if current in ("accepted", "standby"):
        return True
    return current in SAFETY_STATES and RANK[target] > RANK[current]


def overdue_due_at(facts: RowFacts, after: timedelta) -> datetime | None:
    """When a released member who is not home safe becomes overdue (None: not pending)."""
    if facts.released is None or facts.home_safe is not None or facts.overdue_at is not None:
        return None
    return facts.released.at + after


@dataclass(frozen=True)
class RollCall:
    roll_call_id: str
    started_at: datetime
    member_ids: tuple[UUID, ...]


@dataclass(frozen=True)
class RollCallView:
    roll_call_id: str
    started_at: datetime
    missing_after: datetime
    confirmed: tuple[UUID, ...]
    waiting: tuple[UUID, ...]
    #: not confirmed once `missing_after` has passed
    missing: tuple[UUID, ...]


def roll_call_view(
    roll_call: RollCall,
    board: dict[UUID, RowFacts],
    now: datetime,
    missing_after: timedelta,
) -> RollCallView:
    """Who of the members asked has confirmed, and who has not: waiting before the
    deadline, missing after it."""
    confirmed: list[UUID] = []
    unconfirmed: list[UUID] = []
    for member in sorted(roll_call.member_ids, key=str):
        facts = board.get(member)
        if facts is not None and roll_call.roll_call_id in dict(facts.confirmed):
            confirmed.append(member)
        else:
            unconfirmed.append(member)
    deadline = roll_call.started_at + missing_after
    late = now >= deadline
    return RollCallView(
        roll_call.roll_call_id,
        roll_call.started_at,
        deadline,
        tuple(confirmed),
        () if late else tuple(unconfirmed),
        tuple(unconfirmed) if late else (),
    )


# -- facts <-> JSON (the `facts` column) --------------------------------------------------


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _reached_json(value: Reached | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"at": _iso(value.at), "event_id": value.event_id, "channel": value.channel}


def _reached_from(value: dict[str, Any] | None) -> Reached | None:
    if not value:
        return None
    return Reached(datetime.fromisoformat(value["at"]), value["event_id"], value.get("channel"))


def facts_to_json(facts: RowFacts) -> dict[str, Any]:
    return {
        "member_id": str(facts.member_id),
        "alert_id": facts.alert_id,
        "sent": None
        if facts.sent is None
        else {
            "wave": facts.sent.wave,
            "sent_at": _iso(facts.sent.sent_at),
            "alert_id": facts.sent.alert_id,
            "distance_m": facts.sent.distance_m,
            "qualifications": list(facts.sent.qualifications),
            "section": facts.sent.section,
        },
        "delivered_at": _iso(facts.delivered_at),
        "failed_at": _iso(facts.failed_at),
        "failed_reason": facts.failed_reason,
        "call_placed_at": _iso(facts.call_placed_at),
        "call_ended": None
        if facts.call_ended is None
        else {"ended_at": _iso(facts.call_ended.ended_at), "outcome": facts.call_ended.outcome},
        "answer": None
        if facts.answer is None
        else {
            "responded_at": _iso(facts.answer.responded_at),
            "event_id": facts.answer.event_id,
            "answer": facts.answer.answer,
            "eta_minutes": facts.answer.eta_minutes,
            "channel": facts.answer.channel,
        },
        "first_accepted_at": _iso(facts.first_accepted_at),
        **{state: _reached_json(facts.reached(state)) for state in SAFETY_STATES},
        "confirmed": [[roll_call, _iso(at)] for roll_call, at in facts.confirmed],
        "overdue_at": _iso(facts.overdue_at),
        "stood_down_at": _iso(facts.stood_down_at),
        "stood_down_reason": facts.stood_down_reason,
        "not_needed_at": _iso(facts.not_needed_at),
        "updated_at": _iso(facts.updated_at),
    }


def facts_from_json(value: dict[str, Any]) -> RowFacts:
    """Every board read parses every row's facts: the common row (alerted, maybe
    answered, nothing more) takes the short way through."""
    sent = value.get("sent")
    answer = value.get("answer")
    call_ended = value.get("call_ended")
    confirmed = value.get("confirmed")
    on_scene = _reached_from(value.get("on_scene"))
    if on_scene is None and value.get("arrived_at"):
        # stored before the safety loop: `arrived_at` is when the member was on scene
        on_scene = Reached(datetime.fromisoformat(value["arrived_at"]), "", None)
    en_route = released = home_safe = None
    if on_scene is not None or value.get("en_route") or value.get("released"):
        en_route = _reached_from(value.get("en_route"))
        released = _reached_from(value.get("released"))
        home_safe = _reached_from(value.get("home_safe"))
    elif value.get("home_safe"):
        home_safe = _reached_from(value.get("home_safe"))
    return RowFacts(
        member_id=UUID(value["member_id"]),
        alert_id=value.get("alert_id"),
        sent=None
        if not sent
        else Sent(
            int(sent["wave"]),
            datetime.fromisoformat(sent["sent_at"]),
            sent["alert_id"],
            int(sent["distance_m"]),
            tuple(sent.get("qualifications") or ()),
            sent.get("section"),
        ),
        delivered_at=_dt(value.get("delivered_at")),
        failed_at=_dt(value.get("failed_at")),
        failed_reason=value.get("failed_reason"),
        call_placed_at=_dt(value.get("call_placed_at")),
        call_ended=None
        if not call_ended
        else CallEnded(datetime.fromisoformat(call_ended["ended_at"]), call_ended["outcome"]),
        answer=None
        if not answer
        else Answer(
            datetime.fromisoformat(answer["responded_at"]),
            answer["event_id"],
            status_name(answer["answer"]),
            answer.get("eta_minutes"),
            answer.get("channel"),
        ),
        first_accepted_at=_dt(value.get("first_accepted_at")),
        en_route=en_route,
        on_scene=on_scene,
        released=released,
        home_safe=home_safe,
        confirmed=tuple((str(rc), datetime.fromisoformat(at)) for rc, at in confirmed)
        if confirmed
        else (),
        overdue_at=_dt(value.get("overdue_at")),
        stood_down_at=_dt(value.get("stood_down_at")),
        stood_down_reason=value.get("stood_down_reason"),
        not_needed_at=_dt(value.get("not_needed_at")),
        updated_at=_dt(value.get("updated_at")),
    )


# -- one emergency's batch of events as one planning step ---------------------------------


@dataclass(frozen=True)
class BatchStep:
    """What one event of a batch did, as the one-by-one path would have seen it: the
    rows it announces (its member's, and every row whose status it changed, in the state
    just after it) and the quota before and after it (None: the emergency is unknown)."""

    event_id: str
    announced: tuple[BoardRow, ...]
    quota: QuotaChange | None


@dataclass(frozen=True)
class BatchPlan:
    steps: tuple[BatchStep, ...]
    #: the rows to write, in their final state: every row some step announced
    written: dict[UUID, tuple[BoardRow, RowFacts]]
    #: the earliest overdue time each released member reached in the batch
    overdue_due: dict[UUID, datetime]
    #: some step took a place from an acceptor: the standby rows may move up, so a plan
    #: made without them is not exact (the caller loads them and plans again)
    place_freed: bool


def plan_batch(
    facts: dict[UUID, RowFacts],
    stored: dict[UUID, str],
    events: list[BoardEvent],
    members_needed: int | None,
    overdue_after: timedelta,
) -> BatchPlan:
    """Fold `events` (one emergency's, in order) into `facts` one at a time, and say
    what applying them one by one would have written, announced and changed in the
    quota, so the caller can do it all in a few statements.

    `facts` holds the rows that can change together (as `board_store.load_facts` gives
    them) and `stored` their statuses as stored. `statuses` is worked out in full once;
    then each event updates its own row, and the acceptors are ranked again only after
    an event that touched a row holding or seeking a place (what `statuses` would give,
    without reading every row for every event)."""
    board = dict(facts)
    current = statuses(board, members_needed)
    base = {member: base_status(row) for member, row in board.items()}
    #: the acceptors (accepted or standby) and their place in the ranking
    acceptors = {m: _acceptance_order(board[m]) for m, s in base.items() if s == "accepted"}
    in_loop = sum(1 for s in base.values() if s in SAFETY_STATES)

    def filled_places() -> int:
        if members_needed is None:
            return in_loop + len(acceptors)
        return in_loop + min(max(0, members_needed - in_loop), len(acceptors))

    #: what the table holds before each step (the one-by-one path compares with it)
    shown = dict(stored)
    filled_now = filled_places()
    steps: list[BatchStep] = []
    written: dict[UUID, tuple[BoardRow, RowFacts]] = {}
    overdue_due: dict[UUID, datetime] = {}
    place_freed = False
    for index, event in enumerate(events):
        member = event.member_id
        after_facts = apply(board.get(member), event)
        board[member] = after_facts
        old_base, new_base = base.get(member), base_status(after_facts)
        base[member] = new_base
        in_loop += (new_base in SAFETY_STATES) - (old_base in SAFETY_STATES)
        acceptors.pop(member, None)
        if new_base == "accepted":
            acceptors[member] = _acceptance_order(after_facts)
        filled_before, filled_now = filled_now, filled_places()
        if index == 0:
            # the stored statuses may be behind the facts: compare every row once
            after = statuses(board, members_needed)
        elif members_needed is not None and (old_base in FILLED or new_base in FILLED):
            places = max(0, members_needed - in_loop)
            ranked = sorted(acceptors, key=acceptors.__getitem__)
            after = {m: "accepted" if i < places else "standby" for i, m in enumerate(ranked)}
            after.setdefault(member, new_base)
        else:
            # neither before nor after in a place: the ranking of the others stands
            after = {member: new_base}
        # as `quota_change` reads them: the ranking before and after this event
        promoted = (m for m, s in after.items() if s == "accepted" and current.get(m) == "standby")
        call_up = tuple(sorted(promoted, key=str))
        place_freed = place_freed or any(
            s not in FILLED and current.get(m) == "accepted" for m, s in after.items()
        )
        current.update(after)
        moved = {m for m, s in after.items() if shown.get(m) != s}
        announced = [member, *sorted(moved - {member}, key=str)]
        rows_now = []
        for m in announced:
            shown[m] = current[m]
            row = to_row(board[m], current[m])
            rows_now.append(row)
            # a row changes only when announced: its last announcement is its final state
            written[m] = (row, board[m])
        steps.append(
            BatchStep(
                event.event_id,
                tuple(rows_now),
                None
                if members_needed is None
                else QuotaChange(
                    filled_before >= members_needed, filled_now >= members_needed, call_up
                ),
            )
        )
        due_at = overdue_due_at(after_facts, overdue_after)
        if due_at is not None:
            overdue_due[member] = min(due_at, overdue_due.get(member, due_at))
    return BatchPlan(
        tuple(steps), dict(sorted(written.items(), key=lambda i: str(i[0]))), overdue_due,
        place_freed,
    )  # fmt: skip
