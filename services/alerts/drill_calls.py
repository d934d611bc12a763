"""A drill's calls to members who have not answered its SMS (issue 12: "by voice where the
voice channel exists"), and their webhooks.

A drill scheduled with `call_unanswered_after_min` (frozen on each occurrence when it
fires) phones each member whose drill SMS went out that long ago without an OK: "This is
a Muster test, a drill, not an emergency. Press 1 if you received this." Pressing 1 is
the member's OK, recorded on the SMS and link's path (`Drills.answer`, channel `voice`,
at the drills' clock when 1 was pressed). The decision is drills.plan_drill_call (pure);
the voice provider, the retry rule (calling.request_call), the TwiML (voice_script.menu
and closing with the `drill_test` prompt), the signature check (inbound.verified_form),
Albanian speech (speech.py) and the provider's final statuses (voice_inbound) are the
emergency ladder's.

Every ALERTS_DRILL_CHECK_INTERVAL_S each alerts process (with a voice provider) looks
for drill SMS unanswered past their occurrence's delay; for each call due:

1. the claim: in one transaction the drill message is locked (`FOR UPDATE ... SKIP
   LOCKED`: an OK being recorded, or another process claiming, makes this one skip it),
   the facts are checked again under the lock (answered on any channel, already called,
   on an active emergency), and a `drill_calls` row is inserted (unique per message;
   `ON CONFLICT DO NOTHING`). It commits BEFORE the provider is asked: two processes
   never both call, and a process killed afterwards leaves the row, so nobody calls
   that member for that occurrence again (at most one call, as the ladder);
2. the provider places the call; its URLs carry the call's unguessable token, stored
   only as its SHA-256;
3. the row is marked `placed` with the CallSid (or `failed`). A process killed between
   2 and 3 leaves `placing`; the call's first webhook marks it `placed`.

Webhooks (signed as Twilio signs, 403 otherwise, before anything is read or changed):
`POST /voice-drill/{token}/call` (the TwiML), `/menu` (the key), `/status` (the final
status); `GET /voice-drill/{token}/audio/{part}.wav` (Albanian, unsigned: the token is
the secret, as for the ladder's audio).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts.calling import request_call
from services.alerts.drill_runs import DrillClock, Drills, on_active_emergency
from services.alerts.drills import CALL_LATEST, DrillCallFacts, plan_drill_call
from services.alerts.inbound import verified_form
from services.alerts.index import TargetingIndex
from services.alerts.providers import ProviderError
from services.alerts.providers.voice import VoiceProvider
from services.alerts.selection import is_quiet
from services.alerts.settings import Settings
from services.alerts.speech import Speech, SpeechUnavailable
from services.alerts.voice_inbound import CALL_OUTCOMES
from services.alerts.voice_script import (
    CallContext,
    Part,
    Speak,
    closing,
    line,
    menu,
    part_named,
    speaker,
)
from shared.events.members import MemberChanged
from shared.observability import get_logger

log = get_logger(__name__)

DRILL_CALLS = Counter(
    "muster_alerts_drill_calls_total",
    "Drill calls by outcome of the provider request (placed, failed)",
    ["outcome"],
)

#: occurrences older than this have no call left to place: the longest quiet hours (a
#: day) the SMS may wait, the longest delay, and CALL_LATEST
_OLDEST_OCCURRENCE = timedelta(days=2)
_PAGE = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: drill SMS unanswered past their occurrence's delay (and not past CALL_LATEST), not
#: called yet; keyset pages (sent_at, id)
_CANDIDATES = text(
    """
    SELECT m.id AS message_id, m.member_id, m.sent_at,
           o.call_unanswered_after_min AS after_min
    FROM drill_occurrences o
    JOIN drill_messages m ON m.occurrence_id = o.id
    WHERE o.call_unanswered_after_min IS NOT NULL AND o.fired_at >= :oldest
      AND m.status = 'sent' AND m.answered_at IS NULL
      AND m.sent_at <= CAST(:now AS timestamptz)
                       - make_interval(mins => o.call_unanswered_after_min)
      AND m.sent_at >= CAST(:now AS timestamptz)
                       - make_interval(mins => o.call_unanswered_after_min)
                       - make_interval(secs => CAST(:latest AS double precision))
      AND (m.sent_at, m.id) > (:after_at, :after_id)
      AND NOT EXISTS (SELECT 1 FROM drill_calls c WHERE c.message_id = m.id)
    ORDER BY m.sent_at, m.id
    LIMIT :n
    """
)

#: the message as it is now, locked (the claim's re-check)
_LOCK_FOR_CLAIM = text(
    """
    SELECT m.id, m.member_id, m.status, m.sent_at, m.answered_at IS NOT NULL AS answered,
           o.call_unanswered_after_min AS after_min,
           EXISTS (SELECT 1 FROM drill_calls c WHERE c.message_id = m.id) AS already_called
    FROM drill_messages m
    JOIN drill_occurrences o ON o.id = m.occurrence_id
    WHERE m.id = :message_id
    FOR UPDATE OF m SKIP LOCKED
    """
)

_CLAIM = text(
    """
    INSERT INTO drill_calls (id, message_id, token_hash, claimed_by)
    VALUES (:id, :message_id, :token_hash, :me)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id
    """
)

#: a call's webhook row, by its token's hash
_CALL = text(
    """
    SELECT c.id, c.status, m.token AS answer_token, m.language, m.answered_at
    FROM drill_calls c
    JOIN drill_messages m ON m.id = c.message_id
    WHERE c.token_hash = :token_hash
    """
)


def token_hash(token: str) -> str:
    """What `drill_calls` keeps of a call's token (the URL's secret)."""
    return hashlib.sha256(token.encode()).hexdigest()


def drill_call_urls(base: str, token: str) -> tuple[str, str]:
    """(the TwiML URL, the status callback URL) of one drill call."""
    root = f"{base.rstrip('/')}/voice-drill/{token}"
    return f"{root}/call", f"{root}/status"


def facts_of(
    row: Any, member: MemberChanged | None, *, on_emergency: bool, now: datetime
) -> DrillCallFacts:
    """A message row and the member's snapshot (None: not indexed, e.g. erased) as the
    planner's facts."""
    reachable = member is not None and member.status == "active" and bool(member.phone)
    return DrillCallFacts(
        call_after=timedelta(minutes=row.after_min) if row.after_min is not None else None,
        sms_sent_at=row.sent_at,
        answered=bool(getattr(row, "answered", False)),
        already_called=bool(getattr(row, "already_called", False)),
        has_phone=reachable,
        on_emergency=on_emergency,
        quiet_hours_now=member is not None and is_quiet(member, now),
    )


