"""An index built before the current key layout (before the number → member map SMS
commands need) is rebuilt once by itself, with no operator running `rebuild-index`."""

from __future__ import annotations

import json

import redis.asyncio as redis

from services.alerts.index import INDEX_LAYOUT
from tests.alerts.members import MEMBERS_STATE, member, publish_members
from tests.alerts.test_index import delete_prefix, index_for
from tests.conftest import Topics


async def test_an_index_of_an_older_layout_is_rebuilt_with_the_number_map(
    redis_client: redis.Redis, topics: Topics
) -> None:
    kept = member(version=1)
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [kept])
    index = index_for(redis_client, topics.prefix, topics.bootstrap)
    try:
        # what an alerts service of the previous release left: a marker with no layout,
        # and no number map
        await redis_client.set(index.ready_key, json.dumps({"rebuilt_at": 0}))
        assert not await index.is_ready()
        await index.ensure_ready(timeout_s=60)
        assert json.loads(await redis_client.get(index.ready_key))["layout"] == INDEX_LAYOUT
        assert await index.is_ready()
        found = await index.member_by_phone(kept.phone)
        assert found is not None and found.member_id == kept.member_id
    finally:
        await delete_prefix(redis_client, topics.prefix)
