"""The channel ladder's runner: phones members whose SMS alert went unanswered.

Every ALERTS_LADDER_INTERVAL_S each alerts process looks for alerts whose SMS was sent
at least the shortest ladder delay ago, with no answer, no stand-down, no call yet, of
an active emergency that is not staffed. The pure planner (ladder.py) decides per alert,
with the member's quiet hours from the targeting index; for each `due` one:

1. the claim: in one transaction the alert row is locked (`FOR UPDATE ... SKIP LOCKED`:
   an answer being recorded, or another process claiming, makes this one skip it), the
   facts are checked again under the lock, and a `voice_calls` row is inserted (unique
   per alert; `ON CONFLICT DO NOTHING`). The transaction commits BEFORE the provider is
   asked: two processes never both call, and a process killed afterwards leaves the row;
2. the provider places the call (`Url` and `StatusCallback` carry the row's unguessable
   token, never a member id);
3. the result: the row is marked `placed` with the provider's CallSid and
   `alert.call_placed` goes to the outbox in the same transaction (or `failed`, and
   `alert.call_ended` with outcome `failed`).

Crash discipline, chosen: AT MOST ONE CALL. A process killed between 2 and 3 leaves the
row `placing`; no process ever calls that alert again. The call itself is not lost: its
webhooks find the row by the token in their URL, so the member still hears the alert and
their keys are still recorded, and the first webhook marks the row `placed` (with the
CallSid it carries) and publishes `alert.call_placed` then. A row still `placing` after
that means the provider never reached us about the call (it may not have been placed):
the member was not called twice, and may not have been called at all; the SMS stands.

A provider error that may come after the call was placed (a 5xx, a lost answer) is not
retried either; one refused before anything left (connection refused, 429) is retried
ALERTS_SMS_MAX_ATTEMPTS times within the same claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from services.alerts.alerting import SOURCE
from services.alerts.index import TargetingIndex
from services.alerts.ladder import AlertFacts, CallPlan, EmergencyState, LadderDelays, plan_call
from services.alerts.providers import Accepted, ProviderError
from services.alerts.providers.voice import VoiceProvider
from services.alerts.selection import is_quiet
from services.alerts.settings import Settings
from shared.events.alerts import AlertCallEnded, AlertCallPlaced
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)

CALLS = Counter(
    "muster_alerts_calls_total",
    "Ladder calls by outcome of the provider request (placed, failed)",
    ["outcome"],
)
CALLS_HELD = Counter(
    "muster_alerts_calls_held_total",
    "Ladder rounds that held a due call for the member's quiet hours (one per alert and round)",
)

#: alerts whose SMS is old enough for the shortest delay and that nothing has stopped;
#: keyset pages (sent_at, id) so held ones never crowd out the due ones behind them
_CANDIDATES = text(
    """
    SELECT a.id AS alert_id, a.member_id, a.emergency_id, a.phone IS NOT NULL AS has_phone,
           e.severity, o.sent_at
    FROM alerts a
    JOIN emergencies e ON e.id = a.emergency_id
    JOIN outbound_messages o ON o.alert_id = a.id AND o.kind = 'alert'
    WHERE e.status = 'active' AND NOT e.staffed
      AND a.response IS NULL AND a.stood_down_at IS NULL AND a.phone IS NOT NULL
      AND o.status = 'sent' AND o.sent_at <= :sent_before
      AND (o.sent_at, a.id) > (:after_at, :after_id)
      AND NOT EXISTS (SELECT 1 FROM voice_calls v WHERE v.alert_id = a.id)
    ORDER BY o.sent_at, a.id
    LIMIT :n
    """
)

#: the alert and its emergency, locked, as they are now (the claim's re-check)
_LOCK_FOR_CLAIM = text(
    """
    SELECT a.id, a.emergency_id, a.member_id, a.phone, a.response,
           a.stood_down_at IS NOT NULL AS stood_down, e.status, e.staffed, e.close_reason,
           e.severity, o.sent_at,
           EXISTS (SELECT 1 FROM voice_calls v WHERE v.alert_id = a.id) AS already_called
    FROM alerts a
    JOIN emergencies e ON e.id = a.emergency_id
    JOIN outbound_messages o ON o.alert_id = a.id AND o.kind = 'alert'
    WHERE a.id = :alert_id AND o.status = 'sent'
    FOR UPDATE OF a SKIP LOCKED
    """
)

_CLAIM = text(
    """
    INSERT INTO voice_calls (id, alert_id, emergency_id, token, claimed_by)
    VALUES (:id, :alert_id, :emergency_id, :token, :me)
    ON CONFLICT (alert_id) DO NOTHING
    RETURNING id
    """
)

_PAGE = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def emergency_state(status: str, staffed: bool, close_reason: str | None) -> EmergencyState:
    if status != "active":
        return "cancelled" if close_reason == "cancelled" else "closed"
    return "staffed" if staffed else "open"


def call_urls(base: str, token: str) -> tuple[str, str]:
    """(the TwiML URL, the status callback URL) of one call."""
    root = f"{base.rstrip('/')}/voice/{token}"
    return f"{root}/call", f"{root}/status"


@dataclass(frozen=True)
class Claimed:
    call_id: uuid.UUID
    token: str
    alert_id: uuid.UUID
    emergency_id: uuid.UUID
    member_id: uuid.UUID
    phone: str


async def request_call(
    provider: VoiceProvider, settings: Settings, phone: str, *, twiml_url: str, status_url: str
) -> Accepted:
    """Ask the provider for one call, once a claim for it is committed (the ladder's and
    the drills' calls alike). Retried ALERTS_SMS_MAX_ATTEMPTS times only when refused
    before anything left (connection refused, 429); a request that may have placed the
    call (a 5xx, a lost answer) is never repeated: at most one call. Raises
    ProviderError when not placed."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(settings.sms_max_attempts),
        wait=wait_exponential_jitter(
            initial=settings.sms_retry_base_s, max=10.0, jitter=settings.sms_retry_base_s
        ),
        retry=retry_if_exception(
            lambda e: isinstance(e, ProviderError) and not e.permanent and not e.maybe_accepted
        ),
        reraise=True,
    ):
        with attempt:
            return await provider.call(phone, twiml_url=twiml_url, status_url=status_url)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


