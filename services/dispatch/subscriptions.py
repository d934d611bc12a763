"""Authority webhooks: each availability summary of a section, POSTed and signed.

A receiver verifies a delivery with the subscription's secret:

    expected = "sha256=" + hex(HMAC-SHA256(secret, f"{X-Muster-Timestamp}.{raw body}"))

and compares it with `X-Muster-Signature` in constant time (rejecting old timestamps
stops replays). Deliveries are rows in PostgreSQL: a failed one is retried with
exponential backoff, so a receiver that was down gets every summary it missed once it
answers again; after `DISPATCH_WEBHOOK_MAX_FAILURES` consecutive failures the
subscription is paused (deliveries keep queueing) until someone resumes it.

A receiver is a stranger's server, so one of them must never hold up the others: each
attempt has a total deadline (`DISPATCH_WEBHOOK_TIMEOUT_S`, from resolving the host to
the answer), reads at most a few kilobytes of the answer, and each subscription's
deliveries run in a task of their own (in order), side by side with the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
from prometheus_client import Counter
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import egress
from services.dispatch.models import subscriptions, webhook_deliveries
from services.dispatch.settings import Settings
from shared.auth import Principal
from shared.observability import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Muster-Signature"
TIMESTAMP_HEADER = "X-Muster-Timestamp"
EVENT_ID_HEADER = "X-Muster-Event-Id"
DELIVERY_HEADER = "X-Muster-Delivery"
#: a claimed delivery is kept from other instances for the deadlines of the deliveries
#: before it in its subscription's batch, its own, and this margin
LEASE_MARGIN_S = 5.0
#: deliveries of one subscription claimed at once (delivered one after another)
PER_SUBSCRIPTION_BATCH = 10
#: how much of a receiver's answer is read: its status is what counts, and a hostile
#: receiver must not make dispatch read (or hold) a large body
RESPONSE_READ_LIMIT_BYTES = 4096
#: how often the deliverer looks for due deliveries when nothing wakes it sooner
POLL_INTERVAL_S = 0.25

DELIVERIES = Counter(
    "muster_dispatch_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, timed_out (the whole attempt "
    "passed DISPATCH_WEBHOOK_TIMEOUT_S), refused (SSRF guard), failed (non-2xx or an "
    "HTTP error)",
    ["outcome"],
)


def sign(secret: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before the next try after `attempts` failures: base x 2^(attempts-1), capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


async def create(
    session: AsyncSession, *, section: str, url: str, secret: str, created_by: str
) -> Row[Any]:
    subscription_id = uuid.uuid4()
    await session.execute(
        subscriptions.insert().values(
            id=subscription_id, section=section, url=url, secret=secret, created_by=created_by
        )
    )
    return await get(session, subscription_id)  # type: ignore[return-value]


async def get(session: AsyncSession, subscription_id: uuid.UUID) -> Row[Any] | None:
    return (
        await session.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))
    ).one_or_none()


def manages(principal: Principal, subscription: Row[Any]) -> bool:
    """Whether `principal` may see, resume or delete `subscription`. Admins manage every
    one; an authority only those it created: two authorities of one section (a
    prefecture and a fire service) must not read, pause or delete each other's webhooks."""
    if principal.is_admin:
        return True
    return (
        principal.role == "authority"
        and subscription.created_by == principal.account_id
        and principal.can_act_for(subscription.section)
    )


async def listing(
    session: AsyncSession, sections: set[str] | None, *, created_by: str | None = None
) -> list[Row[Any]]:
    """Subscriptions of `sections` (None: all), only those `created_by` made when given."""
    query = select(subscriptions).order_by(subscriptions.c.created_at)
    if sections is not None:
        query = query.where(subscriptions.c.section.in_(sections))
    if created_by is not None:
        query = query.where(subscriptions.c.created_by == created_by)
    return list((await session.execute(query)).all())


async def managed_by(session: AsyncSession, principal: Principal) -> list[Row[Any]]:
    """The subscriptions `principal` manages (see `manages`), oldest first."""
    if principal.is_admin:
        return await listing(session, None)
    return await listing(session, set(principal.sections), created_by=principal.account_id)


async def pending_count(session: AsyncSession, subscription_id: uuid.UUID) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    webhook_deliveries.c.subscription_id == subscription_id,
                    webhook_deliveries.c.status == "pending",
                )
            )
        ).scalar_one()
    )


