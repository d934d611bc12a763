"""Every wait on PostgreSQL is bounded (`shared.db.make_engine`): a statement that gets no
answer ends with a timeout, and the pool goes on with a working connection. Unbounded,
such a wait stopped a service's outbox relay and schedulers for minutes after a
PostgreSQL restart, with no error logged (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.observability import task_stacks
from tests.support.infra import Infra

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_statement_without_an_answer_ends_and_the_pool_recovers(infra: Infra) -> None:
    schema = f"bounds_{uuid.uuid4().hex[:8]}"
    engine = make_engine(infra.database_url, schema, pool_size=1, statement_timeout_s=1.0)
    try:
        async with engine.connect() as conn:
            # pg_sleep stands for a server that does not answer: the statement must end
            # by the engine's own bound, not by the caller's deadline
            caller = asyncio.timeout(15)
            with pytest.raises(TimeoutError):
                async with caller:
                    await conn.execute(text("SELECT pg_sleep(30)"))
            assert not caller.expired(), "the statement waited until the caller gave up"
        # the same pool (one connection) serves the next statement
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 41 + 1"))).scalar() == 42
    finally:
        await engine.dispose()


async def test_task_stacks_name_where_each_task_waits() -> None:
    started = asyncio.Event()

    async def waiting_for_the_database() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(waiting_for_the_database(), name="relay-under-test")
    await started.wait()
    try:
        stacks = task_stacks()
    finally:
        task.cancel()
    block = stacks.split("task relay-under-test:")[1].split("\ntask ")[0]
    assert "waiting_for_the_database" in block
    assert "sleep" in block
