"""Provider webhooks: SMS replies (`POST /sms/inbound`) and delivery callbacks
(`POST /sms/status`), Twilio format, each checked with Twilio's `RequestValidator`
against MUSTER_PUBLIC_BASE_URL + the path (403 otherwise, before anything changes).

A reply is taken once per `MessageSid`: Twilio retries a webhook it got no answer to,
and a captured request can be replayed; the same SID answers the same TwiML again and
changes nothing (a unique index, so two copies arriving together are one too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from services.alerts import messages
from services.alerts.alerting import SOURCE
from services.alerts.answers import (
    OpenAlert,
    accepts_after_close,
    alerts_of_phone,
    confirm_roll_call,
    open_roll_call,
    record_answer,
    taken,
)
from services.alerts.drill_runs import apply_drill_status
from services.alerts.erasure import forget_erased_opt_out
from services.alerts.models import alerts, inbound_messages, outbound_messages, sms_opt_outs
from services.alerts.replies import Reply, parse
from services.alerts.responder_states import moves
from services.alerts.self_service import MemberCommands
from services.alerts.settings import Settings
from shared.events.alerts import AlertDelivered, AlertFailed
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)


def twiml(body: str | None) -> Response:
    reply = MessagingResponse()
    if body:
        reply.message(body)
    return Response(str(reply), media_type="application/xml")


async def verified_form(request: Request, settings: Settings) -> dict[str, str]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(
        url, form, signature
    ):
        log.warning("webhook with a wrong signature refused", path=request.url.path)
        raise HTTPException(status_code=403, detail="invalid X-Twilio-Signature")
    return form


async def handle_reply(
    session: AsyncSession, phone: str, reply: Reply, now: datetime
) -> tuple[str, str, OpenAlert | None]:
    """What an SMS reply does: (outcome, the answer text, the alert it concerned)."""
    mine = await alerts_of_phone(session, phone)
    language = mine[0].alert.language if mine else "en"
    if reply.kind == "stop":
        await session.execute(pg_insert(sms_opt_outs).values(phone=phone).on_conflict_do_nothing())
        return "stop", messages.text(language, "stop"), None
    if reply.kind == "start":
        await session.execute(sms_opt_outs.delete().where(sms_opt_outs.c.phone == phone))
        return "start", messages.text(language, "start"), None
    if reply.kind == "help":
        return "help", messages.text(language, "help"), None
    if reply.kind == "unknown":
        return "unknown", messages.text(language, "help"), None
    if reply.kind == "roll_call_ok":
        return await _roll_call_ok(session, mine, reply, language, now)
    answer = reply.kind
    open_alerts = [a for a in mine if not a.closed and a.alert.status != "cancelled"]
    # the alerts this answer could move (on the loop, a member is usually out for one
    # emergency while other alerts of theirs are still open)
    movable = [
        a
        for a in mine
        if a.alert.status != "cancelled"
        and (not a.closed or accepts_after_close(a, answer))
        and moves(a.alert.response, answer)
    ]
    target: OpenAlert | None = None
    if reply.code is not None:
        # codes are unique among active emergencies only: an open alert's comes first
        coded = [a for a in open_alerts if a.emergency.reply_code == reply.code] or [
            a for a in mine if a.emergency.reply_code == reply.code
        ]
        target = coded[0] if coded else None
    elif answer in LOOP_ANSWERS and len(movable) == 1:
        target = movable[0]
    elif answer in LOOP_ANSWERS and len(movable) > 1:
        return _which(movable, language, answer)
    elif len(open_alerts) == 1:
        target = open_alerts[0]
    elif not open_alerts and mine:
        target = mine[0]
    if target is None:
        if len(open_alerts) > 1 or (reply.code is not None and open_alerts):
            return _which(open_alerts, language)
        return "no_alert", messages.text(language, "no_alert"), None
    language = target.alert.language
    recorded = await record_answer(
        session, target, answer, eta_minutes=reply.eta_minutes, channel="sms", now=now
    )
    if not taken(answer, recorded) and recorded in LOOP_STATES:
        # never back: they are further along already
        state = messages.text(language, f"state_{recorded}")
        return "already", messages.text(language, "already", state=state), target
    if recorded == "none":
        # home safe before saying they would come: nothing to record, tell them how
        return "not_now", messages.text(language, "help"), target
    if recorded == "accepted":
        eta = messages.text(language, "eta", m=reply.eta_minutes) if reply.eta_minutes else ""
        return recorded, messages.text(language, "accepted", eta=eta), target
    return recorded, messages.text(language, REPLY_TEXT.get(recorded, recorded)), target


#: the loop's answers (their target is the alert they move, not merely an open one)
LOOP_ANSWERS = frozenset({"en_route", "on_scene", "home_safe"})
LOOP_STATES = frozenset({"en_route", "on_scene", "released", "home_safe"})
#: the text thanking for a recorded answer, where it is not named after the answer
REPLY_TEXT = {"on_scene": "arrived"}


def _which(
    candidates: list[OpenAlert], language: str, answer: str | None = None
) -> tuple[str, str, None]:
    """Several alerts the reply could be for: ask for the code, never guess. The example
    is the member's kind of reply (YES ... 15, or SAFE ..., OK ...)."""
    titled = {a.emergency.reply_code: a.emergency.title for a in candidates}
    codes = sorted(titled)
    # the code with the start of its title, so the member knows which is which
    listed = ", ".join(f"{code} {titled[code][:24].strip()}" for code in codes)
    if answer in LOOP_ANSWERS or answer == "roll_call_ok":
        reply = f"{messages.text(language, f'word_{answer}')} {codes[0]}"
        return "ambiguous", messages.text(language, "which_reply", reply=reply, codes=listed), None
    which = messages.text(language, "which", example=codes[0], codes=listed)
    return "ambiguous", which, None


