"""Dispatch's part of the web console: the old board address redirects to the console,
and the coordinator actions the console's board needs (escalate now, the waves so far
and the next one due, one emergency's audit trail for its coordinators)."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import Topics
from tests.dispatch.conftest import Staff, StartDispatch, emergency_body
from tests.dispatch.test_escalation import escalations


async def test_old_console_address_redirects_to_the_web_console(
    start_dispatch: StartDispatch,
) -> None:
    dispatch = start_dispatch(DISPATCH_CONSOLE_URL="https://console.example.org/")
    emergency_id = uuid.uuid4()
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        moved = await client.get(f"/console/{emergency_id}")
        assert moved.status_code == 307
        assert moved.headers["location"] == (
            f"https://console.example.org/emergencies/{emergency_id}"
        )
        assert (await client.get("/console/not-an-id")).status_code == 422


async def test_escalate_now_sends_the_next_wave_at_once_and_only_once(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    # escalation delay is an hour here: only "escalate now" can send wave 2 in this test
    dispatch = start_dispatch(
        DISPATCH_ESCALATION_MAX_RADIUS_M="12000",
        DISPATCH_APPROVAL_RADIUS_M="50000",  # one person's waves may reach the maximum here
    )
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=2), headers=staff.coordinator()
        )
        assert created.status_code == 201, created.text
        emergency_id = created.json()["id"]

        before = (await client.get(f"/emergencies/{emergency_id}/waves",
                                   headers=staff.coordinator())).json()  # fmt: skip
        assert [w["wave"] for w in before["sent"]] == [1]
        assert before["next"]["wave"] == 2 and before["next"]["radius_m"] == 6000

        # another section's coordinator and an authority cannot
        escalate = f"/emergencies/{emergency_id}/escalate"
        assert (await client.post(escalate, headers=staff.other_coordinator())).status_code == 404
        assert (await client.post(escalate, headers=staff.authority())).status_code == 403

        now = await client.post(
            f"/emergencies/{emergency_id}/escalate", headers=staff.coordinator()
        )
        assert now.status_code == 200, now.text
        body = now.json()
        assert body["outcome"] == "escalated"
        assert [w["wave"] for w in body["sent"]] == [1, 2]
        assert body["next"]["wave"] == 3 and body["next"]["radius_m"] == 12000

        waves = await escalations(topics, emergency_id, count=1, settle_s=1.0)
        assert [(w.data["wave"], w.data["radius_m"], w.data["count"]) for w in waves] == [
            (2, 6000, 6)
        ]

        await client.post(f"/emergencies/{emergency_id}/escalate", headers=staff.coordinator())
        used_up = await client.post(
            f"/emergencies/{emergency_id}/escalate", headers=staff.coordinator()
        )
        assert used_up.status_code == 409  # wave 3 was the last one

        trail = await client.get(f"/emergencies/{emergency_id}/audit", headers=staff.coordinator())
        assert trail.status_code == 200
        actions = [entry["action"] for entry in trail.json()]
        assert actions[0] == "declared"
        assert actions.count("escalated") == 2
        assert actions.count("escalate_requested") == 2
        assert all(entry["emergency_id"] == emergency_id for entry in trail.json())
        hidden = await client.get(
            f"/emergencies/{emergency_id}/audit", headers=staff.other_coordinator()
        )
        assert hidden.status_code == 404


async def test_escalate_now_on_a_closed_emergency_is_a_conflict(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    dispatch = start_dispatch()
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=30) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        emergency_id = created.json()["id"]
        await client.post(f"/emergencies/{emergency_id}/close", headers=staff.coordinator())
        refused = await client.post(
            f"/emergencies/{emergency_id}/escalate", headers=staff.coordinator()
        )
        assert refused.status_code == 409
        waves = (await client.get(f"/emergencies/{emergency_id}/waves",
                                  headers=staff.coordinator())).json()  # fmt: skip
        assert waves["next"] is None