@dataclass(frozen=True)
class ClaimedDrillCall:
    call_id: uuid.UUID
    token: str
    message_id: int
    phone: str


class DrillCaller:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        provider: VoiceProvider,
        index: TargetingIndex,
        clock: DrillClock,
    ) -> None:
        self.settings = settings
        self.db = sessionmaker
        self.provider = provider
        self.index = index
        self.clock = clock
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="drill-calls")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=20)
        await self.provider.aclose()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                # the class only: a database error's text may quote a member's values
                log.warning("drill call round failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.drill_check_interval_s
                )

    async def run_once(self) -> int:
        """One round: the drill calls due now, claimed and placed; how many were placed."""
        if not await self.index.is_ready():
            # quiet hours and numbers come from the index: nobody is called meanwhile
            return 0
        now = self.clock.now()
        claimed: list[ClaimedDrillCall] = []
        after: tuple[datetime, int] = (_EPOCH, 0)
        while len(claimed) < self.settings.ladder_batch and not self._stopping.is_set():
            async with self.db() as session:
                rows = (
                    await session.execute(
                        _CANDIDATES,
                        {
                            "now": now,
                            "oldest": now - _OLDEST_OCCURRENCE,
                            "latest": CALL_LATEST.total_seconds(),
                            "after_at": after[0],
                            "after_id": after[1],
                            "n": _PAGE,
                        },
                    )
                ).all()
                if not rows:
                    break
                busy = await on_active_emergency(session, [r.member_id for r in rows])
            after = (rows[-1].sent_at, rows[-1].message_id)
            snapshots = await self._snapshots([r.member_id for r in rows])
            for row in rows:
                member = snapshots.get(row.member_id)
                facts = facts_of(row, member, on_emergency=row.member_id in busy, now=now)
                if plan_drill_call(facts, now).decision != "due" or member is None:
                    continue
                taken = await self._claim(row.message_id, member, now)
                if taken is not None:
                    claimed.append(taken)
                    if len(claimed) >= self.settings.ladder_batch:
                        break
            if len(rows) < _PAGE:
                break
        if claimed:
            await asyncio.gather(*(self._place(c) for c in claimed))
        return len(claimed)

    async def _snapshots(self, member_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, MemberChanged]:
        found = await self.index.members(sorted({str(m) for m in member_ids}))
        return {m.member_id: m for m in found}

    async def _claim(
        self, message_id: int, member: MemberChanged, now: datetime
    ) -> ClaimedDrillCall | None:
        """The call's row, inserted and committed after the facts were checked again
        under the message's lock; None when the call is no longer due or another
        process holds the message."""
        async with self.db() as session, session.begin():
            row = (await session.execute(_LOCK_FOR_CLAIM, {"message_id": message_id})).one_or_none()
            if row is None or row.status != "sent":
                return None
            busy = await on_active_emergency(session, [row.member_id])
            facts = facts_of(row, member, on_emergency=row.member_id in busy, now=now)
            if plan_drill_call(facts, now).decision != "due" or not member.phone:
                return None
            call_id, token = uuid.uuid4(), secrets.token_urlsafe(24)
            inserted = (
                await session.execute(
                    _CLAIM,
                    {
                        "id": call_id,
                        "message_id": row.id,
                        "token_hash": token_hash(token),
                        "me": self.instance_id,
                    },
                )
            ).scalar_one_or_none()
            if inserted is None:
                return None
            return ClaimedDrillCall(call_id, token, row.id, member.phone)

    async def _place(self, call: ClaimedDrillCall) -> None:
        twiml_url, status_url = drill_call_urls(self.settings.public_base_url, call.token)
        try:
            accepted = await request_call(
                self.provider, self.settings, call.phone, twiml_url=twiml_url, status_url=status_url
            )
        except Exception as exc:
            DRILL_CALLS.labels("failed").inc()
            reason = exc.reason if isinstance(exc, ProviderError) else type(exc).__name__
            log.info("drill call not placed", call_id=str(call.call_id), reason=reason)
            async with self.db() as session, session.begin():
                await session.execute(
                    text(
                        "UPDATE drill_calls SET status = 'failed', outcome = 'failed', "
                        "error = :error, ended_at = now() "
                        "WHERE id = :id AND status = 'placing'"
                    ),
                    {"id": call.call_id, "error": reason[:300]},
                )
            return
        DRILL_CALLS.labels("placed").inc()
        if self.settings.fault_pause_after_call_s:
            await asyncio.sleep(self.settings.fault_pause_after_call_s)
        async with self.db() as session, session.begin():
            await mark_placed(session, token_hash(call.token), accepted.sid)
        log.info("drill call placed", call_id=str(call.call_id))


