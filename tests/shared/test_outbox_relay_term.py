"""A relay's term ends even when its LISTEN task does not stop when told.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that races with the thing it
waits for; the relay's LISTEN task waited that way, and PostgreSQL stopping is exactly
that race (the LISTEN connection ends while the relay cancels the task). The relay then
awaited the task without limit and its service published nothing again, with no error
(seen in about one run in three of tests/faults/test_postgres_restart.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared import outbox
from shared.outbox import OutboxRelay


class _DeafListener:
    """A LISTEN task that swallows every cancellation and ignores the end of the term."""

    def __init__(self) -> None:
        self.cancellations = 0
        self.running = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self, term_over: asyncio.Event) -> None:
        self.running.set()
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancellations += 1


async def test_the_term_ends_though_the_listen_task_swallows_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "LISTENER_STOP_S", 0.2)
    relay = OutboxRelay(engine=None, producer=None, schema="term_test", service="test")  # type: ignore[arg-type]
    listener = _DeafListener()

    async def database_gone(lock_conn: Any) -> None:
        await listener.running.wait()
        raise ConnectionResetError("PostgreSQL stopped")

    monkeypatch.setattr(relay, "_listen", listener)
    monkeypatch.setattr(relay, "_publish_until_stopped", database_gone)
    caller = asyncio.timeout(10)
    with pytest.raises(ConnectionResetError):
        async with caller:
            await relay._publish_loop(lock_conn=None)  # type: ignore[arg-type]
    assert not caller.expired(), "the relay waited on its LISTEN task without limit"
    assert listener.cancellations >= 1
    assert relay.listening is False
    listener.released.set()
    await asyncio.sleep(0)


async def test_a_listen_task_told_the_term_is_over_stops_without_a_cancellation() -> None:
    relay = OutboxRelay(engine=None, producer=None, schema="term_test", service="test")  # type: ignore[arg-type]
    term_over = asyncio.Event()
    term_over.set()
    # the loop's condition is checked before any connection is tried
    async with asyncio.timeout(5):
        await relay._listen(term_over)