class CallLadder:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        provider: VoiceProvider,
        index: TargetingIndex,
    ) -> None:
        self.settings = settings
        self.db = sessionmaker
        self.provider = provider
        self.index = index
        self.delays = LadderDelays(
            extreme=timedelta(seconds=settings.ladder_delay_extreme_s),
            severe=timedelta(seconds=settings.ladder_delay_severe_s),
            other=timedelta(seconds=settings.ladder_delay_other_s),
        )
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="call-ladder")

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
                log.warning("channel ladder round failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.ladder_interval_s
                )

    async def run_once(self) -> int:
        """One round: the calls due now, claimed and placed. Returns how many were placed."""
        if not await self.index.is_ready():
            # quiet hours come from the index: while it is rebuilt nobody is called
            return 0
        now = datetime.now(UTC)
        shortest = min(self.delays.extreme, self.delays.severe, self.delays.other)
        claimed: list[Claimed] = []
        after: tuple[datetime, uuid.UUID] = (_EPOCH, uuid.UUID(int=0))
        while len(claimed) < self.settings.ladder_batch and not self._stopping.is_set():
            async with self.db() as session:
                rows = (
                    await session.execute(
                        _CANDIDATES,
                        {
                            "sent_before": now - shortest,
                            "after_at": after[0],
                            "after_id": after[1],
                            "n": _PAGE,
                        },
                    )
                ).all()
            if not rows:
                break
            after = (rows[-1].sent_at, rows[-1].alert_id)
            quiet = await self._maybe_quiet({str(r.member_id) for r in rows}, now)
            for row in rows:
                plan = plan_call(
                    AlertFacts(
                        sms_sent_at=row.sent_at,
                        answered=False,
                        severity=row.severity,
                        emergency="open",
                        stood_down=False,
                        quiet_hours_now=str(row.member_id) in quiet,
                        already_called=False,
                        has_phone=row.has_phone,
                    ),
                    now,
                    self.delays,
                )
                if plan.decision == "held":
                    CALLS_HELD.inc()
                if plan.decision != "due":
                    continue
                taken = await self._claim(row.alert_id, str(row.member_id) in quiet, now)
                if taken is not None:
                    claimed.append(taken)
                    if len(claimed) >= self.settings.ladder_batch:
                        break
            if len(rows) < _PAGE:
                break
        if claimed:
            await asyncio.gather(*(self._place(c) for c in claimed))
        return len(claimed)

    async def _maybe_quiet(self, member_ids: set[str], now: datetime) -> set[str]:
        """The members in their quiet hours now, from their snapshots in the index, and
        those the index does not hold (an erased member has no number and is never
        called; anyone else missing is held rather than woken on a guess)."""
        snapshots = {str(m.member_id): m for m in await self.index.members(sorted(member_ids))}
        return {
            member_id
            for member_id in member_ids
            if member_id not in snapshots or is_quiet(snapshots[member_id], now)
        }

    async def _claim(self, alert_id: uuid.UUID, quiet: bool, now: datetime) -> Claimed | None:
        """The call's row, inserted and committed after the facts were checked again
        under the alert's lock; None when the call is no longer due or another process
        holds the alert."""
        async with self.db() as session, session.begin():
            row = (await session.execute(_LOCK_FOR_CLAIM, {"alert_id": alert_id})).one_or_none()
            if row is None:
                return None
            plan: CallPlan = plan_call(
                AlertFacts(
                    sms_sent_at=row.sent_at,
                    answered=row.response is not None,
                    severity=row.severity,
                    emergency=emergency_state(row.status, row.staffed, row.close_reason),
                    stood_down=row.stood_down,
                    quiet_hours_now=quiet,
                    already_called=row.already_called,
                    has_phone=row.phone is not None,
                ),
                now,
                self.delays,
            )
            if plan.decision != "due":
                return None
            call_id, token = uuid.uuid4(), secrets.token_urlsafe(16)
            inserted = (
                await session.execute(
                    _CLAIM,
                    {
                        "id": call_id,
                        "alert_id": row.id,
                        "emergency_id": row.emergency_id,
                        "token": token,
                        "me": self.instance_id,
                    },
                )
            ).scalar_one_or_none()
            if inserted is None:
                return None
            return Claimed(call_id, token, row.id, row.emergency_id, row.member_id, row.phone)

    async def _place(self, call: Claimed) -> None:
        twiml_url, status_url = call_urls(self.settings.public_base_url, call.token)
        try:
            accepted = await request_call(
                self.provider, self.settings, call.phone, twiml_url=twiml_url, status_url=status_url
            )
        except ProviderError as exc:
            CALLS.labels("failed").inc()
            log.info("ladder call not placed", alert_id=str(call.alert_id), reason=exc.reason)
            await self._record_failed(call, exc.reason)
            return
        except Exception as exc:
            CALLS.labels("failed").inc()
            log.error("ladder call failed unexpectedly", alert_id=str(call.alert_id),
                      error=type(exc).__name__)  # fmt: skip
            await self._record_failed(call, type(exc).__name__)
            return
        CALLS.labels("placed").inc()
        if self.settings.fault_pause_after_call_s:
            await asyncio.sleep(self.settings.fault_pause_after_call_s)
        async with self.db() as session, session.begin():
            await mark_placed(session, call.token, accepted.sid, datetime.now(UTC))
        log.info("ladder call placed", alert_id=str(call.alert_id), call_id=str(call.call_id))

    async def _record_failed(self, call: Claimed, reason: str) -> None:
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            changed = (
                await session.execute(
                    text(
                        "UPDATE voice_calls SET status = 'failed', outcome = 'failed', "
                        "error = :error, ended_at = :now "
                        "WHERE id = :id AND status = 'placing' RETURNING id"
                    ),
                    {"id": call.call_id, "error": reason[:300], "now": now},
                )
            ).scalar_one_or_none()
            if changed is not None:
                await add_event(
                    session,
                    AlertCallEnded(
                        emergency_id=call.emergency_id,
                        member_id=call.member_id,
                        alert_id=call.alert_id,
                        outcome="failed",
                        ended_at=now,
                    ),
                    source=SOURCE,
                    correlationid=str(call.emergency_id),
                )


