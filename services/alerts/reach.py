"""The reach preview: how many members an emergency would alert now, and why the others
would not. Counts only, from alerts' own index, with the same rules selection applies.

`POST /reach/preview` (coordinator or admin of the section) answers
`{"eligible", "first_wave", "excluded": {reason: n}, "considered"}`.

Who is considered: every member of the named sections (the section and its assisting
sections) that the index holds a position for (home or live); a member with no position
at all is in no GEO set and cannot be alerted anywhere, so is not counted. Each
considered member who would not be alerted falls into exactly one reason, the first of
`REASONS` that applies:

1. `outside`: the position that counts (the live one while fresh, else home) is outside
   the area;
2. `no_consent`: no consent to alerts, SMS stopped (STOP), or no phone that takes SMS;
3. `unavailable`: suspended or expelled, or marked unavailable now;
4. `unqualified`: a required qualification is missing, expired or not yet valid;
5. `committed`: accepted (or on standby for) another active emergency;
6. `quiet_hours`: inside their quiet hours, at a severity below Extreme.

The order runs from what a coordinator cannot change to what they can: the last two
count exactly the members that would be added by waiting for another emergency to end,
or by declaring at severity Extreme.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as redis
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import shape
from shapely.validation import explain_validity
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import erasure
from services.alerts.alerting import committed_elsewhere
from services.alerts.index import SearchArea, TargetingIndex, haversine_m, search_area
from services.alerts.ratelimit import WindowLimit
from services.alerts.selection import (
    Target,
    is_available,
    is_quiet,
    position_for,
    target_for,
    valid_qualifications,
)
from services.alerts.settings import Settings
from shared.auth import Principal, principal_dependency, require_role
from shared.events.emergencies import Severity
from shared.events.members import MemberChanged

Reason = Literal["outside", "no_consent", "unavailable", "unqualified", "committed", "quiet_hours"]
#: the order in which a member's reason is decided (the first that applies)
REASONS: tuple[Reason, ...] = (
    "outside",
    "no_consent",
    "unavailable",
    "unqualified",
    "committed",
    "quiet_hours",
)


# --- the request: the same area and field rules as dispatch's POST /emergencies ---------
# Mirrored from services/dispatch/schemas.py (services share only shared/), so an area the
# preview accepts is one dispatch accepts, and the 422 names the same field.

MIN_RADIUS_M = 100
MAX_RADIUS_M = 50_000
SECTION_PATTERN = r"^[A-Z0-9_-]{1,16}$"
QUALIFICATION_PATTERN = r"^[A-Z0-9_]{1,40}$"


def check_polygon(value: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Polygon ([lon, lat] pairs), closed, simple (no self-crossing), no wider
    than the largest circle allowed. Raise ValueError saying what is wrong."""
    if value.get("type") != "Polygon":
        raise ValueError("must be a GeoJSON object with type 'Polygon'")
    rings = value.get("coordinates")
    if not isinstance(rings, list) or not rings or not isinstance(rings[0], list):
        raise ValueError("coordinates must be a list of linear rings ([[lon, lat], ...])")
    for ring in rings:
        if len(ring) < 4:
            raise ValueError("a ring needs at least 4 positions (the first repeated last)")
        for position in ring:
            if (
                not isinstance(position, list | tuple)
                or len(position) < 2
                or not all(isinstance(c, int | float) for c in position[:2])
            ):
                raise ValueError("each position must be [lon, lat] numbers")
            lon, lat = position[0], position[1]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError(f"position {[lon, lat]} is outside lon -180..180 / lat -90..90")
        if list(ring[0][:2]) != list(ring[-1][:2]):
            raise ValueError("a ring must be closed: its last position repeats the first")
    try:
        geometry = shape(value)
    except Exception as exc:  # shapely raises several types for malformed input
        raise ValueError(f"not a readable polygon: {exc}") from exc
    if not geometry.is_valid:
        raise ValueError(f"invalid polygon: {explain_validity(geometry)}")
    if geometry.area == 0:
        raise ValueError("the polygon has no area")
    centre = geometry.centroid
    widest = max(haversine_m(centre.y, centre.x, lat, lon) for lon, lat, *_ in rings[0])
    if widest > MAX_RADIUS_M:
        raise ValueError(
            f"the polygon reaches {widest:.0f} m from its centre; at most {MAX_RADIUS_M}"
        )
    return {"type": "Polygon", "coordinates": [[list(p[:2]) for p in ring] for ring in rings]}


