"""Hostile or slow webhook receivers (issue 10, defect 10), against a real dispatch
process and receivers run by the test on 127.0.0.1:

- a receiver that drips its answer one byte per second, forever, next to one that
  answers at once: the fast one gets every summary on time and in order, while the slow
  one is cut off at `DISPATCH_WEBHOOK_TIMEOUT_S` (a total deadline, which httpx's
  per-read timeout alone never reaches with a byte a second), counted as failed and
  retried later;
- a receiver answering 200 with a 100 MB body: dispatch records the delivery within
  seconds and reads a few kilobytes of it, not the body (its peak memory barely moves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from services.dispatch.subscriptions import lease, outcome_label, outcome_of
from shared.events.topics import ALERTS, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import SECTION, Script, Staff, StartDispatch, emergency_body
from tests.shared.flow import wait_for
from tests.support.kafka import publish

SECRET = "s3cret-for-the-prefecture-0123456789"
DEADLINE_S = 3.0
HUGE_BODY_BYTES = 100 * 1024 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request with a Content-Length body; its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return await reader.readexactly(int(match.group(1))) if match else b""


@contextlib.asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


@dataclass
class Connection:
    opened_at: float
    closed_at: float | None = None


@dataclass
class DrippingReceiver:
    """Takes the request, then answers one byte per second and never finishes (an
    endless header line), until dispatch hangs up."""

    connections: list[Connection] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(time.monotonic())
        self.connections.append(connection)
        drip = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
        try:
            await read_request(reader)
            for i in range(len(drip)):
                writer.write(drip[i : i + 1])
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break  # dispatch hung up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            connection.closed_at = time.monotonic()
            writer.close()


@dataclass
class FastReceiver:
    """Answers 204 at once; keeps when each summary arrived."""

    #: (the summary, when it arrived)
    received: list[tuple[dict, float]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.received.append((json.loads(await read_request(reader)), time.time()))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@dataclass
class HugeBodyReceiver:
    """Answers 200 with a 100 MB body, as fast as dispatch takes it."""

    sent_bytes: int = 0
    finished_at: float | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * 65536
        try:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Length: {HUGE_BODY_BYTES}\r\n\r\n".encode()
            )
            while self.sent_bytes < HUGE_BODY_BYTES:
                writer.write(chunk)
                await writer.drain()
                self.sent_bytes += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.finished_at = time.monotonic()
            writer.close()


async def subscribe(client: httpx.AsyncClient, authority: dict[str, str], url: str) -> str:
    created = await client.post(
        "/subscriptions",
        json={"section": SECTION, "url": url, "secret": SECRET},
        headers=authority,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def subscription(client: httpx.AsyncClient, staff: Staff, subscription_id: str) -> dict:
    listing = (await client.get("/subscriptions", headers=staff.admin())).json()
    return dict(next(s for s in listing if s["id"] == subscription_id))


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


async def test_a_dripping_receiver_never_delays_another_and_is_cut_off_at_the_deadline(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(
        DISPATCH_WEBHOOK_ALLOW_PRIVATE="true",  # the receivers listen on 127.0.0.1
        DISPATCH_WEBHOOK_TIMEOUT_S=str(DEADLINE_S),
        DISPATCH_WEBHOOK_RETRY_BASE_S="0.5",
        DISPATCH_WEBHOOK_RETRY_MAX_S="1",
        DISPATCH_WEBHOOK_MAX_FAILURES="1000",
        DISPATCH_SUMMARY_MIN_INTERVAL_S="0.3",
    )
    slow, fast = DrippingReceiver(), FastReceiver()
    authority = staff.authority()
    async with (
        listening(slow.handle) as slow_base,
        listening(fast.handle) as fast_base,
        httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client,
    ):
        # the slow one first: its deliveries are the older ones of every pair
        slow_id = await subscribe(client, authority, f"{slow_base}/summaries")
        fast_id = await subscribe(client, authority, f"{fast_base}/summaries")
        emergency = await client.post(
            "/emergencies", json=emergency_body(members_needed=3), headers=staff.coordinator()
        )
        emergency_id = emergency.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        members = [uuid.uuid4() for _ in range(6)]
        await publish(topics.bootstrap, topics(ALERTS), [script.sent(m, 0) for m in members])
        for i, member in enumerate(members):
            # each answer its own summary, more often than the slow receiver's deadline
            await asyncio.sleep(1.0)
            answer = "accepted" if i % 2 else "declined"
            await publish(
                topics.bootstrap, topics(RESPONSES), [script.answer(member, answer, 10 + i, eta=9)]
            )

        async def fast_has_the_final_board() -> bool:
            return any(s["counts"]["declined"] == 3 for s, _ in fast.received)

        assert await wait_for(fast_has_the_final_board, timeout_s=20), fast.received
        assert len(fast.received) >= 5, fast.received
        assert all(s["emergency_id"] == emergency_id for s, _ in fast.received)
        # every summary reached the fast receiver well within the slow one's deadline ...
        made = [datetime.fromisoformat(s["updated_at"]) for s, _ in fast.received]
        latencies = [
            arrived - m.timestamp() for m, (_, arrived) in zip(made, fast.received, strict=True)
        ]
        assert max(latencies) < DEADLINE_S - 0.5, latencies
        # ... and in the order they were made
        assert made == sorted(made)

        # the slow receiver: cut off at the deadline, every time, and tried again later
        async def cut_off_twice() -> bool:
            return sum(c.closed_at is not None for c in slow.connections) >= 2

        assert await wait_for(cut_off_twice, timeout_s=15), slow.connections
        for connection in slow.connections:
            if connection.closed_at is not None:
                held = connection.closed_at - connection.opened_at
                assert DEADLINE_S - 0.5 < held < DEADLINE_S + 2.0, held
        failing = await subscription(client, staff, slow_id)
        assert failing["consecutive_failures"] >= 2, failing
        assert "timed out" in failing["last_error"], failing
        assert failing["pending_deliveries"] >= 1
        healthy = await subscription(client, staff, fast_id)
        assert healthy["consecutive_failures"] == 0 and healthy["pending_deliveries"] == 0
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "muster_dispatch_webhook_deliveries_total", outcome="timed_out") >= 2
        assert metric(metrics, "muster_dispatch_webhook_deliveries_total", outcome="delivered") >= 5


async def test_a_receiver_answering_100_mb_is_not_read_to_the_end(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(
        DISPATCH_WEBHOOK_ALLOW_PRIVATE="true",
        DISPATCH_WEBHOOK_TIMEOUT_S="30",  # only the read bound can make this quick
    )
    huge = HugeBodyReceiver()
    authority = staff.authority()
    async with (
        listening(huge.handle) as base,
        httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client,
    ):
        subscription_id = await subscribe(client, authority, f"{base}/summaries")
        emergency = await client.post(
            "/emergencies", json=emergency_body(members_needed=1), headers=staff.coordinator()
        )
        script = Script(uuid.UUID(emergency.json()["id"]))
        peak_before_kib = peak_rss_kib(dispatch.process.pid)
        started = time.monotonic()
        await publish(topics.bootstrap, topics(ALERTS), [script.sent(uuid.uuid4(), 0)])

        async def delivered() -> bool:
            return (await subscription(client, staff, subscription_id))[
                "last_success_at"
            ] is not None

        assert await wait_for(delivered, timeout_s=20)
        assert time.monotonic() - started < 10

        async def hung_up() -> bool:
            return huge.finished_at is not None

        assert await wait_for(hung_up, timeout_s=10)
        # what left the receiver is what sat in socket buffers when dispatch hung up
        assert huge.sent_bytes < HUGE_BODY_BYTES // 4, huge.sent_bytes
        grown_mib = (peak_rss_kib(dispatch.process.pid) - peak_before_kib) / 1024
        assert grown_mib < 40, grown_mib


def test_a_lease_covers_the_deadlines_queued_before_it() -> None:
    assert lease(1, 5.0).total_seconds() >= 5.0
    for position in range(1, 12):
        assert lease(position + 1, 5.0) - lease(position, 5.0) == timedelta(seconds=5.0)


def test_outcome_labels() -> None:
    assert outcome_label(None) == "delivered"
    assert outcome_label("timed out after 5 s") == "timed_out"
    assert outcome_label("refused: a loopback address") == "refused"
    assert outcome_label("HTTP 503") == outcome_label("ConnectError") == "failed"
    assert outcome_of(204) is None and outcome_of(301) == "HTTP 301"
