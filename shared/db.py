"""Async SQLAlchemy engine bound to the service's own PostgreSQL schema.

Each service owns one schema and sets it as the connection's `search_path`, so models
carry no schema name and a test can point a service at a throwaway schema.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits, _")
    return schema


#: defaults of `MUSTER_DB_STATEMENT_TIMEOUT_S` and `MUSTER_DB_CONNECT_TIMEOUT_S`
STATEMENT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


def make_engine(
    url: str,
    schema: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> AsyncEngine:
    """An engine whose every wait on PostgreSQL is bounded.

    asyncpg waits without limit by default. After a query is cancelled (a deadline, a
    request gone) the connection waits for PostgreSQL to acknowledge the cancel before
    its next statement, and after a restart that acknowledgement may never come: the
    next statement, often the pool's pre-ping, then waits for ever, silently. With
    `command_timeout` every statement and that wait end, and asyncpg closes a connection
    whose cancel was never acknowledged, so the pool replaces it."""
    check_schema_name(schema)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=statement_timeout_s,
        echo=echo,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": schema},
            "command_timeout": statement_timeout_s,
            "timeout": connect_timeout_s,
        },
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    check_schema_name(schema)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