async def resume(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    """Un-pause and retry what is queued right away."""
    await session.execute(
        subscriptions.update()
        .where(subscriptions.c.id == subscription_id)
        .values(paused=False, consecutive_failures=0)
    )
    await session.execute(
        webhook_deliveries.update()
        .where(
            webhook_deliveries.c.subscription_id == subscription_id,
            webhook_deliveries.c.status == "pending",
        )
        .values(next_attempt_at=func.now())
    )


async def delete(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    await session.execute(
        webhook_deliveries.delete().where(webhook_deliveries.c.subscription_id == subscription_id)
    )
    await session.execute(subscriptions.delete().where(subscriptions.c.id == subscription_id))


async def enqueue(
    session: AsyncSession, section: str, emergency_id: uuid.UUID, event_id: str, body: str
) -> int:
    """One delivery per subscription of the section, in the caller's transaction."""
    ids = (
        (
            await session.execute(
                select(subscriptions.c.id).where(subscriptions.c.section == section)
            )
        )
        .scalars()
        .all()
    )
    if ids:
        await session.execute(
            webhook_deliveries.insert(),
            [
                {
                    "subscription_id": s,
                    "emergency_id": emergency_id,
                    "event_id": event_id,
                    "body": body,
                }
                for s in ids
            ],
        )
    return len(ids)


#: the first due deliveries of up to :slots subscriptions not already being delivered to
#: here, at most :per_subscription each, oldest first (SKIP LOCKED: another instance
#: claiming at the same moment takes other rows)
_CLAIM = text(
    """
    WITH due AS (
        SELECT d.id, d.subscription_id,
               row_number() OVER (PARTITION BY d.subscription_id ORDER BY d.id) AS position
        FROM webhook_deliveries d
        JOIN subscriptions s ON s.id = d.subscription_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND NOT s.paused
          AND NOT (d.subscription_id = ANY(CAST(:busy AS uuid[])))
    ), chosen AS (
        SELECT subscription_id FROM due WHERE position = 1 ORDER BY id LIMIT :slots
    )
    SELECT d.id, d.subscription_id, d.event_id, d.body, d.attempts, s.url, s.secret,
           due.position
    FROM webhook_deliveries d
    JOIN due ON due.id = d.id
    JOIN subscriptions s ON s.id = d.subscription_id
    WHERE d.subscription_id IN (SELECT subscription_id FROM chosen)
      AND due.position <= :per_subscription
    ORDER BY d.id
    FOR UPDATE OF d SKIP LOCKED
    """
)


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    busy: Collection[uuid.UUID],
    slots: int,
) -> list[Row[Any]]:
    """Take due deliveries of active subscriptions, each with a lease long enough for
    the deliveries before it in its subscription's queue to run to their deadline."""
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.execute(
                _CLAIM,
                {"busy": list(busy), "slots": slots, "per_subscription": PER_SUBSCRIPTION_BATCH},
            )
        ).all()
        if rows:
            now = datetime.now(UTC)
            await session.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == bindparam("delivery_id"))
                .values(next_attempt_at=bindparam("leased_until")),
                [
                    {
                        "delivery_id": r.id,
                        "leased_until": now + lease(r.position, settings.webhook_timeout_s),
                    }
                    for r in rows
                ],
            )
    return list(rows)


def lease(position: int, deadline_s: float) -> timedelta:
    """How long the `position`-th (from 1) claimed delivery of a subscription is kept
    from other instances: until the ones before it and itself have had their deadline."""
    return timedelta(seconds=position * deadline_s + LEASE_MARGIN_S)


async def _read_a_little(response: httpx.Response) -> None:
    """Read at most RESPONSE_READ_LIMIT_BYTES of the receiver's answer. Raw bytes, so a
    compressed body cannot inflate either; a small body is read whole, which lets the
    connection be reused, and a larger one is dropped with its connection."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= RESPONSE_READ_LIMIT_BYTES:
            return


def outcome_of(status_code: int) -> str | None:
    """None when the receiver took the delivery, else why not."""
    return None if 200 <= status_code < 300 else f"HTTP {status_code}"


@dataclass
class _Answer:
    """The receiver's status code, once its headers have arrived."""

    status_code: int | None = None


async def _post(
    client: httpx.AsyncClient,
    delivery: Row[Any],
    *,
    allow_private: bool = False,
    deadline_s: float,
) -> str | None:
    """POST one delivery; None when the receiver took it (2xx), else what went wrong.

    Everything (resolving, connecting, sending, the answer) must end within
    `deadline_s`: httpx's own timeouts are per read, so a receiver sending a byte a
    second would otherwise hold the delivery for as long as it likes."""
    answer = _Answer()
    try:
        async with asyncio.timeout(deadline_s):
            return await _post_once(client, delivery, answer, allow_private=allow_private)
    except TimeoutError:
        if answer.status_code is not None:
            # it answered in time and only the rest of its body was slow: a 2xx stands,
            # and re-sending would give it a duplicate
            return outcome_of(answer.status_code)
        return f"timed out after {deadline_s:g} s"