async def mark_placed(session: AsyncSession, hashed: str, sid: str | None) -> None:
    """`placing` → `placed` with the CallSid: by the runner when the provider answered,
    or by the call's first webhook when the runner died before recording it."""
    await session.execute(
        text(
            "UPDATE drill_calls SET status = CASE WHEN status = 'placing' THEN 'placed' "
            "ELSE status END, placed_at = COALESCE(placed_at, now()), "
            "provider_sid = COALESCE(provider_sid, :sid) WHERE token_hash = :hash"
        ),
        {"hash": hashed, "sid": sid or None},
    )


def drill_call_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    speech: Speech,
    runner: Callable[[], Drills],
) -> APIRouter:
    router = APIRouter(tags=["voice"])
    base = settings.public_base_url.rstrip("/")

    def speak_for(token: str) -> Speak:
        def audio_url(part: Part, _context: CallContext) -> str:
            return f"{base}/voice-drill/{token}/audio/{part}.wav"

        return speaker(audio_url if speech.available() else None)

    async def the_call(session: AsyncSession, token: str) -> Any:
        row = (await session.execute(_CALL, {"token_hash": token_hash(token)})).one_or_none()
        if row is None:
            raise HTTPException(status_code=404, detail="token: no such call")
        return row

    def context_of(row: Any) -> CallContext:
        # a drill call speaks of no emergency: only the language matters
        return CallContext(
            language=row.language, title="", distance_m=0, members_needed=0, drill=True
        )

    @router.post("/voice-drill/{token}/call", summary="A drill call's TwiML (Twilio fetches it)")
    async def call(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            await mark_placed(session, token_hash(token), form.get("CallSid"))
        context, speak = context_of(row), speak_for(token)
        if row.answered_at is not None:
            return _twiml(closing(context, speak, "answered"))
        action = f"{base}/voice-drill/{token}/menu"
        return _twiml(menu(context, speak, action=action, prompt="drill_test"))

    @router.post("/voice-drill/{token}/menu", summary="The key pressed at a drill call")
    async def choice(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            context, speak = context_of(row), speak_for(token)
            if form.get("Digits") != "1":
                # anything but 1: nothing recorded (the SMS and the link still answer)
                return _twiml(closing(context, speak, "goodbye"))
            if row.answered_at is not None:
                return _twiml(closing(context, speak, "answered"))
            await runner().answer(session, token=row.answer_token, channel="voice")
        log.info("drill call answered", call_id=str(row.id))
        return _twiml(closing(context, speak, "drill_thanks"))

    @router.post("/voice-drill/{token}/status", summary="A drill call's final status")
    async def status(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        outcome = CALL_OUTCOMES.get(form.get("CallStatus", "").lower())
        if outcome is None:
            return Response(status_code=204)  # ringing, in-progress: not the end
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            await mark_placed(session, token_hash(token), form.get("CallSid"))
            await session.execute(
                text(
                    "UPDATE drill_calls SET status = 'ended', outcome = :outcome, "
                    "ended_at = now() WHERE id = :id AND ended_at IS NULL"
                ),
                {"id": row.id, "outcome": outcome},
            )
        log.info("drill call ended", call_id=str(row.id), outcome=outcome)
        return Response(status_code=204)

    @router.get("/voice-drill/{token}/audio/{name}", summary="A drill call's speech (WAV)")
    async def audio(token: str, name: str) -> Response:
        part = part_named(name.removesuffix(".wav"))
        if part is None:
            raise HTTPException(status_code=404, detail="name: no such prompt")
        async with db()() as session:
            row = await the_call(session, token)
        context = context_of(row)
        try:
            wav = await speech.wav(context.language, line(context, part))
        except SpeechUnavailable as exc:
            log.warning("speech rendering failed", error=str(exc))
            raise HTTPException(status_code=503, detail="speech unavailable") from exc
        return Response(wav, media_type="audio/wav")

    return router


def _twiml(document: str) -> Response:
    return Response(document, media_type="application/xml")
