"""One large area must not stop every event of dispatch (issue 10, defect 1).

A 40,000-position boundary pasted from a map used to pass validation, make a 1.6 MB
event that Kafka refuses, and wedge the outbox. Now: a polygon of more than 10,000
positions is a 422 naming `area.polygon`; a larger-than-1,000 one is simplified to an area
that covers it before it is stored and published; a body over 1 MiB is a 413; and the
next emergency's event still goes out.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import shape

from services.dispatch import cap
from services.dispatch.schemas import (
    MAX_POLYGON_POSITIONS,
    TRAVEL_POLYGON_POSITIONS,
    bounded_polygon,
    check_polygon,
    polygon_positions,
)
from shared.events.envelope import decode
from shared.events.topics import EMERGENCIES
from tests.conftest import Topics
from tests.dispatch.conftest import Staff, emergency_body
from tests.dispatch.test_cap import incoming
from tests.support.kafka import read_records
from tests.support.processes import ServiceProcess

METRES_PER_DEGREE = 111_195.0
CENTRE = (19.5561, 40.7239)


def boundary(
    positions: int,
    *,
    radius_m: float = 6_000,
    roughness: float = 0.05,
    seed: int = 1,
    decimals: int | None = None,
) -> dict[str, Any]:
    """A closed ring like an administrative boundary: a circle with a wandering edge
    (`roughness` is how far, as a share of the radius, a vertex may stray)."""
    rnd = random.Random(seed)
    lon0, lat0 = CENTRE
    ring: list[list[float]] = []
    wander = 0.0
    for i in range(positions - 1):
        angle = 2 * math.pi * i / (positions - 1)
        wander = max(-1.0, min(1.0, wander + rnd.uniform(-0.2, 0.2)))
        r = radius_m * (1 + roughness * wander)
        lon = lon0 + r * math.cos(angle) / (METRES_PER_DEGREE * math.cos(math.radians(lat0)))
        lat = lat0 + r * math.sin(angle) / METRES_PER_DEGREE
        ring.append([round(lon, decimals), round(lat, decimals)] if decimals else [lon, lat])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def spiky(positions: int, seed: int) -> dict[str, Any]:
    """A star whose every vertex jumps in or out: the worst a simplifier meets."""
    rnd = random.Random(seed)
    lon0, lat0 = CENTRE
    angles = sorted({rnd.uniform(0, 2 * math.pi) for _ in range(positions - 1)})
    ring = []
    for angle in angles:
        r = rnd.uniform(2_000, 8_000)
        ring.append(
            [
                lon0 + r * math.cos(angle) / (METRES_PER_DEGREE * math.cos(math.radians(lat0))),
                lat0 + r * math.sin(angle) / METRES_PER_DEGREE,
            ]
        )
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def metric(geometry: Any) -> Any:
    """The geometry in metres around the test centre (as the simplifier measures)."""
    lon0, lat0 = CENTRE
    return affinity.scale(
        geometry,
        METRES_PER_DEGREE * math.cos(math.radians(lat0)),
        METRES_PER_DEGREE,
        origin=(lon0, lat0),
    )


# -- the pure rules ------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    positions=st.integers(TRAVEL_POLYGON_POSITIONS + 1, 6_000),
    seed=st.integers(0, 10_000),
    rough=st.booleans(),
)
def test_a_simplified_area_covers_the_original_and_grows_only_a_little(
    positions: int, seed: int, rough: bool
) -> None:
    polygon = spiky(positions, seed) if rough else boundary(positions, seed=seed)
    result = bounded_polygon(polygon)
    original, simplified = shape(polygon), shape(result.polygon)
    assert polygon_positions(result.polygon) <= TRAVEL_POLYGON_POSITIONS
    assert simplified.is_valid
    # nobody standing inside the drawn area is left out
    assert simplified.covers(original)
    # and the area grows by at most (1 + mitre limit) x tolerance beyond the drawn edge
    # (plus rounding to 1e-6 degree and the metric frame's approximation)
    margin = 3 * result.tolerance_m + 1.0
    assert metric(original).buffer(margin).covers(metric(simplified))
    if not rough:
        # a boundary that wanders smoothly needs little: well under a hundred metres here
        assert result.tolerance_m < 100
    # what travels is checked again when read back: it must pass unchanged
    assert check_polygon(check_polygon(polygon)) == check_polygon(polygon)


def test_a_polygon_within_the_bound_travels_as_given() -> None:
    polygon = boundary(TRAVEL_POLYGON_POSITIONS)
    assert check_polygon(polygon) == polygon
    assert bounded_polygon(polygon).tolerance_m == 0


def test_too_many_positions_is_refused_before_any_geometry() -> None:
    polygon = boundary(MAX_POLYGON_POSITIONS + 1)
    with pytest.raises(ValueError, match=f"{MAX_POLYGON_POSITIONS + 1} positions; at most"):
        check_polygon(polygon)


def test_a_cap_polygon_is_bounded_too() -> None:
    ring = boundary(MAX_POLYGON_POSITIONS + 1, decimals=5)["coordinates"][0]
    text = " ".join(f"{lat},{lon}" for lon, lat in ring)
    with pytest.raises(cap.CapError, match="info/area/polygon has 10001 points"):
        cap.parse(incoming(area=f"<polygon>{text}</polygon>"))
    with pytest.raises(cap.CapError, match="not a 'lat,lon' pair"):
        cap.parse(incoming(area="<polygon>40.7,19.5 nan,inf 40.72,19.52 40.7,19.5</polygon>"))


# -- through the real dispatch process -------------------------------------------------


def positions_of(area: dict[str, Any]) -> int:
    return polygon_positions(area["polygon"])


async def test_a_large_area_is_refused_or_simplified_and_the_next_emergency_still_goes_out(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    # a boundary of 40,000 positions, written compactly enough to be under the body limit:
    # the polygon rule refuses it, not the size of the request
    huge = boundary(40_000, radius_m=30_000, decimals=5)
    large = boundary(5_000)
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as client:
        refused = await client.post(
            "/emergencies",
            json=emergency_body(area={"polygon": huge}),
            headers=staff.coordinator(),
        )
        assert refused.status_code == 422, refused.text[:500]
        errors = refused.json()["detail"]
        assert [e["loc"][1:3] for e in errors] == [["area", "polygon"]], errors
        assert "40000 positions; at most 10000" in errors[0]["msg"]

        accepted = await client.post(
            "/emergencies",
            json=emergency_body(area={"polygon": large}, title="Flooding, Fier district"),
            headers=staff.coordinator(),
        )
        assert accepted.status_code == 201, accepted.text[:500]
        area = accepted.json()["area"]
        assert positions_of(area) <= TRAVEL_POLYGON_POSITIONS
        assert shape(area["polygon"]).covers(shape(large))

        from_cap = await client.post(
            "/emergencies/cap",
            content=incoming(
                identifier="PREF-FIER-LARGE",
                area="<polygon>"
                + " ".join(f"{lat},{lon}" for lon, lat in large["coordinates"][0])
                + "</polygon>",
            ),
            headers={**staff.coordinator(), "content-type": "application/xml"},
        )
        assert from_cap.status_code == 201, from_cap.text[:500]
        assert positions_of(from_cap.json()["area"]) <= TRAVEL_POLYGON_POSITIONS

        following = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        assert following.status_code == 201, following.text[:500]

    ids = {accepted.json()["id"], from_cap.json()["id"], following.json()["id"]}
    records = await read_records(
        topics.bootstrap,
        [topics(EMERGENCIES)],
        until=lambda rs: {r.key.decode() for r in rs} >= ids,
    )
    by_key = {r.key.decode(): r for r in records}
    assert set(by_key) == ids, "every accepted emergency is published; the refused one never"
    for emergency_id in (accepted.json()["id"], from_cap.json()["id"]):
        record = by_key[emergency_id]
        assert len(record.value) < 64 * 1024, len(record.value)
        event = decode(record.value, record.headers, record.key)
        assert event.type == "muster.emergency.declared.v1"
        assert positions_of(event.data["area"]) <= TRAVEL_POLYGON_POSITIONS


async def test_request_bodies_are_bounded_whether_declared_or_streamed(
    dispatch: ServiceProcess, staff: Staff
) -> None:
    # the boundary as a map tool writes it: full float precision, about 1.6 MB
    pasted = emergency_body(area={"polygon": boundary(40_000, radius_m=30_000)})
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as client:
        declared = await client.post("/emergencies", json=pasted, headers=staff.coordinator())
        assert declared.status_code == 413, declared.text[:300]
        assert "MUSTER_MAX_BODY_BYTES" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            # no Content-Length: the body is counted as it arrives
            for _ in range(40):
                yield b" " * 65_536

        streamed = await client.post(
            "/emergencies/cap",
            content=chunks(),
            headers={**staff.coordinator(), "content-type": "application/xml"},
        )
        assert streamed.status_code == 413, streamed.text[:300]
        assert "MUSTER_MAX_BODY_BYTES" in streamed.json()["detail"]

        # a field with no business being long is bounded too
        languages = await client.post(
            "/emergencies",
            json=emergency_body(languages=["sq", "x" * 100_000]),
            headers=staff.coordinator(),
        )
        assert languages.status_code == 422
        assert languages.json()["detail"][0]["loc"][1:3] == ["languages", 1]

        # a body under the limit is untouched by it
        ok = await client.post("/emergencies", json=emergency_body(), headers=staff.coordinator())
        assert ok.status_code == 201, ok.text[:300]
