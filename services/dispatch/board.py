"""The response board as a pure state machine: no I/O, fed events, gives rows.

Each row keeps the *facts* seen for one alerted member (when the alert was sent and in
which wave, delivered, failed, the latest answer by the member's own time, arrived,
stood down). Merging a fact is commutative, associative and idempotent (earliest time
wins for one-off facts, latest `responded_at` wins for answers), so any order or
duplication of the same events gives the same facts; the status is then a function of
the facts, with this precedence (its rank never goes down as facts accumulate):

    notified 0 < failed 1 < delivered 2 < stood_down (not needed) 2.5
             < accepted | standby | declined 3 < stood_down (closed) 4 < arrived 5

`stood_down` has two places: a member told "not needed" (the quota was met before they
answered) may still say yes and goes on standby, as the alerts service records it, so
that stand-down sits below an answer; the stand-down at the close (or a false-alarm
correction) is final and sits above one. `level` gives a row's place in this order.

A member who accepted and then declines is `declined` (same rank: the latest answer by
`responded_at` wins); an answer older than the current one is ignored; a late
`delivered` never undoes an answer.

Quota: the places (`members_needed`, less those already arrived) go to the members
whose current acceptance is oldest — ties broken by ETA, then distance, then member id —
and the other acceptors are `standby`. So "later acceptances are standby", and the
assignment depends only on the facts, never on the order they came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from shared.events.alerts import AlertDelivered, AlertFailed, AlertSent, AlertStoodDown
from shared.events.catalog import EventData
from shared.events.responses import ResponseReceived

Status = Literal[
    "notified", "failed", "delivered", "accepted", "standby", "declined", "stood_down", "arrived"
]
RANK: dict[str, int] = {
    "notified": 0,
    "failed": 1,
    "delivered": 2,
    "accepted": 3,
    "standby": 3,
    "declined": 3,
    "stood_down": 4,
    "arrived": 5,
}
STATUSES: tuple[str, ...] = tuple(RANK)


@dataclass(frozen=True, order=True)
class Sent:
    """The first alert (lowest wave, then earliest): where the member was reached from."""

    wave: int
    sent_at: datetime
    alert_id: str
    distance_m: int
    qualifications: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class Answer:
    """An accept or decline; compared by the member's own time, then event id."""

    responded_at: datetime
    event_id: str
    answer: str
    eta_minutes: int | None = None


@dataclass(frozen=True)
class RowFacts:
    member_id: UUID
    alert_id: str | None = None
    sent: Sent | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    answer: Answer | None = None
    first_accepted_at: datetime | None = None
    arrived_at: datetime | None = None
    stood_down_at: datetime | None = None
    stood_down_reason: str | None = None
    not_needed_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class BoardEvent:
    """One alert or response event, reduced to what the board uses."""

    kind: Literal["sent", "delivered", "failed", "stood_down", "response"]
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


@dataclass(frozen=True)
class BoardRow:
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
    extra: dict[str, Any] = field(default_factory=dict)


def from_event(data: EventData, event_id: str) -> BoardEvent | None:
    """The board's view of an alerts / responses event (None: not a board event)."""
    if isinstance(data, AlertSent):
        return BoardEvent(
            "sent", event_id, data.emergency_id, data.member_id, str(data.alert_id), data.sent_at,
            wave=data.wave, distance_m=data.distance_m,
            qualifications=tuple(sorted(set(data.qualifications))),
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
    if isinstance(data, ResponseReceived):
        return BoardEvent(
            "response", event_id, data.emergency_id, data.member_id, str(data.alert_id),
            data.responded_at, answer=data.answer, eta_minutes=data.eta_minutes,
        )  # fmt: skip
    return None


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def apply(facts: RowFacts | None, event: BoardEvent) -> RowFacts:
    """Merge one event into a row's facts (commutative, idempotent)."""
    row = facts or RowFacts(member_id=event.member_id)
    row = replace(row, updated_at=_latest(row.updated_at, event.at))
    if event.kind == "sent":
        sent = Sent(event.wave, event.at, event.alert_id, event.distance_m, event.qualifications)
        if row.sent is None or sent < row.sent:
            row = replace(row, sent=sent)
    elif event.kind == "delivered":
        row = replace(row, delivered_at=_earliest(row.delivered_at, event.at))
    elif event.kind == "failed":
        row = replace(row, failed_at=_earliest(row.failed_at, event.at))
    elif event.kind == "stood_down" and event.reason == "not_needed":
        row = replace(row, not_needed_at=_earliest(row.not_needed_at, event.at))
    elif event.kind == "stood_down":
        if row.stood_down_at is None or (event.at, event.reason or "") < (
            row.stood_down_at,
            row.stood_down_reason or "",
        ):
            row = replace(row, stood_down_at=event.at, stood_down_reason=event.reason)
    elif event.kind == "response":
        if event.answer == "arrived":
            row = replace(row, arrived_at=_earliest(row.arrived_at, event.at))
        else:
            answer = Answer(event.at, event.event_id, event.answer or "declined", event.eta_minutes)
            if row.answer is None or answer > row.answer:
                row = replace(row, answer=answer)
            if event.answer == "accepted":
                row = replace(row, first_accepted_at=_earliest(row.first_accepted_at, event.at))
    alert_ids = [a for a in (row.alert_id, event.alert_id) if a]
    alert_id = row.sent.alert_id if row.sent else min(alert_ids)
    return replace(row, alert_id=alert_id)


def base_status(facts: RowFacts) -> str:
    """The status before the quota splits acceptors into accepted and standby."""
    if facts.arrived_at is not None:
        return "arrived"
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
    arrived = sum(1 for s in result.values() if s == "arrived")
    places = max(0, members_needed - arrived)
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
    return sum(1 for s in current.values() if s in ("accepted", "arrived"))


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


# -- facts <-> JSON (the `facts` column) --------------------------------------------------


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
        },
        "delivered_at": _iso(facts.delivered_at),
        "failed_at": _iso(facts.failed_at),
        "answer": None
        if facts.answer is None
        else {
            "responded_at": _iso(facts.answer.responded_at),
            "event_id": facts.answer.event_id,
            "answer": facts.answer.answer,
            "eta_minutes": facts.answer.eta_minutes,
        },
        "first_accepted_at": _iso(facts.first_accepted_at),
        "arrived_at": _iso(facts.arrived_at),
        "stood_down_at": _iso(facts.stood_down_at),
        "stood_down_reason": facts.stood_down_reason,
        "not_needed_at": _iso(facts.not_needed_at),
        "updated_at": _iso(facts.updated_at),
    }


def facts_from_json(value: dict[str, Any]) -> RowFacts:
    sent = value.get("sent")
    answer = value.get("answer")
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
        ),
        delivered_at=_dt(value.get("delivered_at")),
        failed_at=_dt(value.get("failed_at")),
        answer=None
        if not answer
        else Answer(
            datetime.fromisoformat(answer["responded_at"]),
            answer["event_id"],
            answer["answer"],
            answer.get("eta_minutes"),
        ),
        first_accepted_at=_dt(value.get("first_accepted_at")),
        arrived_at=_dt(value.get("arrived_at")),
        stood_down_at=_dt(value.get("stood_down_at")),
        stood_down_reason=value.get("stood_down_reason"),
        not_needed_at=_dt(value.get("not_needed_at")),
        updated_at=_dt(value.get("updated_at")),
    )
