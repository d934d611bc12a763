"""From emergency events to alert records: select, record, hand over to the sender.

The handlers run inside the consumer's transaction (with `processed_events`), so each
event is applied once. They never call the provider: they write the `alerts` rows and
the `outbound_messages` the sender will send, and `pg_notify` the senders, which hear
it when the transaction commits. A Kafka poll never waits for an SMS.

A wave is written in chunks, nearest first. The nearest page (ALERTS_RECORD_FIRST_CHUNK
members) is selected on its own, recorded and committed in its own transaction, and this
process's sender is woken in-process (`on_recorded`) before the rest of the wave is even
selected. The rest follows in chunks of ALERTS_RECORD_CHUNK, each but the last committed
on its own; the last chunk, the `alert_waves` row that marks the wave complete and
`processed_events` commit together. A wave no larger than the first page is one
transaction (the event's).
Each member's row is unique per emergency (ON CONFLICT DO NOTHING), so a crash between
chunks redelivers the event and the recording resumes: the selection leaves out the
members already alerted and asks only for the wave's count minus its rows already
written, which (nearest first) are the same remaining members as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, and_, any_, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import erasure, messages
from services.alerts.index import SearchArea, TargetingIndex, search_area
from services.alerts.models import (
    alert_waves,
    alerts,
    emergencies,
    outbound_messages,
)
from services.alerts.responder_states import in_the_field
from services.alerts.selection import Chosen, Target, first_wave_count, target_for
from services.alerts.selection import select as select_members
from services.alerts.settings import Settings
from shared.consumer import Delivery
from shared.events.alerts import AlertStoodDown
from shared.events.catalog import EventData
from shared.events.emergencies import (
    Area,
    EmergencyClosed,
    EmergencyDeclared,
    EmergencyEscalated,
    EmergencyUpdated,
)
from shared.events.members import MemberChanged
from shared.observability import get_logger
from shared.outbox import add_events
from shared.reply_codes import derived_reply_code, is_reply_code

log = get_logger(__name__)

SOURCE = "muster.alerts"
#: codes tried for one emergency (thousands exist, a few dozen are active at once)
_CODE_ATTEMPTS = 64
_CHUNK = 5000
_INSERT_ALERTS = text(
    """
    INSERT INTO alerts (id, emergency_id, member_id, wave, token, phone, language,
                        distance_m, qualifications, section, created_at)
    SELECT u.id, :emergency_id, u.member_id, :wave, u.token, u.phone, u.language,
           u.distance_m, u.quals::jsonb, u.section, :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:members AS uuid[]), CAST(:tokens AS text[]),
                CAST(:phones AS text[]), CAST(:languages AS text[]),
                CAST(:distances AS integer[]), CAST(:quals AS text[]),
                CAST(:sections AS text[]))
         WITH ORDINALITY AS u(id, member_id, token, phone, language, distance_m, quals,
                              section, n)
    ORDER BY u.n
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
_INSERT_ALERT_SMS = text(
    """
    INSERT INTO outbound_messages (alert_id, kind, phone, body, segments, rank)
    SELECT u.alert_id, 'alert', u.phone, u.body, u.segments, :offset + u.n
    FROM unnest(CAST(:alert_ids AS uuid[]), CAST(:phones AS text[]), CAST(:bodies AS text[]),
                CAST(:segments AS integer[]))
         WITH ORDINALITY AS u(alert_id, phone, body, segments, n)
    ORDER BY u.n
    """
)
_MARK_WAVE_COMPLETE = text(
    """
    INSERT INTO alert_waves (emergency_id, wave, recorded)
    SELECT :emergency_id, :wave, count(*) FROM alerts
    WHERE emergency_id = :emergency_id AND wave = :wave
    ON CONFLICT DO NOTHING
    """
)
#: answers that hold a member for an emergency (not free for another one): coming, or on
#: the safety loop until released (`arrived` is on_scene's older name)
COMMITTED_RESPONSES = ("accepted", "standby", "arrived", "en_route", "on_scene")
#: the safety loop's messages to members still out: a close does not cancel them
SAFETY_LOOP_MESSAGES = ("released", "overdue")


