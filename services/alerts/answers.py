"""Recording a member's answer, whichever way it came (SMS or the web page).

An answer to a closed emergency is refused; an acceptance after the emergency was
staffed is recorded as `standby` (and published with `standby: true`). Each recorded
answer publishes `response.received` through the outbox in the same transaction.

Answers are ordered by the time they arrived: one older than the answer already recorded
(two SMS handled at once, whose transactions commit in the other order) changes nothing
and publishes nothing, so a late "YES" never overrides a later "NO".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.alerts.alerting import SOURCE
from services.alerts.models import alerts, emergencies
from shared.events.responses import ResponseReceived
from shared.outbox import add_event

Recorded = Literal["accepted", "standby", "declined", "arrived", "closed"]


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


async def record_answer(
    session: AsyncSession,
    target: OpenAlert,
    answer: Literal["accepted", "declined", "arrived"],
    *,
    eta_minutes: int | None,
    channel: Literal["sms", "web"],
    now: datetime | None = None,
) -> Recorded:
    if target.closed:
        return "closed"
    now = now or datetime.now(UTC)
    alert = target.alert
    standby = False
    recorded: Recorded = answer
    if answer == "accepted":
        already_in = alert.response in ("accepted", "arrived")
        if target.emergency.staffed and not already_in:
            standby, recorded = True, "standby"
    values: dict[str, Any] = {
        "response": recorded,
        "eta_minutes": eta_minutes if answer == "accepted" else None,
        "responded_at": now,
    }
    if answer != "declined":
        # told "not needed" and then said yes: on standby, to be stood down at the close
        values.update(stood_down_at=None, stood_down_reason=None)
    changed = (
        await session.execute(
            update(alerts)
            .where(
                alerts.c.id == alert.id,
                or_(alerts.c.responded_at.is_(None), alerts.c.responded_at <= now),
            )
            .values(**values)
            .returning(alerts.c.id)
        )
    ).scalar_one_or_none()
    if changed is None:
        # a later answer is recorded already: it stands
        current = (
            await session.execute(select(alerts.c.response).where(alerts.c.id == alert.id))
        ).scalar_one()
        return cast(Recorded, current)
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
