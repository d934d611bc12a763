"""A console's place in the board feed (services/dispatch/live.py): one pending change a
row, the latest; bounded, and cut off rather than silently dropping changes when it
falls behind."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.live import BoardSubscription


def row(member: int, version: int) -> dict[str, object]:
    return {"member_id": f"m{member}", "version": version}


async def test_a_row_changed_again_before_it_was_sent_is_sent_once_in_its_latest_state() -> None:
    subscription = BoardSubscription(uuid.uuid4(), queue_size=2)
    assert subscription.offer(row(1, 1))
    assert subscription.offer(row(2, 1))
    # more changes than the bound, but only two rows: nobody is cut off
    assert subscription.offer(row(1, 2))
    assert subscription.offer({"roll_call": {"n": 1}}) is False  # a third thing pending
    assert subscription.cut_off

    subscription = BoardSubscription(uuid.uuid4(), queue_size=3)
    for change in (row(1, 1), row(2, 1), {"roll_call": {"n": 1}}, row(1, 2), row(1, 3)):
        assert subscription.offer(change)
    # in the order rows first changed, each in its latest state
    assert await subscription.next_changes() == [row(1, 3), row(2, 1), {"roll_call": {"n": 1}}]


async def test_a_subscription_cut_off_when_full_says_so_and_holds_nothing() -> None:
    subscription = BoardSubscription(uuid.uuid4(), queue_size=3)
    assert all(subscription.offer(row(n, 0)) for n in range(3))
    assert not subscription.offer(row(3, 0))
    assert subscription.cut_off
    assert not subscription.offer(row(0, 1))
    # what it held is dropped: the console reloads the board instead
    assert await subscription.next_changes() is None


@given(
    st.integers(1, 8),
    st.lists(st.one_of(st.integers(0, 10), st.none()), max_size=200),
)
def test_a_console_ends_with_every_rows_latest_state_or_is_cut_off(
    queue_size: int, steps: list[int | None]
) -> None:
    """Offers (a row's next version) and sends (None) in any order: after each send the
    console holds every row's latest version, each row comes at most once a send, and a
    subscription is cut off exactly when more rows than its bound were pending."""
    asyncio.run(_play(queue_size, steps))


async def _play(queue_size: int, steps: list[int | None]) -> None:
    subscription = BoardSubscription(uuid.uuid4(), queue_size)
    latest: dict[str, int] = {}
    console: dict[str, int] = {}
    for step in steps:
        if step is not None:
            member = f"m{step}"
            version = latest.get(member, 0) + 1
            pending = {m for m, v in latest.items() if console.get(m) != v}
            accepted = subscription.offer({"member_id": member, "version": version})
            latest[member] = version
            if not accepted:
                assert member not in pending and len(pending) == queue_size
                assert await subscription.next_changes() is None
                return
        elif any(console.get(m) != v for m, v in latest.items()):
            changes = await subscription.next_changes()
            assert changes is not None
            members = [str(change["member_id"]) for change in changes]
            assert len(members) == len(set(members))
            console.update({str(c["member_id"]): int(c["version"]) for c in changes})
            assert console == latest
