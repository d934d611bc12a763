"""The dispatch HTTP API: emergencies, the board and its live stream, summaries, CAP,
subscriptions, the audit log.

Access: a coordinator of the emergency's section or an admin runs an emergency; an
authority of the section reads its summary (and its CAP document) only; anyone else
gets 404 for an emergency of another section, so its existence does not leak.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.dispatch import (
    assistance,
    audit,
    availability,
    board_store,
    cap,
    egress,
    emergencies,
    escalation,
    responders,
    stream_tickets,
    subscriptions,
)
from services.dispatch.live import BoardFeed
from services.dispatch.models import emergencies as emergencies_table
from services.dispatch.schemas import (
    MAX_BIGINT,
    SECTION_PATTERN,
    ApproveRequest,
    AssistanceAgreementCreate,
    AssistanceAgreementOut,
    AuditEntryOut,
    BoardOut,
    CancelRequest,
    CloseRequest,
    EmergencyCreate,
    EmergencyOut,
    EmergencyPatch,
    ReleaseAllOut,
    ResponderStatusRequest,
    RollCallOut,
    SubscriptionCreate,
    SubscriptionOut,
)
from services.dispatch.settings import Settings
from shared.auth import (
    Principal,
    TokenVerifier,
    oauth2_scheme,
    principal_dependency,
    require_role,
)
from shared.events.availability import AvailabilitySummary

router = APIRouter()

current_principal = principal_dependency(lambda request: request.app.state.verifier)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.db() as session:
        yield session


def make_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier.from_settings(settings)


def _not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "no such emergency")


async def _visible(
    session: AsyncSession, principal: Principal, emergency_id: uuid.UUID, *roles: str
) -> Row[Any]:
    """The emergency if the principal's sections include it (else 404), and then 403
    unless the principal has one of `roles`."""
    row = await emergencies.get(session, emergency_id)
    if row is None or not emergencies.visible_to(principal, row):
        raise _not_found()
    require_role(principal, *roles)  # type: ignore[arg-type]
    return row


def _out(row: Row[Any]) -> EmergencyOut:
    return EmergencyOut.model_validate(dict(row._mapping))


def _conflict(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


def _not_agreed(exc: emergencies.AssistanceNotAgreed) -> HTTPException:
    """403 (who the caller is decides it, not the shape of the input), in the shape of
    a validation error so the form shows it next to `assisting_sections`."""
    return HTTPException(status.HTTP_403_FORBIDDEN, exc.errors)


@router.post(
    "/emergencies",
    status_code=status.HTTP_201_CREATED,
    response_model=EmergencyOut,
    tags=["emergencies"],
    summary="Declare an emergency (held as pending_approval when large)",
)
async def declare(
    body: EmergencyCreate,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut:
    require_role(principal, "coordinator", "admin")
    if not emergencies.may_run(principal, body.section):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"you are not a coordinator of section {body.section}"
        )
    try:
        async with session.begin():
            row = await emergencies.declare(session, settings, principal, body)
    except emergencies.AssistanceNotAgreed as exc:
        raise _not_agreed(exc) from exc
    return _out(row)


@router.get("/emergencies", response_model=list[EmergencyOut], tags=["emergencies"])
async def list_emergencies(
    status_filter: str | None = Query(
        None, alias="status", pattern="^(pending_approval|active|closed)$"
    ),
    section: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[EmergencyOut]:
    require_role(principal, "coordinator", "admin")
    query = select(emergencies_table).order_by(emergencies_table.c.created_at.desc()).limit(limit)
    if not principal.is_admin:
        query = query.where(emergencies_table.c.section.in_(principal.sections))
    if status_filter:
        query = query.where(emergencies_table.c.status == status_filter)
    if section:
        query = query.where(emergencies_table.c.section == section)
    return [_out(row) for row in (await session.execute(query)).all()]


@router.get("/emergencies/{emergency_id}", response_model=EmergencyOut, tags=["emergencies"])
async def get_emergency(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> EmergencyOut:
    return _out(await _visible(session, principal, emergency_id, "coordinator", "admin"))


@router.patch("/emergencies/{emergency_id}", response_model=EmergencyOut, tags=["emergencies"])
async def patch_emergency(
    emergency_id: uuid.UUID,
    patch: EmergencyPatch,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        try:
            row = await emergencies.update(session, settings, principal, emergency_id, patch)
        except emergencies.AssistanceNotAgreed as exc:
            raise _not_agreed(exc) from exc
        except emergencies.Forbidden as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except emergencies.Conflict as exc:
            raise _conflict(exc) from exc
    return _out(row)


@router.post("/emergencies/{emergency_id}/close", response_model=EmergencyOut, tags=["emergencies"])
async def close_emergency(
    emergency_id: uuid.UUID,
    body: CloseRequest | None = None,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        row = await emergencies.close(
            session, settings, principal, emergency_id, reason="resolved",
            note=body.note if body else "",
        )  # fmt: skip
    return _out(row)


@router.post(
    "/emergencies/{emergency_id}/cancel",
    response_model=EmergencyOut,
    tags=["emergencies"],
    summary="Cancel at once; false_alarm sends every alerted member a correction",
)
async def cancel_emergency(
    emergency_id: uuid.UUID,
    body: CancelRequest | None = None,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut:
    body = body or CancelRequest()
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        row = await emergencies.close(
            session, settings, principal, emergency_id,
            reason="false_alarm" if body.false_alarm else "cancelled", note=body.note,
        )  # fmt: skip
    return _out(row)


@router.post(
    "/emergencies/{emergency_id}/approve",
    response_model=EmergencyOut,
    tags=["emergencies"],
    summary="Second person: approve the version of a pending emergency they reviewed",
    description=(
        'Body `{"version": n}`: the `version` of the emergency as the approver saw it. '
        "If it changed since, 409 with `current_version`. The declarer, and whoever made "
        "the last change, get 403 (checked before the body, so they learn that first)."
    ),
    responses={409: {"description": "not pending, or `version` is stale (`current_version`)"}},
)
async def approve_emergency(
    emergency_id: uuid.UUID,
    body: ApproveRequest | None = None,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut | JSONResponse:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        try:
            row = await emergencies.approve(
                session, settings, principal, emergency_id, body.version if body else None
            )
        except emergencies.Forbidden as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except emergencies.VersionRequired as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"type": "missing", "loc": ["body", "version"], "msg": str(exc)}],
            ) from exc
        except emergencies.StaleVersion as exc:
            return JSONResponse(
                {"detail": str(exc), "current_version": exc.current},
                status_code=status.HTTP_409_CONFLICT,
            )
        except emergencies.Conflict as exc:
            raise _conflict(exc) from exc
    return _out(row)


@router.post(
    "/emergencies/{emergency_id}/escalate",
    tags=["emergencies"],
    summary="Send the next wave now instead of at its due time",
)
async def escalate_emergency(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        outcome = await emergencies.escalate_now(session, settings, emergency_id, datetime.now(UTC))
        if outcome is None:
            raise _conflict(
                Exception("no further wave: the plan is used up, or the emergency is not active")
            )
        await audit.record(
            session, action="escalate_requested", emergency_id=emergency_id, actor=principal,
            diff={"outcome": outcome},
        )  # fmt: skip
        row = await emergencies.get(session, emergency_id)
        assert row is not None
        plan = await escalation.waves(session, row)
    return {"outcome": outcome, **plan}


@router.get(
    "/emergencies/{emergency_id}/waves",
    tags=["board"],
    summary="Waves sent so far and the next one with its due time",
)
async def get_waves(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> dict[str, Any]:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin")
    return await escalation.waves(session, row)


@router.get(
    "/emergencies/{emergency_id}/audit",
    response_model=list[AuditEntryOut],
    tags=["audit"],
    summary="One emergency's audit trail, for its section's coordinators",
)
async def get_emergency_audit(
    emergency_id: uuid.UUID,
    after_id: int = Query(0, ge=0, le=MAX_BIGINT),
    limit: int = Query(500, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[dict[str, Any]]:
    await _visible(session, principal, emergency_id, "coordinator", "admin")
    return await audit.entries(session, emergency_id=emergency_id, after_id=after_id, limit=limit)


@router.get("/emergencies/{emergency_id}/board", response_model=BoardOut, tags=["board"])
async def get_board(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin")
    rows = await board_store.all_rows(session, emergency_id, row.members_needed)
    roll_call = await board_store.roll_call_view(session, settings, emergency_id, datetime.now(UTC))
    return {
        "emergency_id": emergency_id,
        "members_needed": row.members_needed,
        "staffed": row.staffed,
        "rows": [board_store.row_json(r) for r in rows],
        "roll_call": board_store.roll_call_json(roll_call),
    }


def _safety_conflict(exc: Exception) -> HTTPException:
    if isinstance(exc, responders.NotOnBoard):
        return HTTPException(status.HTTP_404_NOT_FOUND, "no such member on this board")
    return _conflict(exc)


@router.post(
    "/emergencies/{emergency_id}/responders/{member_id}/status",
    tags=["board"],
    summary="Safety loop: set a responder's state (en_route, on_scene, released, home_safe)",
    description="Forward only, from an acceptance or an earlier state (409 otherwise); "
    "allowed after the close too. Publishes `muster.responder.status_set.v1`.",
    responses={404: {"description": "no such emergency, or member not on its board"}},
)
async def set_responder_status(
    emergency_id: uuid.UUID,
    member_id: uuid.UUID,
    body: ResponderStatusRequest,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        try:
            row = await responders.set_status(
                session, settings, principal, emergency_id, member_id, body.status,
                datetime.now(UTC),
            )  # fmt: skip
        except (responders.NotOnBoard, emergencies.Conflict) as exc:
            raise _safety_conflict(exc) from exc
    return board_store.row_json(row)


@router.post(
    "/emergencies/{emergency_id}/release",
    response_model=ReleaseAllOut,
    tags=["board"],
    summary="Safety loop: release every member on scene at once",
)
async def release_all(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> ReleaseAllOut:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        try:
            count = await responders.release_all(
                session, settings, principal, emergency_id, datetime.now(UTC)
            )
        except emergencies.Conflict as exc:
            raise _conflict(exc) from exc
    return ReleaseAllOut(released=count)


@router.post(
    "/emergencies/{emergency_id}/roll-calls",
    response_model=RollCallOut,
    status_code=status.HTTP_201_CREATED,
    tags=["board"],
    summary="Safety loop: ask every member on scene to confirm they are fine",
    description="Publishes `muster.roll_call.started.v1`; the board's `roll_call` then "
    "shows who confirmed, who is waited for and, after "
    "`DISPATCH_ROLL_CALL_MISSING_AFTER_S`, who is missing. 409 when nobody is on scene.",
)
async def start_roll_call(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any] | None:
    async with session.begin():
        await _visible(session, principal, emergency_id, "coordinator", "admin")
        try:
            view = await responders.start_roll_call(
                session, settings, principal, emergency_id, datetime.now(UTC)
            )
        except emergencies.Conflict as exc:
            raise _conflict(exc) from exc
    return board_store.roll_call_json(view)


@router.post(
    "/emergencies/{emergency_id}/stream-ticket",
    tags=["board"],
    summary="A single-use ticket (30 s) for opening the stream without a header",
)
async def stream_ticket(
    request: Request,
    response: Response,
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    await _visible(session, principal, emergency_id, "coordinator", "admin")
    ticket = await stream_tickets.issue(
        request.app.state.runtime.redis, settings.redis_prefix, principal, emergency_id
    )
    response.headers["Cache-Control"] = "no-store"
    return {"ticket": ticket, "expires_in": stream_tickets.TTL_S}


async def stream_principal(
    request: Request,
    emergency_id: uuid.UUID,
    ticket: str | None = Query(
        None, description="from POST /emergencies/{id}/stream-ticket, instead of the header"
    ),
    token: str | None = Depends(oauth2_scheme),
    settings: Settings = Depends(get_settings),
) -> Principal:
    """The bearer token's principal or, with `?ticket=`, the one the ticket was issued to
    (the ticket is used up here; one that is unknown, used, expired or for another
    emergency is a 401)."""
    if ticket is None:
        return await current_principal(request, token)
    principal = await stream_tickets.redeem(
        request.app.state.runtime.redis, settings.redis_prefix, ticket, emergency_id
    )
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid stream ticket: unknown, already used, expired or for another emergency",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


@router.get(
    "/emergencies/{emergency_id}/stream",
    tags=["board"],
    summary="Server-Sent Events: a `board` snapshot, then one `row` event per change",
    description="A console more than `DISPATCH_BOARD_STREAM_QUEUE` changes behind is cut "
    "off: the stream ends, and reconnecting starts again with a `board` snapshot. A roll "
    "call started meanwhile comes as a `roll_call` event (the board's `roll_call`).",
)
async def stream_board(
    request: Request,
    emergency_id: uuid.UUID,
    principal: Principal = Depends(stream_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EventSourceResponse:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin")
    feed: BoardFeed = request.app.state.board_feed
    # subscribed before the snapshot is read: a change in between is sent twice, never lost
    subscription = feed.subscribe(emergency_id, settings.board_stream_queue)
    try:
        snapshot = await board_store.all_rows(session, emergency_id, row.members_needed)
        roll_call = await board_store.roll_call_view(
            session, settings, emergency_id, datetime.now(UTC)
        )
    except BaseException:
        feed.unsubscribe(subscription)
        raise
    await session.close()

    async def events() -> AsyncIterator[dict[str, str] | bytes]:
        try:
            yield {
                "event": "board",
                "data": json.dumps(
                    {"emergency_id": str(emergency_id),
                     "rows": [board_store.row_json(r) for r in snapshot],
                     "roll_call": board_store.roll_call_json(roll_call)}
                ),
            }  # fmt: skip
            while (changes := await subscription.next_changes()) is not None:
                # everything pending in one write: a surge costs one send, not one a row
                yield b"".join(_board_event(change) for change in changes)
            # cut off for falling behind: ending the stream makes the browser's
            # EventSource reconnect, and its first event is the whole board again
        finally:
            feed.unsubscribe(subscription)

    return EventSourceResponse(events(), ping=15)


def _board_event(change: dict[str, Any]) -> bytes:
    if "roll_call" in change:
        return ServerSentEvent(event="roll_call", data=json.dumps(change["roll_call"])).encode()
    return ServerSentEvent(event="row", data=json.dumps(change)).encode()


@router.get(
    "/emergencies/{emergency_id}/summary",
    response_model=AvailabilitySummary,
    tags=["summaries"],
    summary="Counts for authorities: no names, phone numbers or member ids",
)
async def get_summary(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> AvailabilitySummary:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin", "authority")
    return await availability.current(session, row)


@router.get(
    "/emergencies/{emergency_id}/cap",
    tags=["cap"],
    summary="The emergency as an OASIS CAP 1.2 alert",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
)
async def get_cap(
    emergency_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> Response:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin", "authority")
    document = cap.render(dict(row._mapping), sender=settings.cap_sender)
    return Response(document, media_type="application/cap+xml")


def _cap_error(detail: str | ValidationError) -> HTTPException:
    """A 422 in FastAPI's validation-error shape, like every other refused field: the
    XML body as a whole (`loc` ["body"]), or the declaration field it fills."""
    if isinstance(detail, ValidationError):
        errors = [
            (["body", *error["loc"]], f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}")
            for error in detail.errors()
        ]
    else:
        errors = [(["body"], detail)]
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [
            {"loc": loc, "msg": f"invalid CAP alert: {msg}", "type": "value_error"}
            for loc, msg in errors
        ],
    )


@router.post(
    "/emergencies/cap",
    tags=["cap"],
    summary="Declare, update or cancel from an OASIS CAP 1.2 alert (XML body)",
    responses={201: {"model": EmergencyOut}, 200: {"model": EmergencyOut}},
)
async def post_cap(
    request: Request,
    response: Response,
    section: str | None = Query(None, description="when the alert has no muster:section"),
    members_needed: int | None = Query(None, ge=1, le=10_000),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> EmergencyOut:
    document = await request.body()
    try:
        alert = cap.parse(document)
    except cap.CapError as exc:
        raise _cap_error(str(exc)) from exc
    async with session.begin():
        if alert.msg_type == "Alert":
            row = await _cap_declare(session, settings, principal, alert, section, members_needed)
            response.status_code = status.HTTP_201_CREATED if row[1] else status.HTTP_200_OK
            return _out(row[0])
        target = await _cap_target(session, principal, alert)
        if alert.msg_type == "Cancel":
            closed = await emergencies.close(
                session, settings, principal, target.id, reason="cancelled",
                note=f"CAP Cancel {alert.identifier}",
            )  # fmt: skip
            return _out(closed)
        fields = {k: v for k, v in alert.declaration().items()
                  if k in ("title", "description", "category", "severity", "urgency", "area")
                  and v not in (None, "")}  # fmt: skip
        try:
            patch = EmergencyPatch.model_validate(fields)
        except ValidationError as exc:
            raise _cap_error(exc) from exc
        try:
            updated = await emergencies.update(session, settings, principal, target.id, patch)
        except emergencies.Forbidden as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except emergencies.Conflict as exc:
            raise _conflict(exc) from exc
        return _out(updated)


async def _cap_declare(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    alert: cap.CapAlert,
    section: str | None,
    members_needed: int | None,
) -> tuple[Row[Any], bool]:
    """(the emergency, newly created); a resent Alert returns the first one, also when
    the two arrive at once (the unique key on sender and identifier decides)."""
    require_role(principal, "coordinator", "admin", "authority")
    existing = await _cap_declared(session, principal, alert)
    if existing is not None:
        return existing, False
    body = alert.declaration()
    body.setdefault("section", section or _only_section(principal))
    body.setdefault("members_needed", members_needed or settings.cap_members_needed)
    try:
        declaration = EmergencyCreate.model_validate(body)
    except ValidationError as exc:
        raise _cap_error(exc) from exc
    if not principal.can_act_for(declaration.section):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"you do not act for section {declaration.section}"
        )
    try:
        row = await emergencies.declare(
            session, settings, principal, declaration, origin="cap", cap_sender=alert.sender,
            cap_identifier=alert.identifier, force_approval=principal.role == "authority",
        )  # fmt: skip
    except emergencies.DuplicateCapAlert:
        existing = await _cap_declared(session, principal, alert)
        assert existing is not None, "the unique key refused it, so it exists"
        return existing, False
    return row, True


async def _cap_declared(
    session: AsyncSession, principal: Principal, alert: cap.CapAlert
) -> Row[Any] | None:
    """The emergency this very Alert declared before, if the principal may have it."""
    existing = (
        await session.execute(
            select(emergencies_table).where(
                emergencies_table.c.cap_sender == alert.sender,
                emergencies_table.c.cap_identifier == alert.identifier,
            )
        )
    ).first()
    if existing is None:
        return None
    if not emergencies.visible_to(principal, existing):
        raise _not_found()
    if not cap.may_follow_up(principal, existing.created_by, existing.section):
        raise HTTPException(status.HTTP_403_FORBIDDEN, _NOT_YOUR_CAP_ALERT)
    return existing


_NOT_YOUR_CAP_ALERT = (
    "this CAP alert was declared by another account: only that account, a coordinator "
    "of the section or an admin may resend, update or cancel it (the <sender> is not proof "
    "of who sent it)"
)


def _only_section(principal: Principal) -> str | None:
    return next(iter(principal.sections)) if len(principal.sections) == 1 else None


async def _cap_target(session: AsyncSession, principal: Principal, alert: cap.CapAlert) -> Row[Any]:
    for reference in alert.references:
        row = (
            await session.execute(
                select(emergencies_table).where(
                    emergencies_table.c.cap_sender == reference.sender,
                    emergencies_table.c.cap_identifier == reference.identifier,
                )
            )
        ).first()
        if row is None:
            continue
        if not emergencies.visible_to(principal, row):
            raise _not_found()
        if not cap.may_follow_up(principal, row.created_by, row.section):
            raise HTTPException(status.HTTP_403_FORBIDDEN, _NOT_YOUR_CAP_ALERT)
        if principal.role == "authority" and row.cap_sender != alert.sender:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "an authority may only update its own CAP alerts"
            )
        return row
    raise _cap_error(
        f"{alert.msg_type} references no alert Muster knows: "
        + ", ".join(f"{r.sender},{r.identifier}" for r in alert.references)
    )


def _agreement_out(row: Row[Any]) -> AssistanceAgreementOut:
    return AssistanceAgreementOut.model_validate(dict(row._mapping))


@router.post(
    "/assistance-agreements",
    response_model=AssistanceAgreementOut,
    status_code=status.HTTP_201_CREATED,
    tags=["assistance"],
    summary="Record that a section agrees to assist another (admin); 200 if it exists",
    responses={200: {"model": AssistanceAgreementOut}},
)
async def create_assistance_agreement(
    body: AssistanceAgreementCreate,
    response: Response,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> AssistanceAgreementOut:
    require_role(principal, "admin")
    async with session.begin():
        row, created = await assistance.record(
            session, section=body.section, assisting_section=body.assisting_section,
            created_by=principal.account_id,
        )  # fmt: skip
        if created:
            await audit.record(
                session, action="assistance_agreed", emergency_id=None, actor=principal,
                diff={"section": body.section, "assisting_section": body.assisting_section},
            )  # fmt: skip
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _agreement_out(row)


@router.get(
    "/assistance-agreements",
    response_model=list[AssistanceAgreementOut],
    tags=["assistance"],
    summary="Assistance agreements (admin: all; coordinator: those of their sections)",
)
async def list_assistance_agreements(
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[AssistanceAgreementOut]:
    require_role(principal, "admin", "coordinator")
    rows = await assistance.listing(
        session, None if principal.is_admin else set(principal.sections)
    )
    return [_agreement_out(r) for r in rows]


@router.delete(
    "/assistance-agreements/{section}/{assisting_section}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["assistance"],
    summary="End an assistance agreement (admin); emergencies already declared keep it",
)
async def delete_assistance_agreement(
    section: str = Path(pattern=SECTION_PATTERN),
    assisting_section: str = Path(pattern=SECTION_PATTERN),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> Response:
    require_role(principal, "admin")
    async with session.begin():
        if not await assistance.remove(
            session, section=section, assisting_section=assisting_section
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such assistance agreement")
        await audit.record(
            session, action="assistance_ended", emergency_id=None, actor=principal,
            diff={"section": section, "assisting_section": assisting_section},
        )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=list[AuditEntryOut], tags=["audit"])
async def get_audit(
    emergency_id: uuid.UUID | None = None,
    action: str | None = Query(None, max_length=64),
    after_id: int = Query(0, ge=0, le=MAX_BIGINT),
    limit: int = Query(200, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[dict[str, Any]]:
    require_role(principal, "admin")
    return await audit.entries(
        session, emergency_id=emergency_id, action=action, after_id=after_id, limit=limit
    )


def _subscription_out(row: Row[Any], pending: int = 0) -> SubscriptionOut:
    return SubscriptionOut.model_validate({**row._mapping, "pending_deliveries": pending})


async def _own_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> Row[Any]:
    require_role(principal, "admin", "authority")
    row = await subscriptions.get(session, subscription_id)
    if row is None or not subscriptions.manages(principal, row):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such subscription")
    return row


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    tags=["subscriptions"],
    summary="Register a webhook for a section's availability summaries (HMAC-signed)",
)
async def create_subscription(
    body: SubscriptionCreate,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
    settings: Settings = Depends(get_settings),
) -> SubscriptionOut:
    require_role(principal, "admin", "authority")
    if not principal.can_act_for(body.section):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you do not act for section {body.section}")
    if not settings.webhook_allow_private:
        try:
            await egress.resolve_target(body.url)
        except egress.RefusedTarget as exc:
            # the shape of FastAPI's own validation errors, naming the field
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"type": "value_error", "loc": ["body", "url"], "msg": str(exc)}],
            ) from exc
    async with session.begin():
        row = await subscriptions.create(
            session, section=body.section, url=body.url, secret=body.secret,
            created_by=principal.account_id,
        )  # fmt: skip
    return _subscription_out(row)


@router.get("/subscriptions", response_model=list[SubscriptionOut], tags=["subscriptions"])
async def list_subscriptions(
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[SubscriptionOut]:
    require_role(principal, "admin", "authority")
    rows = await subscriptions.managed_by(session, principal)
    return [_subscription_out(r, await subscriptions.pending_count(session, r.id)) for r in rows]


@router.post(
    "/subscriptions/{subscription_id}/resume",
    response_model=SubscriptionOut,
    tags=["subscriptions"],
    summary="Un-pause a subscription and re-send what is queued",
)
async def resume_subscription(
    subscription_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> SubscriptionOut:
    async with session.begin():
        await _own_subscription(session, principal, subscription_id)
        await subscriptions.resume(session, subscription_id)
        row = await subscriptions.get(session, subscription_id)
    assert row is not None
    return _subscription_out(row)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["subscriptions"],
)
async def delete_subscription(
    subscription_id: uuid.UUID,
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> Response:
    async with session.begin():
        await _own_subscription(session, principal, subscription_id)
        await subscriptions.delete(session, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
