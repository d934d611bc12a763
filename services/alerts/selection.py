"""Whom to alert: pure ranking logic, no I/O.

`select` takes the candidates the index found near the emergency and keeps exactly the
members the rules admit, nearest first, at most `count`. Every rule is a small function
here so that a test can compute the same answer independently and hypothesis can check
the invariants (never an expelled, suspended or non-consenting member; sorted by
distance; never more than asked; always a subset of the candidates).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shapely.geometry import Point, shape
from shapely.prepared import prep

from services.alerts.index import haversine_m
from shared.events.members import MemberChanged, Position


@dataclass(frozen=True)
class Target:
    """Where and whom an emergency (or one of its waves) looks for."""

    sections: frozenset[str]
    centre_lat: float
    centre_lon: float
    #: a circle around the centre, or None when the polygon alone decides
    radius_m: float | None
    polygon: dict[str, Any] | None
    required_qualifications: frozenset[str]
    severity: str
    count: int

    @cached_property
    def _prepared_polygon(self) -> Any:
        return prep(shape(self.polygon)) if self.polygon else None

    def contains(self, lat: float, lon: float) -> bool:
        if self.radius_m is not None:
            return haversine_m(self.centre_lat, self.centre_lon, lat, lon) <= self.radius_m
        return bool(self._prepared_polygon.covers(Point(lon, lat)))


def target_for(
    *,
    section: str,
    assisting_sections: Iterable[str],
    area: Any,
    required_qualifications: Iterable[str],
    severity: str,
    count: int,
    radius_m: float | None = None,
) -> Target:
    """The Target of a declared emergency (or of an escalation, with its `radius_m`: a
    circle around the area's centre, polygon or not)."""
    polygon = area.polygon if radius_m is None else None
    if area.polygon:
        centre = shape(area.polygon).centroid
        lat, lon = float(centre.y), float(centre.x)
    else:
        lat, lon = float(area.lat), float(area.lon)
    return Target(
        sections=frozenset([section, *assisting_sections]),
        centre_lat=lat,
        centre_lon=lon,
        radius_m=float(radius_m)
        if radius_m is not None
        else (None if polygon else float(area.radius_m)),
        polygon=polygon,
        required_qualifications=frozenset(required_qualifications),
        severity=severity,
        count=count,
    )


@dataclass(frozen=True)
class Chosen:
    member: MemberChanged
    distance_m: int
    position: Position

    @property
    def member_id(self) -> UUID:
        return self.member.member_id


def first_wave_count(members_needed: int, over_alert_factor: int) -> int:
    return members_needed * over_alert_factor


# --- the rules, one by one ------------------------------------------------------------


def is_reachable(member: MemberChanged) -> bool:
    """Active, consenting, with a phone that takes SMS."""
    return (
        member.status == "active"
        and member.consent_alerts
        and bool(member.phone)
        and "sms" in member.channels
    )


def is_available(member: MemberChanged, now: datetime) -> bool:
    if member.availability == "available":
        return True
    until = member.unavailable_until
    return until is not None and _aware(until) <= now


def valid_qualifications(member: MemberChanged, now: datetime) -> set[str]:
    today = now.astimezone(UTC).date()
    return {
        q.code
        for q in member.qualifications
        if (q.expires_at is None or q.expires_at >= today)
        and (q.issued_at is None or q.issued_at <= today)
    }


def is_quiet(member: MemberChanged, now: datetime) -> bool:
    """Inside the member's quiet hours, in the member's own time zone."""
    quiet = member.quiet_hours
    if quiet is None or quiet.start == quiet.end:
        return False
    try:
        zone = ZoneInfo(member.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone).time().replace(tzinfo=None)
    return in_quiet_window(local, quiet.start, quiet.end)


def in_quiet_window(local: time, start: time, end: time) -> bool:
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def position_for(member: MemberChanged, now: datetime, live_max_age_s: int) -> Position | None:
    """The live position while it is fresh, else home."""
    live = member.live
    if live is not None and live.at is not None:
        age = now - _aware(live.at)
        if timedelta(0) - timedelta(minutes=5) <= age <= timedelta(seconds=live_max_age_s):
            return live
    return member.home


def admits(
    member: MemberChanged,
    target: Target,
    now: datetime,
    *,
    live_max_age_s: int,
) -> Chosen | None:
    """The member as chosen (with distance and position) if every rule admits them."""
    if member.section not in target.sections or not is_reachable(member):
        return None
    if not is_available(member, now):
        return None
    if not target.required_qualifications <= valid_qualifications(member, now):
        return None
    if target.severity != "Extreme" and is_quiet(member, now):
        return None
    position = position_for(member, now, live_max_age_s)
    if position is None:
        return None
    # one haversine for both the circle test and the rank (selection runs it for every
    # member it reads)
    distance = haversine_m(target.centre_lat, target.centre_lon, position.lat, position.lon)
    if target.radius_m is not None:
        if distance > target.radius_m:
            return None
    elif not target.contains(position.lat, position.lon):
        return None
    return Chosen(member, round(distance), position)


def select(
    candidates: Iterable[MemberChanged],
    target: Target,
    now: datetime,
    *,
    live_max_age_s: int,
    already_alerted: Collection[UUID] = (),
    committed: Collection[UUID] = (),
    opted_out_phones: Collection[str] = (),
) -> list[Chosen]:
    """The admitted members not yet alerted for this emergency, not committed to another
    active one, not opted out of SMS: nearest first, at most `target.count`."""
    chosen: dict[UUID, Chosen] = {}
    for member in candidates:
        mid = member.member_id
        if mid in already_alerted or mid in committed or mid in chosen:
            continue
        if member.phone in opted_out_phones:
            continue
        admitted = admits(member, target, now, live_max_age_s=live_max_age_s)
        if admitted is not None:
            chosen[mid] = admitted
    # UUIDs order by their integer, which is the order of their hex text: the same ranking
    # as by str(member_id), without formatting one per member
    ranked = sorted(chosen.values(), key=lambda c: (c.distance_m, c.member.member_id))
    return ranked[: max(target.count, 0)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
