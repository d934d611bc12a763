"""Live board updates for consoles (SSE), fed by PostgreSQL LISTEN/NOTIFY.

The board consumer NOTIFYs each changed row inside its transaction; every dispatch
instance LISTENs on one dedicated connection and fans the rows out to the SSE streams of
its own clients, so a console connected to any instance sees changes applied by any
other. PostgreSQL delivers a notification only when its transaction commits. A console
that reconnects gets the whole board first, so a notification lost while the listener
reconnected is covered by the next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

from shared.observability import get_logger

log = get_logger(__name__)

QUEUE_SIZE = 1000


def asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class BoardFeed:
    def __init__(self, database_url: str, channel: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channel = channel
        self._queues: dict[uuid.UUID, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self.listening = asyncio.Event()

    def subscribe(self, emergency_id: uuid.UUID) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._queues[emergency_id].add(queue)
        return queue

    def unsubscribe(self, emergency_id: uuid.UUID, queue: asyncio.Queue[dict[str, Any]]) -> None:
        queues = self._queues.get(emergency_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[emergency_id]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            emergency_id = uuid.UUID(message["emergency_id"])
        except (ValueError, KeyError):
            return
        for queue in list(self._queues.get(emergency_id, ())):
            try:
                queue.put_nowait(message["row"])
            except asyncio.QueueFull:
                # a stalled console: drop it; it reconnects and gets a fresh snapshot
                self.unsubscribe(emergency_id, queue)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(self._channel, self._on_notify)
                self.listening.set()
                while not self._stopping.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 5.0)
                    if not self._stopping.is_set():
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("board feed listener error, reconnecting", error=repr(exc))
                await asyncio.sleep(1.0)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
