"""Declaring, validating, approving, changing and closing emergencies through the real
dispatch process, with the events read back from real Kafka."""

from __future__ import annotations

import uuid

import httpx

from shared.events.envelope import Envelope
from shared.events.topics import EMERGENCIES
from tests.conftest import Topics
from tests.dispatch.conftest import OTHER_SECTION, SECTION, Staff, StartDispatch, emergency_body
from tests.support.kafka import read_events
from tests.support.processes import ServiceProcess


def events_of(envelopes: list[Envelope], emergency_id: str) -> list[Envelope]:
    return [e for e in envelopes if e.subject == emergency_id]


async def test_declare_puts_declared_cloud_event_on_kafka(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        response = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        assert response.status_code == 201, response.text
        emergency = response.json()
        assert emergency["status"] == "active"
        assert len(emergency["reply_code"]) == 3
        assert emergency["escalation_plan"], "the plan is frozen at declaration"

    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=1)
    declared = events_of(envelopes, emergency["id"])
    assert [e.type for e in declared] == ["muster.emergency.declared.v1"]
    event = declared[0]
    assert event.source == "dispatch"
    assert event.correlationid == emergency["id"]
    area = {k: v for k, v in event.data["area"].items() if v is not None}
    assert area == {"lat": 40.7239, "lon": 19.5561, "radius_m": 3000}
    assert event.data["reply_code"] == emergency["reply_code"]
    assert event.data["members_needed"] == 2


INVALID = [
    ({"area": {"lat": 40.7, "lon": 19.5, "radius_m": 0}}, ["area", "radius_m"]),
    ({"area": {"lat": 40.7, "lon": 19.5, "radius_m": 60_000}}, ["area", "radius_m"]),
    ({"area": {"lat": 91, "lon": 19.5, "radius_m": 1000}}, ["area", "lat"]),
    (
        {
            "area": {
                "polygon": {
                    "type": "Polygon",
                    # a bow tie: the ring crosses itself
                    "coordinates": [
                        [
                            [19.50, 40.70],
                            [19.52, 40.72],
                            [19.52, 40.70],
                            [19.50, 40.72],
                            [19.50, 40.70],
                        ]
                    ],
                }
            }
        },
        ["area", "polygon"],
    ),
    ({"severity": "Catastrophic"}, ["severity"]),
    ({"category": "Zombies"}, ["category"]),
    ({"urgency": "Now"}, ["urgency"]),
    ({"members_needed": 0}, ["members_needed"]),
]


async def test_invalid_input_is_422_naming_the_field_and_nothing_is_published(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        for overrides, field in INVALID:
            response = await client.post(
                "/emergencies", json=emergency_body(**overrides), headers=staff.coordinator()
            )
            assert response.status_code == 422, (overrides, response.text)
            locations = [error["loc"][1:] for error in response.json()["detail"]]
            assert any(loc[: len(field)] == field for loc in locations), (field, locations)
        bow_tie = await client.post(
            "/emergencies", json=emergency_body(**INVALID[3][0]), headers=staff.coordinator()
        )
        assert "Self-intersection" in bow_tie.text
        # a valid polygon is fine
        square = {"type": "Polygon", "coordinates": [[[19.50, 40.70], [19.52, 40.70],
                  [19.52, 40.72], [19.50, 40.72], [19.50, 40.70]]]}  # fmt: skip
        ok = await client.post(
            "/emergencies", json=emergency_body(area={"polygon": square}),
            headers=staff.coordinator(),
        )  # fmt: skip
        assert ok.status_code == 201, ok.text
    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=1, settle_s=1.0)
    assert [e.subject for e in envelopes] == [ok.json()["id"]], "only the valid one is published"


async def test_roles_and_sections(dispatch: ServiceProcess, staff: Staff) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        assert (await client.post("/emergencies", json=emergency_body())).status_code == 401
        wrong_section = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.other_coordinator()
        )
        assert wrong_section.status_code == 403
        as_authority = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.authority()
        )
        assert as_authority.status_code == 403
        created = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        emergency_id = created.json()["id"]
        path = f"/emergencies/{emergency_id}"
        # another section's coordinator does not learn the emergency exists
        for method, suffix in [("GET", ""), ("GET", "/board"), ("GET", "/summary"),
                               ("PATCH", ""), ("POST", "/close")]:  # fmt: skip
            response = await client.request(
                method, path + suffix, json={} if method != "GET" else None,
                headers=staff.other_coordinator(),
            )  # fmt: skip
            assert response.status_code == 404, (method, suffix, response.text)
        assert (await client.get(path, headers=staff.authority(OTHER_SECTION))).status_code == 404
        # the section's authority reads the summary only
        assert (await client.get(path + "/summary", headers=staff.authority())).status_code == 200
        for suffix in ("", "/board", "/stream"):
            response = await client.get(path + suffix, headers=staff.authority())
            assert response.status_code == 403, suffix
        assert (await client.get(path, headers=staff.admin())).status_code == 200
        assert (await client.get("/emergencies", headers=staff.other_coordinator())).json() == []
        listed = await client.get("/emergencies", headers=staff.coordinator())
        assert [e["id"] for e in listed.json()] == [emergency_id]


