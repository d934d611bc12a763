"""Erasure (GDPR art. 17): every personal field goes; the id and the time of erasure stay.

In one transaction: the member's qualifications are deleted, every personal column of its
row is nulled, the snapshots of it still held in the outbox (published ones are kept a
day for diagnosis) are deleted, and a tombstone is added so that compaction removes the
member from `muster.members.state` and every consumer drops it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.members import find_member
from services.members.models import member_qualifications, members
from shared.events.topics import MEMBERS_STATE
from shared.outbox import add_tombstone, outbox_table

#: every column of `members` that erasure keeps; all others are set to NULL
KEPT_COLUMNS = frozenset({"id", "version", "created_at", "updated_at", "erased_at"})


async def erase_member(
    session: AsyncSession, member_id: UUID, visible: frozenset[str] | None
) -> bool:
    """Erase a visible member; False if there is none (or it is already erased)."""
    if await find_member(session, member_id, visible, lock=True) is None:
        return False
    now = datetime.now(UTC)
    await session.execute(
        delete(member_qualifications).where(member_qualifications.c.member_id == member_id)
    )
    scrubbed = {c.name: None for c in members.columns if c.name not in KEPT_COLUMNS}
    await session.execute(
        update(members)
        .where(members.c.id == member_id)
        .values(**scrubbed, erased_at=now, updated_at=now)
    )
    key = str(member_id).encode()
    await session.execute(
        delete(outbox_table)
        .where(outbox_table.c.key == key)
        .where(outbox_table.c.topic == MEMBERS_STATE)
        .where(outbox_table.c.value.is_not(None))
    )
    await add_tombstone(session, MEMBERS_STATE, str(member_id), event_id=str(uuid.uuid4()))
    return True
