"""Qualification expiry reminders (issue 11): one SMS to a member whose qualification
expires within ALERTS_EXPIRY_REMINDER_DAYS (30), once per member, qualification and
expiry date (a renewed qualification, with a new date, gets its own reminder later).

Every alerts process looks every ALERTS_EXPIRY_CHECK_INTERVAL_S: it reads its member
index (the snapshots carry the qualifications), inserts a row per reminder due (the
unique row is the claim: a second process inserts nothing), then claims rows with `FOR
UPDATE SKIP LOCKED`, marks them `sending` under its sender's id, sends, and marks them
`sent`. A process that dies between claiming and marking leaves its rows `sending`; once
its sender heartbeat is older than ALERTS_SENDER_DEAD_AFTER_S another process claims
them again and sends (flagged `possible_duplicate`, as the alert sender does: the
provider may have taken the first). Numbers are never stored here: the reminder is
addressed from the index at sending time, and skipped for a number that sent STOP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import Row, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import messages
from services.alerts.index import TargetingIndex
from services.alerts.models import qualification_reminders, sms_opt_outs
from services.alerts.providers import ProviderError
from services.alerts.self_service import day_month, zone_of
from services.alerts.self_service import text as self_service_text
from services.alerts.sending import Sender
from services.alerts.settings import Settings
from shared.events.members import MemberChanged
from shared.observability import get_logger

log = get_logger(__name__)

REMINDERS = Counter(
    "muster_alerts_expiry_reminders_total",
    "Qualification expiry reminders, by outcome",
    ["outcome"],
)

#: provider attempts (one per round) before a reminder is given up as failed
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class DueReminder:
    member_id: UUID
    code: str
    expires_at: date


def due_reminders(
    members: Iterable[MemberChanged], *, now: datetime, within_days: int
) -> list[DueReminder]:
    """The reminders due now: every qualification of an active member with a number that
    expires from today to `within_days` ahead, today being the member's own. Pure."""
    due: list[DueReminder] = []
    for member in members:
        if member.status != "active" or not member.phone:
            continue
        today = now.astimezone(zone_of(member)).date()
        last = today + timedelta(days=within_days)
        for held in member.qualifications:
            if held.expires_at is not None and today <= held.expires_at <= last:
                due.append(DueReminder(member.member_id, held.code, held.expires_at))
    return due


def reminder_sms(member: MemberChanged, code: str, expires_at: date) -> str:
    return self_service_text(
        member.language,
        "expiry",
        name=messages.qualification_name(code, member.language),
        date=day_month(expires_at, zone_of(member)),
    )


_CLAIM = text(
    """
    WITH alive AS (
        SELECT instance_id FROM sender_heartbeats
        WHERE seen_at > now() - make_interval(secs => :dead)
    ), picked AS (
        SELECT r.id, r.status AS was FROM qualification_reminders r
        WHERE r.status = 'pending'
           OR (r.status = 'sending' AND r.claimed_by IS DISTINCT FROM :me
               AND r.claimed_by NOT IN (SELECT instance_id FROM alive))
        ORDER BY r.id
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    )
    UPDATE qualification_reminders q
    SET status = 'sending', claimed_by = :me, attempts = q.attempts + 1,
        possible_duplicate = q.possible_duplicate OR picked.was = 'sending'
    FROM picked
    WHERE q.id = picked.id
    RETURNING q.id, q.member_id, q.code, q.expires_at, q.attempts, picked.was
    """
)


class QualificationExpiry:
    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        index: TargetingIndex,
        sender: Sender,
    ) -> None:
        self.settings = settings
        self.db = db
        self.index = index
        self.sender = sender
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="qualification-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                if await self.index.is_ready():
                    await self.record_due(datetime.now(UTC))
                    await self.send_claimed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("qualification expiry round failed, retrying", error=repr(exc))
            await asyncio.sleep(self.settings.expiry_check_interval_s)

    async def record_due(self, now: datetime) -> int:
        """Insert a row for every reminder due that has none; the rows inserted."""
        inserted = 0
        async for batch in self.index.scan_members():
            due = due_reminders(batch, now=now, within_days=self.settings.expiry_reminder_days)
            if not due:
                continue
            async with self.db() as session, session.begin():
                result = await session.execute(
                    pg_insert(qualification_reminders)
                    .values(
                        [
                            {"member_id": d.member_id, "code": d.code, "expires_at": d.expires_at}
                            for d in due
                        ]
                    )
                    .on_conflict_do_nothing(constraint="qualification_reminder_once")
                    .returning(qualification_reminders.c.id)
                )
                inserted += len(result.all())
        return inserted

    async def send_claimed(self, batch: int = 100) -> int:
        """Claim and send reminders until none is left; the reminders sent."""
        sent = 0
        while True:
            async with self.db() as session, session.begin():
                claimed = (
                    await session.execute(
                        _CLAIM,
                        {
                            "dead": self.settings.sender_dead_after_s,
                            "me": self.sender.instance_id,
                            "n": batch,
                        },
                    )
                ).all()
            if not claimed:
                return sent
            for row in claimed:
                outcome = await self._send(row)
                REMINDERS.labels(outcome).inc()
                sent += outcome == "sent"

    async def _send(self, row: Row[Any]) -> str:
        reminder_id: int = row.id
        member_id: UUID = row.member_id
        code: str = row.code
        expires_at: date = row.expires_at
        attempts: int = row.attempts
        found = await self.index.members([str(member_id)])
        member = found[0] if found else None
        held = {q.code: q.expires_at for q in member.qualifications} if member is not None else {}
        # erased, suspended, number removed, or renewed since the row was written
        if (
            member is None
            or member.status != "active"
            or not member.phone
            or held.get(code) != expires_at
        ):
            await self._mark(reminder_id, "skipped")
            return "skipped"
        async with self.db() as session:
            opted_out = (
                await session.execute(
                    select(sms_opt_outs.c.phone).where(sms_opt_outs.c.phone == member.phone)
                )
            ).first() is not None
        if opted_out:
            await self._mark(reminder_id, "skipped")
            return "skipped"
        await self.sender.bucket.acquire()
        try:
            accepted = await self.sender.provider.send(
                member.phone, reminder_sms(member, code, expires_at)
            )
        except ProviderError as exc:
            final = exc.permanent or attempts >= MAX_ATTEMPTS
            await self._mark(reminder_id, "failed" if final else "pending", error=exc.reason)
            log.warning("expiry reminder not sent", final=final, error=exc.reason)
            return "failed" if final else "retry"
        await self._mark(reminder_id, "sent", sid=accepted.sid)
        log.info("expiry reminder sent", member_id=str(member_id), code=code)
        return "sent"

    async def _mark(
        self, reminder_id: int, status: str, *, sid: str | None = None, error: str | None = None
    ) -> None:
        values: dict[str, object] = {"status": status, "error": error}
        if status == "sent":
            values.update(provider_sid=sid, sent_at=datetime.now(UTC))
        async with self.db() as session, session.begin():
            # only under this process's claim: another that took it over owns it now
            await session.execute(
                qualification_reminders.update()
                .where(
                    qualification_reminders.c.id == reminder_id,
                    qualification_reminders.c.claimed_by == self.sender.instance_id,
                    qualification_reminders.c.status == "sending",
                )
                .values(**values)
            )
