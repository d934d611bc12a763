"""The ladder call's webhooks (Twilio format), each under the call's unguessable token:

- `POST /voice/{token}/call`: the TwiML Twilio fetches when the member picks up: the
  alert in the member's language and "press 1 / press 2" (voice_script.py);
- `POST /voice/{token}/menu`: the key pressed: 1 asks for the minutes, 2 records "not
  coming", anything else gets the prompt again;
- `POST /voice/{token}/minutes`: the minutes keyed in before `#`: recorded as coming with
  that ETA; none at all (the prompt ran out) is coming without an ETA; digits that are
  not minutes get the prompt again;
- `POST /voice/{token}/status`: the call's final status → `alert.call_ended`;
- `GET /voice/{token}/audio/{part}.wav`: speech alerts renders itself (Albanian) for
  `<Play>`. Not signed (Twilio fetches media as it is): the token is the secret, as for
  the `/r/{token}` page, and the audio says what the member's SMS says.

The POSTs are checked exactly as the SMS webhooks are (`verified_form`: Twilio's
signature over MUSTER_PUBLIC_BASE_URL + path, 403 otherwise, before anything is read or
changed). Answers take the SMS path (answers.record_answer, channel `voice`), which
publishes `muster.response.received.v1`. Bad input is answered in TwiML, never a 5xx:
the member only hears "sorry, I did not understand".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts.alerting import SOURCE
from services.alerts.answers import alert_by_token, record_answer
from services.alerts.calling import mark_placed
from services.alerts.inbound import verified_form
from services.alerts.settings import Settings
from services.alerts.speech import Speech, SpeechUnavailable
from services.alerts.voice_script import (
    CallContext,
    Part,
    Speak,
    closing,
    eta_minutes,
    line,
    menu,
    menu_choice,
    minutes_prompt,
    part_named,
    speaker,
)
from shared.events.alerts import AlertCallEnded
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)

#: Twilio's final CallStatus values and the outcome each is published as
CALL_OUTCOMES: dict[str, Literal["answered", "no_answer", "busy", "failed"]] = {
    "completed": "answered",
    "no-answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "canceled": "failed",
}

_CALL = text(
    """
    SELECT v.id AS call_id, v.status AS call_status, a.token AS alert_token, a.language,
           a.distance_m, a.response, a.stood_down_at, e.title, e.drill, e.members_needed,
           e.status AS e_status, e.staffed
    FROM voice_calls v
    JOIN alerts a ON a.id = v.alert_id
    JOIN emergencies e ON e.id = a.emergency_id
    WHERE v.token = :token
    """
)


def _twiml(document: str) -> Response:
    return Response(document, media_type="application/xml")


def voice_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    speech: Speech,
) -> APIRouter:
    router = APIRouter(tags=["voice"])
    base = settings.public_base_url.rstrip("/")

    def urls(token: str) -> dict[str, str]:
        root = f"{base}/voice/{token}"
        return {"menu": f"{root}/menu", "minutes": f"{root}/minutes"}

    def speak_for(token: str) -> Speak:
        def audio_url(part: Part, context: CallContext) -> str:
            name = f"accepted-{context.eta_minutes}" if part == "accepted" else part
            if part == "accepted" and not context.eta_minutes:
                name = "accepted"
            return f"{base}/voice/{token}/audio/{name}.wav"

        return speaker(audio_url if speech.available() else None)

    async def the_call(session: AsyncSession, token: str) -> Any:
        row = (await session.execute(_CALL, {"token": token})).one_or_none()
        if row is None:
            raise HTTPException(status_code=404, detail="token: no such call")
        return row

    def context_of(row: Any, eta: int | None = None) -> CallContext:
        return CallContext(
            language=row.language,
            title=row.title,
            distance_m=row.distance_m,
            members_needed=row.members_needed,
            drill=row.drill,
            eta_minutes=eta,
        )

    def no_longer_asked(row: Any) -> Part | None:
        """Why the call should not ask any more, as what it says instead."""
        if row.response is not None:
            return "answered"
        if row.e_status != "active":
            return "closed"
        if row.staffed or row.stood_down_at is not None:
            return "not_needed"
        return None

    @router.post("/voice/{token}/call", summary="The call's TwiML (Twilio fetches it)")
    async def call(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            # the runner may have died before recording the call: the call says so
            await mark_placed(session, token, form.get("CallSid"), datetime.now(UTC))
        speak = speak_for(token)
        context = context_of(row)
        stop = no_longer_asked(row)
        if stop is not None:
            return _twiml(closing(context, speak, stop))
        return _twiml(menu(context, speak, action=urls(token)["menu"]))

    @router.post("/voice/{token}/menu", summary="The key pressed at the call's menu")
    async def choice(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        speak = speak_for(token)
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            context = context_of(row)
            chosen = menu_choice(form.get("Digits"))
            if chosen is None:
                return _twiml(menu(context, speak, action=urls(token)["menu"], again=True))
            if chosen == "coming":
                return _twiml(minutes_prompt(context, speak, action=urls(token)["minutes"]))
            said = await _answer(session, row, "declined", None)
        return _twiml(closing(context, speak, said))

    @router.post("/voice/{token}/minutes", summary="The minutes keyed in after pressing 1")
    async def minutes(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        speak = speak_for(token)
        async with db()() as session, session.begin():
            row = await the_call(session, token)
            eta: int | None = None
            if "Digits" in form:
                eta = eta_minutes(form["Digits"])
                if eta is None:
                    again = minutes_prompt(
                        context_of(row), speak, action=urls(token)["minutes"], again=True
                    )
                    return _twiml(again)
            said = await _answer(session, row, "accepted", eta)
        return _twiml(closing(context_of(row, eta), speak, said))

    @router.post("/voice/{token}/status", summary="The call's final status (StatusCallback)")
    async def status(token: str, request: Request) -> Response:
        form = await verified_form(request, settings)
        outcome = CALL_OUTCOMES.get(form.get("CallStatus", "").lower())
        if outcome is None:
            # ringing, in-progress: not the end of the call
            return Response(status_code=204)
        now = datetime.now(UTC)
        async with db()() as session, session.begin():
            placed = await mark_placed(session, token, form.get("CallSid"), now)
            if placed is None:
                raise HTTPException(status_code=404, detail="token: no such call")
            ended = (
                await session.execute(
                    text(
                        "UPDATE voice_calls SET status = 'ended', outcome = :outcome, "
                        "ended_at = :now WHERE id = :id AND ended_at IS NULL RETURNING id"
                    ),
                    {"id": placed.id, "outcome": outcome, "now": now},
                )
            ).scalar_one_or_none()
            if ended is not None:
                await add_event(
                    session,
                    AlertCallEnded(
                        emergency_id=placed.emergency_id,
                        member_id=placed.member_id,
                        alert_id=placed.alert_id,
                        outcome=outcome,
                        ended_at=now,
                    ),
                    source=SOURCE,
                    correlationid=str(placed.emergency_id),
                )
        log.info("ladder call ended", call_id=str(placed.id), outcome=outcome)
        return Response(status_code=204)

    @router.get("/voice/{token}/audio/{name}", summary="Speech for <Play> (WAV)")
    async def audio(token: str, name: str) -> Response:
        part = part_named(name.removesuffix(".wav"))
        if part is None:
            raise HTTPException(status_code=404, detail="name: no such prompt")
        eta: int | None = None
        if part == "accepted" and "-" in name:
            eta = eta_minutes(name.removesuffix(".wav").split("-", 1)[1])
        async with db()() as session:
            row = await the_call(session, token)
        context = context_of(row, eta)
        try:
            wav = await speech.wav(context.language, line(context, part))
        except SpeechUnavailable as exc:
            log.warning("speech rendering failed", error=str(exc))
            raise HTTPException(status_code=503, detail="speech unavailable") from exc
        return Response(wav, media_type="audio/wav")

    return router


async def _answer(
    session: AsyncSession,
    row: Any,
    answer: Literal["accepted", "declined"],
    eta: int | None,
) -> Part:
    """Record the member's keys as an answer on the SMS path (channel `voice`); what the
    call says next."""
    target = await alert_by_token(session, row.alert_token)
    if target is None:  # the call's alert exists (a foreign key): never reached
        return "closed"
    recorded = await record_answer(
        session, target, answer, eta_minutes=eta, channel="voice", now=datetime.now(UTC)
    )
    log.info("voice answer", outcome=recorded, call_id=str(row.call_id))
    if recorded == "closed":
        return "closed"
    if recorded in ("standby", "accepted", "declined"):
        return recorded
    # a later answer (by SMS, say) stands and this one changed nothing
    return "answered"
