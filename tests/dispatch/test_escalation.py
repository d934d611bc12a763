"""Escalation timers on the real process: waves with a wider radius after the delay,
stop when staffed, resume after a drop-out, and survive a SIGKILL between two timers
without losing or repeating one; a stale or duplicated timer does nothing."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.envelope import Envelope, decode
from shared.events.topics import EMERGENCIES, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import Script, Staff, StartDispatch, emergency_body
from tests.shared.flow import wait_for
from tests.support.kafka import publish, read_records


async def escalations(
    topics: Topics, emergency_id: str, count: int, timeout_s: float = 20.0, settle_s: float = 0.0
) -> list[Envelope]:
    """This emergency's escalated events: wait for `count`, then `settle_s` more for extras.

    Deduplicated by CloudEvent id, as every consumer does: a relay killed after Kafka
    acknowledged a batch and before marking it publishes the same events again (at least
    once, documented in shared.outbox); a timer firing twice would have a new id."""

    def mine(records: list) -> list[Envelope]:
        envelopes = [decode(r.value, r.headers, r.key) for r in records if r.value is not None]
        unique: dict[str, Envelope] = {}
        for e in envelopes:
            if e.subject == emergency_id and e.type == "muster.emergency.escalated.v1":
                unique.setdefault(e.id, e)
        return list(unique.values())

    records = await read_records(
        topics.bootstrap, [topics(EMERGENCIES)], until=lambda rs: len(mine(rs)) >= count,
        timeout_s=timeout_s,
    )  # fmt: skip
    if settle_s:
        await asyncio.sleep(settle_s)
        records = await read_records(
            topics.bootstrap, [topics(EMERGENCIES)], until=lambda rs: False,
            timeout_s=settle_s + 1.0,
        )  # fmt: skip
    return mine(records)


async def test_waves_grow_to_the_maximum_then_stop(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(
        DISPATCH_ESCALATION_DELAY_S="60",
        DISPATCH_ESCALATION_DELAY_EXTREME_S="1.5",
        DISPATCH_ESCALATION_MAX_RADIUS_M="12000",
        DISPATCH_APPROVAL_RADIUS_M="50000",  # one person's waves may reach the maximum here
    )
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(severity="Extreme", members_needed=2),
            headers=staff.coordinator(),
        )  # fmt: skip
        emergency = created.json()
    assert [(w["wave"], w["radius_m"]) for w in emergency["escalation_plan"]] == [
        (2, 6000),
        (3, 12000),
    ]
    waves = await escalations(topics, emergency["id"], count=2, settle_s=2.5)
    assert [(w.data["wave"], w.data["radius_m"], w.data["count"]) for w in waves] == [
        (2, 6000, 6),  # 2 missing x over-alert factor 3
        (3, 12000, 6),
    ]
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        audit = await client.get(
            "/audit", params={"emergency_id": emergency["id"], "action": "escalated"},
            headers=staff.admin(),
        )  # fmt: skip
    assert [a["diff"]["wave"] for a in audit.json()] == [2, 3]
    assert all(a["actor"] == "dispatch" for a in audit.json())


async def test_one_persons_waves_stop_at_the_approval_radius_an_approved_plan_does_not(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    """Issue 10, defect 7: the escalation radius is part of the two-person rule."""
    dispatch = start_dispatch(
        DISPATCH_APPROVAL_RADIUS_M="10000", DISPATCH_ESCALATION_MAX_RADIUS_M="50000"
    )
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        small = await client.post(
            "/emergencies", json=emergency_body(members_needed=2), headers=staff.coordinator()
        )
        assert small.json()["status"] == "active"
        plan = [w["radius_m"] for w in small.json()["escalation_plan"]]
        assert plan == [6000, 10000]  # 3 km doubled, then the threshold: no farther alone

        body = emergency_body(members_needed=2)
        body["area"]["radius_m"] = 12000
        held = await client.post("/emergencies", json=body, headers=staff.coordinator())
        assert held.json()["status"] == "pending_approval"
        approved = await client.post(
            f"/emergencies/{held.json()['id']}/approve",
            json={"version": held.json()["version"]},
            headers=staff.admin(),
        )
        assert approved.status_code == 200, approved.text
        assert [w["radius_m"] for w in approved.json()["escalation_plan"]] == [24000, 48000, 50000]


async def test_stops_when_staffed_and_resumes_after_a_drop_out(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(DISPATCH_ESCALATION_DELAY_S="4")
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=1), headers=staff.coordinator()
        )
        emergency_id = created.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        member = uuid.uuid4()
        first = await escalations(topics, emergency_id, count=1)
        assert [w.data["wave"] for w in first] == [2]
        await publish(
            topics.bootstrap, topics(RESPONSES), [script.answer(member, "accepted", 1, eta=5)]
        )

        async def staffed() -> bool:
            got = await client.get(f"/emergencies/{emergency_id}", headers=staff.coordinator())
            return bool(got.json()["staffed"])

        assert await wait_for(staffed, timeout_s=10)
        await asyncio.sleep(5)  # past wave 3's time: staffed, so it does not fire
        assert [w.data["wave"] for w in await escalations(topics, emergency_id, count=2,
                                                          timeout_s=2)] == [2]  # fmt: skip

        # a drop-out nobody can fill: the quota re-opens and the next wave follows
        await publish(topics.bootstrap, topics(RESPONSES), [script.answer(member, "declined", 9)])
        waves = await escalations(topics, emergency_id, count=2, timeout_s=20, settle_s=1)
        assert [w.data["wave"] for w in waves] == [2, 3]
        got = await client.get(f"/emergencies/{emergency_id}", headers=staff.coordinator())
        assert got.json()["staffed"] is False


@pytest.mark.slow
async def test_kill_and_restart_between_timers_neither_loses_nor_repeats(
    start_dispatch: StartDispatch,
    staff: Staff,
    topics: Topics,
    admin_engine: AsyncEngine,
    dispatch_env: dict[str, str],
) -> None:
    overrides = {
        "DISPATCH_ESCALATION_DELAY_S": "3",
        "DISPATCH_ESCALATION_RADIUS_FACTOR": "2",
        "DISPATCH_ESCALATION_MAX_RADIUS_M": "24000",
        "DISPATCH_APPROVAL_RADIUS_M": "50000",
    }
    dispatch = start_dispatch(**overrides)
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=3), headers=staff.coordinator()
        )
        emergency_id = created.json()["id"]
    schema = dispatch_env["MUSTER_DB_SCHEMA"]
    # a duplicated timer, due now: it is not the emergency's next step, so it does nothing
    async with admin_engine.begin() as conn:
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".escalation_steps (id, emergency_id, seq, wave, radius_m,'
                " due_at) VALUES (:id, :e, 99, 2, 6000, now())"
            ),
            {"id": uuid.uuid4(), "e": emergency_id},
        )
    first = await escalations(topics, emergency_id, count=1)
    assert [w.data["wave"] for w in first] == [2]
    dispatch.kill()
    await asyncio.sleep(4)  # wave 3 falls due while dispatch is down
    restarted = start_dispatch(**overrides)
    waves = await escalations(topics, emergency_id, count=3, timeout_s=25, settle_s=1.0)
    assert [(w.data["wave"], w.data["radius_m"]) for w in waves] == [
        (2, 6000),
        (3, 12000),
        (4, 24000),
    ]
    async with admin_engine.connect() as conn:
        steps = (
            await conn.execute(
                text(
                    f'SELECT seq, wave, status, outcome FROM "{schema}".escalation_steps '
                    "WHERE emergency_id = :e ORDER BY seq"
                ),
                {"e": emergency_id},
            )
        ).all()
    assert [(s.wave, s.outcome) for s in steps] == [
        (2, "escalated"),
        (2, "stale"),  # the rogue step (seq 99)
        (3, "escalated"),
        (4, "escalated"),
    ]
    restarted.stop()