async def test_two_person_rule_and_false_alarm(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(DISPATCH_APPROVAL_MEMBERS="20")
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        wide = await client.post(
            "/emergencies",
            json=emergency_body(area={"lat": 40.7, "lon": 19.5, "radius_m": 20_000}),
            headers=staff.coordinator(),
        )
        assert wide.status_code == 201
        assert wide.json()["status"] == "pending_approval"
        # 10 needed x over-alert factor 3 = 30 expected members > 20
        many = await client.post(
            "/emergencies", json=emergency_body(members_needed=10), headers=staff.coordinator()
        )
        assert many.json()["status"] == "pending_approval"
        small = await client.post(
            "/emergencies", json=emergency_body(members_needed=2), headers=staff.coordinator()
        )
        assert small.json()["status"] == "active"
        # the declarer cannot grow it past the rule afterwards; a second person can
        grow = {"area": {"lat": 40.7, "lon": 19.5, "radius_m": 20_000}}
        small_path = f"/emergencies/{small.json()['id']}"
        grown = await client.patch(small_path, json=grow, headers=staff.coordinator())
        assert grown.status_code == 403 and "second person" in grown.json()["detail"]
        grown = await client.patch(small_path, json=grow, headers=staff.second_coordinator())
        assert grown.status_code == 200 and grown.json()["area"]["radius_m"] == 20_000

        wide_id = wide.json()["id"]
        own = await client.post(f"/emergencies/{wide_id}/approve", headers=staff.coordinator())
        assert own.status_code == 403
        assert "declarer" in own.json()["detail"]
        other = await client.post(
            f"/emergencies/{wide_id}/approve", headers=staff.other_coordinator()
        )
        assert other.status_code == 404
        approved = await client.post(
            f"/emergencies/{wide_id}/approve", json={"version": wide.json()["version"]},
            headers=staff.second_coordinator(),
        )  # fmt: skip
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "active"
        assert approved.json()["approved_by"] == staff.second_id
        again = await client.post(f"/emergencies/{wide_id}/approve", headers=staff.admin())
        assert again.status_code == 409

        # the pending one cancelled before approval: never declared, so no event at all
        many_id = many.json()["id"]
        cancelled = await client.post(f"/emergencies/{many_id}/cancel", headers=staff.admin())
        assert cancelled.json()["status"] == "closed"

        false_alarm = await client.post(
            f"/emergencies/{wide_id}/cancel", json={"false_alarm": True},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert false_alarm.status_code == 200
        assert false_alarm.json()["close_reason"] == "false_alarm"
        audit = await client.get("/audit", params={"emergency_id": wide_id}, headers=staff.admin())
        assert [a["action"] for a in audit.json()] == ["held_for_approval", "approved", "closed"]
        assert audit.json()[1]["actor"] == staff.second_id
        assert (await client.get("/audit", headers=staff.coordinator())).status_code == 403

    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=3, settle_s=1.0)
    assert [e.type for e in events_of(envelopes, wide_id)] == [
        "muster.emergency.declared.v1",
        "muster.emergency.closed.v1",
    ]
    closed = events_of(envelopes, wide_id)[1].data
    assert closed["false_alarm"] is True and closed["reason"] == "false_alarm"
    assert events_of(envelopes, many_id) == []
    assert [e.type for e in events_of(envelopes, small.json()["id"])] == [
        "muster.emergency.declared.v1",
        "muster.emergency.updated.v1",
    ]


async def test_update_and_close_publish_in_order(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        emergency_id = created.json()["id"]
        patched = await client.patch(
            f"/emergencies/{emergency_id}",
            json={"severity": "Extreme", "members_needed": 4},
            headers=staff.coordinator(),
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["version"] == 2
        bad = await client.patch(
            f"/emergencies/{emergency_id}", json={"members_needed": 0},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert bad.status_code == 422
        closed = await client.post(
            f"/emergencies/{emergency_id}/close", headers=staff.coordinator()
        )
        assert closed.json()["status"] == "closed"
        late = await client.patch(
            f"/emergencies/{emergency_id}", json={"title": "Too late"},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert late.status_code == 409
        audit = await client.get(
            "/audit", params={"emergency_id": emergency_id}, headers=staff.admin()
        )
        entries = audit.json()
        assert [a["action"] for a in entries] == ["declared", "updated", "closed"]
        assert entries[1]["diff"]["severity"] == {"from": "Severe", "to": "Extreme"}
        assert entries[1]["actor"] == staff.coordinator_id

    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=3)
    mine = events_of(envelopes, emergency_id)
    assert [e.type.split(".")[2] for e in mine] == ["declared", "updated", "closed"]
    assert mine[1].data["changed"] == ["members_needed", "severity"]
    assert mine[1].data["severity"] == "Extreme"
    assert uuid.UUID(mine[2].data["emergency_id"]) == uuid.UUID(emergency_id)
    assert mine[0].data["section"] == SECTION