async def mark_placed(session: AsyncSession, token: str, sid: str | None, at: datetime) -> Any:
    """`placing` → `placed` with the CallSid, and `alert.call_placed` once: by the runner
    when the provider answered, or by the call's first webhook when the runner died
    before recording it. Returns the call's row (None for an unknown token)."""
    row = (
        await session.execute(
            text(
                "SELECT v.id, v.status, v.provider_sid, a.id AS alert_id, a.emergency_id, "
                "a.member_id FROM voice_calls v JOIN alerts a ON a.id = v.alert_id "
                "WHERE v.token = :token FOR UPDATE OF v"
            ),
            {"token": token},
        )
    ).one_or_none()
    if row is None:
        return None
    if row.status == "placing":
        await session.execute(
            text(
                "UPDATE voice_calls SET status = 'placed', placed_at = :at, "
                "provider_sid = COALESCE(provider_sid, :sid) WHERE id = :id"
            ),
            {"id": row.id, "sid": sid or None, "at": at},
        )
        await add_event(
            session,
            AlertCallPlaced(
                emergency_id=row.emergency_id,
                member_id=row.member_id,
                alert_id=row.alert_id,
                placed_at=at,
            ),
            source=SOURCE,
            correlationid=str(row.emergency_id),
        )
    elif row.provider_sid is None and sid:
        await session.execute(
            text("UPDATE voice_calls SET provider_sid = :sid WHERE id = :id"),
            {"id": row.id, "sid": sid},
        )
    return row
