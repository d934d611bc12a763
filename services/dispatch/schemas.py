"""Request and response bodies of the dispatch API, validated where they enter.

A bad field gets a 422 that names it (pydantic puts the field path in `loc`), so
`area.radius_m`, `area.polygon`, `severity`, `members_needed` and `area.lat` are named
in the error a coordinator reads.

Every field is bounded, because what is accepted here travels in an event and Kafka
refuses a record over 1 MiB: a polygon may have at most `MAX_POLYGON_POSITIONS` positions,
and one with more than `TRAVEL_POLYGON_POSITIONS` is simplified to an area that covers
it (see `bounded_polygon` and docs/dispatch.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from shapely import affinity
from shapely.geometry import Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from shared.events.emergencies import (
    Category,
    EmergencyStatus,
    ResponderStatus,
    Severity,
    Urgency,
)

#: the largest number PostgreSQL's bigint holds: an id or cursor past it names no row,
#: and asyncpg refuses to send it (a 500), so it is refused as a 422 first
MAX_BIGINT = 2**63 - 1
MIN_RADIUS_M = 100
MAX_RADIUS_M = 50_000
EARTH_RADIUS_M = 6_371_000.0
SECTION_PATTERN = r"^[A-Z0-9_-]{1,16}$"
QUALIFICATION_PATTERN = r"^[A-Z0-9_]{1,40}$"
#: positions a polygon may have as given (all rings): an administrative boundary pasted
#: from a map tool has tens of thousands; more than this is refused with a 422
MAX_POLYGON_POSITIONS = 10_000
#: positions a polygon has once stored and published: about 40 bytes each in the event,
#: so the largest emergency event stays far below Kafka's 1 MiB
TRAVEL_POLYGON_POSITIONS = 1_000
#: the simplified area is the simplified ring grown by the tolerance with mitred corners;
#: a mitre reaches at most this many tolerances beyond the corner it replaces
_MITRE_LIMIT = 2.0
#: decimals kept in a published coordinate: 1e-6 degree is about 0.1 m
_COORDINATE_DECIMALS = 6
#: past this, simplifying gives up and the bounding box is used
_LARGEST_TOLERANCE_M = 4 * MAX_RADIUS_M
_METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180
#: a language tag (BCP 47 shape: `sq`, `en-GB`, `sr-Latn`)
LanguageTag = Annotated[
    str,
    StringConstraints(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"),
]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), good to a few metres at these scales."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def check_polygon(value: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Polygon ([lon, lat] pairs), closed, simple (no self-crossing), at most
    `MAX_POLYGON_POSITIONS` positions, returned as it will travel: simplified when it has
    more than `TRAVEL_POLYGON_POSITIONS` (`bounded_polygon`), and no wider than the largest
    circle allowed. Raise ValueError saying what is wrong."""
    if value.get("type") != "Polygon":
        raise ValueError("must be a GeoJSON object with type 'Polygon'")
    rings = value.get("coordinates")
    if not isinstance(rings, list) or not rings or not all(isinstance(r, list) for r in rings):
        raise ValueError("coordinates must be a list of linear rings ([[lon, lat], ...])")
    positions = sum(len(ring) for ring in rings)
    if positions > MAX_POLYGON_POSITIONS:
        raise ValueError(
            f"the polygon has {positions} positions; at most {MAX_POLYGON_POSITIONS}: "
            "simplify it in the map tool it came from, or give a circle"
        )
    for ring in rings:
        if len(ring) < 4:
            raise ValueError("a ring needs at least 4 positions (the first repeated last)")
        for position in ring:
            if (
                not isinstance(position, list | tuple)
                or len(position) < 2
                or not all(
                    isinstance(c, int | float) and not isinstance(c, bool) for c in position[:2]
                )
            ):
                raise ValueError("each position must be [lon, lat] numbers")
            lon, lat = position[0], position[1]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError(f"position {[lon, lat]} is outside lon -180..180 / lat -90..90")
        if list(ring[0][:2]) != list(ring[-1][:2]):
            raise ValueError("a ring must be closed: its last position repeats the first")
    given = {"type": "Polygon", "coordinates": [[list(p[:2]) for p in ring] for ring in rings]}
    try:
        geometry = shape(given)
    except Exception as exc:  # shapely raises several types for malformed input
        raise ValueError(f"not a readable polygon: {exc}") from exc
    if not geometry.is_valid:
        raise ValueError(f"invalid polygon: {explain_validity(geometry)}")
    if geometry.area == 0:
        raise ValueError("the polygon has no area")
    travelling = bounded_polygon(given).polygon
    # measured on what travels, so a stored area read back passes this check unchanged
    widest = polygon_reach_m(travelling)[2]
    if widest > MAX_RADIUS_M:
        raise ValueError(
            f"the polygon reaches {widest:.0f} m from its centre; at most {MAX_RADIUS_M}"
        )
    return travelling


@dataclass(frozen=True)
class BoundedPolygon:
    """A polygon as it travels, and how far it was simplified (0: unchanged)."""

    polygon: dict[str, Any]
    tolerance_m: float


def polygon_positions(polygon: dict[str, Any]) -> int:
    return sum(len(ring) for ring in polygon["coordinates"])


