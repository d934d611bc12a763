"""The safety loop on the board, against dispatch as real processes (issue 11): members
move en_route → on_scene → released → home_safe by their own answers (published the way
alerts publishes them) or a coordinator's action; a roll call shows who has not
confirmed; "release all"; a released member not home safe in time is flagged overdue
and `ResponderOverdue` is published exactly once with two dispatch instances; the
channel ladder's steps are on each row; the authority summary counts each state."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.events.envelope import Envelope, decode
from shared.events.topics import ALERTS, EMERGENCIES, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import Script, Staff, StartDispatch, emergency_body
from tests.dispatch.test_board_flow import collect_sse
from tests.shared.flow import wait_for
from tests.support.kafka import publish, read_records


async def dispatch_events(
    topics: Topics, emergency_id: str, event_type: str, count: int, timeout_s: float = 20.0
) -> list[Envelope]:
    """This emergency's events of one type on muster.emergencies, by CloudEvent id."""

    def mine(records: list[Any]) -> list[Envelope]:
        unique: dict[str, Envelope] = {}
        for record in records:
            if record.value is None:
                continue
            envelope = decode(record.value, record.headers, record.key)
            if envelope.subject == emergency_id and envelope.type == event_type:
                unique.setdefault(envelope.id, envelope)
        return list(unique.values())

    records = await read_records(
        topics.bootstrap, [topics(EMERGENCIES)], until=lambda rs: len(mine(rs)) > count,
        timeout_s=timeout_s,
    )  # fmt: skip
    return mine(records)


