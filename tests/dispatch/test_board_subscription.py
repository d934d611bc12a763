"""A console's place in the board feed (services/dispatch/live.py): bounded, and cut
off rather than silently dropping changes when it falls behind."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.live import BoardSubscription


async def test_a_subscription_cut_off_when_full_says_so_and_holds_nothing() -> None:
    subscription = BoardSubscription(uuid.uuid4(), queue_size=3)
    assert all(subscription.offer({"n": n}) for n in range(3))
    assert not subscription.offer({"n": 3})
    assert subscription.cut_off
    assert not subscription.offer({"n": 4})
    # what it held is dropped: the console reloads the board instead
    assert await subscription.next_change() is None


@given(st.integers(1, 50), st.lists(st.booleans(), max_size=200))
def test_a_console_gets_every_change_in_order_or_is_cut_off(
    queue_size: int, steps: list[bool]
) -> None:
    """Offers (True) and sends (False) in any order: what is sent is a prefix of what was
    offered, in order, with nothing skipped, until the subscription is cut off."""
    asyncio.run(_play(queue_size, steps))


async def _play(queue_size: int, steps: list[bool]) -> None:
    subscription = BoardSubscription(uuid.uuid4(), queue_size)
    offered = sent = 0
    for offer in steps:
        if offer:
            if not subscription.offer({"n": offered}):
                assert subscription.cut_off and offered - sent == queue_size
                assert await subscription.next_change() is None
                return
            offered += 1
        elif sent < offered:
            assert await subscription.next_change() == {"n": sent}
            sent += 1
