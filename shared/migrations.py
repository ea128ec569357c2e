"""Alembic per service: each service's migrations live in services/<name>/migrations and its
version table in its own schema, so services migrate and deploy on their own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
ADVISORY_LOCK = 7_102_400  # serializes migrations when several replicas start at once


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(service: str, database_url: str) -> None:
    command.upgrade(alembic_config(service, database_url), "head")


def run_env(schema: str) -> None:
    """The body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic_config() sets sqlalchemy.url; this env.py runs only through it")
    asyncio.run(_run_online(url, schema))


async def _run_online(url: str, schema: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        await conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
        await conn.execute(sa.text(f'create schema if not exists "{schema}"'))
        await conn.commit()
        await conn.run_sync(_migrate, schema)
        await conn.commit()
        await conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
    await engine.dispose()


def _migrate(connection: sa.Connection, schema: str) -> None:
    context.configure(connection=connection, version_table_schema=schema, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def create_messaging_tables(schema: str) -> None:
    """For a service's first migration: its outbox and applied-events tables as of version 1.
    A later change to these tables comes as a new migration in every service."""
    from alembic import op

    from shared.messaging import applied_events_table, outbox_table

    metadata = sa.MetaData(schema=schema)
    outbox_table(metadata)
    applied_events_table(metadata)
    metadata.create_all(op.get_bind())
