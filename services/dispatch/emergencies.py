"""An emergency's life, and the one owner of its transitions: declare (or hold for
approval), approve, update, close, cancel; board events and what they change (staffed,
call-ups, escalation armed or disarmed); escalation steps fired.

The board (services.dispatch.board, pure, and board_store, its rows) and the escalation
plan (services.dispatch.escalation) are planners this module asks and then acts on; they
never call back here, so a reader follows every transition from this module. The safety
loop's coordinator actions (services.dispatch.responders) go through
`apply_board_events` here too.

Service functions take the session first and hold no HTTP; the caller owns the
transaction. Every change writes its event to the outbox and its audit entry in that
same transaction, and takes the emergency's advisory lock first, so the board consumer,
the timer scheduler and the API never interleave on one emergency (always lock
order: advisory lock, then rows).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import assistance, audit, board, board_store, escalation
from services.dispatch.models import emergencies, summary_marks, summary_state
from services.dispatch.schemas import AreaIn, EmergencyCreate, EmergencyPatch
from services.dispatch.settings import Settings
from shared.auth import Principal
from shared.consumer import Delivery
from shared.events.emergencies import (
    EmergencyClosed,
    EmergencyDeclared,
    EmergencyEscalated,
    EmergencyUpdated,
)
from shared.observability import get_logger
from shared.outbox import add_event
from shared.reply_codes import new_reply_code

log = get_logger(__name__)

PATCHABLE = (
    "title", "description", "category", "severity", "urgency", "area",
    "required_qualifications", "members_needed", "assisting_sections", "languages",
)  # fmt: skip


class Conflict(Exception):
    """The emergency is not in a state that allows this (e.g. already closed)."""


class Forbidden(Exception):
    """The principal may see the emergency but not do this to it."""


class VersionRequired(Exception):
    """An approval that does not say which version of the emergency it approves."""


class StaleVersion(Conflict):
    """The approval names a version that is no longer the emergency's."""

    def __init__(self, given: int, current: int) -> None:
        super().__init__(
            f"you reviewed version {given}, but the emergency has changed since: it is at "
            f"version {current}; review it again and approve that version"
        )
        self.current = current


class DuplicateCapAlert(Exception):
    """This CAP alert (sender, identifier) has declared an emergency already."""


class AssistanceNotAgreed(Exception):
    """`assisting_sections` names sections the caller may not call out."""

    def __init__(self, section: str, refused: list[str]) -> None:
        super().__init__(f"sections {', '.join(refused)} have not agreed to assist {section}")
        self.errors = assistance.refusal(section, refused)


def lock_key(emergency_id: uuid.UUID) -> int:
    return int.from_bytes(emergency_id.bytes[:8], "big", signed=True)


