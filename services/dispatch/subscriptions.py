"""Authority webhooks: each availability summary of a section, POSTed and signed.

A receiver verifies a delivery with the subscription's secret:

    expected = "sha256=" + hex(HMAC-SHA256(secret, f"{X-Muster-Timestamp}.{raw body}"))

and compares it with `X-Muster-Signature` in constant time (rejecting old timestamps
stops replays). Deliveries are rows in PostgreSQL: a failed one is retried with
exponential backoff, so a receiver that was down gets every summary it missed once it
answers again; after `DISPATCH_WEBHOOK_MAX_FAILURES` consecutive failures the
subscription is paused (deliveries keep queueing) until someone resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
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
#: a claimed delivery is not taken by another worker for this long (the POST's timeout)
LEASE_MARGIN_S = 5.0


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


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, limit: int
) -> list[Row[Any]]:
    """Take due deliveries of active subscriptions, oldest first, one lease each."""
    lease = timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S)
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.execute(
                select(
                    webhook_deliveries.c.id,
                    webhook_deliveries.c.subscription_id,
                    webhook_deliveries.c.event_id,
                    webhook_deliveries.c.body,
                    webhook_deliveries.c.attempts,
                    subscriptions.c.url,
                    subscriptions.c.secret,
                )
                .join(subscriptions, subscriptions.c.id == webhook_deliveries.c.subscription_id)
                .where(
                    webhook_deliveries.c.status == "pending",
                    webhook_deliveries.c.next_attempt_at <= func.now(),
                    subscriptions.c.paused.is_(False),
                )
                .order_by(webhook_deliveries.c.id)
                .limit(limit)
                .with_for_update(of=webhook_deliveries, skip_locked=True)
            )
        ).all()
        if rows:
            await session.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id.in_([r.id for r in rows]))
                .values(next_attempt_at=datetime.now(UTC) + lease)
            )
    return list(rows)  # type: ignore[arg-type]


async def _post(
    client: httpx.AsyncClient, delivery: Row[Any], *, allow_private: bool = False
) -> str | None:
    """POST one delivery; None when the receiver took it (2xx), else what went wrong.

    Unless private addresses are allowed, the URL's host is resolved and checked again
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
        response = await client.post(
            url, content=delivery.body.encode(), headers=headers, extensions=extensions
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


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


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    client: httpx.AsyncClient,
    limit: int = 20,
) -> int:
    claimed = await _claim(sessionmaker, settings, limit)
    # one subscription's deliveries go in order; different subscriptions in parallel
    by_subscription: dict[uuid.UUID, list[Row[Any]]] = {}
    for delivery in claimed:
        by_subscription.setdefault(delivery.subscription_id, []).append(delivery)

    async def run(deliveries: list[Row[Any]]) -> None:
        for delivery in deliveries:
            error = await _post(client, delivery, allow_private=settings.webhook_allow_private)
            await _record(sessionmaker, settings, delivery, error)
            if error is not None:
                return  # _record pushed the rest back behind this one's backoff

    await asyncio.gather(*(run(d) for d in by_subscription.values()))
    return len(claimed)


class WebhookDeliverer:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_s, follow_redirects=False
        ) as client:
            while not self._stopping.is_set():
                try:
                    await deliver_due(self._sessionmaker, self._settings, client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("webhook deliverer error, retrying", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.25)
