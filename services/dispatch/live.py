"""Live board updates for consoles (SSE), fed by PostgreSQL LISTEN/NOTIFY.

The board consumer NOTIFYs each changed row inside its transaction; every dispatch
instance LISTENs on one dedicated connection and fans the rows out to the SSE streams of
its own clients, so a console connected to any instance sees changes applied by any
other. PostgreSQL delivers a notification only when its transaction commits. A console
that reconnects gets the whole board first, so a notification lost while the listener
reconnected is covered by the next snapshot.

Each connected console has a bounded queue. A console that does not keep up (a slow
link, a frozen tab) would fill it; dropping its events would leave its board wrong for
good, so it is cut off instead: its queue is emptied and ended, its stream ends, and the
browser's EventSource reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from prometheus_client import Counter

from shared.observability import get_logger

log = get_logger(__name__)

#: the default of DISPATCH_BOARD_STREAM_QUEUE: changes a console may be behind before it is cut off
QUEUE_SIZE = 1000

STREAM_OVERFLOWS = Counter(
    "muster_board_stream_overflows_total",
    "Board streams cut off because their console fell too far behind (it reconnects and "
    "reloads the board)",
)

Change = dict[str, Any]


def asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class BoardSubscription:
    """One console's place in the feed: the changes it has yet to send, or the news
    that it fell behind and must start again."""

    def __init__(self, emergency_id: uuid.UUID, queue_size: int) -> None:
        self.emergency_id = emergency_id
        # one slot more than the changes it may hold, for the cut-off mark
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(queue_size + 1)
        self._capacity = queue_size
        self.cut_off = False

    def offer(self, change: Change) -> bool:
        """Queue a change; False (and cut off) when the console is too far behind."""
        if self.cut_off:
            return False
        if self._queue.qsize() >= self._capacity:
            self._cut_off()
            return False
        self._queue.put_nowait(change)
        return True

    def _cut_off(self) -> None:
        # what it has not sent is worthless now: it will reload the whole board
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        self.cut_off = True

    async def next_change(self) -> Change | None:
        """The next change to send; None once the console has been cut off."""
        return await self._queue.get()


class BoardFeed:
    def __init__(self, database_url: str, channel: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channel = channel
        self._subscriptions: dict[uuid.UUID, set[BoardSubscription]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self.listening = asyncio.Event()

    def subscribe(self, emergency_id: uuid.UUID, queue_size: int = QUEUE_SIZE) -> BoardSubscription:
        subscription = BoardSubscription(emergency_id, queue_size)
        self._subscriptions[emergency_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: BoardSubscription) -> None:
        subscriptions = self._subscriptions.get(subscription.emergency_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.emergency_id]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            emergency_id = uuid.UUID(message["emergency_id"])
        except (ValueError, KeyError):
            return
        # a row, or the emergency's latest roll call (started by any coordinator)
        change = (
            {"roll_call": message["roll_call"]} if "roll_call" in message else message.get("row")
        )
        if change is None:
            return
        for subscription in list(self._subscriptions.get(emergency_id, ())):
            if not subscription.offer(change):
                self.unsubscribe(subscription)
                STREAM_OVERFLOWS.inc()
                log.warning(
                    "board stream cut off: its console fell behind; it reconnects and reloads",
                    emergency_id=str(emergency_id),
                )

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
