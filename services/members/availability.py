"""`GET /availability`: how many members could answer around a point, by qualification.

Counts only (no id, name, phone or position), so authorities may read it. A member
counts when active, consenting to alerts, available (or unavailable until a time now
past), and their effective position (the live one while younger than
`MUSTER_LIVE_LOCATION_MAX_AGE_S`, else home) is within the radius. One SQL statement:
a bounding box on the home and live columns (indexed) prefilters, haversine decides.

Counts must not locate a member (issue 10, defect 13; docs/security.md): the radius is
at least `MUSTER_AVAILABILITY_MIN_RADIUS_KM` (422 naming radius_km), every count below
k (`MUSTER_AVAILABILITY_MIN_COUNT`) is answered as the string "< k" (zero too: a 0
beside a "< k" would tell where the one member is), and each staff account may ask
`MUSTER_AVAILABILITY_RATE_PER_MIN` times a minute (429 with Retry-After), which bounds
how fast overlapping circles can be differenced.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Config, Db, Staff, sections_of
from services.members.geo import EARTH_RADIUS_KM, bounding_box
from services.members.schemas import AvailabilityCounts
from shared.disclosure import shown
from shared.observability import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["availability"])


class AvailabilityLimit:
    """Requests per staff account per minute (a fixed window in Redis, shared by every
    members process). Unreachable Redis lets requests through: counts for planning
    must keep working in an outage, and the other two protections still hold."""

    def __init__(self, client: redis.Redis, *, prefix: str, per_minute: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._limit = per_minute

    async def retry_after_s(self, account_id: str) -> int | None:
        """None when the request may go, else the seconds until the next window."""
        now = time.time()
        window = int(now // 60)
        key = f"{self._prefix}members:availability:{account_id}:{window}"
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        except redis.RedisError as exc:
            log.warning("availability rate limit unavailable", error=type(exc).__name__)
            return None
        if int(count) <= self._limit:
            return None
        return max(1, int((window + 1) * 60 - now + 0.999))


_COUNTS_SQL = """
WITH candidates AS (
    SELECT m.id,
           CASE WHEN m.live_at >= :live_cutoff AND m.live_lat IS NOT NULL
                THEN m.live_lat ELSE m.home_lat END AS lat,
           CASE WHEN m.live_at >= :live_cutoff AND m.live_lat IS NOT NULL
                THEN m.live_lon ELSE m.home_lon END AS lon
    FROM members m
    WHERE m.erased_at IS NULL
      AND m.status = 'active'
      AND m.consent_alerts
      AND (m.availability = 'available'
           OR (m.unavailable_until IS NOT NULL AND m.unavailable_until <= :now))
      AND (:all_sections OR m.section = ANY(:sections))
      AND ((m.home_lat BETWEEN :min_lat AND :max_lat
            AND (NOT :lon_bounded OR m.home_lon BETWEEN :min_lon AND :max_lon))
        OR (m.live_at >= :live_cutoff
            AND m.live_lat BETWEEN :min_lat AND :max_lat
            AND (NOT :lon_bounded OR m.live_lon BETWEEN :min_lon AND :max_lon)))
),
nearby AS (
    SELECT c.id FROM candidates c
    WHERE c.lat IS NOT NULL
      AND 2 * :earth_km * asin(least(1.0, sqrt(
            power(sin(radians(c.lat - :lat) / 2), 2)
            + cos(radians(:lat)) * cos(radians(c.lat))
              * power(sin(radians(c.lon - :lon) / 2), 2)))) <= :radius_km
),
qualified AS (
    SELECT n.id FROM nearby n
    WHERE cardinality(CAST(:wanted AS text[])) = 0 OR (
        SELECT count(DISTINCT q.code) FROM member_qualifications q
        WHERE q.member_id = n.id AND q.code = ANY(:wanted)
          AND (q.expires_at IS NULL OR q.expires_at >= :today)
    ) = cardinality(CAST(:wanted AS text[]))
)
SELECT NULL AS code, count(*) AS n FROM qualified
UNION ALL
SELECT q.code, count(*) FROM qualified x
JOIN member_qualifications q ON q.member_id = x.id
WHERE q.expires_at IS NULL OR q.expires_at >= :today
GROUP BY q.code
"""


async def count_available(
    session: AsyncSession,
    *,
    lat: float,
    lon: float,
    radius_km: float,
    qualifications: list[str],
    visible: frozenset[str] | None,
    live_max_age_s: int,
    now: datetime,
) -> tuple[int, dict[str, int]]:
    box = bounding_box(lat, lon, radius_km)
    params: dict[str, Any] = {
        "lat": lat,
        "lon": lon,
        "radius_km": radius_km,
        "earth_km": EARTH_RADIUS_KM,
        "min_lat": box.min_lat,
        "max_lat": box.max_lat,
        "min_lon": box.min_lon,
        "max_lon": box.max_lon,
        "lon_bounded": box.lon_bounded,
        "live_cutoff": now - timedelta(seconds=live_max_age_s),
        "now": now,
        "today": now.date(),
        "all_sections": visible is None,
        "sections": sorted(visible or ()),
        "wanted": sorted(set(qualifications)),
    }
    rows = (await session.execute(text(_COUNTS_SQL), params)).all()
    total = 0
    by_code: dict[str, int] = {}
    for code, n in rows:
        if code is None:
            total = int(n)
        else:
            by_code[code] = int(n)
    return total, dict(sorted(by_code.items()))


@router.get(
    "/availability",
    response_model=AvailabilityCounts,
    responses={429: {"description": "too many requests from this account this minute"}},
)
async def availability(
    request: Request,
    principal: Staff,
    db: Db,
    cfg: Config,
    lat: float = Query(ge=-90, le=90),
    lon: float = Query(ge=-180, le=180),
    radius_km: float = Query(gt=0, le=500),
    qualification: list[str] = Query(default_factory=list),
) -> AvailabilityCounts:
    """Every role may ask; coordinators and authorities count their own sections only.
    Counts below k are given as "< k"."""
    if radius_km < cfg.availability_min_radius_km:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "type": "greater_than_equal",
                    "loc": ["query", "radius_km"],
                    "msg": f"radius_km must be at least {cfg.availability_min_radius_km:g} km: "
                    "a smaller circle could single out one member's home",
                    "input": radius_km,
                }
            ],
        )
    limit: AvailabilityLimit = request.app.state.availability_limit
    if (wait_s := await limit.retry_after_s(principal.account_id)) is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"at most {cfg.availability_rate_per_min} availability counts a minute per "
            f"account: try again in {wait_s} seconds",
            headers={"Retry-After": str(wait_s)},
        )
    now = datetime.now(UTC)
    total, by_code = await count_available(
        db,
        lat=lat,
        lon=lon,
        radius_km=radius_km,
        qualifications=qualification,
        visible=sections_of(principal),
        live_max_age_s=cfg.live_location_max_age_s,
        now=now,
    )
    k = cfg.availability_min_count
    return AvailabilityCounts(
        lat=lat,
        lon=lon,
        radius_km=radius_km,
        qualifications=sorted(set(qualification)),
        available=shown(total, k),
        by_qualification={code: shown(n, k) for code, n in by_code.items()},
        smallest_count_shown=k,
        at=now,
    )
