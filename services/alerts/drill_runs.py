"""Running drills (issue 12): firing occurrences, sending the test SMS, taking the OKs,
publishing the readiness figures. The decisions are in drills.py and readiness.py.

Every alerts process runs the loop every ALERTS_DRILL_CHECK_INTERVAL_S (and at once when
a drill is scheduled for now):

- a drill due is taken with `FOR UPDATE SKIP LOCKED`, and its occurrence is a row unique
  per drill and time: with two processes, one fires it and the other finds nothing (and
  would insert nothing if it did). The occurrence, its message rows (one per member,
  unique) and the drill's next time commit together.
- message rows are claimed with `FOR UPDATE SKIP LOCKED` once their `send_after` (the end
  of quiet hours) has passed, marked `sending` under the sender's id, sent through the
  SMS provider and rate limit alert SMS use, and marked `sent`. A process that dies while
  `sending` leaves rows another claims once its sender heartbeat is stale
  (`possible_duplicate`), as qualification reminders do. Numbers are read from the index
  at sending time and never stored with the drill.
- one process at a time (a transaction-level advisory lock) publishes the readiness
  figures every ALERTS_READINESS_INTERVAL_S, through the outbox.

The clock is `DrillClock`: the real one, plus the seconds in ALERTS_DRILL_CLOCK_OFFSET_FILE
when tests set it, so a test can move a drill's month ahead without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import Row, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import messages
from services.alerts.alerting import SOURCE
from services.alerts.drills import (
    ANSWER_WINDOW,
    Asked,
    firing,
    recipients,
)
from services.alerts.index import TargetingIndex
from services.alerts.models import (
    alerts,
    drill_messages,
    drill_occurrences,
    drills,
    emergencies,
    readiness_publications,
    sms_opt_outs,
)
from services.alerts.providers import ProviderError
from services.alerts.readiness import Readiness, for_authorities, last_drill, readiness
from services.alerts.sending import Sender
from services.alerts.settings import Settings
from shared.events.members import MemberChanged
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)

DRILL_SMS = Counter("muster_alerts_drill_sms_total", "Drill test SMS, by outcome", ["outcome"])
DRILLS_FIRED = Counter("muster_alerts_drills_fired_total", "Drill occurrences fired")

#: provider attempts (one per round) before a drill SMS is given up as failed
MAX_ATTEMPTS = 5
#: the advisory lock of the readiness publication (one publisher at a time)
_READINESS_LOCK = zlib.crc32(b"muster.alerts.readiness")

_CLAIM = text(
    """
    WITH alive AS (
        SELECT instance_id FROM sender_heartbeats
        WHERE seen_at > now() - make_interval(secs => :dead)
    ), picked AS (
        SELECT m.id, m.status AS was FROM drill_messages m
        WHERE m.send_after <= :now
          AND (m.status = 'pending'
               OR (m.status = 'sending' AND m.claimed_by IS DISTINCT FROM :me
                   AND m.claimed_by NOT IN (SELECT instance_id FROM alive)))
        ORDER BY m.send_after, m.id
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    )
    UPDATE drill_messages d
    SET status = 'sending', claimed_by = :me, attempts = d.attempts + 1,
        possible_duplicate = d.possible_duplicate OR picked.was = 'sending'
    FROM picked
    WHERE d.id = picked.id
    RETURNING d.id, d.member_id, d.token, d.attempts
    """
)


class DrillClock:
    """Now, for drills: the real clock plus the test offset, if a file sets one."""

    def __init__(self, offset_file: str = "") -> None:
        self._file = Path(offset_file) if offset_file else None
        self._last = timedelta(0)

    def offset(self) -> timedelta:
        if self._file is None:
            return timedelta(0)
        try:
            text = self._file.read_text().strip()
            if text:
                self._last = timedelta(seconds=float(text))
        except (OSError, ValueError):
            pass  # caught mid-write (or gone): the offset read last still holds
        return self._last

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()


def answer_link(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/d/{token}"


async def on_active_emergency(
    session: AsyncSession, among: Sequence[UUID] | None = None
) -> set[UUID]:
    """Members with an alert of an active emergency they have not declined, been stood
    down from, or had cancelled: out, on their way, or yet to answer. `among`: only
    these members are looked at (a drill's caller asks about a few)."""
    query = (
        select(alerts.c.member_id)
        .join(emergencies, emergencies.c.id == alerts.c.emergency_id)
        .where(
            emergencies.c.status == "active",
            alerts.c.stood_down_at.is_(None),
            alerts.c.status != "cancelled",
            alerts.c.response.is_distinct_from("declined"),
        )
    )
    if among is not None:
        query = query.where(alerts.c.member_id.in_(list(among)))
    return set((await session.execute(query)).scalars())


class Drills:
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
        self.clock = DrillClock(settings.drill_clock_offset_file)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="drills")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self.index.is_ready():
                    await self.fire_due()
                    await self.send_due()
                    await self.publish_readiness()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("drill round failed, retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.drill_check_interval_s)

    # --- firing ------------------------------------------------------------------------

    async def _members_of(self, sections: Sequence[str]) -> list[MemberChanged]:
        wanted = set(sections)
        found: list[MemberChanged] = []
        async for batch in self.index.scan_members():
            found.extend(m for m in batch if m.section in wanted)
        return found

    async def fire_due(self) -> int:
        """Fire every occurrence due now, each once; the occurrences fired."""
        fired = 0
        while True:
            now = self.clock.now()
            async with self.db() as session, session.begin():
                drill = (
                    await session.execute(
                        select(drills)
                        .where(drills.c.status == "scheduled", drills.c.next_at <= now)
                        .order_by(drills.c.next_at)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if drill is None:
                    return fired
                due = firing(
                    starts_at=drill.starts_at,
                    recurrence=drill.recurrence,
                    timezone=drill.timezone,
                    next_at=drill.next_at,
                    now=now,
                )
                if due is not None and await self._fire(session, drill, due.occurs_at, now):
                    fired += 1
                await session.execute(
                    update(drills)
                    .where(drills.c.id == drill.id)
                    .values(
                        next_at=due.next_at if due else None,
                        status="scheduled" if due and due.next_at else "done",
                    )
                )

    async def _fire(
        self, session: AsyncSession, drill: Row[Any], occurs_at: datetime, now: datetime
    ) -> bool:
        occurrence_id = uuid.uuid4()
        inserted = (
            await session.execute(
                pg_insert(drill_occurrences)
                .values(
                    id=occurrence_id,
                    drill_id=drill.id,
                    occurs_at=occurs_at,
                    fired_at=now,
                    sections=list(drill.sections),
                    # frozen: the occurrence's calls follow the drill as it was when fired
                    call_unanswered_after_min=drill.call_unanswered_after_min,
                )
                .on_conflict_do_nothing(constraint="drill_occurrence_once")
                .returning(drill_occurrences.c.id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            return False
        members = await self._members_of(drill.sections)
        phones = [m.phone for m in members if m.phone]
        opted_out = (
            set(
                (
                    await session.execute(
                        select(sms_opt_outs.c.phone).where(sms_opt_outs.c.phone.in_(phones))
                    )
                ).scalars()
            )
            if phones
            else set()
        )
        asking = recipients(
            members,
            set(drill.sections),
            now,
            on_emergency=await on_active_emergency(session),
            opted_out_phones=opted_out,
        )
        rows = [
            {
                "occurrence_id": occurrence_id,
                "member_id": r.member.member_id,
                "section": r.member.section,
                "qualifications": list(r.qualifications),
                "language": messages.language_of(r.member.language),
                "token": secrets.token_urlsafe(16),
                "send_after": r.send_after,
                "held": r.held,
            }
            for r in asking.recipients
        ]
        for start in range(0, len(rows), 1000):
            await session.execute(
                pg_insert(drill_messages)
                .values(rows[start : start + 1000])
                .on_conflict_do_nothing(constraint="drill_message_once")
            )
        await session.execute(
            update(drill_occurrences)
            .where(drill_occurrences.c.id == occurrence_id)
            .values(
                asked=len(rows),
                skipped_on_emergency=asking.skipped_on_emergency,
                skipped_opted_out=asking.skipped_opted_out,
            )
        )
        DRILLS_FIRED.inc()
        log.info(
            "drill fired",
            drill_id=str(drill.id),
            occurrence_id=str(occurrence_id),
            asked=len(rows),
            held=sum(1 for r in asking.recipients if r.held),
            skipped_on_emergency=asking.skipped_on_emergency,
            skipped_opted_out=asking.skipped_opted_out,
        )
        return True

    # --- sending -----------------------------------------------------------------------

    async def send_due(self, batch: int = 100) -> int:
        """Claim and send the drill SMS whose time has come; the SMS sent."""
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
                            "now": self.clock.now(),
                        },
                    )
                ).all()
            if not claimed:
                return sent
            # bounded: each send holds a database connection for its marks, and the
            # pool (shared with the consumers and the alert sender) is small
            limit = asyncio.Semaphore(min(self.settings.sender_concurrency, 8))
            outcomes = await asyncio.gather(*(self._send_within(limit, row) for row in claimed))
            for outcome in outcomes:
                DRILL_SMS.labels(outcome).inc()
            sent += sum(1 for o in outcomes if o == "sent")

    async def _send_within(self, limit: asyncio.Semaphore, row: Row[Any]) -> str:
        async with limit:
            return await self._send(row)

    async def _send(self, row: Row[Any]) -> str:
        found = await self.index.members([str(row.member_id)])
        member = found[0] if found else None
        if member is None or member.status != "active" or not member.phone:
            await self._mark(row.id, "skipped")
            return "skipped"
        async with self.db() as session:
            opted_out = (
                await session.execute(
                    select(sms_opt_outs.c.phone).where(sms_opt_outs.c.phone == member.phone)
                )
            ).first() is not None
        if opted_out:
            await self._mark(row.id, "skipped")
            return "skipped"
        body = messages.text(
            member.language, "drill_test", link=answer_link(self.settings, row.token)
        )
        await self.sender.bucket.acquire()
        try:
            accepted = await self.sender.provider.send(member.phone, body)
        except ProviderError as exc:
            final = exc.permanent or row.attempts >= MAX_ATTEMPTS
            await self._mark(row.id, "failed" if final else "pending", error=exc.reason)
            log.warning("drill sms not sent", final=final, error=exc.reason)
            return "failed" if final else "retry"
        await self._mark(row.id, "sent", sid=accepted.sid)
        return "sent"

    async def _mark(
        self, message_id: int, status: str, *, sid: str | None = None, error: str | None = None
    ) -> None:
        values: dict[str, object] = {"status": status, "error": error}
        if status == "sent":
            values.update(provider_sid=sid, sent_at=self.clock.now())
        async with self.db() as session, session.begin():
            # only under this process's claim: another that took it over owns it now
            await session.execute(
                update(drill_messages)
                .where(
                    drill_messages.c.id == message_id,
                    drill_messages.c.claimed_by == self.sender.instance_id,
                    drill_messages.c.status == "sending",
                )
                .values(**values)
            )

    # --- answers -----------------------------------------------------------------------

    async def answer(
        self, session: AsyncSession, *, member_id: UUID | None = None, token: str | None = None,
        channel: str,
    ) -> str | None:  # fmt: skip
        """Record an OK on the member's latest open drill SMS (or the one of `token`); the
        member's language when one was recorded or already answered, else None."""
        now = self.clock.now()
        condition = (
            drill_messages.c.token == token
            if token is not None
            else and_(
                drill_messages.c.member_id == member_id,
                drill_messages.c.sent_at >= now - ANSWER_WINDOW,
            )
        )
        row = (
            await session.execute(
                select(drill_messages.c.id, drill_messages.c.language, drill_messages.c.answered_at)
                .where(condition, drill_messages.c.status == "sent")
                # an unanswered one first, the newest
                .order_by(
                    drill_messages.c.answered_at.is_not(None), drill_messages.c.sent_at.desc()
                )
                .limit(1)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        if row.answered_at is None:
            await session.execute(
                update(drill_messages)
                .where(drill_messages.c.id == row.id)
                .values(answered_at=now, answer_channel=channel)
            )
            log.info("drill answered", channel=channel)
        language: str = row.language
        return language

    async def sms_ok(self, session: AsyncSession, phone: str) -> str | None:
        """inbound.py's hook: an OK that answered no roll call answers the member's open
        drill SMS. The text to answer with, or None when they have none open."""
        member = await self.index.member_by_phone(phone)
        if member is None:
            return None
        language = await self.answer(session, member_id=member.member_id, channel="sms")
        return messages.text(language, "drill_ok") if language is not None else None

    # --- readiness ---------------------------------------------------------------------

    async def section_readiness(self, sections: Sequence[str]) -> dict[str, Readiness]:
        now = self.clock.now()
        members = await self._members_of(sections)
        out: dict[str, Readiness] = {}
        async with self.db() as session:
            for section in sections:
                out[section] = readiness(
                    section, members, now, await self._last_drill(session, section)
                )
        return out

    async def _last_drill(self, session: AsyncSession, section: str) -> Any:
        occurrence = (
            await session.execute(
                select(drill_occurrences.c.id, drill_occurrences.c.occurs_at)
                .where(drill_occurrences.c.sections.any(section))
                .order_by(drill_occurrences.c.occurs_at.desc())
                .limit(1)
            )
        ).first()
        if occurrence is None:
            return None
        rows = (
            await session.execute(
                select(
                    drill_messages.c.status,
                    drill_messages.c.sent_at,
                    drill_messages.c.answered_at,
                ).where(
                    drill_messages.c.occurrence_id == occurrence.id,
                    drill_messages.c.section == section,
                )
            )
        ).all()
        asked = [Asked(section, (), r.status, r.sent_at, r.answered_at) for r in rows]
        return last_drill(occurrence.occurs_at, asked)

    async def publish_readiness(self) -> bool:
        """Publish every section's figure (authorities' view) when the last publication
        is older than ALERTS_READINESS_INTERVAL_S; one process at a time."""
        now = self.clock.now()
        async with self.db() as session, session.begin():
            locked = (
                await session.execute(select(func.pg_try_advisory_xact_lock(_READINESS_LOCK)))
            ).scalar_one()
            if not locked:
                return False
            last = (
                await session.execute(select(readiness_publications.c.published_at))
            ).scalar_one_or_none()
            if last is not None and now - last < timedelta(
                seconds=self.settings.readiness_interval_s
            ):
                return False
            sections: set[str] = set()
            async for batch in self.index.scan_members():
                sections.update(m.section for m in batch)
            figures = await self.section_readiness(sorted(sections))
            for figure in figures.values():
                await add_event(
                    session,
                    for_authorities(figure, self.settings.readiness_min_count),
                    source=SOURCE,
                    correlationid=figure.section,
                )
            await session.execute(
                pg_insert(readiness_publications)
                .values(id=1, published_at=now)
                .on_conflict_do_update(index_elements=["id"], set_={"published_at": now})
            )
        log.info("readiness published", sections=len(figures))
        return True


async def apply_drill_status(
    session: AsyncSession, sid: str, state: str, error_code: object
) -> bool:
    """A delivery callback for a drill SMS: `failed` / `undelivered` marks it failed (the
    coordinator's list of numbers to fix). False when `sid` is no drill SMS."""
    if not sid:
        return False
    found = (
        await session.execute(
            select(drill_messages.c.id).where(drill_messages.c.provider_sid == sid)
        )
    ).scalar_one_or_none()
    if found is None:
        return False
    if state in ("failed", "undelivered"):
        await session.execute(
            update(drill_messages)
            .where(drill_messages.c.id == found, drill_messages.c.answered_at.is_(None))
            .values(status="failed", error=f"{state} {error_code or ''}".strip())
        )
    return True