class AreaIn(BaseModel):
    """A circle (`lat`, `lon`, `radius_m` from 100 m to 50 km) or `polygon` (GeoJSON)."""

    model_config = ConfigDict(extra="forbid")

    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_m: int | None = Field(None, ge=MIN_RADIUS_M, le=MAX_RADIUS_M)
    polygon: dict[str, Any] | None = None

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_polygon(value)

    @model_validator(mode="after")
    def _one_shape(self) -> AreaIn:
        circle = (self.lat, self.lon, self.radius_m)
        if self.polygon is not None:
            if any(v is not None for v in circle):
                raise ValueError("give either a circle (lat, lon, radius_m) or a polygon, not both")
        elif any(v is None for v in circle):
            raise ValueError("a circle needs lat, lon and radius_m (or give a polygon)")
        return self


class ReachPreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    section: str = Field(pattern=SECTION_PATTERN)
    area: AreaIn
    required_qualifications: list[str] = Field(default_factory=list, max_length=20)
    assisting_sections: list[str] = Field(default_factory=list, max_length=20)
    severity: Severity
    members_needed: int = Field(ge=1, le=10_000)

    @field_validator("required_qualifications")
    @classmethod
    def _qualifications(cls, value: list[str]) -> list[str]:
        for code in value:
            if re.fullmatch(QUALIFICATION_PATTERN, code) is None:
                raise ValueError(f"qualification {code!r}: use codes like FIRST_AID")
        return sorted(set(value))

    @field_validator("assisting_sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        for code in value:
            if re.fullmatch(SECTION_PATTERN, code) is None:
                raise ValueError(f"section {code!r}: use section codes like AL")
        return sorted(set(value))


class ReachPreviewOut(BaseModel):
    eligible: int
    first_wave: int
    excluded: dict[Reason, int]
    considered: int


# --- the counting: pure ----------------------------------------------------------------


def exclusion(
    member: MemberChanged,
    target: Target,
    now: datetime,
    *,
    live_max_age_s: int,
    committed: Collection[uuid.UUID] = (),
    opted_out_phones: Collection[str] = (),
) -> Reason | None:
    """Why selection would not alert `member` for `target` now (the first reason of
    `REASONS` that applies), or None when it would. Built from selection's own rules."""
    position = position_for(member, now, live_max_age_s)
    if (
        member.section not in target.sections
        or position is None
        or not target.contains(position.lat, position.lon)
    ):
        return "outside"
    if (
        not member.consent_alerts
        or not member.phone
        or "sms" not in member.channels
        or member.phone in opted_out_phones
    ):
        return "no_consent"
    if member.status != "active" or not is_available(member, now):
        return "unavailable"
    if not target.required_qualifications <= valid_qualifications(member, now):
        return "unqualified"
    if member.member_id in committed:
        return "committed"
    if target.severity != "Extreme" and is_quiet(member, now):
        return "quiet_hours"
    return None


@dataclass(frozen=True)
class Reach:
    eligible: int
    first_wave: int
    excluded: dict[Reason, int] = field(default_factory=dict)

    @property
    def considered(self) -> int:
        return self.eligible + sum(self.excluded.values())


def count_reach(
    members: Iterable[MemberChanged],
    target: Target,
    now: datetime,
    *,
    live_max_age_s: int,
    members_needed: int,
    over_alert_factor: int,
    committed: Collection[uuid.UUID] = (),
    opted_out_phones: Collection[str] = (),
    outside_beyond_search: int = 0,
) -> Reach:
    """The preview's counts over `members` (each counted once), plus
    `outside_beyond_search` members already known to be outside (positions beyond the
    circle searched, so their snapshots were never fetched)."""
    excluded: dict[Reason, int] = dict.fromkeys(REASONS, 0)
    excluded["outside"] += outside_beyond_search
    eligible = 0
    seen: set[uuid.UUID] = set()
    for member in members:
        if member.member_id in seen:
            continue
        seen.add(member.member_id)
        reason = exclusion(
            member,
            target,
            now,
            live_max_age_s=live_max_age_s,
            committed=committed,
            opted_out_phones=opted_out_phones,
        )
        if reason is None:
            eligible += 1
        else:
            excluded[reason] += 1
    return Reach(eligible, min(eligible, members_needed * over_alert_factor), excluded)


# --- the I/O around it -----------------------------------------------------------------


async def section_member_ids(
    client: redis.Redis, settings: Settings, sections: Iterable[str]
) -> set[str]:
    """Every member of `sections` with a home or live position in the index."""
    pipe = client.pipeline(transaction=False)
    for section in dict.fromkeys(sections):
        pipe.zrange(settings.key("geo", "home", section), 0, -1)
        pipe.zrange(settings.key("geo", "live", section), 0, -1)
    return {raw.decode() for found in await pipe.execute() for raw in found}


async def preview(
    body: ReachPreviewIn,
    *,
    index: TargetingIndex,
    session: AsyncSession,
    settings: Settings,
    now: datetime,
) -> Reach:
    target = target_for(
        section=body.section,
        assisting_sections=body.assisting_sections,
        area=body.area,
        required_qualifications=body.required_qualifications,
        severity=body.severity,
        count=body.members_needed,
    )
    where: SearchArea = search_area(body.area)
    everyone = await section_member_ids(index.redis, settings, target.sections)
    near = await index.candidates(target.sections, where)
    near_ids = {str(m.member_id) for m in near}
    # nobody is an emergency yet: every accepted member of an active one is committed
    committed = await committed_elsewhere(session, uuid.UUID(int=0))
    # as selection does: plain STOPs and erased members' STOPs kept as keyed hashes
    opted_out = await erasure.opt_outs(session, settings)
    return count_reach(
        near,
        target,
        now,
        live_max_age_s=settings.live_position_max_age_s,
        members_needed=body.members_needed,
        over_alert_factor=settings.over_alert_factor,
        committed=committed,
        opted_out_phones=opted_out,
        outside_beyond_search=len(everyone - near_ids),
    )


def reach_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    index: Callable[[], TargetingIndex],
) -> APIRouter:
    router = APIRouter(tags=["reach preview"])
    current_principal = principal_dependency(lambda request: request.app.state.verifier)

    @router.post(
        "/reach/preview",
        response_model=ReachPreviewOut,
        summary="How many members an emergency would alert now, and why the others not",
    )
    async def reach_preview(
        body: ReachPreviewIn,
        request: Request,
        principal: Principal = Depends(current_principal),
    ) -> ReachPreviewOut:
        require_role(principal, "coordinator", "admin")
        if not principal.can_act_for(body.section):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"you do not act for section {body.section}"
            )
        targeting = index()
        limit = WindowLimit(
            targeting.redis, settings.key("rl", "reach", ""), settings.reach_preview_rate_per_min
        )
        if not await limit.allow(principal.account_id):
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many previews: wait a minute",
                headers={"Retry-After": "60"},
            )
        if not await targeting.is_ready():
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the targeting index is being rebuilt: try again in a minute",
                headers={"Retry-After": "10"},
            )
        async with db()() as session:
            reach = await preview(
                body, index=targeting, session=session, settings=settings, now=datetime.now(UTC)
            )
        return ReachPreviewOut(
            eligible=reach.eligible,
            first_wave=reach.first_wave,
            excluded=reach.excluded,
            considered=reach.considered,
        )

    return router
