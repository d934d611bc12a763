"""Request and response bodies of the dispatch API, validated where they enter.

A bad field gets a 422 that names it (pydantic puts the field path in `loc`), so
`area.radius_m`, `area.polygon`, `severity`, `members_needed` and `area.lat` are named
in the error a coordinator reads.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import shape
from shapely.validation import explain_validity

from shared.events.emergencies import Category, EmergencyStatus, Severity, Urgency

MIN_RADIUS_M = 100
MAX_RADIUS_M = 50_000
EARTH_RADIUS_M = 6_371_000.0
SECTION_PATTERN = r"^[A-Z0-9_-]{1,16}$"
QUALIFICATION_PATTERN = r"^[A-Z0-9_]{1,40}$"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), good to a few metres at these scales."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


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
    widest = max(distance_m(centre.y, centre.x, lat, lon) for lon, lat, *_ in rings[0])
    if widest > MAX_RADIUS_M:
        raise ValueError(
            f"the polygon reaches {widest:.0f} m from its centre; at most {MAX_RADIUS_M}"
        )
    return {"type": "Polygon", "coordinates": [[list(p[:2]) for p in ring] for ring in rings]}


def polygon_reach_m(polygon: dict[str, Any]) -> tuple[float, float, int]:
    """(centroid lat, centroid lon, distance to the farthest vertex in metres)."""
    geometry = shape(polygon)
    centre = geometry.centroid
    ring = polygon["coordinates"][0]
    widest = max(distance_m(centre.y, centre.x, lat, lon) for lon, lat, *_ in ring)
    return centre.y, centre.x, max(1, math.ceil(widest))


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

    def reach_m(self) -> int:
        """The radius that covers the area: the circle's, or the polygon's farthest vertex."""
        if self.polygon is not None:
            return polygon_reach_m(self.polygon)[2]
        assert self.radius_m is not None
        return self.radius_m

    def as_event_area(self) -> dict[str, Any]:
        if self.polygon is not None:
            return {"polygon": self.polygon}
        return {"lat": self.lat, "lon": self.lon, "radius_m": self.radius_m}


class EmergencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    section: str = Field(pattern=SECTION_PATTERN)
    title: str = Field(min_length=3, max_length=160)
    description: str = Field("", max_length=4000)
    category: Category = "Rescue"
    severity: Severity
    urgency: Urgency = "Immediate"
    drill: bool = False
    area: AreaIn
    required_qualifications: list[str] = Field(default_factory=list, max_length=20)
    members_needed: int = Field(ge=1, le=10_000)
    assisting_sections: list[str] = Field(default_factory=list, max_length=20)
    languages: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("required_qualifications")
    @classmethod
    def _qualifications(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _is_code(code):
                raise ValueError(f"qualification {code!r}: use codes like FIRST_AID")
        return sorted(set(value))

    @field_validator("assisting_sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _is_section(code):
                raise ValueError(f"section {code!r}: use section codes like AL")
        return sorted(set(value))


class EmergencyPatch(BaseModel):
    """Fields a coordinator may change on an open emergency (absent = unchanged)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=3, max_length=160)
    description: str | None = Field(None, max_length=4000)
    category: Category | None = None
    severity: Severity | None = None
    urgency: Urgency | None = None
    area: AreaIn | None = None
    required_qualifications: list[str] | None = Field(None, max_length=20)
    members_needed: int | None = Field(None, ge=1, le=10_000)
    assisting_sections: list[str] | None = Field(None, max_length=20)
    languages: list[str] | None = Field(None, max_length=10)

    @field_validator("required_qualifications")
    @classmethod
    def _qualifications(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else EmergencyCreate._qualifications(value)

    @field_validator("assisting_sections")
    @classmethod
    def _sections(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else EmergencyCreate._sections(value)


def _is_code(value: str) -> bool:
    return re.fullmatch(QUALIFICATION_PATTERN, value) is not None


def _is_section(value: str) -> bool:
    return re.fullmatch(SECTION_PATTERN, value) is not None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    false_alarm: bool = False
    note: str = Field("", max_length=1000)


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=1000)


class EmergencyOut(BaseModel):
    id: UUID
    section: str
    assisting_sections: list[str]
    title: str
    description: str
    category: Category
    severity: Severity
    urgency: Urgency
    drill: bool
    area: dict[str, Any]
    required_qualifications: list[str]
    members_needed: int
    languages: list[str]
    status: EmergencyStatus
    reply_code: str
    staffed: bool
    needs_approval: bool
    created_by: str
    created_at: datetime
    declared_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    updated_at: datetime
    version: int
    origin: str
    escalation_plan: list[dict[str, Any]]


class BoardRowOut(BaseModel):
    member_id: UUID
    status: str
    eta_minutes: int | None
    expected_arrival_at: datetime | None
    distance_m: int | None
    wave: int | None
    qualifications: list[str]
    answered_at: datetime | None
    updated_at: datetime


class BoardOut(BaseModel):
    emergency_id: UUID
    members_needed: int
    staffed: bool
    rows: list[BoardRowOut]


class AuditEntryOut(BaseModel):
    id: int
    emergency_id: UUID | None
    actor: str
    actor_role: str
    action: str
    at: datetime
    diff: dict[str, Any]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    section: str = Field(pattern=SECTION_PATTERN)
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$")
    secret: str = Field(min_length=16, max_length=200)


class SubscriptionOut(BaseModel):
    id: UUID
    section: str
    url: str
    paused: bool
    consecutive_failures: int
    last_error: str | None
    last_success_at: datetime | None
    created_at: datetime
    pending_deliveries: int = 0
