"""Dispatch's safety-loop events, as the member hears them.

- `ResponderStatusSet`: the coordinator moved a member (or released everyone, one event
  a member). Recorded forward only (responder_states.py), so the answer page shows the
  right buttons; a release texts the member "released, reply SAFE when home".
- `RollCallStarted`: every listed member still out is asked "are you OK? reply OK", in
  their language; the `roll_call_members` row is what their OK later confirms.
- `ResponderOverdue`: released and not home safe in time: one reminder.

Each runs in the consumer's transaction with `processed_events`, and every message is an
`outbound_messages` row unique per alert, kind and roll call, written with the state it
follows from: a redelivered event, or two processes handling it, writes nothing twice, and
the sender sends each row once with its usual crash guarantees (docs/alerts.md). A member
alerts never alerted for the emergency (or an emergency it never saw) is skipped, never
an error; a roll call of a closed emergency asks no one. A release and its reminder still
go out once the emergency is closed: the loop ends when the member is home, not when the
emergency does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.alerts import messages
from services.alerts.alerting import notify_channel
from services.alerts.models import alerts, emergencies, outbound_messages, roll_call_members
from services.alerts.responder_states import loop_state, moves, step
from services.alerts.settings import Settings
from shared.consumer import Delivery
from shared.events.emergencies import ResponderOverdue, ResponderStatusSet, RollCallStarted
from shared.observability import get_logger

log = get_logger(__name__)

#: rows written per statement (a roll call lists at most 10,000 members)
_CHUNK = 2000


class SafetyLoop:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_status_set(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, ResponderStatusSet)
        session = delivery.db
        emergency = await _emergency(session, event.emergency_id)
        alert = await _alert_of(session, event.emergency_id, event.member_id, lock=True)
        if emergency is None or alert is None:
            log.info("status set for a member alerts never alerted: skipped")
            return
        if not moves(loop_state(alert.response), event.status):
            return  # never back: the member (or an earlier event) is further along
        await session.execute(
            update(alerts)
            .where(alerts.c.id == alert.id)
            .values(
                response=event.status,
                responded_at=func.greatest(alerts.c.responded_at, event.set_at),
            )
        )
        if event.status == "released" and alert.phone is not None:
            await self._text(session, emergency, [alert], "released")

    async def on_roll_call(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, RollCallStarted)
        session = delivery.db
        emergency = await _emergency(session, event.emergency_id)
        if emergency is None or emergency.status != "active":
            log.info("roll call of an emergency that is not active here: nobody asked")
            return
        listed = (
            await session.execute(
                select(alerts).where(
                    alerts.c.emergency_id == event.emergency_id,
                    alerts.c.member_id.in_(event.member_ids),
                )
            )
        ).all()
        # released or home already: not on scene any more, nobody to account for
        asked = [a for a in listed if step(a.response) < step("released")]
        new: set[UUID] = set()
        for start in range(0, len(asked), _CHUNK):
            part = asked[start : start + _CHUNK]
            written = await session.execute(
                pg_insert(roll_call_members)
                .values(
                    [
                        {
                            "roll_call_id": event.roll_call_id,
                            "alert_id": a.id,
                            "emergency_id": a.emergency_id,
                            "member_id": a.member_id,
                            "asked_at": event.started_at,
                        }
                        for a in part
                    ]
                )
                .on_conflict_do_nothing()
                .returning(roll_call_members.c.alert_id)
            )
            new.update(written.scalars())
        to_text = [a for a in asked if a.id in new and a.phone is not None]
        await self._text(session, emergency, to_text, "roll_call", roll_call_id=event.roll_call_id)
        log.info(
            "roll call",
            roll_call_id=str(event.roll_call_id),
            listed=len(event.member_ids),
            asked=len(asked),
            texted=len(to_text),
        )

    async def on_overdue(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, ResponderOverdue)
        session = delivery.db
        emergency = await _emergency(session, event.emergency_id)
        alert = await _alert_of(session, event.emergency_id, event.member_id, lock=True)
        if emergency is None or alert is None:
            log.info("overdue member alerts never alerted: skipped")
            return
        if loop_state(alert.response) == "home_safe" or alert.phone is None:
            return  # home already (their SAFE crossed the event), or erased
        await self._text(session, emergency, [alert], "overdue")

    async def _text(
        self,
        session: AsyncSession,
        emergency: Any,
        targets: Sequence[Any],
        kind: str,
        *,
        roll_call_id: UUID | None = None,
    ) -> None:
        """One message of `kind` per target (once per alert, kind and roll call: the
        unique index), and a wake-up for the senders at commit."""
        reachable = [t for t in targets if t.phone is not None]
        if not reachable:
            return
        for start in range(0, len(reachable), _CHUNK):
            rows = []
            for t in reachable[start : start + _CHUNK]:
                body = messages.follow_up_sms(
                    kind, language=t.language, title=emergency.title, drill=emergency.drill
                )
                rows.append(
                    {
                        "alert_id": t.id,
                        "kind": kind,
                        "phone": t.phone,
                        "body": body,
                        "segments": messages.segments(body),
                        "roll_call_id": roll_call_id,
                    }
                )
            await session.execute(
                pg_insert(outbound_messages).values(rows).on_conflict_do_nothing()
            )
        await session.execute(
            text("SELECT pg_notify(:c, '')"), {"c": notify_channel(self.settings.schema_name)}
        )


async def _emergency(session: AsyncSession, emergency_id: UUID) -> Any:
    return (
        await session.execute(select(emergencies).where(emergencies.c.id == emergency_id))
    ).one_or_none()


async def _alert_of(
    session: AsyncSession, emergency_id: UUID, member_id: UUID, *, lock: bool
) -> Any:
    query = select(alerts).where(
        alerts.c.emergency_id == emergency_id, alerts.c.member_id == member_id
    )
    if lock:
        # the same lock an answer of the member takes (answers.record_answer)
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()
