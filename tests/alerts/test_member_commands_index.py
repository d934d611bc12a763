"""The index's number → member map that finds an SMS command's sender (issue 11,
self-service): it follows a changed number, never unmaps a number another member has
taken since, is emptied by erasure, and fills in for entries indexed before it existed
(an upsert of the version already held)."""

from __future__ import annotations

import redis.asyncio as redis

from tests.alerts.members import member
from tests.alerts.test_index import delete_prefix, index_for
from tests.conftest import Topics


async def test_the_phone_map_follows_numbers_and_erasure(
    redis_client: redis.Redis, topics: Topics
) -> None:
    index = index_for(redis_client, topics.prefix)
    arta = member(version=1, phone="+355690000001")
    assert await index.upsert(arta)
    found = await index.member_by_phone("+355690000001")
    assert found is not None and found.member_id == arta.member_id

    # a new number: the old one no longer finds her
    arta2 = arta.model_copy(update={"version": 2, "phone": "+355690000002"})
    assert await index.upsert(arta2)
    assert await index.member_by_phone("+355690000001") is None
    moved = await index.member_by_phone("+355690000002")
    assert moved is not None and moved.version == 2

    # her old number given to someone else, then her late, older snapshot: ignored
    besnik = member(version=1, phone="+355690000001")
    assert await index.upsert(besnik)
    assert not await index.upsert(arta)
    taken = await index.member_by_phone("+355690000001")
    assert taken is not None and taken.member_id == besnik.member_id

    # she takes it back while he moves on: his change must not unmap her
    arta3 = arta.model_copy(update={"version": 3, "phone": "+355690000001"})
    assert await index.upsert(arta3)
    besnik2 = besnik.model_copy(update={"version": 2, "phone": "+355690000003"})
    assert await index.upsert(besnik2)
    back = await index.member_by_phone("+355690000001")
    assert back is not None and back.member_id == arta.member_id

    # erased: her number finds no one; his is untouched
    await index.delete(str(arta.member_id))
    assert await index.member_by_phone("+355690000001") is None
    assert await index.member_by_phone("+355690000003") is not None

    # an entry indexed before the map existed gets it from the same version again
    drita = member(version=5, phone="+355690000004")
    assert await index.upsert(drita)
    await redis_client.hdel(f"{topics.prefix}alerts:phones", "+355690000004")
    await redis_client.hdel(f"{topics.prefix}alerts:member:{drita.member_id}", "p")
    assert await index.member_by_phone("+355690000004") is None
    await index.upsert(drita)
    assert await index.member_by_phone("+355690000004") is not None
    assert not await index.upsert(drita)  # and once there, the same version changes nothing
    await delete_prefix(redis_client, topics.prefix)