async def _roll_call_ok(
    session: AsyncSession, mine: list[OpenAlert], reply: Reply, language: str, now: datetime
) -> tuple[str, str, OpenAlert | None]:
    """OK answers the member's open roll call; without one it is not understood (help)."""
    asked = [a for a in mine if await open_roll_call(session, a) is not None]
    if reply.code is not None:
        asked = [a for a in asked if a.emergency.reply_code == reply.code]
    if len(asked) > 1:
        return _which(asked, language, "roll_call_ok")
    if not asked:
        return "unknown", messages.text(language, "help"), None
    target = asked[0]
    await confirm_roll_call(session, target, channel="sms", now=now)
    return "roll_call_ok", messages.text(target.alert.language, "roll_call_ok"), target


def sms_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    commands: MemberCommands | None = None,
    drill_ok: Callable[[AsyncSession, str], Awaitable[str | None]] | None = None,
) -> APIRouter:
    """`drill_ok` (drill_runs.py): an OK that answered no roll call answers the member's
    open drill SMS, if they have one (the text to answer with, else None)."""
    router = APIRouter(tags=["sms"])

    @router.post("/sms/inbound", summary="An SMS reply (Twilio webhook); answers in TwiML")
    async def inbound(request: Request) -> Response:
        form = await verified_form(request, settings)
        phone = form.get("From", "")
        body = form.get("Body", "")
        if not phone:
            raise HTTPException(status_code=422, detail="From: a sender number is required")
        sid = form.get("MessageSid", "")
        if not sid or len(sid) > 64:
            # Twilio always sends one (34 characters); without it a replay could not be told
            raise HTTPException(
                status_code=422, detail="MessageSid: the provider's message id is required"
            )
        now = datetime.now(UTC)
        async with db()() as session, session.begin():
            # first, so a copy of this SID arriving meanwhile waits for this transaction
            # and then finds it (the unique index)
            row_id = (
                await session.execute(
                    pg_insert(inbound_messages)
                    .values(
                        provider_sid=sid,
                        phone=phone,
                        body=body,
                        outcome="received",
                        received_at=now,
                    )
                    .on_conflict_do_nothing(
                        index_elements=["provider_sid"],
                        index_where=inbound_messages.c.provider_sid.is_not(None),
                    )
                    .returning(inbound_messages.c.id)
                )
            ).scalar_one_or_none()
            if row_id is None:
                earlier = (
                    await session.execute(
                        select(inbound_messages.c.answer, inbound_messages.c.outcome).where(
                            inbound_messages.c.provider_sid == sid
                        )
                    )
                ).one()
                log.info("sms reply already handled, answered again", outcome=earlier.outcome)
                return twiml(earlier.answer)
            # a member's own command (AWAY, BACK, STATUS, LINK: self_service.py) first
            command = await commands.answer(session, phone, body, now) if commands else None
            if command is not None:
                outcome, answer, kept, target = command.outcome, command.answer, command.kept, None
            else:
                reply = parse(body)
                outcome, answer, target = await handle_reply(session, phone, reply, now)
                if outcome == "unknown" and reply.kind == "roll_call_ok" and drill_ok:
                    drill_answer = await drill_ok(session, phone)
                    if drill_answer is not None:
                        outcome, answer = "drill_ok", drill_answer
                kept = answer
            if outcome == "start":
                await forget_erased_opt_out(session, settings, phone)
            await session.execute(
                update(inbound_messages)
                .where(inbound_messages.c.id == row_id)
                .values(
                    outcome=outcome,
                    answer=kept,
                    alert_id=target.alert.id if target else None,
                    emergency_id=target.alert.emergency_id if target else None,
                )
            )
        log.info(
            "sms reply",
            outcome=outcome,
            alert_id=str(target.alert.id) if target else None,
        )
        return twiml(answer)

    @router.post("/sms/status", summary="A delivery callback (Twilio StatusCallback)")
    async def status(request: Request) -> Response:
        form = await verified_form(request, settings)
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        state = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        async with db()() as session, session.begin():
            await apply_status(session, sid, state, form.get("ErrorCode"))
        return Response(status_code=204)

    return router


