"""Declaring refuses bad input with the field named, before anything reaches dispatch:
a polygon that crosses itself, a radius of 0, members needed 0, an unknown
qualification. The console runs in-process against a real members process; dispatch's
address is a closed port, so a form that got as far as dispatch would answer 502, not
the 422 naming the field. Plus the board's pure decisions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.console import board
from services.console.app import build
from services.console.declare import parse_declaration, parse_polygon
from services.console.settings import Settings
from tests.members.conftest import (  # noqa: F401  (fixtures, imported to be used here)
    MembersUnderTest,
    make_section,
    members_service,
    module_tmp,
)
from tests.support.processes import free_port

ORIGIN = "http://console.test"
PASSWORD = "declare tests coordinator password"
GOOD = {
    "title": "Flooding, Fier centre",
    "severity": "Severe",
    "category": "Rescue",
    "urgency": "Immediate",
    "members_needed": "2",
    "shape": "circle",
    "lat": "40.7239",
    "lon": "19.5561",
    "radius_m": "2000",
    "required_qualifications": "FIRST_AID",
}
CROSSING = "40.70, 19.50\n40.75, 19.60\n40.70, 19.60\n40.75, 19.50"


@pytest.fixture
async def coordinator_console(
    members_service: MembersUnderTest,  # noqa: F811
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with members_service.admin() as admin:
        section = await make_section(admin)
        email = f"declare.{section.lower()}@example.org"
        created = await admin.post(
            "/accounts",
            json={"email": email, "password": PASSWORD, "role": "coordinator",
                  "sections": [section]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        members_url=members_service.url,
        alerts_url=nowhere,
        dispatch_url=nowhere,
        session_secret="a test secret that is long enough to sign cookies",
    )
    app = build(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            page = await client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            signed = await client.post(
                "/login",
                data={"email": email, "password": PASSWORD, "csrf_token": token},
                headers={"Origin": ORIGIN},
            )
            assert signed.status_code == 303
            yield client, section


async def post_declaration(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    page = await client.get("/emergencies/new")
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return await client.post(
        "/emergencies/new",
        data={**fields, "csrf_token": token, "step": "send"},
        headers={"Origin": ORIGIN},
    )


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        ({"shape": "polygon", "polygon": CROSSING}, "area-polygon", "crosses itself"),
        ({"radius_m": "0"}, "area-radius_m", "more than 0 metres"),
        ({"members_needed": "0"}, "members_needed", "At least 1 member"),
        ({"required_qualifications": "UNDERWATER_WELDING"}, "required_qualifications",
         "Unknown qualification: UNDERWATER_WELDING"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_next_to_its_field(
    coordinator_console: tuple[httpx.AsyncClient, str],
    fields: dict[str, str],
    field_id: str,
    message: str,
):
    client, section = coordinator_console
    response = await post_declaration(client, **{**GOOD, "section": section, **fields})
    assert response.status_code == 422  # not 502: dispatch was never called
    error = re.search(rf'<p class="field-error" id="{field_id}-error">(.*?)</p>', response.text)
    assert error, response.text[-3000:]
    assert message in error.group(1)
    # the control points at its error for screen readers
    assert re.search(rf'aria-describedby="[^"]*\b{field_id}-error"', response.text)
    assert 'value="Flooding, Fier centre"' in response.text  # what was typed is kept


async def test_another_sections_declaration_is_refused(
    coordinator_console: tuple[httpx.AsyncClient, str],
):
    client, _ = coordinator_console
    response = await post_declaration(client, **{**GOOD, "section": "ZZ"})
    assert response.status_code == 422
    assert "You are not a coordinator of this section." in response.text


async def test_preview_names_what_is_missing_and_survives_alerts_being_down(
    coordinator_console: tuple[httpx.AsyncClient, str],
):
    client, section = coordinator_console
    page = await client.get("/emergencies/new")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    headers = {"Origin": ORIGIN, "X-CSRF-Token": token}
    incomplete = await client.post(
        "/emergencies/preview", json={**GOOD, "section": section, "lat": ""}, headers=headers
    )
    assert incomplete.json()["available"] is False
    assert "area.lat" in incomplete.json()["errors"]
    down = await client.post(
        "/emergencies/preview", json={**GOOD, "section": section}, headers=headers
    )
    assert down.status_code == 200
    assert down.json() == {"available": False}
    forged = await client.post(
        "/emergencies/preview", json={**GOOD, "section": section}, headers={"Origin": ORIGIN}
    )
    assert forged.status_code == 403


# --- pure parts -----------------------------------------------------------------------


def test_a_good_form_becomes_dispatchs_body():
    body, errors = parse_declaration(
        {**GOOD, "section": "AL", "drill": "on"}, ["FIRST_AID"], ["AL"]
    )
    assert errors == {}
    assert body["area"] == {"lat": 40.7239, "lon": 19.5561, "radius_m": 2000}
    assert body["members_needed"] == 2 and body["drill"] is True
    assert body["required_qualifications"] == ["FIRST_AID"]


def test_polygon_lines_become_a_closed_geojson_ring():
    polygon, problem = parse_polygon("40.70, 19.50\n40.70, 19.60\n40.75, 19.60\n")
    assert problem is None
    assert polygon == {
        "type": "Polygon",
        "coordinates": [[[19.5, 40.7], [19.6, 40.7], [19.6, 40.75], [19.5, 40.7]]],
    }
    assert parse_polygon("40.7, 19.5\n40.7, 19.5\n40.8, 19.6")[1] is not None
    assert parse_polygon("north of the river")[1] is not None


STATUSES = ["notified", "delivered", "accepted", "standby", "declined", "failed",
            "stood_down", "en_route", "on_scene", "released", "home_safe"]  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.booleans()), max_size=60))
def test_every_row_is_counted_once(rows: list[tuple[str, bool]]):
    counts = board.board_counts([{"status": s, "overdue": late} for s, late in rows])
    parts = ("accepted", "en_route", "on_scene", "released", "home_safe", "standby", "declined",
             "no_answer", "failed", "stood_down")  # fmt: skip
    assert sum(counts[p] for p in parts) == counts["alerted"] == len(rows)
    assert counts["delivered"] <= counts["alerted"]
    in_loop = ("en_route", "on_scene", "released", "home_safe")
    assert counts["filled"] == counts["accepted"] + sum(counts[p] for p in in_loop)
    assert counts["overdue"] == sum(1 for _, late in rows if late)


@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.none() | st.integers(0, 120)), max_size=40))
def test_people_coming_are_listed_first_soonest_first(rows: list[tuple[str, int | None]]):
    ordered = board.ordered_rows(
        [{"status": s, "eta_minutes": eta, "member_id": str(i)} for i, (s, eta) in enumerate(rows)]
    )
    coming = [r for r in ordered if r["status"] in ("on_scene", "en_route", "accepted")]
    assert ordered[: len(coming)] == coming
    accepted = [r["eta_minutes"] for r in ordered if r["status"] == "accepted"]
    assert accepted == sorted(accepted, key=lambda eta: 1e9 if eta is None else eta)


@given(st.lists(st.none() | st.integers(0, 60_000), max_size=40))
def test_distance_bands_count_members_not_positions(distances: list[int | None]):
    bands = board.distance_bands([{"distance_m": d} for d in distances])
    assert sum(b["members"] for b in bands) == sum(d is not None for d in distances)
    assert all(set(b) == {"up_to_m", "members"} for b in bands)
