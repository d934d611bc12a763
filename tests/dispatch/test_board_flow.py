"""The board from a scripted stream of alert and response events on real Kafka,
including duplicates and out-of-order deliveries; the live stream; the quota's events;
the summary; and a replay of the topics into a fresh schema giving the same board."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topics import ALERTS, AVAILABILITY, EMERGENCIES, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import Script, Staff, StartDispatch, emergency_body
from tests.shared.flow import wait_for
from tests.support.kafka import publish, read_events
from tests.support.processes import ServiceProcess, run_migrations, start_service


async def board_of(client: httpx.AsyncClient, emergency_id: str, headers: dict[str, str]) -> dict:
    response = await client.get(f"/emergencies/{emergency_id}/board", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def collect_sse(
    url: str, headers: dict[str, str], sink: list[tuple[str, Any]], ready: asyncio.Event
) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event:
                sink.append((event, json.loads(line.split(":", 1)[1])))
                if event == "board":
                    ready.set()


async def test_scripted_stream_gives_the_expected_board_summary_and_replay(
    dispatch: ServiceProcess,
    staff: Staff,
    topics: Topics,
    dispatch_env: dict[str, str],
    admin_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    coordinator = staff.coordinator()
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=2), headers=coordinator
        )
        emergency_id = created.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        a, b, c, d, e = (uuid.uuid4() for _ in range(5))

        sse: list[tuple[str, Any]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(
            collect_sse(f"{dispatch.url}/emergencies/{emergency_id}/stream", coordinator,
                        sse, ready)
        )  # fmt: skip
        await asyncio.wait_for(ready.wait(), 10)

        accepted_a = script.answer(a, "accepted", 20, eta=10)
        alerts = [
            script.sent(a, 0, distance_m=800),
            script.sent(b, 0, distance_m=1500),
            script.sent(c, 0, distance_m=400, qualifications=("FIRST_AID", "SAR")),
            script.sent(d, 0),
            script.sent(e, 0),
            script.delivered(b, 2),
            script.failed(d, 3),
        ]
        late_delivered = script.delivered(a, 1)  # delivered report after the answer
        responses = [
            accepted_a,
            accepted_a,  # duplicate delivery of the same event
            script.answer(b, "accepted", 25, eta=5),
            script.answer(c, "accepted", 30, eta=3),  # quota met: standby
            script.answer(e, "declined", 40),
            script.answer(e, "accepted", 35, eta=1),  # older than the decline: ignored
            script.answer(a, "declined", 50),  # drop-out: c is called up
        ]
        await publish(topics.bootstrap, topics(ALERTS), alerts)
        await publish(topics.bootstrap, topics(RESPONSES), responses)
        await publish(topics.bootstrap, topics(ALERTS), [late_delivered, alerts[0]])

        expected = {a: "declined", b: "accepted", c: "accepted", d: "failed", e: "declined"}

        async def settled() -> bool:
            rows = (await board_of(client, emergency_id, coordinator))["rows"]
            return {uuid.UUID(r["member_id"]): r["status"] for r in rows} == expected

        assert await wait_for(settled, timeout_s=30), await board_of(
            client, emergency_id, coordinator
        )
        board = await board_of(client, emergency_id, coordinator)
        rows = {r["member_id"]: r for r in board["rows"]}
        assert rows[str(b)]["eta_minutes"] == 5 and rows[str(c)]["eta_minutes"] == 3
        assert rows[str(c)]["distance_m"] == 400 and rows[str(c)]["wave"] == 1
        assert rows[str(a)]["eta_minutes"] is None
        assert board["staffed"] is True
        # ranked: accepted first, by ETA
        assert [r["member_id"] for r in board["rows"][:2]] == [str(c), str(b)]

        # the live stream ends with c accepted (it went standby first; a console is sent
        # each row's latest state, so a change overtaken before it was sent may be merged)
        async def streamed() -> bool:
            return [s for kind, r in sse if kind == "row" and r["member_id"] == str(c)
                    for s in [r["status"]]][-1:] == ["accepted"]  # fmt: skip

        assert await wait_for(streamed, timeout_s=10), sse
        c_statuses = [r["status"] for kind, r in sse if kind == "row" and r["member_id"] == str(c)]
        assert set(c_statuses) <= {"notified", "standby", "accepted"}, c_statuses
        listener.cancel()

        summary = await client.get(
            f"/emergencies/{emergency_id}/summary", headers=staff.authority()
        )
        assert summary.status_code == 200
        counts = summary.json()["counts"]
        assert (counts["accepted"], counts["declined"], counts["failed"]) == (2, 2, 1)
        assert summary.json()["by_qualification"]["SAR"]["accepted"] == 1
        assert summary.json()["eta_bands"]["0-10"] == 2
        for member in (a, b, c, d, e):
            assert str(member) not in summary.text
        assert (
            await client.get(f"/emergencies/{emergency_id}/board", headers=staff.authority())
        ).status_code == 403

    # the quota's events: staffed once, then a call-up of the standby member
    updates = [
        ev
        for ev in await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=3)
        if ev.subject == emergency_id and ev.type == "muster.emergency.updated.v1"
    ]
    assert [(u.data["staffed"], u.data["call_up"]) for u in updates] == [
        (True, []),
        (True, [str(c)]),
    ]
    assert updates[0].data["changed"] == ["staffed"]

    # summaries on muster.availability: counts only, the last one final
    async def final_summary() -> bool:
        events = await read_events(topics.bootstrap, [topics(AVAILABILITY)], count=1, timeout_s=3)
        return (
            bool(events)
            and events[-1].data["counts"]["accepted"] == 2
            and (events[-1].data["counts"]["declined"] == 2)
        )

    assert await wait_for(final_summary, timeout_s=20)
    published = await read_events(topics.bootstrap, [topics(AVAILABILITY)], count=1)
    for envelope in published:
        body = json.dumps(envelope.data)
        assert all(str(m) not in body for m in (a, b, c, d, e))
        assert envelope.subject == emergency_id

    # replay the topics from the start into a fresh schema: the same board
    fresh = f"t_{uuid.uuid4().hex[:12]}"
    env = {**dispatch_env, "MUSTER_DB_SCHEMA": fresh, "MUSTER_GROUP_ID": f"g{uuid.uuid4().hex[:8]}"}
    run_migrations("dispatch", env)
    replica: ServiceProcess | None = None
    try:
        async with admin_engine.begin() as conn:
            # the emergency itself is dispatch's own record (not in these topics): restore it
            await conn.execute(
                text(
                    f'INSERT INTO "{fresh}".emergencies SELECT * FROM '
                    f'"{dispatch_env["MUSTER_DB_SCHEMA"]}".emergencies WHERE id = :id'
                ),
                {"id": emergency_id},
            )
        replica = start_service("dispatch", env, tmp_path)
        async with httpx.AsyncClient(base_url=replica.url, timeout=10) as other:

            async def replayed() -> bool:
                return (await board_of(other, emergency_id, coordinator))["rows"] == board["rows"]

            assert await wait_for(replayed, timeout_s=30), (
                await board_of(other, emergency_id, coordinator),
                board,
            )
    finally:
        if replica is not None:
            replica.stop()
        async with admin_engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE'))


async def test_members_needed_change_re_ranks_and_calls_up(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    coordinator = staff.coordinator()
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=1), headers=coordinator
        )
        emergency_id = created.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        a, b = uuid.uuid4(), uuid.uuid4()
        await publish(
            topics.bootstrap,
            topics(RESPONSES),
            [script.answer(a, "accepted", 1, eta=9), script.answer(b, "accepted", 2, eta=4)],
        )

        async def statuses() -> dict[uuid.UUID, str]:
            rows = (await board_of(client, emergency_id, coordinator))["rows"]
            return {uuid.UUID(r["member_id"]): r["status"] for r in rows}

        async def split() -> bool:
            return await statuses() == {a: "accepted", b: "standby"}

        assert await wait_for(split, timeout_s=20), await statuses()
        more = await client.patch(
            f"/emergencies/{emergency_id}", json={"members_needed": 2}, headers=coordinator
        )
        assert more.json()["staffed"] is True
        assert await statuses() == {a: "accepted", b: "accepted"}
        most = await client.patch(
            f"/emergencies/{emergency_id}", json={"members_needed": 3}, headers=coordinator
        )
        assert most.json()["staffed"] is False

    updates = [
        ev
        for ev in await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=6)
        if ev.subject == emergency_id and ev.type == "muster.emergency.updated.v1"
    ]
    assert [(u.data["changed"], u.data["staffed"], u.data["call_up"]) for u in updates] == [
        (["staffed"], True, []),
        (["members_needed"], True, []),
        (["call_up"], True, [str(b)]),
        (["members_needed"], True, []),
        (["staffed"], False, []),
    ]


async def test_consoles_on_any_instance_see_every_change(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    """Two instances share the consumer group; a console on each sees every row change,
    whichever instance applied it (LISTEN/NOTIFY)."""
    first, second = start_dispatch(), start_dispatch()
    coordinator = staff.coordinator()
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
        emergency_ids = []
        for _ in range(4):  # several emergencies: their keys spread over both instances
            created = await client.post("/emergencies", json=emergency_body(), headers=coordinator)
            emergency_ids.append(created.json()["id"])
    streams: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    tasks = []
    for service in (first, second):
        for emergency_id in emergency_ids:
            sink: list[tuple[str, Any]] = []
            ready = asyncio.Event()
            streams[(service.url, emergency_id)] = sink
            tasks.append(
                asyncio.create_task(
                    collect_sse(f"{service.url}/emergencies/{emergency_id}/stream",
                                coordinator, sink, ready)
                )
            )  # fmt: skip
            await asyncio.wait_for(ready.wait(), 10)
    members = {}
    for emergency_id in emergency_ids:
        script = Script(uuid.UUID(emergency_id))
        members[emergency_id] = uuid.uuid4()
        await publish(
            topics.bootstrap, topics(RESPONSES),
            [script.answer(members[emergency_id], "accepted", 1, eta=4)],
        )  # fmt: skip

    async def everywhere() -> bool:
        return all(
            any(kind == "row" and row["member_id"] == str(members[emergency_id])
                for kind, row in sink)
            for (_, emergency_id), sink in streams.items()
        )  # fmt: skip

    try:
        assert await wait_for(everywhere, timeout_s=30), streams
    finally:
        for task in tasks:
            task.cancel()