async def _post_once(
    client: httpx.AsyncClient, delivery: Row[Any], answer: _Answer, *, allow_private: bool
) -> str | None:
    """Unless private addresses are allowed, the URL's host is resolved and checked again
    now (DNS may have changed since the subscription was made) and the POST goes to the
    checked address, so a forbidden one is a failed delivery and never a request."""
    url: str | httpx.URL = delivery.url
    extensions: dict[str, Any] = {}
    host_header: dict[str, str] = {}
    if not allow_private:
        try:
            target = await egress.resolve_target(delivery.url)
        except egress.RefusedTarget as exc:
            return f"refused: {exc}"
        url = target.pinned_url()
        host_header = {"Host": target.host_header}
        extensions = {"sni_hostname": target.sni_hostname}
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
        EVENT_ID_HEADER: delivery.event_id,
        DELIVERY_HEADER: str(delivery.id),
        **host_header,
    }
    try:
        async with client.stream(
            "POST", url, content=delivery.body.encode(), headers=headers, extensions=extensions
        ) as response:
            answer.status_code = response.status_code
            with contextlib.suppress(httpx.HTTPError):
                await _read_a_little(response)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    return outcome_of(response.status_code)


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    delivery: Row[Any],
    error: str | None,
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        if error is None:
            await session.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery.id)
                .values(status="delivered", delivered_at=now, attempts=delivery.attempts + 1)
            )
            await session.execute(
                subscriptions.update()
                .where(subscriptions.c.id == delivery.subscription_id)
                .values(consecutive_failures=0, last_success_at=now, last_error=None)
            )
            return
        attempts = delivery.attempts + 1
        delay = backoff_s(attempts, settings.webhook_retry_base_s, settings.webhook_retry_max_s)
        await session.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.id == delivery.id)
            .values(
                attempts=attempts,
                last_error=error,
                backoff_s=delay,
                next_attempt_at=now + timedelta(seconds=delay),
            )
        )
        # the receiver is failing: its other queued deliveries wait as long as this one
        await session.execute(
            webhook_deliveries.update()
            .where(
                webhook_deliveries.c.subscription_id == delivery.subscription_id,
                webhook_deliveries.c.status == "pending",
                webhook_deliveries.c.id != delivery.id,
            )
            .values(
                next_attempt_at=func.greatest(
                    webhook_deliveries.c.next_attempt_at, now + timedelta(seconds=delay)
                )
            )
        )
        failures = (
            await session.execute(
                subscriptions.update()
                .where(subscriptions.c.id == delivery.subscription_id)
                .values(
                    consecutive_failures=subscriptions.c.consecutive_failures + 1,
                    last_error=error,
                )
                .returning(subscriptions.c.consecutive_failures)
            )
        ).scalar_one_or_none()
        if failures is not None and failures >= settings.webhook_max_failures:
            await session.execute(
                subscriptions.update()
                .where(subscriptions.c.id == delivery.subscription_id)
                .values(paused=True)
            )
            log.warning(
                "subscription paused after repeated failures",
                subscription_id=str(delivery.subscription_id),
                failures=failures,
            )


def outcome_label(error: str | None) -> str:
    """The `outcome` label of a delivery attempt in DELIVERIES."""
    if error is None:
        return "delivered"
    if error.startswith("timed out"):
        return "timed_out"
    if error.startswith("refused"):
        return "refused"
    return "failed"


class WebhookDeliverer:
    """Delivers what is due: each subscription's deliveries one after another, in order,
    and different subscriptions side by side (up to `DISPATCH_WEBHOOK_CONCURRENCY`), so a
    slow or hanging receiver holds up only its own queue. A subscription being delivered
    to is not claimed again here until its batch is done."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stopping = asyncio.Event()
        #: set when a subscription's batch ends (its next rows may be due) or on stop
        self._wake = asyncio.Event()
        self._in_flight: dict[uuid.UUID, asyncio.Task[None]] = {}

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        concurrency = self._settings.webhook_concurrency
        async with httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        ) as client:
            try:
                while not self._stopping.is_set():
                    self._wake.clear()
                    try:
                        await self.start_due(client)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("webhook deliverer error, retrying", error=repr(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            finally:
                await self._finish_in_flight()

    async def start_due(self, client: httpx.AsyncClient) -> int:
        """Claim what is due for subscriptions not in flight; one task per subscription."""
        slots = self._settings.webhook_concurrency - len(self._in_flight)
        if slots <= 0:
            return 0
        claimed = await _claim(
            self._sessionmaker, self._settings, busy=self._in_flight.keys(), slots=slots
        )
        by_subscription: dict[uuid.UUID, list[Row[Any]]] = {}
        for delivery in claimed:
            by_subscription.setdefault(delivery.subscription_id, []).append(delivery)
        for subscription_id, deliveries in by_subscription.items():
            task = asyncio.create_task(self._deliver_in_order(client, deliveries))
            self._in_flight[subscription_id] = task
            task.add_done_callback(partial(self._done, subscription_id))
        return len(claimed)

    def _done(self, subscription_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(subscription_id, None)
        self._wake.set()

    async def _deliver_in_order(
        self, client: httpx.AsyncClient, deliveries: list[Row[Any]]
    ) -> None:
        settings = self._settings
        try:
            for delivery in deliveries:
                error = await _post(
                    client,
                    delivery,
                    allow_private=settings.webhook_allow_private,
                    deadline_s=settings.webhook_timeout_s,
                )
                DELIVERIES.labels(outcome_label(error)).inc()
                await _record(self._sessionmaker, settings, delivery, error)
                if error is not None:
                    return  # _record pushed the rest back behind this one's backoff
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # the rows keep their lease and are tried again when it ends
            log.warning("webhook delivery not recorded, retrying later", error=repr(exc))

    async def _finish_in_flight(self) -> None:
        """On stop, let deliveries under way reach their deadline, then cancel the rest
        (their rows are tried again when their lease ends)."""
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self._settings.webhook_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
