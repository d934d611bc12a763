"""The alerts service's FastAPI app and its Kafka wiring.

Two consumer groups: `<group>.index` keeps the Redis targeting index from
`muster.members.state` (no database: the Redis writes are idempotent by version);
`<group>` turns emergency events into alert records (transactional, once per event).
The sender runs beside them as asyncio tasks, and a watchdog rebuilds the index from
Kafka when its marker disappears (Redis lost its data); alerting waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from fastapi import FastAPI

from services.alerts import erasure
from services.alerts.alerting import Alerting
from services.alerts.answer_page import answer_router
from services.alerts.calling import CallLadder
from services.alerts.drill_calls import DrillCaller, drill_call_router
from services.alerts.drill_exports import drill_export_router
from services.alerts.drill_routes import drill_router
from services.alerts.drill_runs import Drills
from services.alerts.inbound import sms_router
from services.alerts.index import TargetingIndex
from services.alerts.member_page import member_page_router
from services.alerts.providers import provider_for
from services.alerts.providers.voice import voice_provider_for
from services.alerts.qualification_expiry import QualificationExpiry
from services.alerts.reach import reach_router
from services.alerts.safety_loop import SafetyLoop
from services.alerts.self_service import MemberCommands
from services.alerts.sending import Sender
from services.alerts.settings import Settings
from services.alerts.speech import Speech
from services.alerts.voice_inbound import voice_router
from shared.auth import TokenVerifier
from shared.consumer import Delivery
from shared.events.emergencies import (
    EmergencyClosed,
    EmergencyDeclared,
    EmergencyEscalated,
    EmergencyUpdated,
    ResponderOverdue,
    ResponderStatusSet,
    RollCallStarted,
)
from shared.events.members import MemberChanged
from shared.events.topics import EMERGENCIES, MEMBERS_STATE
from shared.observability import get_logger
from shared.service import ServiceRuntime, create_app

log = get_logger(__name__)


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings)
    redis_client = runtime.redis
    assert redis_client is not None
    index = TargetingIndex(redis_client, settings)
    sender = Sender(settings, runtime.db, provider_for(settings), redis_client)
    alerting = Alerting(settings, index, runtime.db, on_recorded=sender.wake)
    # members' own SMS commands and qualification reminders (issue 11, self-service)
    commands = MemberCommands(settings, index, lambda: redis_client)
    expiry = QualificationExpiry(settings, runtime.db, index, sender)
    # reachability drills and the readiness figures (issue 12)
    drills = Drills(settings, runtime.db, index, sender)
    voice = voice_provider_for(settings)
    # the channel ladder: calls after unanswered SMS (calling.py); off without a provider
    ladder = CallLadder(settings, runtime.db, voice, index) if voice is not None else None
    # drills' calls to members who have not answered (drill_calls.py): the same provider
    # setting, their own client
    drill_voice = voice_provider_for(settings)
    drill_caller = (
        DrillCaller(settings, runtime.db, drill_voice, index, drills.clock)
        if drill_voice is not None
        else None
    )
    safety_loop = SafetyLoop(settings)
    background: list[asyncio.Task[None]] = []

    async def on_member(delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, MemberChanged)
        await index.upsert(data)

    async def on_member_erased(key: bytes | None, _session: object) -> None:
        """The member's tombstone: their numbers and texts leave the alerts schema
        (erasure.py), then the index. The index is read first and emptied last, so a
        retry after a failure still knows the number."""
        if not key:
            return
        member_id = key.decode()
        known = [m.phone for m in await index.members([member_id]) if m.phone]
        async with runtime.db() as session, session.begin():
            erased = await erasure.erase_member(session, settings, UUID(member_id), known)
        await index.delete(member_id)
        log.info(
            "member erased",
            member_id=member_id,
            alerts=erased.alerts,
            outbound=erased.outbound,
            inbound=erased.inbound,
            opt_outs=erased.opt_outs,
        )

    runtime.consume(
        [MEMBERS_STATE],
        {MemberChanged.event_type: on_member},
        name=f"{settings.consumer_group}.index",
        on_tombstone=on_member_erased,
        transactional=False,
        max_poll_records=500,
    )
    runtime.consume(
        [EMERGENCIES],
        {
            EmergencyDeclared.event_type: alerting.on_declared,
            EmergencyUpdated.event_type: alerting.on_updated,
            EmergencyEscalated.event_type: alerting.on_escalated,
            EmergencyClosed.event_type: alerting.on_closed,
            ResponderStatusSet.event_type: safety_loop.on_status_set,
            RollCallStarted.event_type: safety_loop.on_roll_call,
            ResponderOverdue.event_type: safety_loop.on_overdue,
        },
        max_poll_records=10,
    )

    async def watch_index() -> None:
        while True:
            try:
                await index.ensure_ready()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("targeting index rebuild failed, retrying", error=repr(exc))
            await asyncio.sleep(1.0)

    async def startup() -> None:
        background.append(asyncio.create_task(watch_index(), name="index-watchdog"))
        await sender.start()
        await expiry.start()
        await drills.start()
        if ladder is not None:
            await ladder.start()
        if drill_caller is not None:
            await drill_caller.start()
        else:
            log.warning(
                "voice calls are off: Twilio needs TWILIO_VOICE_FROM_NUMBER or "
                "TWILIO_FROM_NUMBER to call from (a Messaging Service cannot place calls)"
            )

    async def shutdown() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if ladder is not None:
            await ladder.stop()
        if drill_caller is not None:
            await drill_caller.stop()
        await drills.stop()
        await expiry.stop()
        await sender.stop()

    app = create_app(
        runtime,
        title="Muster alerts",
        description="Selects the nearest qualified members, alerts them by SMS and web, "
        "and takes their answers.",
        routers=[
            sms_router(settings, lambda: runtime.db, commands, drills.sms_ok),
            answer_router(settings, lambda: runtime.db, lambda: redis_client),
            reach_router(settings, lambda: runtime.db, lambda: index),
            member_page_router(settings, lambda: runtime.db, lambda: redis_client, lambda: index),
            voice_router(settings, lambda: runtime.db, Speech(settings.espeak_path)),
            drill_router(settings, lambda: runtime.db, lambda: redis_client, lambda: drills),
            drill_export_router(lambda: runtime.db),
            drill_call_router(
                settings, lambda: runtime.db, Speech(settings.espeak_path), lambda: drills
            ),
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
    )
    app.state.index = index
    # staff tokens (the reach preview) are verified against members' JWKS, as dispatch does
    app.state.verifier = TokenVerifier.from_settings(settings)
    app.state.sender = sender
    return app
