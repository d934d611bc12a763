"""Stream tickets for browsers (EventSource sends no Authorization header): a ticket
opens the live board once, for its own emergency, while it lasts; the header still
works; an authority gets no ticket."""

from __future__ import annotations

import asyncio
import json

import httpx
import redis.asyncio as redis

from services.dispatch import stream_tickets
from tests.dispatch.conftest import Staff, emergency_body
from tests.support.processes import ServiceProcess


async def open_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict | None]:
    """(status, the first `board` event's data) of a stream request; closes it then."""
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, None
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "board":
                return 200, json.loads(line.split(":", 1)[1])
    raise AssertionError("the stream ended before its board event")


async def ticket_for(client: httpx.AsyncClient, emergency_id: str, headers: dict[str, str]) -> str:
    response = await client.post(f"/emergencies/{emergency_id}/stream-ticket", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 30 and len(body["ticket"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    return str(body["ticket"])


async def test_stream_tickets(
    dispatch: ServiceProcess,
    staff: Staff,
    dispatch_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    prefix = dispatch_env["MUSTER_REDIS_PREFIX"]
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        ids = []
        for _ in range(2):
            created = await client.post(
                "/emergencies", json=emergency_body(), headers=staff.coordinator()
            )
            ids.append(created.json()["id"])
        first, second = ids
        stream = f"/emergencies/{first}/stream"

        # the header still works, and nothing else opens the stream without one
        status, board = await open_stream(client, stream, staff.coordinator())
        assert status == 200 and board is not None and board["emergency_id"] == first
        assert (await open_stream(client, stream))[0] == 401
        assert (await open_stream(client, f"{stream}?ticket=made-up"))[0] == 401

        # one ticket, one stream
        ticket = await ticket_for(client, first, staff.coordinator())
        used = ticket
        status, board = await open_stream(client, f"{stream}?ticket={ticket}")
        assert status == 200 and board is not None and board["emergency_id"] == first
        assert (await open_stream(client, f"{stream}?ticket={ticket}"))[0] == 401

        # a ticket for one emergency does not open another (and is used up trying)
        ticket = await ticket_for(client, first, staff.coordinator())
        assert (await open_stream(client, f"/emergencies/{second}/stream?ticket={ticket}"))[
            0
        ] == 401
        assert (await open_stream(client, f"{stream}?ticket={ticket}"))[0] == 401

        issued = [used, ticket]

        # tickets expire: stored with the 30 s TTL; once Redis expires it, 401
        ticket = await ticket_for(client, first, staff.admin())
        issued.append(ticket)
        key = stream_tickets.key(prefix, ticket)
        assert 0 < await redis_client.ttl(key) <= 30
        assert ticket.encode() not in await redis_client.get(key)  # type: ignore[operator]
        await redis_client.pexpire(key, 50)
        await asyncio.sleep(0.2)
        assert (await open_stream(client, f"{stream}?ticket={ticket}"))[0] == 401

        # same access rule as the stream
        ticket_path = f"/emergencies/{first}/stream-ticket"
        assert (await client.post(ticket_path, headers=staff.authority())).status_code == 403
        assert (
            await client.post(ticket_path, headers=staff.other_coordinator())
        ).status_code == 404
        assert (await client.post(ticket_path)).status_code == 401

    log = dispatch.log()
    assert log and not any(t in log for t in issued)
