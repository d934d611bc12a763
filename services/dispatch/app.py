"""The dispatch service's FastAPI app and its Kafka wiring.

Besides the HTTP API, each instance runs: the board consumer (muster.alerts and
muster.responses, one consumer group), the timer scheduler (escalation steps, overdue
responders), the summary publisher,
the webhook deliverer and the board feed listener. All of them coordinate through
PostgreSQL (row locks with SKIP LOCKED, advisory locks, LISTEN/NOTIFY), so several
instances can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import FastAPI

from services.dispatch import (
    after_action,
    authority_summaries,
    board_store,
    console,
    emergencies,
)
from services.dispatch.api import make_verifier, router
from services.dispatch.availability import SummaryPublisher
from services.dispatch.live import BoardFeed
from services.dispatch.scheduler import TimerScheduler
from services.dispatch.settings import Settings
from services.dispatch.subscriptions import WebhookDeliverer
from shared.consumer import Delivery, GroupHandler
from shared.events.alerts import (
    AlertCallEnded,
    AlertCallPlaced,
    AlertDelivered,
    AlertFailed,
    AlertSent,
    AlertStoodDown,
)
from shared.events.responses import ResponseReceived, RollCallConfirmed
from shared.events.topics import ALERTS, RESPONSES
from shared.service import ServiceRuntime, create_app

BOARD_EVENTS = (
    AlertSent, AlertDelivered, AlertFailed, AlertStoodDown, AlertCallPlaced, AlertCallEnded,
    ResponseReceived, RollCallConfirmed,
)  # fmt: skip


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings)
    handler: Callable[[Delivery], Awaitable[None]] = partial(emergencies.on_board_event, settings)
    group_handler: GroupHandler = partial(emergencies.on_board_events, settings)
    runtime.consume(
        topics=[ALERTS, RESPONSES],
        handlers={event.event_type: handler for event in BOARD_EVENTS},
        transactional=True,
        # the board's effects are all in PostgreSQL (rows, outbox, NOTIFY on commit), so
        # one emergency's answers of a poll apply in one transaction, planned as one step
        batch_transactions=True,
        group_handlers={event.event_type: group_handler for event in BOARD_EVENTS},
    )
    feed = BoardFeed(settings.database_url, board_store.channel(settings))
    loops: list[BoardFeed | TimerScheduler | SummaryPublisher | WebhookDeliverer] = [
        feed,
        TimerScheduler(runtime.db, settings),
        SummaryPublisher(runtime.db, settings),
        WebhookDeliverer(runtime.db, settings),
    ]
    tasks: list[asyncio.Task[None]] = []

    async def start_loops() -> None:
        for loop in loops:
            tasks.append(asyncio.create_task(loop.run(), name=type(loop).__name__))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.listening.wait(), 10)

    async def stop_loops() -> None:
        for loop in loops:
            loop.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)

    app = create_app(
        runtime,
        title="Muster dispatch",
        description="Emergencies, the live response board, escalation, and availability "
        "summaries for authorities.",
        routers=[router, console.router, authority_summaries.router, after_action.router],
        on_startup=[start_loops],
        on_shutdown=[stop_loops],
    )
    app.state.verifier = make_verifier(settings)
    app.state.board_feed = feed
    return app