def bounded_polygon(
    polygon: dict[str, Any], max_positions: int = TRAVEL_POLYGON_POSITIONS
) -> BoundedPolygon:
    """The polygon with at most `max_positions` positions that **covers** the given one.

    Douglas-Peucker (`simplify(preserve_topology=True)`) alone cuts corners off, and a
    member standing in a cut corner would not be alerted; so the simplified ring is grown
    by the same tolerance with mitred corners, and the result is checked to cover the
    original. The tolerance (metres) is about the smallest that brings the ring under the
    bound: the area only grows, by at most (1 + mitre limit) × tolerance beyond the
    original's edge. If no tolerance up to the allowed size works (a pathological ring),
    the bounding box is used: it covers too.
    """
    if polygon_positions(polygon) <= max_positions:
        return BoundedPolygon(polygon, 0.0)
    original = shape(polygon)
    centre = original.centroid
    # a local metric frame: metres east and north of the centroid, so the tolerance is
    # the same in every direction at any latitude
    x_metres = _METRES_PER_DEGREE * math.cos(math.radians(centre.y))
    local = affinity.scale(original, x_metres, _METRES_PER_DEGREE, origin=centre)

    # simplifying alone is cheaper than growing and checking: bracket the tolerance that
    # brings the ring under the bound (doubling), narrow it (a few bisections), and only
    # then grow and check, as few times as possible
    def fits(tolerance: float) -> bool:
        simplified = local.simplify(tolerance, preserve_topology=True)
        return polygon_positions(mapping(simplified)) <= max_positions

    low, tolerance = 0.0, _starting_tolerance_m(local, max_positions)
    while not fits(tolerance) and tolerance < _LARGEST_TOLERANCE_M:
        low, tolerance = tolerance, tolerance * 2
    for _ in range(3 if low else 0):
        middle = math.sqrt(low * tolerance)
        low, tolerance = (low, middle) if fits(middle) else (middle, tolerance)
    while tolerance < _LARGEST_TOLERANCE_M:
        simplified = local.simplify(tolerance, preserve_topology=True)
        grown = simplified.buffer(tolerance, join_style="mitre", mitre_limit=_MITRE_LIMIT)
        if isinstance(grown, Polygon) and not grown.is_empty:
            back = affinity.scale(grown, 1 / x_metres, 1 / _METRES_PER_DEGREE, origin=centre)
            candidate = _rounded(back)
            geometry = shape(candidate)
            if (
                polygon_positions(candidate) <= max_positions
                and geometry.is_valid
                and geometry.covers(original)
            ):
                return BoundedPolygon(candidate, tolerance)
        tolerance *= 1.25
    west, south, east, north = original.bounds
    step = 10.0**-_COORDINATE_DECIMALS
    box = Polygon.from_bounds(west - step, south - step, east + step, north + step)
    return BoundedPolygon(_rounded(box), tolerance)


def _starting_tolerance_m(local: Polygon, max_positions: int) -> float:
    """Where to start looking: Douglas-Peucker keeps about every vertex that stands out
    from the chord of its two neighbours by more than the tolerance, so the
    `max_positions`-th largest such height is a tolerance just short of the one needed."""
    heights: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    for ring in (local.exterior, *local.interiors):
        points = np.asarray(ring.coords)[:-1]
        before, after = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
        chord = after - before
        offset = points - before
        cross = np.abs(chord[:, 0] * offset[:, 1] - chord[:, 1] * offset[:, 0])
        length = np.hypot(chord[:, 0], chord[:, 1])
        heights.append(np.where(length > 0, cross / np.maximum(length, 1e-9), 0.0))
    every = np.sort(np.concatenate(heights))[::-1]
    return max(0.5, float(every[min(max_positions, len(every) - 1)]))


def _rounded(geometry: BaseGeometry) -> dict[str, Any]:
    rings = mapping(geometry)["coordinates"]
    return {
        "type": "Polygon",
        "coordinates": [
            [[round(x, _COORDINATE_DECIMALS), round(y, _COORDINATE_DECIMALS)] for x, y in ring]
            for ring in rings
        ],
    }


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
    languages: list[LanguageTag] = Field(default_factory=list, max_length=10)

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
    languages: list[LanguageTag] | None = Field(None, max_length=10)

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


class ApproveRequest(BaseModel):
    """The second person names the version they reviewed (`version` of the emergency as
    they saw it); if it changed since, the approval is refused (409)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)


class AssistanceAgreementCreate(BaseModel):
    """`assisting_section` agrees to send its members to `section`'s emergencies."""

    model_config = ConfigDict(extra="forbid")

    section: str = Field(pattern=SECTION_PATTERN)
    assisting_section: str = Field(pattern=SECTION_PATTERN)

    @model_validator(mode="after")
    def _two_sections(self) -> AssistanceAgreementCreate:
        if self.section == self.assisting_section:
            raise ValueError("assisting_section must differ from section")
        return self


class AssistanceAgreementOut(BaseModel):
    section: str
    assisting_section: str
    created_by: str
    created_at: datetime


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
    #: sms, web, voice (the member's latest word) or coordinator (a state set for them)
    channel: str | None = None
    #: the channel ladder's last step: sms_sent, sms_delivered, sms_failed, call_placed,
    #: call_answered, call_no_answer, call_busy, call_failed
    contact_step: str | None = None
    #: when the current safety-loop state (en_route ... home_safe) was reached
    status_at: datetime | None = None
    #: released and not home safe after DISPATCH_OVERDUE_AFTER_S
    overdue: bool = False
    confirmed_roll_calls: list[str] = []


class RollCallOut(BaseModel):
    roll_call_id: UUID
    started_at: datetime
    #: the members asked who have not confirmed by then are `missing`
    missing_after: datetime
    confirmed: list[UUID]
    waiting: list[UUID]
    missing: list[UUID]


class BoardOut(BaseModel):
    emergency_id: UUID
    members_needed: int
    staffed: bool
    rows: list[BoardRowOut]
    #: the latest roll call (None: none started)
    roll_call: RollCallOut | None = None


class ResponderStatusRequest(BaseModel):
    """A coordinator moves a responder forward on the safety loop."""

    model_config = ConfigDict(extra="forbid")

    status: ResponderStatus


class ReleaseAllOut(BaseModel):
    released: int


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
