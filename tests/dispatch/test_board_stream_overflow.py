"""A console that stops reading its board stream (issue 10, defect 8), against a real
dispatch process: while many board changes arrive, its queue overflows and dispatch
ends its stream (counted in `muster_board_stream_overflows_total`) instead of dropping
changes and leaving its board wrong for good; reconnecting gives the whole current
board as the first event; a console that reads keeps getting every change, even when
the changes come in one burst far larger than its bound (the board applies each poll's
rows as one step: the stream sends all it holds in one write)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from typing import Any

import httpx

from shared.events.topics import ALERTS
from tests.conftest import Topics
from tests.dispatch.conftest import Script, Staff, StartDispatch, emergency_body
from tests.dispatch.test_board_flow import collect_sse
from tests.shared.flow import wait_for
from tests.support.kafka import publish

QUEUE = 300
CHANGES = 2500
#: large rows (about 3 KB each: many long qualification codes) so that the kernel's
#: socket buffers, which take up to about 4 MB on loopback, fill with a few thousand changes
QUALIFICATIONS = tuple(f"QUALIFICATION_{n:02d}_{'X' * 28}" for n in range(60))


def overflows(metrics: str) -> float:
    match = re.search(r"^muster_board_stream_overflows_total (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class StalledConsole:
    """An SSE client on a raw socket with a small receive buffer, which reads the first
    `board` event and then nothing until told to."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port, self.path, self.headers = port, path, headers
        self.received = b""

    async def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        # a small reader limit: asyncio stops taking bytes off the socket almost at once
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=1024)
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"{head}\r\n".encode()
        )
        await self.writer.drain()
        while not re.search(rb"event: board\r\ndata: [^\r]*\r\n\r\n", self.received):
            chunk = await asyncio.wait_for(self.reader.read(4096), 10)
            assert chunk, self.received
            self.received += chunk
        assert self.received.startswith(b"HTTP/1.1 200"), self.received[:200]

    async def read_to_the_end(self, timeout_s: float) -> bool:
        """Read again; True when the server ended the stream (the last chunk of a
        chunked body, or a closed connection) within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                return True
            self.received += chunk
            if self.received.endswith(b"\r\n0\r\n\r\n"):
                return True
        return False

    def close(self) -> None:
        self.writer.close()


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """What a console shows of a row (a change carries the event's `updated_at`, which
    may be null, where the stored board has the time it was written)."""
    keys = ("status", "eta_minutes", "expected_arrival_at", "distance_m", "wave", "answered_at")
    return {key: row[key] for key in keys} | {"qualifications": sorted(row["qualifications"])}


async def first_event(url: str, headers: dict[str, str]) -> tuple[str, Any]:
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event:
                return event, json.loads(line.split(":", 1)[1])
    raise AssertionError("the stream ended without an event")


async def test_a_console_that_stops_reading_is_cut_off_and_reloads_the_whole_board(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(DISPATCH_BOARD_STREAM_QUEUE=str(QUEUE))
    coordinator = staff.coordinator()
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        created = await client.post(
            "/emergencies", json=emergency_body(members_needed=2), headers=coordinator
        )
        emergency_id = created.json()["id"]
        stream_path = f"/emergencies/{emergency_id}/stream"
        script = Script(uuid.UUID(emergency_id))

        reading: list[tuple[str, Any]] = []
        ready = asyncio.Event()
        reader = asyncio.create_task(collect_sse(dispatch.url + stream_path, coordinator,
                                                 reading, ready))  # fmt: skip
        await asyncio.wait_for(ready.wait(), 10)
        stalled = StalledConsole(dispatch.port, stream_path, coordinator)
        await stalled.connect()
        try:
            assert overflows((await client.get("/metrics")).text) == 0

            members = [uuid.uuid4() for _ in range(CHANGES)]
            await publish(
                topics.bootstrap,
                topics(ALERTS),
                [
                    script.sent(m, 0, distance_m=100 + i, qualifications=QUALIFICATIONS)
                    for i, m in enumerate(members)
                ],
            )

            async def applied() -> bool:
                board = await client.get(f"/emergencies/{emergency_id}/board", headers=coordinator)
                return len(board.json()["rows"]) == CHANGES

            assert await wait_for(applied, timeout_s=120)

            async def cut_off() -> bool:
                return overflows((await client.get("/metrics")).text) >= 1

            # noticed while the stalled console still reads nothing
            assert await wait_for(cut_off, timeout_s=15)
            # once it reads again, its stream ends after what was already on its way
            assert await stalled.read_to_the_end(timeout_s=20), stalled.received[-300:]
            assert stalled.received.count(b"event: row") < CHANGES
        finally:
            stalled.close()

        board = (await client.get(f"/emergencies/{emergency_id}/board", headers=coordinator)).json()
        current = {r["member_id"]: r for r in board["rows"]}

        # the console that reads got every change, and its stream is still open
        async def all_streamed() -> bool:
            return {r["member_id"] for kind, r in reading if kind == "row"} == set(current)

        assert await wait_for(all_streamed, timeout_s=30), len(reading)
        assert not reader.done()
        streamed = {r["member_id"]: shown(r) for kind, r in reading if kind == "row"}
        assert streamed == {member: shown(r) for member, r in current.items()}
        assert overflows((await client.get("/metrics")).text) == 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

        # reconnecting: the first event is the whole current board
        event, data = await first_event(dispatch.url + stream_path, coordinator)
        assert event == "board"
        assert {r["member_id"]: shown(r) for r in data["rows"]} == {
            member: shown(r) for member, r in current.items()
        }