async def lock(session: AsyncSession, emergency_id: uuid.UUID) -> None:
    """Serialise every writer of one emergency until the transaction ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(emergency_id)})


async def lock_and_get(session: AsyncSession, emergency_id: uuid.UUID) -> Row[Any] | None:
    """`lock` and `get` in one round trip (the board handler runs once per event)."""
    query = text(
        "SELECT e.* FROM (SELECT pg_advisory_xact_lock(:k)) AS l "
        "LEFT JOIN emergencies AS e ON e.id = :id"
    ).columns(*emergencies.c)
    row = (await session.execute(query, {"k": lock_key(emergency_id), "id": emergency_id})).one()
    return row if row.id is not None else None


async def get(session: AsyncSession, emergency_id: uuid.UUID) -> Row[Any] | None:
    return (
        await session.execute(select(emergencies).where(emergencies.c.id == emergency_id))
    ).one_or_none()


def visible_to(principal: Principal, row: Row[Any]) -> bool:
    return principal.can_act_for(row.section)


def may_run(principal: Principal, section: str) -> bool:
    """Declare, change, close: a coordinator of the section, or an admin."""
    return principal.is_admin or (principal.role == "coordinator" and section in principal.sections)


@dataclass(frozen=True)
class Reach:
    radius_m: int
    expected_members: int


def expected_reach(area: AreaIn, members_needed: int, settings: Settings) -> Reach:
    """Expected members alerted = members_needed x the over-alert factor (an estimate:
    dispatch does not know the member map; alerts does)."""
    return Reach(area.reach_m(), math.ceil(members_needed * settings.over_alert_factor))


def thresholds(settings: Settings) -> Reach:
    return Reach(settings.approval_radius_m, settings.approval_members)


def exceeds(reach: Reach, allowed: Reach) -> bool:
    return reach.radius_m > allowed.radius_m or reach.expected_members > allowed.expected_members


def needs_approval(reach: Reach, settings: Settings) -> bool:
    return exceeds(reach, thresholds(settings))


def allowed_without_second_person(approved: Reach | None, settings: Settings) -> Reach:
    """How far an active emergency may reach on one person's word: the thresholds, or
    what a second person last approved when that was more (each dimension on its own)."""
    limits = thresholds(settings)
    if approved is None:
        return limits
    return Reach(
        max(limits.radius_m, approved.radius_m),
        max(limits.expected_members, approved.expected_members),
    )


def escalation_ceiling_m(*, approved: bool, settings: Settings) -> int:
    """How far automatic waves may reach. The escalation radius is part of the two-person
    rule: an emergency one person declared (under the thresholds) escalates up to the
    approval radius and no farther; one a second person approved was approved with its
    whole plan, shown to them, up to the maximum. Going farther is an area change, which
    needs approval like any other."""
    if approved:
        return settings.escalation_max_radius_m
    return min(settings.escalation_max_radius_m, settings.approval_radius_m)


def approved_reach(row: Row[Any]) -> Reach | None:
    if row.approved_reach_m is None or row.approved_members is None:
        return None
    return Reach(row.approved_reach_m, row.approved_members)


def row_reach(row: Row[Any], settings: Settings) -> Reach:
    return expected_reach(AreaIn.model_validate(row.area), row.members_needed, settings)


def is_second_person(principal: Principal, row: Row[Any]) -> bool:
    """Someone other than the declarer who may run the emergency (an authority never is:
    approving is a coordinator's or an admin's act)."""
    return may_run(principal, row.section) and principal.account_id != row.created_by


async def check_assistance(
    session: AsyncSession,
    principal: Principal,
    section: str,
    named: list[str],
    already: list[str] | None = None,
) -> None:
    """Raise AssistanceNotAgreed when `named` adds a section the principal neither acts
    for nor has an agreement to assist `section` (sections already on the emergency
    stay: removing an agreement does not block unrelated changes)."""
    added = [code for code in named if code not in set(already or [])]
    if not added:
        return
    refused = assistance.unagreed_sections(
        principal, section, added, await assistance.agreed_for(session, section)
    )
    if refused:
        raise AssistanceNotAgreed(section, refused)


def facts(row: Row[Any]) -> dict[str, Any]:
    """The EmergencyFacts fields of an emergency row (for declared / updated events)."""
    return {
        "emergency_id": row.id,
        "section": row.section,
        "assisting_sections": list(row.assisting_sections),
        "title": row.title,
        "description": row.description,
        "category": row.category,
        "severity": row.severity,
        "urgency": row.urgency,
        "drill": row.drill,
        "area": row.area,
        "required_qualifications": list(row.required_qualifications),
        "members_needed": row.members_needed,
        "languages": list(row.languages),
        "status": row.status,
        "reply_code": row.reply_code,
    }


async def declare(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    body: EmergencyCreate,
    *,
    origin: str = "api",
    cap_sender: str | None = None,
    cap_identifier: str | None = None,
    force_approval: bool = False,
) -> Row[Any]:
    """Create the emergency: active at once, or `pending_approval` when it is large (or
    came from an authority's CAP alert, `force_approval`)."""
    await check_assistance(session, principal, body.section, body.assisting_sections)
    reach = expected_reach(body.area, body.members_needed, settings)
    held = force_approval or needs_approval(reach, settings)
    emergency_id = uuid.uuid4()
    values = {
        "id": emergency_id,
        "section": body.section,
        "assisting_sections": body.assisting_sections,
        "title": body.title,
        "description": body.description,
        "category": body.category,
        "severity": body.severity,
        "urgency": body.urgency,
        "drill": body.drill,
        "area": body.area.as_event_area(),
        "required_qualifications": body.required_qualifications,
        "members_needed": body.members_needed,
        "languages": body.languages,
        "status": "pending_approval" if held else "active",
        "needs_approval": held,
        "created_by": principal.account_id,
        "changed_by": principal.account_id,
        "origin": origin,
        "cap_sender": cap_sender,
        "cap_identifier": cap_identifier,
    }
    for _ in range(20):
        values["reply_code"] = new_reply_code()
        try:
            async with session.begin_nested():
                await session.execute(emergencies.insert().values(**values))
            break
        except IntegrityError:
            if cap_identifier is not None and await _cap_alert_exists(
                session, cap_sender, cap_identifier
            ):
                # the same alert posted concurrently: the other request declared it
                raise DuplicateCapAlert(cap_identifier) from None
            continue  # that code is in use by an open emergency: draw another
    else:
        raise Conflict("no free reply code: too many open emergencies")
    await lock(session, emergency_id)
    await audit.record(
        session,
        action="declared" if not held else "held_for_approval",
        emergency_id=emergency_id,
        actor=principal,
        diff={k: v for k, v in values.items() if k not in ("id",)}
        | {"expected_members": reach.expected_members, "reach_m": reach.radius_m},
    )
    await session.execute(summary_state.insert().values(emergency_id=emergency_id))
    if not held:
        await _activate(session, settings, emergency_id)
    row = await get(session, emergency_id)
    assert row is not None
    return row


async def _cap_alert_exists(session: AsyncSession, sender: str | None, identifier: str) -> bool:
    found = await session.execute(
        select(emergencies.c.id).where(
            emergencies.c.cap_sender == sender, emergencies.c.cap_identifier == identifier
        )
    )
    return found.first() is not None


async def _activate(session: AsyncSession, settings: Settings, emergency_id: uuid.UUID) -> None:
    """Active from now: freeze the escalation plan, publish `declared`, arm the first step."""
    row = await get(session, emergency_id)
    assert row is not None
    now = datetime.now(UTC)
    area = AreaIn.model_validate(row.area)
    plan = escalation.plan_waves(
        area.reach_m(),
        severity=row.severity,
        delay_s=settings.escalation_delay_s,
        delay_extreme_s=settings.escalation_delay_extreme_s,
        factor=settings.escalation_radius_factor,
        max_radius_m=escalation_ceiling_m(
            approved=row.approved_reach_m is not None, settings=settings
        ),
    )
    await session.execute(
        emergencies.update()
        .where(emergencies.c.id == emergency_id)
        .values(
            status="active",
            declared_at=now,
            updated_at=now,
            escalation_plan=[w.as_json() for w in plan],
        )
    )
    row = await get(session, emergency_id)
    assert row is not None
    await add_event(
        session,
        EmergencyDeclared(**facts(row), declared_at=now),
        source=settings.service_name,
        correlationid=str(emergency_id),
    )
    await escalation.arm_next(session, emergency_id, now)


async def approve(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    emergency_id: uuid.UUID,
    version: int | None,
) -> Row[Any]:
    """The second person approves the version they reviewed: an admin or another
    coordinator of the section, never the declarer nor whoever wrote that version.

    Who may approve is checked before the version, so a declarer learns that first."""
    await lock(session, emergency_id)
    row = await get(session, emergency_id)
    assert row is not None
    if row.status != "pending_approval":
        raise Conflict(f"the emergency is {row.status}, not pending_approval")
    if principal.account_id == row.created_by:
        raise Forbidden("the declarer cannot approve their own emergency: ask a second coordinator")
    if principal.account_id == row.changed_by:
        raise Forbidden(
            "you made the last change to this emergency, so you cannot approve it: ask "
            "another coordinator of the section or an admin"
        )
    if not may_run(principal, row.section):
        raise Forbidden("only a coordinator of the section or an admin can approve")
    if version is None:
        raise VersionRequired("name the version you reviewed")
    if version != row.version:
        raise StaleVersion(version, row.version)
    reach = row_reach(row, settings)
    now = datetime.now(UTC)
    await session.execute(
        emergencies.update()
        .where(emergencies.c.id == emergency_id)
        .values(
            approved_by=principal.account_id,
            approved_at=now,
            approved_version=row.version,
            approved_reach_m=reach.radius_m,
            approved_members=reach.expected_members,
        )
    )
    await audit.record(
        session,
        action="approved",
        emergency_id=emergency_id,
        actor=principal,
        diff={
            "version": row.version,
            "reach_m": reach.radius_m,
            "expected_members": reach.expected_members,
        },
    )
    await _activate(session, settings, emergency_id)
    row = await get(session, emergency_id)
    assert row is not None
    return row


async def update(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    emergency_id: uuid.UUID,
    patch: EmergencyPatch,
) -> Row[Any]:
    await lock(session, emergency_id)
    row = await get(session, emergency_id)
    assert row is not None
    if row.status == "closed":
        raise Conflict("the emergency is closed; declare a new one")
    given = patch.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {}
    for name in PATCHABLE:
        if name not in given or given[name] is None:
            continue
        value = patch.area.as_event_area() if name == "area" and patch.area else given[name]
        if value != getattr(row, name):
            changes[name] = value
    if not changes:
        return row
    if "assisting_sections" in changes:
        await check_assistance(
            session, principal, row.section, changes["assisting_sections"],
            list(row.assisting_sections),
        )  # fmt: skip
    values: dict[str, Any] = {
        **changes, "updated_at": datetime.now(UTC), "version": row.version + 1,
        "changed_by": principal.account_id,
    }  # fmt: skip
    approved_now = False
    if row.status == "active" and ("area" in changes or "members_needed" in changes):
        area = AreaIn.model_validate(changes.get("area", row.area))
        reach = expected_reach(area, changes.get("members_needed", row.members_needed), settings)
        if exceeds(reach, allowed_without_second_person(approved_reach(row), settings)):
            if not is_second_person(principal, row):
                raise Forbidden(
                    "this change makes the alert large enough to need a second person (past "
                    "the two-person thresholds, or past what was approved): ask an admin or "
                    "another coordinator of the section to make it"
                )
            # a second person made the change: it stands as the approval of this extent
            approved_now = True
            values |= {
                "approved_by": principal.account_id, "approved_at": values["updated_at"],
                "approved_version": values["version"], "approved_reach_m": reach.radius_m,
                "approved_members": reach.expected_members,
            }  # fmt: skip
    now = values["updated_at"]
    await session.execute(
        emergencies.update().where(emergencies.c.id == emergency_id).values(**values)
    )
    await audit.record(
        session,
        action="updated",
        emergency_id=emergency_id,
        actor=principal,
        diff={name: {"from": getattr(row, name), "to": value} for name, value in changes.items()},
    )
    if approved_now:
        await audit.record(
            session, action="approved", emergency_id=emergency_id, actor=principal,
            diff={"version": values["version"], "reach_m": values["approved_reach_m"],
                  "expected_members": values["approved_members"], "by_change": True},
        )  # fmt: skip
    updated = await get(session, emergency_id)
    assert updated is not None
    if updated.status == "active":
        await add_event(
            session,
            EmergencyUpdated(
                **facts(updated), staffed=updated.staffed, changed=sorted(changes), updated_at=now
            ),
            source=settings.service_name,
            correlationid=str(emergency_id),
        )
        if "members_needed" in changes:
            settled = await board_store.requota(session, settings, updated)
            if settled.quota is not None:
                await _staffing(session, settings, updated, settled.quota, None)
    updated = await get(session, emergency_id)
    assert updated is not None
    return updated


async def close(
    session: AsyncSession,
    settings: Settings,
    principal: Principal | None,
    emergency_id: uuid.UUID,
    *,
    reason: str = "resolved",
    note: str = "",
) -> Row[Any]:
    """Close (resolved), cancel, or cancel as a false alarm (every alerted member gets a
    correction). Idempotent on an already closed emergency."""
    await lock(session, emergency_id)
    row = await get(session, emergency_id)
    assert row is not None
    if row.status == "closed":
        return row
    now = datetime.now(UTC)
    await session.execute(
        emergencies.update()
        .where(emergencies.c.id == emergency_id)
        .values(
            status="closed",
            closed_at=now,
            close_reason=reason,
            updated_at=now,
            version=row.version + 1,
        )
    )
    await escalation.disarm(session, emergency_id)
    await audit.record(
        session,
        action="closed",
        emergency_id=emergency_id,
        actor=principal,
        diff={"reason": reason, "note": note, "from_status": row.status},
    )
    if row.declared_at is not None:  # never declared (still pending): nobody was alerted
        await add_event(
            session,
            EmergencyClosed(
                emergency_id=emergency_id,
                reason=reason,
                false_alarm=reason == "false_alarm",
                drill=row.drill,
                closed_at=now,
            ),
            source=settings.service_name,
            correlationid=str(emergency_id),
        )
        await session.execute(summary_marks.insert().values(emergency_id=emergency_id))
    closed = await get(session, emergency_id)
    assert closed is not None
    return closed


# -- the board: events applied, and what they change for the emergency -----------------


async def on_board_event(settings: Settings, delivery: Delivery) -> None:
    """Consumer handler for muster.alerts and muster.responses."""
    event = board.from_event(delivery.data, delivery.envelope.id)
    if event is not None:
        await apply_board_events(
            delivery.db, settings, event.emergency_id, [event], causation=event.event_id
        )


async def on_board_events(settings: Settings, deliveries: Sequence[Delivery]) -> None:
    """Consumer group handler: one emergency's records of a poll (their key), in order,
    in one transaction, applied as one planning step per emergency."""
    by_emergency: dict[uuid.UUID, list[board.BoardEvent]] = {}
    for delivery in deliveries:
        event = board.from_event(delivery.data, delivery.envelope.id)
        if event is not None:
            by_emergency.setdefault(event.emergency_id, []).append(event)
    # one key is one emergency; should a group ever hold several, their locks are taken
    # in one global order, so two such transactions cannot deadlock
    for emergency_id in sorted(by_emergency, key=lock_key):
        await apply_board_batch(
            deliveries[0].db, settings, emergency_id, by_emergency[emergency_id]
        )


async def apply_board_batch(
    session: AsyncSession,
    settings: Settings,
    emergency_id: uuid.UUID,
    events: list[board.BoardEvent],
) -> None:
    """`apply_board_events` for each event in turn, in the statements of one: the rows
    are planned and written together, then each event's quota change is acted on in
    order (with its own event as the cause), as one by one."""
    emergency = await lock_and_get(session, emergency_id)
    steps = await board_store.apply_batch(session, settings, emergency, emergency_id, events)
    for step in steps:
        if emergency is None or step.quota is None:
            continue
        change = step.quota
        if emergency.status == "active" and (
            change.staffed_after != emergency.staffed or change.call_up
        ):
            await _staffing(session, settings, emergency, change, step.event_id)
            # staffed and the armed escalation step changed: the next step reads them
            emergency = await get(session, emergency_id)


async def apply_board_events(
    session: AsyncSession,
    settings: Settings,
    emergency_id: uuid.UUID,
    events: list[board.BoardEvent],
    *,
    causation: str | None,
) -> list[board.BoardRow]:
    """Apply board events of one emergency and act on the quota they change; return the
    rows whose status or content changed."""
    emergency = await lock_and_get(session, emergency_id)
    settled = await board_store.apply_events(session, settings, emergency, emergency_id, events)
    if emergency is not None and settled.quota is not None:
        await _staffing(session, settings, emergency, settled.quota, causation)
    return settled.changed


async def _staffing(
    session: AsyncSession,
    settings: Settings,
    emergency: Row[Any],
    change: board.QuotaChange,
    causation: str | None,
) -> None:
    """`staffed` true once enough accepted (escalation stops); back to false after a
    drop-out nobody on standby could fill (escalation resumes). A drop-out that a standby
    fills keeps `staffed` true and names them in `call_up`. Only while active."""
    staffed = change.staffed_after
    if emergency.status != "active" or (staffed == emergency.staffed and not change.call_up):
        return
    now = datetime.now(UTC)
    await session.execute(
        emergencies.update()
        .where(emergencies.c.id == emergency.id)
        .values(staffed=staffed, updated_at=now)
    )
    fields = ["staffed"] if staffed != emergency.staffed else []
    fields += ["call_up"] if change.call_up else []
    row = await get(session, emergency.id)
    assert row is not None
    await add_event(
        session,
        EmergencyUpdated(
            **facts(row),
            staffed=staffed,
            call_up=list(change.call_up),
            changed=fields,
            updated_at=now,
        ),
        source=settings.service_name,
        correlationid=str(emergency.id),
        causationid=causation,
    )
    await audit.record(
        session,
        action="staffed" if staffed else "quota_reopened",
        emergency_id=emergency.id,
        actor=None,
        diff={"staffed": staffed, "call_up": [str(m) for m in change.call_up]},
    )
    if staffed and not emergency.staffed:
        await escalation.disarm(session, emergency.id)
    elif not staffed and emergency.next_step_id is None:
        await escalation.arm_next(session, emergency.id, now)


# -- escalation: the frozen plan's steps, fired here ------------------------------------


async def fire_escalation_step(
    session: AsyncSession, settings: Settings, step_id: uuid.UUID, now: datetime
) -> str:
    """Fire one due step inside the caller's transaction; return what happened."""
    await lock(session, await escalation.step_emergency(session, step_id))
    step = await escalation.claim(session, step_id)
    if step is None:
        return "taken"
    emergency = await get(session, step.emergency_id)
    assert emergency is not None
    filled = await board_store.filled_places(session, emergency.id)
    outcome = escalation.decide(
        step.id, next_step_id=emergency.next_step_id, emergency_status=emergency.status,
        filled=filled, members_needed=emergency.members_needed,
    )  # fmt: skip
    if outcome == "staffed":
        await escalation.disarm(session, emergency.id)
    elif outcome == "escalated":
        count = escalation.wave_count(emergency.members_needed, filled, settings.over_alert_factor)
        await add_event(
            session,
            EmergencyEscalated(
                emergency_id=emergency.id, wave=step.wave, radius_m=step.radius_m, count=count,
                escalated_at=now,
            ),
            source=settings.service_name,
            correlationid=str(emergency.id),
        )  # fmt: skip
        await audit.record(
            session, action="escalated", emergency_id=emergency.id, actor=None,
            diff={"wave": step.wave, "radius_m": step.radius_m, "count": count,
                  "accepted": filled, "step_id": str(step.id)},
        )  # fmt: skip
    await escalation.mark(session, step.id, outcome, now)
    if outcome == "escalated":
        await escalation.arm_next(session, emergency.id, now)
    log.info(
        "escalation step",
        step_id=str(step.id),
        emergency_id=str(emergency.id),
        wave=step.wave,
        outcome=outcome,
    )
    return outcome


async def escalate_now(
    session: AsyncSession, settings: Settings, emergency_id: uuid.UUID, now: datetime
) -> str | None:
    """A coordinator's "escalate now": the armed next wave fires at once instead of at
    its due time (same step, same rules, so it can never fire twice). None when no wave
    is armed (the plan is used up, the emergency is staffed, pending or closed)."""
    emergency = await lock_and_get(session, emergency_id)
    if emergency is None or emergency.status != "active" or emergency.next_step_id is None:
        return None
    await escalation.pull_forward(session, emergency.next_step_id, now)
    return await fire_escalation_step(session, settings, emergency.next_step_id, now)
