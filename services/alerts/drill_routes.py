"""Drills and readiness over HTTP (issue 12).

Staff (a bearer token, as the reach preview):
- `POST /drills` (coordinator or admin, for sections they act for): sections, a time
  (`starts_at`, now when left out), an optional RRULE and the zone it keeps its time in,
  and `call_unanswered_after_min` (1-120, or null for no calls): members who have not
  answered that long after their SMS are phoned (drill_calls.py). Refused (422 naming
  the field) when this alerts service has no voice provider.
- `GET /drills`, `GET /drills/{id}` (with every occurrence's 5/15/60-minute results by
  section and qualification), `POST /drills/{id}/cancel`.
- `GET /drills/attention?section=&last=3`: members whose drill SMS failed, or who answered
  none of their last N drills, for the coordinator to fix their details (member ids: the
  console names them from the registry).
- `GET /readiness?section=`: the figure as authorities read it (small counts suppressed);
  `GET /readiness/full?section=`: as counted, for coordinators.

Members: `GET /d/{token}` (the test page, one OK button) and `POST /d/{token}` (the OK).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

import redis.asyncio as redis
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import messages
from services.alerts.drill_runs import Drills
from services.alerts.drills import (
    CALL_AFTER_MAX,
    CALL_AFTER_MIN,
    Asked,
    MemberRecord,
    RecurrenceError,
    Results,
    first_due,
    needs_attention,
    recurrence_rule,
    results,
    zone,
)
from services.alerts.models import drill_calls, drill_messages, drill_occurrences, drills
from services.alerts.ratelimit import WindowLimit
from services.alerts.reach import SECTION_PATTERN
from services.alerts.readiness import Readiness, for_authorities
from services.alerts.settings import Settings
from shared.auth import Principal, principal_dependency, require_role
from shared.events.availability import ReadinessFigure

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


#: the signed-in staff member (a bearer token verified against members' JWKS)
Staff = Annotated[
    Principal, Depends(principal_dependency(lambda request: request.app.state.verifier))
]


#: how far from now a drill's first time may be
MAX_PAST = timedelta(days=1)
MAX_AHEAD = timedelta(days=731)


def _invalid(field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own, naming the field."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_ENTITY,
        [{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


class DrillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sections: list[str] = Field(min_length=1, max_length=20)
    #: when the (first) occurrence fires; left out: now
    starts_at: datetime | None = None
    #: an RFC 5545 RRULE without DTSTART, e.g. FREQ=MONTHLY;BYDAY=1SA
    recurrence: str | None = Field(None, max_length=300)
    #: the zone a recurring drill keeps its wall-clock time in
    timezone: str = Field("UTC", max_length=64)
    #: phone members who have not answered this many minutes after their SMS; None: no
    #: calls (only with a voice provider)
    call_unanswered_after_min: int | None = Field(None, ge=CALL_AFTER_MIN, le=CALL_AFTER_MAX)

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        for code in value:
            if re.fullmatch(SECTION_PATTERN, code) is None:
                raise ValueError(f"section {code!r}: use section codes like AL")
        return sorted(set(value))

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2026-12-05T10:00:00+01:00")
        return value


class OccurrenceOut(BaseModel):
    id: UUID
    occurs_at: datetime
    fired_at: datetime
    sections: list[str]
    asked: int
    skipped_on_emergency: int
    skipped_opted_out: int
    call_unanswered_after_min: int | None = None
    results: Results | None = None


class DrillOut(BaseModel):
    id: UUID
    sections: list[str]
    starts_at: datetime
    recurrence: str | None
    timezone: str
    next_at: datetime | None
    status: str
    call_unanswered_after_min: int | None = None
    created_at: datetime
    occurrences: list[OccurrenceOut] = []


class AttentionOut(BaseModel):
    member_id: UUID
    section: str
    reason: Literal["sms_failed", "never_answered", "call_unanswered"]
    #: the provider's last refusal (numbers masked), for an SMS that failed
    last_error: str | None = None


def _drill_out(row: object, occurrences: list[OccurrenceOut] | None = None) -> DrillOut:
    return DrillOut.model_validate(row, from_attributes=True).model_copy(
        update={"occurrences": occurrences or []}
    )


def drill_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    client: Callable[[], redis.Redis],
    runner: Callable[[], Drills],
) -> APIRouter:
    router = APIRouter(tags=["drills"])

    def may_see(principal: Principal, sections: list[str]) -> bool:
        return all(principal.can_act_for(s) for s in sections)

    @router.post(
        "/drills",
        response_model=DrillOut,
        status_code=status.HTTP_201_CREATED,
        summary="Schedule a reachability drill (test SMS, reply OK) for your sections",
    )
    async def schedule(body: DrillIn, principal: Staff) -> DrillOut:
        require_role(principal, "coordinator", "admin")
        for section in body.sections:
            if not principal.can_act_for(section):
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"you do not act for {section}")
        try:
            zone(body.timezone)
        except RecurrenceError as exc:
            raise _invalid("timezone", str(exc)) from exc
        if body.call_unanswered_after_min is not None and (
            settings.effective_voice_provider == "off"
        ):
            raise _invalid(
                "call_unanswered_after_min",
                "voice calls are off on this service (no number to call from): leave it empty",
            )
        drills_runner = runner()
        now = drills_runner.clock.now()
        starts_at = body.starts_at or now
        # a drill is for the coming months: far dates are typing mistakes
        if not now - MAX_PAST <= starts_at <= now + MAX_AHEAD:
            raise _invalid("starts_at", "give a time from yesterday to two years ahead")
        recurrence = body.recurrence.strip() if body.recurrence else None
        try:
            if recurrence:
                recurrence_rule(recurrence, starts_at, body.timezone)
            next_at = first_due(starts_at, recurrence or None, body.timezone)
        except RecurrenceError as exc:
            raise _invalid("recurrence", str(exc)) from exc
        if next_at is None:
            raise _invalid("recurrence", "the rule has no occurrence from starts_at on")
        async with db()() as session, session.begin():
            row = (
                await session.execute(
                    drills.insert()
                    .values(
                        id=uuid.uuid4(),
                        sections=body.sections,
                        starts_at=starts_at,
                        recurrence=recurrence or None,
                        timezone=body.timezone,
                        next_at=next_at,
                        call_unanswered_after_min=body.call_unanswered_after_min,
                        created_by=principal.account_id,
                    )
                    .returning(*drills.c)
                )
            ).one()
        drills_runner.wake()
        return _drill_out(row)

    @router.get("/drills", response_model=list[DrillOut], summary="The drills of your sections")
    async def list_drills(
        principal: Staff, limit: int = Query(100, ge=1, le=500)
    ) -> list[DrillOut]:
        require_role(principal, "coordinator", "admin")
        query = select(drills).order_by(drills.c.created_at.desc()).limit(limit)
        if not principal.is_admin:
            query = query.where(drills.c.sections.overlap(sorted(principal.sections)))
        async with db()() as session:
            rows = (await session.execute(query)).all()
            out = []
            for row in rows:
                if not may_see(principal, list(row.sections)):
                    continue
                occurrences = (
                    await session.execute(
                        select(drill_occurrences)
                        .where(drill_occurrences.c.drill_id == row.id)
                        .order_by(drill_occurrences.c.occurs_at.desc())
                    )
                ).all()
                out.append(
                    _drill_out(
                        row,
                        [
                            OccurrenceOut.model_validate(o, from_attributes=True)
                            for o in occurrences
                        ],
                    )
                )
        return out

    async def _visible(session: AsyncSession, principal: Principal, drill_id: UUID) -> object:
        row = (await session.execute(select(drills).where(drills.c.id == drill_id))).first()
        if row is None or not may_see(principal, list(row.sections)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such drill in your sections")
        return row

    @router.get(
        "/drills/attention",
        response_model=list[AttentionOut],
        summary="Members whose drill SMS failed or who answered none of their last drills",
    )
    async def attention(
        principal: Staff,
        section: str = Query(pattern=SECTION_PATTERN),
        last: int = Query(3, ge=1, le=24),
    ) -> list[AttentionOut]:
        require_role(principal, "coordinator", "admin")
        if not principal.can_act_for(section):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you do not act for {section}")
        async with db()() as session:
            rows = (
                await session.execute(
                    select(
                        drill_messages.c.member_id,
                        drill_messages.c.status,
                        drill_messages.c.answered_at,
                        drill_messages.c.error,
                        drill_calls.c.outcome.label("call_outcome"),
                    )
                    .join(
                        drill_occurrences,
                        drill_occurrences.c.id == drill_messages.c.occurrence_id,
                    )
                    .outerjoin(drill_calls, drill_calls.c.message_id == drill_messages.c.id)
                    .where(
                        drill_messages.c.section == section,
                        drill_messages.c.status.in_(("sent", "failed")),
                    )
                    .order_by(drill_messages.c.member_id, drill_occurrences.c.occurs_at.desc())
                )
            ).all()
        records: dict[UUID, list[tuple[str, bool]]] = {}
        calls: dict[UUID, list[str | None]] = {}
        errors: dict[UUID, str | None] = {}
        for row in rows:
            records.setdefault(row.member_id, []).append((row.status, row.answered_at is not None))
            calls.setdefault(row.member_id, []).append(row.call_outcome)
            if row.status == "failed" and row.member_id not in errors:
                errors[row.member_id] = row.error
        out = []
        for member_id, outcomes in records.items():
            record = MemberRecord(member_id, section, outcomes, calls=calls[member_id])
            reason = needs_attention(record, last)
            if reason is not None:
                out.append(
                    AttentionOut(
                        member_id=member_id,
                        section=section,
                        reason=reason,
                        last_error=errors.get(member_id) if reason == "sms_failed" else None,
                    )
                )
        return out

    @router.get(
        "/drills/{drill_id}",
        response_model=DrillOut,
        summary="A drill with each occurrence's 5/15/60-minute results",
    )
    async def get_drill(drill_id: UUID, principal: Staff) -> DrillOut:
        require_role(principal, "coordinator", "admin")
        async with db()() as session:
            row = await _visible(session, principal, drill_id)
            occurrences = (
                await session.execute(
                    select(drill_occurrences)
                    .where(drill_occurrences.c.drill_id == drill_id)
                    .order_by(drill_occurrences.c.occurs_at.desc())
                )
            ).all()
            out = []
            for occurrence in occurrences:
                asked = (
                    await session.execute(
                        select(
                            drill_messages.c.section,
                            drill_messages.c.qualifications,
                            drill_messages.c.status,
                            drill_messages.c.sent_at,
                            drill_messages.c.answered_at,
                            drill_messages.c.answer_channel,
                        ).where(drill_messages.c.occurrence_id == occurrence.id)
                    )
                ).all()
                out.append(
                    OccurrenceOut.model_validate(occurrence, from_attributes=True).model_copy(
                        update={
                            "results": results(
                                # the columns above, in Asked's order
                                Asked(*a)
                                for a in asked
                            )
                        }
                    )
                )
        return _drill_out(row, out)

    @router.post(
        "/drills/{drill_id}/cancel",
        response_model=DrillOut,
        summary="Cancel a drill's future occurrences (results kept)",
    )
    async def cancel(drill_id: UUID, principal: Staff) -> DrillOut:
        require_role(principal, "coordinator", "admin")
        async with db()() as session, session.begin():
            await _visible(session, principal, drill_id)
            row = (
                await session.execute(
                    update(drills)
                    .where(drills.c.id == drill_id)
                    .values(status="cancelled", next_at=None)
                    .returning(*drills.c)
                )
            ).one()
        return _drill_out(row)

    # --- readiness ---------------------------------------------------------------------

    async def _readiness(principal: Principal, section: str) -> Readiness:
        if not principal.can_act_for(section):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you do not act for {section}")
        drills_runner = runner()
        if not await drills_runner.index.is_ready():
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the member index is being rebuilt: try again in a minute",
                headers={"Retry-After": "10"},
            )
        return (await drills_runner.section_readiness([section]))[section]

    @router.get(
        "/readiness",
        response_model=ReadinessFigure,
        summary="A section's readiness for authorities: counts and shares, small counts hidden",
    )
    async def readiness_for_authorities(
        principal: Staff, section: str = Query(pattern=SECTION_PATTERN)
    ) -> ReadinessFigure:
        require_role(principal, "authority", "coordinator", "admin")
        figure = await _readiness(principal, section)
        return for_authorities(figure, settings.readiness_min_count)

    @router.get(
        "/readiness/full",
        response_model=Readiness,
        summary="A section's readiness as counted (coordinators)",
    )
    async def readiness_full(
        principal: Staff, section: str = Query(pattern=SECTION_PATTERN)
    ) -> Readiness:
        require_role(principal, "coordinator", "admin")
        return await _readiness(principal, section)

    # --- the members' test page ----------------------------------------------------------

    def page(status_code: int, language: str | None, **values: object) -> HTMLResponse:
        lang = messages.language_of(language)
        html = _TEMPLATES.get_template("drill.html").render(
            lang=lang,
            title=messages.text(lang, "drill_page_title"),
            ok=messages.text(lang, "drill_page_ok"),
            unknown=messages.text(lang, "drill_page_unknown"),
            **values,
        )
        return HTMLResponse(html, status_code=status_code)

    async def limited(request: Request, token: str) -> HTMLResponse | None:
        per_token = WindowLimit(
            client(), settings.key("rl", "drill", ""), settings.answer_rate_per_token_per_min
        )
        per_ip = WindowLimit(
            client(), settings.key("rl", "drill-ip", ""), settings.answer_rate_per_ip_per_min
        )
        address = request.client.host if request.client else "unknown"
        if not await per_token.allow(token[:64]) or not await per_ip.allow(address):
            return HTMLResponse("Too many requests", status_code=429, headers={"Retry-After": "60"})
        return None

    @router.get("/d/{token}", response_class=HTMLResponse, summary="A member's drill test page")
    async def test_page(token: str, request: Request) -> HTMLResponse:
        refused = await limited(request, token)
        if refused is not None:
            return refused
        async with db()() as session:
            row = (
                await session.execute(
                    select(drill_messages.c.language, drill_messages.c.answered_at).where(
                        drill_messages.c.token == token, drill_messages.c.status == "sent"
                    )
                )
            ).first()
        if row is None:
            return page(404, None)
        if row.answered_at is not None:
            return page(200, row.language, done=messages.text(row.language, "drill_page_done"))
        return page(200, row.language, intro=messages.text(row.language, "drill_page_intro"))

    @router.post("/d/{token}", response_class=HTMLResponse, summary="A member's OK to a drill")
    async def test_answer(
        token: str, request: Request, answer: Annotated[Literal["ok"], Form()] = "ok"
    ) -> HTMLResponse:
        refused = await limited(request, token)
        if refused is not None:
            return refused
        async with db()() as session, session.begin():
            language = await runner().answer(session, token=token, channel="web")
        if language is None:
            return page(404, None)
        return page(200, language, done=messages.text(language, "drill_page_done"))

    return router
