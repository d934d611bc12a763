"""Alembic, run per service in its own schema.

Each service keeps `services/<name>/migrations/` (env.py calls `run_env`); its first
revision calls `create_shared_tables` for the outbox and processed-events tables.
`upgrade` runs a service's migrations programmatically (tests, `python -m services.X migrate`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import check_schema_name
from shared.outbox import shared_metadata


def alembic_config(script_location: Path, database_url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["schema"] = check_schema_name(schema)
    return config


def upgrade(script_location: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Create the schema if needed and migrate it to `revision` (blocking)."""
    command.upgrade(alembic_config(script_location, database_url, schema), revision)


async def upgrade_async(script_location: Path, database_url: str, schema: str) -> None:
    await asyncio.to_thread(upgrade, script_location, database_url, schema)


def run_env(context: Any, target_metadata: MetaData | None) -> None:
    """The body of every service's migrations/env.py (online mode, asyncpg)."""
    config = context.config
    schema = config.attributes.get("schema") or config.get_main_option("schema")
    url = config.get_main_option("sqlalchemy.url")

    def do_run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(text(f'SET search_path TO "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())


def create_shared_tables(op: Any) -> None:
    """Create the outbox and processed_events tables (call from a first revision)."""
    bind = op.get_bind()
    shared_metadata.create_all(bind)


def drop_shared_tables(op: Any) -> None:
    shared_metadata.drop_all(op.get_bind())
