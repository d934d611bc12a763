"""The targeting snapshot (`muster.member.changed.v1`) built from a member's row, and
the rules deciding when a change is worth a new snapshot. Pure: no I/O.

Ordering: the topic is keyed by member id (one partition per member, in order), each
change locks the member's row, bumps `version` and adds the snapshot to the outbox in the
same transaction, and a single relay publishes the outbox in id order; a consumer that
still sees an older version after a newer one (replay, two producers in a failover) drops
it. Bursts: a live position that moved less than `min_move_m` from the last published
one, while that one is younger than `refresh_s`, is stored but not published; a position
older than the stored one is ignored altogether.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from services.members.geo import haversine_km
from shared.events.members import MemberChanged, Position, QualificationHeld, QuietHours


def build_snapshot(
    member: Mapping[str, Any],
    qualifications: Iterable[Mapping[str, Any]],
    *,
    timezone: str,
    version: int,
    changed_at: datetime,
) -> MemberChanged:
    """The full targeting snapshot of one member (no name, no email)."""
    home = None
    if member["home_lat"] is not None and member["home_lon"] is not None:
        home = Position(lat=member["home_lat"], lon=member["home_lon"], source="home")
    live = None
    if member["live_lat"] is not None and member["live_lon"] is not None:
        live = Position(
            lat=member["live_lat"], lon=member["live_lon"], at=member["live_at"], source="live"
        )
    quiet = None
    if member["quiet_start"] is not None and member["quiet_end"] is not None:
        quiet = QuietHours(start=member["quiet_start"], end=member["quiet_end"])
    held = sorted(
        (
            QualificationHeld(code=q["code"], issued_at=q["issued_at"], expires_at=q["expires_at"])
            for q in qualifications
        ),
        key=lambda q: q.code,
    )
    return MemberChanged(
        member_id=member["id"] if isinstance(member["id"], UUID) else UUID(str(member["id"])),
        version=version,
        section=member["section"],
        status=member["status"],
        language=member["language"],
        timezone=timezone,
        phone=member["phone"],
        channels=["sms", "web"],
        consent_alerts=bool(member["consent_alerts"]),
        availability=member["availability"],
        unavailable_until=member["unavailable_until"],
        quiet_hours=quiet,
        home=home,
        live=live,
        qualifications=held,
        changed_at=changed_at,
    )


def targeting_content(snapshot: MemberChanged) -> dict[str, Any]:
    """What alerting depends on: the snapshot without its version and time stamp."""
    return snapshot.model_dump(mode="json", exclude={"version", "changed_at"})


def targeting_changed(before: MemberChanged, after: MemberChanged) -> bool:
    return targeting_content(before) != targeting_content(after)


@dataclass(frozen=True)
class LiveFix:
    lat: float
    lon: float
    at: datetime


def live_fix_is_stale(current_at: datetime | None, new_at: datetime) -> bool:
    """A position taken before the one already stored is out of date: ignore it."""
    return current_at is not None and new_at < current_at


def live_fix_publishes(
    published: LiveFix | None,
    new: LiveFix,
    *,
    min_move_m: float,
    refresh_s: float,
) -> bool:
    """Whether a new live position deserves a snapshot (see the module's docstring)."""
    if published is None:
        return True
    if new.at - published.at >= timedelta(seconds=refresh_s):
        return True
    moved_m = haversine_km(published.lat, published.lon, new.lat, new.lon) * 1000.0
    return moved_m >= min_move_m
