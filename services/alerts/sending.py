"""The sender: claims outbound messages, hands them to the provider, records the result.

It runs as asyncio tasks in every alerts process, off the Kafka poll loop. Rows are
claimed with `FOR UPDATE SKIP LOCKED` and marked `sending` with this process's id, so two
processes never send the same row. Results are written in small batches: the message
row is marked `sent` (or `failed`) and `alert.sent` / `alert.failed` go to the outbox
in the same transaction.

Where a member can get a message twice, each counted in
`muster_alerts_possible_duplicates_total` and flagged `possible_duplicate` on the row (so
the counter, and the flagged rows, are an upper bound of the duplicates members got):

- the provider accepted the message and the process died before the row was marked
  `sent`. The row stays `sending`; once the process's heartbeat is older than
  ALERTS_SENDER_DEAD_AFTER_S another sender (or the restarted process) claims it again
  and resends it (a row whose request never left before the crash is counted too);
- an attempt the provider may have taken although it answered with an error (a 5xx, a
  read timeout, a dropped connection: `ProviderError.maybe_accepted`) was followed by
  another attempt: each such attempt is one possible extra copy.

Every claim bumps the row's `claim`; a result is recorded only if the row still carries
the claim it was sent under (fencing). A sender whose heartbeat stalled (a paused
process, a long database outage) while another reclaimed and resent its rows finds its
results refused, counted in `muster_alerts_fenced_results_total`: it cannot overwrite
the newer sender's status, provider SID or events.

A follow-up (correction, stand-down, not needed, call-up) is claimed only once its
alert's own SMS is sent or failed, so a false-alarm correction never reaches a member
before the alert it corrects (even while that alert waits for a provider retry, or for
a dead sender's rows to be reclaimed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as redis
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.alerts.alerting import SOURCE, notify_channel
from services.alerts.providers import Provider, ProviderError
from services.alerts.ratelimit import TokenBucket
from services.alerts.settings import Settings
from shared.consumer import is_transient
from shared.events.alerts import AlertFailed, AlertSent
from shared.events.catalog import EventData
from shared.observability import get_logger, mask_phone_numbers
from shared.outbox import add_events

log = get_logger(__name__)

POSSIBLE_DUPLICATES = Counter(
    "muster_alerts_possible_duplicates_total",
    "Possible extra copies of a message: resent after their sender died while they were "
    "'sending', or sent again after an attempt the provider may have accepted (5xx, read "
    "timeout, dropped connection)",
)
FENCED_RESULTS = Counter(
    "muster_alerts_fenced_results_total",
    "Send results refused because another sender had reclaimed the row meanwhile",
)
SMS_OUTCOMES = Counter(
    "muster_alerts_sms_total",
    "SMS handed to the provider, by kind and outcome",
    ["kind", "outcome"],
)
SMS_PROVIDER_ATTEMPTS = Counter(
    "muster_alerts_sms_provider_attempts_total", "HTTP attempts made to the SMS provider"
)
SMS_SEND_SECONDS = Histogram(
    "muster_alerts_sms_send_seconds",
    "From claim to the provider's answer, retries included",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)

_CLAIM = text(
    """
    WITH alive AS (
        SELECT instance_id FROM sender_heartbeats
        WHERE seen_at > now() - make_interval(secs => :dead)
    ), picked AS (
        SELECT m.id, m.status AS was FROM outbound_messages m
        WHERE (m.status = 'pending'
               OR (m.status = 'sending' AND m.claimed_by IS DISTINCT FROM :me
                   AND m.claimed_by NOT IN (SELECT instance_id FROM alive)))
          -- a follow-up never overtakes the alert it follows
          AND (m.kind = 'alert' OR NOT EXISTS (
                SELECT 1 FROM outbound_messages first
                WHERE first.alert_id = m.alert_id AND first.kind = 'alert'
                  AND first.status IN ('pending', 'sending')))
        ORDER BY m.rank, m.id
        LIMIT :n
        FOR UPDATE OF m SKIP LOCKED
    )
    UPDATE outbound_messages o
    SET status = 'sending', claimed_by = :me, claimed_at = now(), claim = o.claim + 1,
        possible_duplicate = o.possible_duplicate OR picked.was = 'sending'
    FROM picked, alerts a
    WHERE o.id = picked.id AND a.id = o.alert_id
    RETURNING o.id, o.claim, o.alert_id, o.kind, o.phone, o.body, o.segments, picked.was,
        a.emergency_id, a.member_id, a.wave, a.distance_m, a.language, a.qualifications,
        a.section,
        -- no number: the member was erased after the message was written
        o.phone IS NULL OR EXISTS (SELECT 1 FROM sms_opt_outs s WHERE s.phone = o.phone)
            AS opted_out
    """
)


@dataclass(frozen=True)
class Claimed:
    id: int
    #: the claim this sender holds: its result is recorded only while the row has it
    claim: int
    alert_id: uuid.UUID
    kind: str
    phone: str | None  # None: the member was erased (the message is then suppressed)
    body: str
    segments: int
    was: str
    emergency_id: uuid.UUID
    member_id: uuid.UUID
    wave: int
    distance_m: int
    language: str
    qualifications: list[str]
    section: str | None
    opted_out: bool


@dataclass(frozen=True)
class Outcome:
    message: Claimed
    status: str  # sent, failed, suppressed
    attempts: int
    at: datetime
    sid: str | None = None
    error: str | None = None
    permanent: bool = True
    #: attempts the provider may have taken besides the one that counts (see the module)
    extra_copies: int = 0


class Sender:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        provider: Provider,
        client: redis.Redis,
    ) -> None:
        self.settings = settings
        self.db = sessionmaker
        self.provider = provider
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.bucket = TokenBucket(
            client, settings.key("ratelimit", provider.name), settings.sms_rate_per_s
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._results: list[Outcome] = []
        self._results_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._heartbeat_once()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="sender-heartbeat"),
            asyncio.create_task(self._flusher(), name="sender-flusher"),
            asyncio.create_task(self._listen(), name="sender-listener"),
            asyncio.create_task(self._loop(), name="sender-loop"),
        ]

    async def stop(self) -> None:
        """Finish what is in flight, record it, then leave."""
        self._stopping.set()
        self._wake.set()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=20)
        self._results_ready.set()
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self._flush()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        with contextlib.suppress(Exception):
            async with self.db() as session, session.begin():
                await session.execute(
                    text("DELETE FROM sender_heartbeats WHERE instance_id = :me"),
                    {"me": self.instance_id},
                )
        await self.provider.aclose()

    def wake(self) -> None:
        self._wake.set()

    # --- background tasks --------------------------------------------------------------

    async def _heartbeat_once(self) -> None:
        async with self.db() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO sender_heartbeats (instance_id, seen_at) VALUES (:me, now()) "
                    "ON CONFLICT (instance_id) DO UPDATE SET seen_at = now()"
                ),
                {"me": self.instance_id},
            )
            await session.execute(
                text("DELETE FROM sender_heartbeats WHERE seen_at < now() - interval '1 hour'")
            )

    async def _heartbeat(self) -> None:
        interval = max(0.2, self.settings.sender_dead_after_s / 5)
        while not self._stopping.is_set():
            try:
                await self._heartbeat_once()
            except Exception as exc:
                log.warning("sender heartbeat failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def _listen(self) -> None:
        """Wake up as soon as a handler's transaction that recorded messages commits."""
        dsn = self.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
        while not self._stopping.is_set():
            try:
                self._listener = await asyncpg.connect(dsn)
                await self._listener.add_listener(
                    notify_channel(self.settings.schema_name), lambda *_: self._wake.set()
                )
                self._wake.set()
                while not self._stopping.is_set() and not self._listener.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=5)
            except Exception as exc:
                log.warning("sender listener failed, polling meanwhile", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1)
            finally:
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.close()

    async def _loop(self) -> None:
        capacity = self.settings.sender_concurrency
        # during a fan-out, claim a quarter of the capacity at a time rather than one row
        # per finished send: one claiming transaction per batch, not per message. An idle
        # sender (nothing in flight) claims at once, so the first SMS never waits for it.
        batch = max(1, capacity // 4)
        while not self._stopping.is_set():
            free = capacity - len(self._inflight)
            if free < batch and self._inflight:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            self._wake.clear()
            try:
                claimed = await self.claim(free)
            except Exception as exc:
                log.warning("claiming messages failed", error=type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            for message in claimed:
                task = asyncio.create_task(self._send(message))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if len(claimed) < free:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def _flusher(self) -> None:
        while not self._stopping.is_set():
            await self._results_ready.wait()
            self._results_ready.clear()
            await asyncio.sleep(0.02)  # let a few results gather into one transaction
            try:
                await self._flush()
            except Exception as exc:
                log.error("recording send results failed, retrying", error=repr(exc))
                self._results_ready.set()
                await asyncio.sleep(0.5)

    # --- one message -------------------------------------------------------------------

    async def claim(self, n: int) -> list[Claimed]:
        async with self.db() as session, session.begin():
            rows = (
                await session.execute(
                    _CLAIM,
                    {"dead": self.settings.sender_dead_after_s, "me": self.instance_id, "n": n},
                )
            ).all()
        return [Claimed(**row._mapping) for row in rows]

    async def _send(self, message: Claimed) -> None:
        started = time.monotonic()
        if message.was == "sending":
            POSSIBLE_DUPLICATES.inc()
            log.warning(
                "resending a message whose sender died while sending it",
                message_id=message.id,
                alert_id=str(message.alert_id),
            )
        if message.opted_out:
            self._record(Outcome(message, "suppressed", 0, _now(), error="opted out (STOP)"))
            return
        attempts = 0
        maybe_taken = 0  # failed attempts the provider may nevertheless have accepted
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.sms_max_attempts),
                wait=wait_exponential_jitter(
                    initial=self.settings.sms_retry_base_s,
                    max=10.0,
                    jitter=self.settings.sms_retry_base_s,
                ),
                retry=retry_if_exception(
                    lambda e: isinstance(e, ProviderError) and not e.permanent
                ),
                reraise=True,
            ):
                with attempt:
                    await self._take_token()
                    attempts += 1
                    SMS_PROVIDER_ATTEMPTS.inc()
                    assert message.phone is not None  # opted_out when None
                    try:
                        accepted = await self.provider.send(message.phone, message.body)
                    except ProviderError as exc:
                        maybe_taken += exc.maybe_accepted
                        raise
            if self.settings.fault_pause_after_send_s:
                await asyncio.sleep(self.settings.fault_pause_after_send_s)
            self._record(
                Outcome(
                    message,
                    "sent",
                    attempts,
                    _now(),
                    sid=accepted.sid,
                    extra_copies=possible_extra_copies(maybe_taken, sent=True),
                )
            )
        except ProviderError as exc:
            self._record(
                Outcome(
                    message,
                    "failed",
                    attempts,
                    _now(),
                    error=exc.reason,
                    permanent=exc.permanent,
                    extra_copies=possible_extra_copies(maybe_taken, sent=False),
                )
            )
        except Exception as exc:
            reason = mask_phone_numbers(repr(exc))[:300]
            log.error("sending failed unexpectedly", message_id=message.id, error=reason)
            self._record(
                Outcome(message, "failed", attempts, _now(), error=reason, permanent=False)
            )
        finally:
            SMS_SEND_SECONDS.observe(time.monotonic() - started)

    async def _take_token(self) -> None:
        """The rate limit's token, waiting out a Redis outage: nothing has gone to the
        provider yet, so the message waits (and, with every slot waiting, claiming stops)
        instead of being recorded failed. A 10 s Redis outage used to fail every message
        claimed meanwhile, the rest of a fan-out (tests/faults/test_redis_outage.py)."""
        failures = 0
        while True:
            try:
                await self.bucket.acquire()
                return
            except Exception as exc:
                if not is_transient(exc) or self._stopping.is_set():
                    raise
                failures += 1
                if failures == 1:
                    log.warning("rate limiter unreachable: sending waits", error=type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))

    def _record(self, outcome: Outcome) -> None:
        SMS_OUTCOMES.labels(outcome.message.kind, outcome.status).inc()
        if outcome.extra_copies:
            POSSIBLE_DUPLICATES.inc(outcome.extra_copies)
            log.warning(
                "the provider may have accepted an earlier attempt: possible duplicate",
                message_id=outcome.message.id,
                alert_id=str(outcome.message.alert_id),
                extra_copies=outcome.extra_copies,
            )
        if outcome.status != "sent":
            log.info(
                "message not sent",
                message_id=outcome.message.id,
                alert_id=str(outcome.message.alert_id),
                status=outcome.status,
                reason=outcome.error,
            )
        self._results.append(outcome)
        self._results_ready.set()

    async def _flush(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            async with self.db() as session, session.begin():
                await record_outcomes(session, batch)
        except Exception:
            self._results = batch + self._results
            raise


def possible_extra_copies(maybe_taken: int, *, sent: bool) -> int:
    """How many more copies than one the member may have got from one claim: every
    attempt the provider may have taken, plus the accepted one, minus one."""
    return max(0, maybe_taken + (1 if sent else 0) - 1)


_RECORD = text(
    """
    UPDATE outbound_messages o
    SET status = r.status, provider_sid = r.sid, attempts = o.attempts + r.attempts,
        error = r.error, sent_at = r.at,
        possible_duplicate = o.possible_duplicate OR r.extra_copies > 0
    FROM unnest(CAST(:ids AS bigint[]), CAST(:claims AS integer[]), CAST(:statuses AS text[]),
                CAST(:sids AS text[]), CAST(:attempts AS integer[]), CAST(:errors AS text[]),
                CAST(:ats AS timestamptz[]), CAST(:extra_copies AS integer[]))
         AS r(id, claim, status, sid, attempts, error, at, extra_copies)
    -- fencing: only under the claim the message was sent with
    WHERE o.id = r.id AND o.claim = r.claim
    RETURNING o.id
    """
)


_MARK_ALERTS = text(
    """
    UPDATE alerts a SET status = r.status
    FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[])) AS r(id, status)
    WHERE a.id = r.id AND a.status IN ('pending', 'cancelled')
    """
)


async def record_outcomes(session: AsyncSession, batch: list[Outcome]) -> None:
    """Mark messages and alerts, and put alert.sent / alert.failed in the outbox; a
    result for a row another sender has claimed since is dropped."""
    recorded = set(
        (
            await session.execute(
                _RECORD,
                {
                    "ids": [o.message.id for o in batch],
                    "claims": [o.message.claim for o in batch],
                    "statuses": [o.status for o in batch],
                    "sids": [o.sid for o in batch],
                    "attempts": [o.attempts for o in batch],
                    "errors": [o.error for o in batch],
                    "ats": [o.at if o.status == "sent" else None for o in batch],
                    "extra_copies": [o.extra_copies for o in batch],
                },
            )
        ).scalars()
    )
    if len(recorded) < len(batch):
        fenced = [o.message.id for o in batch if o.message.id not in recorded]
        FENCED_RESULTS.inc(len(fenced))
        log.warning(
            "send results refused: another sender reclaimed these messages meanwhile",
            message_ids=fenced,
        )
        batch = [o for o in batch if o.message.id in recorded]
    alert_outcomes = [o for o in batch if o.message.kind == "alert"]
    if not alert_outcomes:
        return
    # one statement for the batch (not one per alert)
    await session.execute(
        _MARK_ALERTS,
        {
            "ids": [o.message.alert_id for o in alert_outcomes],
            "statuses": ["sent" if o.status == "sent" else "failed" for o in alert_outcomes],
        },
    )
    by_emergency: dict[uuid.UUID, list[EventData]] = defaultdict(list)
    for o in alert_outcomes:
        m = o.message
        event: EventData
        if o.status == "sent":
            event = AlertSent(
                emergency_id=m.emergency_id,
                member_id=m.member_id,
                alert_id=m.alert_id,
                wave=m.wave,
                channel="sms",
                distance_m=m.distance_m,
                language=m.language,
                segments=m.segments,
                qualifications=list(m.qualifications or []),
                section=m.section,
                sent_at=o.at,
            )
        else:
            event = AlertFailed(
                emergency_id=m.emergency_id,
                member_id=m.member_id,
                alert_id=m.alert_id,
                reason=o.error or "failed",
                permanent=o.permanent,
                failed_at=o.at,
            )
        by_emergency[m.emergency_id].append(event)
    for emergency_id, events in by_emergency.items():
        await add_events(session, events, source=SOURCE, correlationid=str(emergency_id))


def _now() -> datetime:
    return datetime.now(UTC)