async def apply_status(session: AsyncSession, sid: str, state: str, error_code: Any) -> None:
    row = (
        await session.execute(
            select(outbound_messages.c.alert_id, outbound_messages.c.kind).where(
                outbound_messages.c.provider_sid == sid
            )
        )
    ).one_or_none()
    if row is None:
        # not an alert's message: perhaps a drill's (drill_runs.py)
        await apply_drill_status(session, sid, state, error_code)
        return
    now = datetime.now(UTC)
    if state in ("failed", "undelivered"):
        await session.execute(
            update(outbound_messages)
            .where(outbound_messages.c.provider_sid == sid)
            .values(error=f"{state} {error_code or ''}".strip())
        )
    if row.kind != "alert":
        return
    if state == "delivered":
        changed = (
            await session.execute(
                update(alerts)
                .where(alerts.c.id == row.alert_id, alerts.c.status == "sent")
                .values(status="delivered")
                .returning(alerts.c.emergency_id, alerts.c.member_id)
            )
        ).one_or_none()
        if changed is not None:
            await add_event(
                session,
                AlertDelivered(
                    emergency_id=changed.emergency_id,
                    member_id=changed.member_id,
                    alert_id=row.alert_id,
                    delivered_at=now,
                ),
                source=SOURCE,
                correlationid=str(changed.emergency_id),
            )
    elif state in ("failed", "undelivered"):
        changed = (
            await session.execute(
                update(alerts)
                .where(alerts.c.id == row.alert_id, alerts.c.status.in_(("sent", "delivered")))
                .values(status="failed")
                .returning(alerts.c.emergency_id, alerts.c.member_id)
            )
        ).one_or_none()
        if changed is not None:
            await add_event(
                session,
                AlertFailed(
                    emergency_id=changed.emergency_id,
                    member_id=changed.member_id,
                    alert_id=row.alert_id,
                    reason=f"{state} {error_code or ''}".strip(),
                    permanent=True,
                    failed_at=now,
                ),
                source=SOURCE,
                correlationid=str(changed.emergency_id),
            )
