"""Recording a member's answer, whichever way it came (SMS or the web page).

An answer to a closed emergency is refused; an acceptance after the emergency was
staffed is recorded as `standby` (and published with `standby: true`). Each recorded
answer publishes `response.received` through the outbox in the same transaction.

Answers are ordered by the time they arrived: one older than the answer already recorded
(two SMS handled at once, whose transactions commit in the other order) changes nothing
and publishes nothing, so a late "YES" never overrides a later "NO".

After accepting, the member reports the safety loop (en_route → on_scene → home_safe;
released is the coordinator's): forward only, by `responder_states.moves`, under the
alert row's lock. A member still out when the emergency closes may still say they are
home safe (the loop outlives the emergency); nothing else is taken once it is closed.
A roll call's OK confirms the member's newest open roll call (`RollCallConfirmed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.alerts.alerting import SOURCE
from services.alerts.models import alerts, emergencies, roll_call_members
from services.alerts.responder_states import MemberAnswer, in_the_field, loop_state, moves
from shared.events.responses import Channel, ResponseReceived, RollCallConfirmed
from shared.outbox import add_event

#: what the member's state is after the answer: the answer itself (or `standby`) when it
#: was taken; else their state as it stands (`none`: no answer yet), or `closed`
Recorded = Literal[
    "accepted",
    "standby",
    "declined",
    "en_route",
    "on_scene",
    "released",
    "home_safe",
    "none",
    "closed",
]


@dataclass(frozen=True)
class OpenAlert:
    alert: Any
    emergency: Any

    @property
    def closed(self) -> bool:
        return bool(self.emergency.status != "active")


async def alert_by_token(session: AsyncSession, token: str) -> OpenAlert | None:
    row = (
        await session.execute(
            select(alerts, emergencies.c.status.label("e_status"))
            .join(emergencies, emergencies.c.id == alerts.c.emergency_id)
            .where(alerts.c.token == token)
        )
    ).one_or_none()
    if row is None:
        return None
    emergency = (
        await session.execute(select(emergencies).where(emergencies.c.id == row.emergency_id))
    ).one()
    return OpenAlert(row, emergency)


async def alerts_of_phone(session: AsyncSession, phone: str) -> list[OpenAlert]:
    """The number's alerts, newest first (open and closed emergencies alike)."""
    rows = (
        await session.execute(
            select(alerts)
            .where(alerts.c.phone == phone)
            .order_by(alerts.c.created_at.desc())
            .limit(50)
        )
    ).all()
    if not rows:
        return []
    ids = {r.emergency_id for r in rows}
    found = {
        e.id: e
        for e in (await session.execute(select(emergencies).where(emergencies.c.id.in_(ids)))).all()
    }
    return [OpenAlert(r, found[r.emergency_id]) for r in rows]


def taken(answer: MemberAnswer, recorded: Recorded) -> bool:
    """Whether `record_answer` took the answer (an acceptance may become standby)."""
    return recorded == answer or (answer == "accepted" and recorded == "standby")


def accepts_after_close(target: OpenAlert, answer: str) -> bool:
    """The emergency is closed but the member is still out: their home-safe counts."""
    return target.closed and answer == "home_safe" and in_the_field(target.alert.response)


async def record_answer(
    session: AsyncSession,
    target: OpenAlert,
    answer: MemberAnswer,
    *,
    eta_minutes: int | None,
    channel: Channel,
    now: datetime | None = None,
) -> Recorded:
    if target.closed and not accepts_after_close(target, answer):
        return "closed"
    now = now or datetime.now(UTC)
    # the row as it is now, locked: two answers of one member are decided one at a time
    alert = (
        await session.execute(
            select(alerts).where(alerts.c.id == target.alert.id).with_for_update()
        )
    ).one()
    current = loop_state(alert.response)
    if not moves(current, answer):
        return _as_recorded(current)
    if answer in ("accepted", "declined") and alert.responded_at and alert.responded_at > now:
        # a later answer is recorded already: it stands
        return _as_recorded(current)
    standby = False
    recorded: Recorded = answer
    if answer == "accepted" and target.emergency.staffed and current != "accepted":
        standby, recorded = True, "standby"
    values: dict[str, Any] = {
        "response": recorded,
        "eta_minutes": eta_minutes if answer == "accepted" else alert.eta_minutes,
        "responded_at": now,
    }
    if answer == "declined":
        values["eta_minutes"] = None
    elif not target.closed:
        # told "not needed" and then said yes (or turned up): on standby or on the loop,
        # to be stood down at the close
        values.update(stood_down_at=None, stood_down_reason=None)
    await session.execute(update(alerts).where(alerts.c.id == alert.id).values(**values))
    await add_event(
        session,
        ResponseReceived(
            emergency_id=alert.emergency_id,
            member_id=alert.member_id,
            alert_id=alert.id,
            answer=answer,
            eta_minutes=eta_minutes if answer == "accepted" else None,
            channel=channel,
            responded_at=now,
            standby=standby,
        ),
        source=SOURCE,
        correlationid=str(alert.emergency_id),
    )
    return recorded


def _as_recorded(state: str | None) -> Recorded:
    return cast(Recorded, state) if state in get_args(Recorded) else "none"


async def open_roll_call(session: AsyncSession, target: OpenAlert) -> UUID | None:
    """The member's newest roll call not yet answered, while the emergency is active."""
    if target.closed:
        return None
    found: UUID | None = (
        await session.execute(
            select(roll_call_members.c.roll_call_id)
            .where(
                roll_call_members.c.alert_id == target.alert.id,
                roll_call_members.c.confirmed_at.is_(None),
            )
            .order_by(roll_call_members.c.asked_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return found


async def confirm_roll_call(
    session: AsyncSession, target: OpenAlert, *, channel: Channel, now: datetime | None = None
) -> UUID | None:
    """The member's OK to their open roll call (`RollCallConfirmed`); None when none is
    open (already answered, or never asked)."""
    now = now or datetime.now(UTC)
    roll_call_id = await open_roll_call(session, target)
    if roll_call_id is None:
        return None
    confirmed = (
        await session.execute(
            update(roll_call_members)
            .where(
                roll_call_members.c.roll_call_id == roll_call_id,
                roll_call_members.c.alert_id == target.alert.id,
                roll_call_members.c.confirmed_at.is_(None),
            )
            .values(confirmed_at=now, channel=channel)
            .returning(roll_call_members.c.roll_call_id)
        )
    ).scalar_one_or_none()
    if confirmed is None:
        return None  # a second OK that raced this one confirmed it
    alert = target.alert
    await add_event(
        session,
        RollCallConfirmed(
            emergency_id=alert.emergency_id,
            member_id=alert.member_id,
            alert_id=alert.id,
            roll_call_id=roll_call_id,
            channel=channel,
            confirmed_at=now,
        ),
        source=SOURCE,
        correlationid=str(alert.emergency_id),
    )
    return roll_call_id
