"""Live board updates for consoles (SSE), fed by PostgreSQL LISTEN/NOTIFY.

The board consumer NOTIFYs each changed row inside its transaction; every dispatch
instance LISTENs on one dedicated connection and fans the rows out to the SSE streams of
its own clients, so a console connected to any instance sees changes applied by any
other. PostgreSQL delivers a notification only when its transaction commits. A console
that reconnects gets the whole board first, so a notification lost while the listener
reconnected is covered by the next snapshot.

Each connected console holds the changes it has yet to send, one per row: a row changed
again before it was sent is sent once, in its latest state (every row event carries the
whole row, so nothing is lost), and the stream sends everything pending in one write. A
surge of answers then costs a console what the rows changed, not how often. A console
that still falls behind (a slow link, a frozen tab) would hold more rows than its bound;
dropping some would leave its board wrong for good, so it is cut off instead: what it
held is dropped, its stream ends, and the browser's EventSource reconnects and starts
again from a snapshot.
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

#: the default of DISPATCH_BOARD_STREAM_QUEUE: rows a console may have pending before it is cut off
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
    """One console's place in the feed: the changes it has yet to send (the latest of
    each row, in the order rows first changed), or the news that it fell behind and must
    start again."""

    def __init__(self, emergency_id: uuid.UUID, queue_size: int) -> None:
        self.emergency_id = emergency_id
        self._pending: dict[str, Change] = {}
        self._capacity = queue_size
        self._ready = asyncio.Event()
        self.cut_off = False

    def offer(self, change: Change) -> bool:
        """Hold a change; False (and cut off) when the console is too far behind."""
        if self.cut_off:
            return False
        key = _row_key(change)
        if key not in self._pending and len(self._pending) >= self._capacity:
            self._pending.clear()  # worthless now: it will reload the whole board
            self.cut_off = True
        else:
            self._pending[key] = change  # a row already pending keeps its place
        self._ready.set()
        return not self.cut_off

    async def next_changes(self) -> list[Change] | None:
        """Every change pending (at least one); None once the console has been cut off."""
        await self._ready.wait()
        self._ready.clear()
        if self.cut_off:
            return None
        changes = list(self._pending.values())
        self._pending.clear()
        return changes


def _row_key(change: Change) -> str:
    if "roll_call" in change:
        return "roll_call"
    member_id = change.get("member_id")
    # a change that names no row is never merged with another
    return f"row:{member_id}" if member_id is not None else f"change:{id(change)}"


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