async def board_rows(
    client: httpx.AsyncClient, emergency_id: str, headers: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    got = await client.get(f"/emergencies/{emergency_id}/board", headers=headers)
    assert got.status_code == 200, got.text
    body = got.json()
    return {row["member_id"]: row for row in body["rows"]}, body


async def test_the_safety_loop_from_acceptance_to_home(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    settings = {
        "DISPATCH_OVERDUE_AFTER_S": "4",
        "DISPATCH_ROLL_CALL_MISSING_AFTER_S": "3",
    }
    first = start_dispatch(**settings)
    start_dispatch(**settings)  # a second instance: every timer still fires once
    coordinator = staff.coordinator()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=3), headers=coordinator
        )
        emergency_id = created.json()["id"]
        # the members' own times lie in the last hour, before anything the coordinator does
        script = Script(uuid.UUID(emergency_id), datetime.now(UTC) - timedelta(hours=1))
        a, b, c, d, silent = (uuid.uuid4() for _ in range(5))
        await publish(
            topics.bootstrap,
            topics(ALERTS),
            [script.sent(m, 0) for m in (a, b, c, d, silent)]
            + [script.delivered(silent, 2), script.call_placed(silent, 300),
               script.call_ended(silent, 340, "no_answer")],
        )  # fmt: skip
        await publish(
            topics.bootstrap,
            topics(RESPONSES),
            [script.answer(a, "accepted", 10, eta=5), script.answer(b, "accepted", 11, eta=8,
             channel="voice"), script.answer(c, "accepted", 12, eta=9, channel="web"),
             script.answer(d, "declined", 13),
             # an older alerts service still says "arrived": that is on_scene
             script.answer(a, "arrived", 400), script.answer(b, "en_route", 60, channel="web")],
        )  # fmt: skip

        async def settled() -> bool:
            rows, _ = await board_rows(client, emergency_id, coordinator)
            return (
                rows.get(str(a), {}).get("status") == "on_scene"
                and rows.get(str(b), {}).get("status") == "en_route"
                and rows.get(str(silent), {}).get("contact_step") == "call_no_answer"
            )

        assert await wait_for(settled, timeout_s=30)
        rows, _ = await board_rows(client, emergency_id, coordinator)
        assert rows[str(c)]["status"] == "accepted" and rows[str(c)]["channel"] == "web"
        assert rows[str(b)]["channel"] == "web"
        assert rows[str(silent)]["status"] == "delivered"
        staffed = await client.get(f"/emergencies/{emergency_id}", headers=coordinator)
        assert staffed.json()["staffed"] is True

        # the coordinator: b is on scene now; forward only, and only for board members
        url = f"/emergencies/{emergency_id}/responders/{{}}/status"
        moved = await client.post(url.format(b), json={"status": "on_scene"}, headers=coordinator)
        assert moved.status_code == 200, moved.text
        assert (moved.json()["status"], moved.json()["channel"]) == ("on_scene", "coordinator")
        back = await client.post(url.format(b), json={"status": "en_route"}, headers=coordinator)
        assert back.status_code == 409
        declined = await client.post(
            url.format(d), json={"status": "on_scene"}, headers=coordinator
        )
        assert declined.status_code == 409
        stranger = await client.post(
            url.format(uuid.uuid4()), json={"status": "on_scene"}, headers=coordinator
        )
        assert stranger.status_code == 404
        bad = await client.post(url.format(c), json={"status": "lost"}, headers=coordinator)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "status"
        other = await client.post(
            url.format(c), json={"status": "on_scene"}, headers=staff.other_coordinator()
        )
        assert other.status_code == 404
        authority = await client.post(
            url.format(c), json={"status": "on_scene"}, headers=staff.authority()
        )
        assert authority.status_code == 403
        set_events = await dispatch_events(
            topics, emergency_id, "muster.responder.status_set.v1", count=0
        )
        assert [(e.data["member_id"], e.data["status"]) for e in set_events] == [
            (str(b), "on_scene")
        ]

        # roll call: a and b are on scene; a confirms, b does not. A console already
        # watching the board's stream hears of it at once.
        streamed: list[tuple[str, Any]] = []
        ready = asyncio.Event()
        watcher = asyncio.create_task(
            collect_sse(f"{first.url}/emergencies/{emergency_id}/stream", coordinator,
                        streamed, ready)
        )  # fmt: skip
        await asyncio.wait_for(ready.wait(), 20)
        assert streamed[0][1]["roll_call"] is None
        called = await client.post(f"/emergencies/{emergency_id}/roll-calls", headers=coordinator)
        assert called.status_code == 201, called.text
        roll_call = called.json()
        assert sorted(roll_call["waiting"]) == sorted([str(a), str(b)])
        started = await dispatch_events(
            topics, emergency_id, "muster.roll_call.started.v1", count=0
        )

        async def announced() -> bool:
            return any(kind == "roll_call" for kind, _ in streamed)

        assert await wait_for(announced, timeout_s=10)
        live = next(data for kind, data in streamed if kind == "roll_call")
        assert live["roll_call_id"] == roll_call["roll_call_id"]
        assert sorted(live["waiting"]) == sorted([str(a), str(b)])
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert sorted(started[0].data["member_ids"]) == sorted([str(a), str(b)])
        await publish(
            topics.bootstrap,
            topics(RESPONSES),
            [script.roll_call_confirmed(a, 500, uuid.UUID(roll_call["roll_call_id"]))],
        )

        async def b_missing() -> bool:
            _, body = await board_rows(client, emergency_id, coordinator)
            view = body["roll_call"]
            return view["confirmed"] == [str(a)] and view["missing"] == [str(b)]

        assert await wait_for(b_missing, timeout_s=20)
        rows, _ = await board_rows(client, emergency_id, coordinator)
        assert rows[str(a)]["confirmed_roll_calls"] == [roll_call["roll_call_id"]]

        # release everyone on scene; a gets home in time, b does not
        released = await client.post(f"/emergencies/{emergency_id}/release", headers=coordinator)
        assert released.json() == {"released": 2}
        await publish(
            topics.bootstrap, topics(RESPONSES), [script.answer(a, "home_safe", 600, channel="sms")]
        )  # the member's own time is before the release: home safe all the same

        async def b_overdue() -> bool:
            rows, _ = await board_rows(client, emergency_id, coordinator)
            return rows[str(b)]["overdue"] is True and rows[str(a)]["status"] == "home_safe"

        assert await wait_for(b_overdue, timeout_s=30)
        await asyncio.sleep(3)  # both instances' schedulers have had their chance
        overdue = await dispatch_events(
            topics, emergency_id, "muster.responder.overdue.v1", count=1, timeout_s=4
        )
        assert [e.data["member_id"] for e in overdue] == [str(b)]
        rows, _ = await board_rows(client, emergency_id, coordinator)
        assert rows[str(a)]["overdue"] is False
        assert rows[str(b)]["status"] == "released"

        # releasing did not free places: still staffed (no quota re-opened, no new wave)
        staffed = await client.get(f"/emergencies/{emergency_id}", headers=coordinator)
        assert staffed.json()["staffed"] is True

        # nobody on scene any more: a roll call has nobody to ask
        empty = await client.post(f"/emergencies/{emergency_id}/roll-calls", headers=coordinator)
        assert empty.status_code == 409

        summary = await client.get(
            f"/emergencies/{emergency_id}/summary", headers=staff.authority()
        )
        counts = summary.json()["counts"]
        assert (counts["released"], counts["home_safe"], counts["accepted"]) == (1, 1, 1)
        assert str(a) not in summary.text and str(b) not in summary.text

        audit = await client.get(
            "/audit", params={"emergency_id": emergency_id}, headers=staff.admin()
        )
        actions = [entry["action"] for entry in audit.json()]
        for action in ("responder_status_set", "roll_call_started", "released_all",
                       "responder_overdue"):  # fmt: skip
            assert actions.count(action) == 1, action
        assert "quota_reopened" not in actions