def notify_channel(schema: str) -> str:
    return f"{schema}_outbound"


def reply_code_for(emergency_id: UUID, proposed: str | None) -> str:
    """Dispatch's code if it has the reply-code shape (`shared.reply_codes`), else one
    derived from the emergency id."""
    if proposed and is_reply_code(proposed.strip().upper()):
        return proposed.strip().upper()
    return derived_reply_code(emergency_id.bytes)


def new_token() -> str:
    """An unguessable answer token (128 bits)."""
    return secrets.token_urlsafe(16)


def record_chunks(total: int, first: int, rest: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the chunks a wave of `total` is written in: `first` rows, then
    `rest` rows each (the last one shorter)."""
    start, size = 0, first
    while start < total:
        end = min(start + size, total)
        yield start, end
        start, size = end, rest


class Alerting:
    def __init__(
        self,
        settings: Settings,
        index: TargetingIndex,
        sessionmaker: async_sessionmaker[AsyncSession],
        on_recorded: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        #: for the chunks of a wave committed before the event's own transaction
        self.db = sessionmaker
        #: called once a chunk committed on its own: wakes this process's sender at once,
        #: without the round trip of its NOTIFY through PostgreSQL
        self.on_recorded = on_recorded

    # --- declared / escalated: select and record ---------------------------------------

    async def on_declared(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, EmergencyDeclared)
        session = delivery.db
        if event.status != "active":
            log.warning("declared emergency not active, nobody alerted", status=event.status)
            return
        await self.index.ensure_ready()
        await self._keep_emergency(event)
        row = (
            await session.execute(select(emergencies).where(emergencies.c.id == event.emergency_id))
        ).one()
        if row.status != "active":
            return
        if await self._wave_complete(session, event.emergency_id, 1):
            log.info("first wave already recorded", emergency_id=str(event.emergency_id))
            return
        target = target_for(
            section=event.section,
            assisting_sections=event.assisting_sections,
            area=event.area,
            required_qualifications=event.required_qualifications,
            severity=event.severity,
            count=first_wave_count(event.members_needed, self.settings.over_alert_factor),
        )
        await self._alert_wave(
            session, row, target, wave=1, search_radius=None, causation=delivery.envelope.id
        )

    async def _keep_emergency(self, event: EmergencyDeclared) -> None:
        """Store the emergency (once), committed at once: the wave's early chunks, in
        their own transactions, refer to it. Its reply code is dispatch's unless another
        active emergency here has it (dispatch freed it on a close this service has not
        applied yet, or it is not a code): a member alerted for both could not say which
        they answer, so the code is unique among active emergencies (a unique index)."""
        for attempt in range(_CODE_ATTEMPTS):
            code = (
                reply_code_for(event.emergency_id, event.reply_code)
                if attempt == 0
                else derived_reply_code(event.emergency_id.bytes + attempt.to_bytes(2, "big"))
            )
            try:
                async with self.db() as own, own.begin():
                    await own.execute(
                        pg_insert(emergencies)
                        .values(
                            id=event.emergency_id,
                            section=event.section,
                            title=event.title,
                            drill=event.drill,
                            severity=event.severity,
                            members_needed=event.members_needed,
                            reply_code=code,
                            facts=event.model_dump(mode="json"),
                            declared_at=event.declared_at,
                        )
                        .on_conflict_do_nothing(index_elements=[emergencies.c.id])
                    )
                return
            except IntegrityError as exc:
                if "emergencies_active_reply_code" not in str(exc):
                    raise
                log.info(
                    "reply code in use by another active emergency, another one taken",
                    emergency_id=str(event.emergency_id),
                )
        raise RuntimeError(f"no free reply code after {_CODE_ATTEMPTS} attempts")

    async def on_escalated(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, EmergencyEscalated)
        session = delivery.db
        await self.index.ensure_ready()
        row = (
            await session.execute(select(emergencies).where(emergencies.c.id == event.emergency_id))
        ).one_or_none()
        if row is None or row.status != "active":
            log.info(
                "escalation of an unknown or closed emergency ignored",
                emergency_id=str(event.emergency_id),
            )
            return
        if await self._wave_complete(session, event.emergency_id, event.wave):
            return
        facts = EmergencyDeclared.model_validate(row.facts)
        target = target_for(
            section=facts.section,
            assisting_sections=facts.assisting_sections,
            area=facts.area,
            required_qualifications=facts.required_qualifications,
            severity=facts.severity,
            count=event.count,
            radius_m=event.radius_m,
        )
        await self._alert_wave(
            session,
            row,
            target,
            wave=event.wave,
            search_radius=event.radius_m,
            causation=delivery.envelope.id,
        )

    async def _wave_complete(self, session: AsyncSession, emergency_id: UUID, wave: int) -> bool:
        """The wave's recording finished (another event with the same wave is ignored);
        an interrupted one (alert rows, no mark) is resumed."""
        found = await session.execute(
            select(alert_waves.c.wave).where(
                alert_waves.c.emergency_id == emergency_id, alert_waves.c.wave == wave
            )
        )
        return found.first() is not None

    async def _alert_wave(
        self,
        session: AsyncSession,
        emergency: Any,
        target: Target,
        *,
        wave: int,
        search_radius: float | None,
        causation: str,
    ) -> None:
        now = datetime.now(UTC)
        started = time.perf_counter()
        area = Area.model_validate(emergency.facts["area"])
        alerted = (
            await session.execute(
                select(alerts.c.member_id, alerts.c.wave).where(
                    alerts.c.emergency_id == emergency.id
                )
            )
        ).all()
        already = {a.member_id for a in alerted}
        # rows of this wave written before an interruption count towards its size
        in_wave = sum(1 for a in alerted if a.wave == wave)
        committed = await committed_elsewhere(session, emergency.id)
        opted_out = await erasure.opt_outs(session, self.settings)
        where = search_area(area, search_radius)
        remaining = max(target.count - in_wave, 0)

        async def nearest(count: int, excluded: Collection[UUID]) -> tuple[list[Chosen], int]:
            if count <= 0:
                return [], 0
            return await choose(
                self.index,
                dataclasses.replace(target, count=count),
                where,
                now,
                live_max_age_s=self.settings.live_position_max_age_s,
                already_alerted=excluded,
                committed=committed,
                opted_out_phones=opted_out,
            )

        # the nearest page first: selected, recorded and committed on its own, and the
        # sender woken, before the rest of the wave is even selected. Selection is
        # nearest first (a prefix of the whole wave's), so the rest is the next members.
        first_count = min(remaining, self.settings.record_first_chunk)
        first, considered = await nearest(first_count, already)
        rest: list[Chosen] = []
        if remaining <= first_count:
            # the whole wave is its first page: one transaction with the event's, whose
            # commit NOTIFYs the sender. Measured (docs/performance.md): committing it on
            # its own first and waking the sender in-process was not faster for these
            # small waves on the loaded 2-core machine (a second commit, and the sender
            # then competes with the handler's tail for the one thread).
            rest, first = first, []
        first_ms: float | None = None
        recorded = 0
        if first:
            written = await self._record_own(emergency, first, wave, in_wave)
            if written is None:
                return
            recorded += written
            first_ms = (time.perf_counter() - started) * 1000
            await self._pause_between_chunks()
        if len(first) == first_count and remaining > first_count:
            rest, more = await nearest(
                remaining - first_count, {*already, *(c.member_id for c in first)}
            )
            considered += more
        selected_s = time.perf_counter() - started
        offset = in_wave + len(first)
        chunks = list(
            record_chunks(len(rest), self.settings.record_chunk, self.settings.record_chunk)
        )
        for start, end in chunks[:-1]:
            # committed on its own: the sender sends it while the next ones are written
            written = await self._record_own(emergency, rest[start:end], wave, offset + start)
            if written is None:
                return
            recorded += written
            await self._pause_between_chunks()
        # the last chunk commits with the wave's mark and the event's processed_events row
        for start, end in chunks[-1:]:
            open_elsewhere = await open_alert_members(
                session, emergency.id, [c.member_id for c in rest[start:end]]
            )
            recorded += await self._record(
                session, emergency, rest[start:end], wave, open_elsewhere, offset + start
            )
        await session.execute(_MARK_WAVE_COMPLETE, {"emergency_id": emergency.id, "wave": wave})
        await self._notify(session)
        log.info(
            "wave recorded",
            emergency_id=str(emergency.id),
            wave=wave,
            candidates=considered,
            selected=len(first) + len(rest),
            resumed_after=in_wave,
            recorded=recorded,
            chunks=len(chunks) + (1 if first else 0),
            selection_ms=round(selected_s * 1000, 1),
            first_chunk_ms=round(first_ms, 1) if first_ms is not None else None,
            total_ms=round((time.perf_counter() - started) * 1000, 1),
            causationid=causation,
        )

    async def _record_own(
        self, emergency: Any, chosen: Sequence[Chosen], wave: int, offset: int
    ) -> int | None:
        """Record one chunk in a transaction of its own and wake this process's sender
        once it commits (the NOTIFY wakes the other processes' senders): the rows
        written, or None when the emergency was closed meanwhile (nothing recorded)."""
        async with self.db() as own, own.begin():
            if not await _still_active(own, emergency.id):
                log.info(
                    "emergency closed while its wave was recorded, rest not recorded",
                    emergency_id=str(emergency.id),
                    wave=wave,
                )
                return None
            open_elsewhere = await open_alert_members(
                own, emergency.id, [c.member_id for c in chosen]
            )
            written = await self._record(own, emergency, chosen, wave, open_elsewhere, offset)
            await self._notify(own)
        if self.on_recorded is not None:
            self.on_recorded()
        return written

    async def _pause_between_chunks(self) -> None:
        if self.settings.fault_pause_between_chunks_s:
            await asyncio.sleep(self.settings.fault_pause_between_chunks_s)

    async def _notify(self, session: AsyncSession) -> None:
        """Wake the senders (they hear it when the transaction commits)."""
        await session.execute(
            text("SELECT pg_notify(:c, '')"), {"c": notify_channel(self.settings.schema_name)}
        )

    async def _record(
        self,
        session: AsyncSession,
        emergency: Any,
        chosen: Sequence[Chosen],
        wave: int,
        open_elsewhere: set[UUID],
        offset: int,
    ) -> int:
        """Insert the alert rows and their SMS, nearest first (the sender sends in rank
        order; `offset` is the rank of the first), skipping members recorded meanwhile by
        another instance or an interrupted recording (unique row)."""
        facts = emergency.facts
        base = self.settings.public_base_url.rstrip("/")
        now = datetime.now(UTC)
        today = now.date()
        required = list(facts.get("required_qualifications") or [])
        recorded = 0
        for start in range(0, len(chosen), _CHUNK):
            part = chosen[start : start + _CHUNK]
            ids = [uuid.uuid4() for _ in part]
            tokens = [new_token() for _ in part]
            languages = [messages.language_of(c.member.language) for c in part]
            bodies = [
                messages.alert_sms(
                    language=language,
                    title=emergency.title,
                    distance_m=c.distance_m,
                    members_needed=emergency.members_needed,
                    qualifications=required,
                    drill=emergency.drill,
                    link=f"{base}/r/{token}",
                    reply_code=emergency.reply_code if c.member_id in open_elsewhere else None,
                )
                for c, token, language in zip(part, tokens, languages, strict=True)
            ]
            quals = [
                json.dumps(
                    sorted(
                        q.code
                        for q in c.member.qualifications
                        if q.expires_at is None or q.expires_at >= today
                    )
                )
                for c in part
            ]
            phones = [c.member.phone or "" for c in part]
            inserted = set(
                (
                    await session.execute(
                        _INSERT_ALERTS,
                        {
                            "emergency_id": emergency.id,
                            "wave": wave,
                            "now": now,
                            "ids": ids,
                            "members": [c.member_id for c in part],
                            "tokens": tokens,
                            "phones": phones,
                            "languages": languages,
                            "distances": [c.distance_m for c in part],
                            "quals": quals,
                            "sections": [c.member.section for c in part],
                        },
                    )
                ).scalars()
            )
            keep = [i for i, alert_id in enumerate(ids) if alert_id in inserted]
            if not keep:
                continue
            await session.execute(
                _INSERT_ALERT_SMS,
                {
                    "alert_ids": [ids[i] for i in keep],
                    "phones": [phones[i] for i in keep],
                    "bodies": [bodies[i] for i in keep],
                    "segments": [messages.segments(bodies[i]) for i in keep],
                    "offset": offset + start,
                },
            )
            recorded += len(keep)
        return recorded

    # --- updated: staffed, call-up, changed facts --------------------------------------

    async def on_updated(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, EmergencyUpdated)
        session = delivery.db
        row = await _locked_emergency(session, event.emergency_id)
        if row is None or row.status != "active":
            return
        facts = {
            **row.facts,
            **event.model_dump(
                mode="json", exclude={"staffed", "call_up", "changed", "updated_at"}
            ),
        }
        await session.execute(
            update(emergencies)
            .where(emergencies.c.id == event.emergency_id)
            .values(
                title=event.title,
                members_needed=event.members_needed,
                facts=facts,
                staffed=event.staffed,
                updated_at=func.now(),
            )
        )
        if event.staffed and not row.staffed:
            await self._not_needed(session, row, delivery.envelope.id)
        if event.call_up:
            await self._call_up(session, row, event.call_up)
        await session.execute(
            text("SELECT pg_notify(:c, '')"), {"c": notify_channel(self.settings.schema_name)}
        )

    async def _not_needed(self, session: AsyncSession, emergency: Any, causation: str) -> None:
        """Everyone alerted who has not answered: not needed any more. Alerts not yet sent
        are simply not sent."""
        now = datetime.now(UTC)
        await _cancel_pending_alerts(session, emergency.id)
        unanswered = (
            await session.execute(
                update(alerts)
                .where(
                    alerts.c.emergency_id == emergency.id,
                    alerts.c.response.is_(None),
                    alerts.c.stood_down_at.is_(None),
                    alerts.c.status.not_in(("cancelled", "failed")),
                )
                .values(stood_down_at=now, stood_down_reason="not_needed")
                .returning(alerts.c.id, alerts.c.member_id, alerts.c.phone, alerts.c.language)
            )
        ).all()
        await self._follow_up(
            session, emergency, unanswered, "not_needed", "not_needed", now, causation
        )

    async def _call_up(self, session: AsyncSession, emergency: Any, member_ids: list[UUID]) -> None:
        base = self.settings.public_base_url.rstrip("/")
        rows = (
            await session.execute(
                update(alerts)
                .where(
                    alerts.c.emergency_id == emergency.id,
                    alerts.c.member_id.in_(member_ids),
                    alerts.c.response == "standby",
                )
                .values(response="accepted")
                .returning(alerts.c.id, alerts.c.phone, alerts.c.language, alerts.c.token)
            )
        ).all()
        if any(r.phone is not None for r in rows):
            await session.execute(
                pg_insert(outbound_messages)
                .values(
                    [
                        _message(
                            r.id,
                            "call_up",
                            r.phone,
                            messages.follow_up_sms(
                                "call_up",
                                language=r.language,
                                title=emergency.title,
                                drill=emergency.drill,
                                link=f"{base}/r/{r.token}",
                            ),
                        )
                        for r in rows
                        if r.phone is not None  # erased
                    ]
                )
                .on_conflict_do_nothing()
            )

    # --- closed: stand down, or correct a false alarm ----------------------------------

    async def on_closed(self, delivery: Delivery) -> None:
        event = delivery.data
        assert isinstance(event, EmergencyClosed)
        session = delivery.db
        row = await _locked_emergency(session, event.emergency_id)
        if row is None or row.status == "closed":
            return
        false_alarm = event.false_alarm or event.reason == "false_alarm"
        now = datetime.now(UTC)
        await session.execute(
            update(emergencies)
            .where(emergencies.c.id == event.emergency_id)
            .values(
                status="closed",
                closed_at=event.closed_at,
                close_reason=event.reason,
                updated_at=func.now(),
            )
        )
        await _cancel_pending_alerts(session, event.emergency_id)
        # messages not yet sent (not needed, call-up) make no sense any more
        await session.execute(
            update(outbound_messages)
            .where(
                outbound_messages.c.status == "pending",
                outbound_messages.c.kind.not_in(SAFETY_LOOP_MESSAGES),
                outbound_messages.c.alert_id.in_(
                    select(alerts.c.id).where(alerts.c.emergency_id == event.emergency_id)
                ),
            )
            .values(status="cancelled")
        )
        if false_alarm:
            condition = and_(
                alerts.c.emergency_id == event.emergency_id,
                alerts.c.status.not_in(("cancelled", "failed")),
            )
            kind, reason = "correction", "false_alarm"
        else:
            condition = and_(
                alerts.c.emergency_id == event.emergency_id,
                alerts.c.response.in_(COMMITTED_RESPONSES),
                alerts.c.stood_down_at.is_(None),
            )
            kind, reason = "stand_down", "closed"
        targets = (
            await session.execute(
                update(alerts)
                .where(condition)
                .values(stood_down_at=now, stood_down_reason=reason)
                .returning(
                    alerts.c.id,
                    alerts.c.member_id,
                    alerts.c.phone,
                    alerts.c.language,
                    alerts.c.response,
                )
            )
        ).all()
        await self._follow_up(
            session,
            row,
            targets,
            kind,
            reason,
            now,
            delivery.envelope.id,
            # members still out (on the way, on scene) are asked to say when they are home
            wording=lambda t: "stand_down_out" if in_the_field(t.response) else kind,
        )
        await session.execute(
            text("SELECT pg_notify(:c, '')"), {"c": notify_channel(self.settings.schema_name)}
        )

    async def _follow_up(
        self,
        session: AsyncSession,
        emergency: Any,
        targets: Sequence[Any],
        kind: str,
        reason: str,
        now: datetime,
        causation: str,
        wording: Callable[[Any], str] | None = None,
    ) -> None:
        """`kind` messages (their text: `wording(target)`, else `kind`'s) and the
        stand-down events."""
        if not targets:
            return
        # an erased member's rows have no number: their state changes, nobody is texted
        reachable = [t for t in targets if t.phone is not None]
        for start in range(0, len(reachable), _CHUNK):
            part = reachable[start : start + _CHUNK]
            await session.execute(
                pg_insert(outbound_messages)
                .values(
                    [
                        _message(
                            t.id,
                            kind,
                            t.phone,
                            messages.follow_up_sms(
                                wording(t) if wording else kind,
                                language=t.language,
                                title=emergency.title,
                                drill=emergency.drill,
                            ),
                        )
                        for t in part
                    ]
                )
                .on_conflict_do_nothing()
            )
        events: list[EventData] = [
            AlertStoodDown(
                emergency_id=emergency.id,
                member_id=t.member_id,
                alert_id=t.id,
                reason=reason,
                stood_down_at=now,
            )
            for t in targets
        ]
        await add_events(
            session, events, source=SOURCE, correlationid=str(emergency.id), causationid=causation
        )


def _message(alert_id: UUID, kind: str, phone: str, body: str) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "kind": kind,
        "phone": phone,
        "body": body,
        "segments": messages.segments(body),
    }


async def _cancel_pending_alerts(session: AsyncSession, emergency_id: UUID) -> None:
    cancelled = (
        (
            await session.execute(
                update(outbound_messages)
                .where(
                    outbound_messages.c.kind == "alert",
                    outbound_messages.c.status == "pending",
                    outbound_messages.c.alert_id.in_(
                        select(alerts.c.id).where(alerts.c.emergency_id == emergency_id)
                    ),
                )
                .values(status="cancelled")
                .returning(outbound_messages.c.alert_id)
            )
        )
        .scalars()
        .all()
    )
    if cancelled:
        await session.execute(
            update(alerts).where(alerts.c.id.in_(cancelled)).values(status="cancelled")
        )


async def choose(
    index: TargetingIndex,
    target: Target,
    where: SearchArea,
    now: datetime,
    *,
    live_max_age_s: int,
    already_alerted: Collection[UUID] = (),
    committed: Collection[UUID] = (),
    opted_out_phones: Collection[str] = (),
) -> tuple[list[Chosen], int]:
    """The pure selection over the index's nearest candidates, fetched page by page until
    no one farther can still make the cut (Redis's GEO distances differ from ours by well
    under 0.1 %, hence the margin). Returns the chosen and how many were considered."""
    fetched: list[MemberChanged] = []
    chosen: list[Chosen] = []
    async for page, bound in index.nearest_pages(target.sections, where, 2 * target.count):
        fetched.extend(page)
        chosen = select_members(
            fetched,
            target,
            now,
            live_max_age_s=live_max_age_s,
            already_alerted=already_alerted,
            committed=committed,
            opted_out_phones=opted_out_phones,
        )
        if len(chosen) >= target.count and chosen[-1].distance_m < bound * 0.999 - 1:
            break
    return chosen, len(fetched)


async def _still_active(session: AsyncSession, emergency_id: UUID) -> bool:
    """The emergency is still active, and stays so until this transaction ends (a
    closing or staffing update waits for it: both lock the row for update)."""
    status = (
        await session.execute(
            select(emergencies.c.status)
            .where(emergencies.c.id == emergency_id)
            .with_for_update(read=True)
        )
    ).scalar_one_or_none()
    return status == "active"


async def committed_elsewhere(session: AsyncSession, emergency_id: UUID) -> set[UUID]:
    """Members who accepted another active emergency and were not stood down there (few:
    the people out on active emergencies right now)."""
    found = await session.execute(
        select(alerts.c.member_id)
        .join(emergencies, emergencies.c.id == alerts.c.emergency_id)
        .where(
            emergencies.c.status == "active",
            alerts.c.emergency_id != emergency_id,
            alerts.c.response.in_(COMMITTED_RESPONSES),
            alerts.c.stood_down_at.is_(None),
        )
    )
    return set(found.scalars())


async def open_alert_members(
    session: AsyncSession, emergency_id: UUID, member_ids: Sequence[UUID]
) -> set[UUID]:
    """Members with an open alert of another active emergency (their SMS need a code)."""
    if not member_ids:
        return set()
    found = await session.execute(
        select(alerts.c.member_id)
        .join(emergencies, emergencies.c.id == alerts.c.emergency_id)
        .where(
            emergencies.c.status == "active",
            alerts.c.emergency_id != emergency_id,
            alerts.c.stood_down_at.is_(None),
            alerts.c.status != "cancelled",
            alerts.c.member_id == any_(literal(list(member_ids), ARRAY(PG_UUID(as_uuid=True)))),
        )
    )
    return set(found.scalars())


async def _locked_emergency(session: AsyncSession, emergency_id: uuid.UUID) -> Any:
    """The emergency's row, locked until the transaction ends (follow-ups of one
    emergency are applied one at a time), or None if alerts has never seen it."""
    return (
        await session.execute(
            select(emergencies).where(emergencies.c.id == emergency_id).with_for_update()
        )
    ).one_or_none()
