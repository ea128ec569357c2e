"""The schema is written twice, as tables.py (what the repositories query, and what lockout's
rebuild copies) and as the Alembic migrations (what a database gets). For every service, an
empty database brought to head and one made by ``metadata.create_all`` must read back from
PostgreSQL the same: tables, columns with their types, nullability and defaults, indexes and
constraints."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import SERVICES, Infrastructure
from shared.db import make_engine
from shared.migrations import upgrade
from tests.conftest import new_database


def _metadata(service: str) -> sa.MetaData:
    metadata: sa.MetaData = importlib.import_module(f"services.{service}.tables").metadata
    return metadata


@pytest.fixture(scope="module")
async def migrated(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    url = await new_database(infra, "schema_migrated")
    for service in SERVICES:
        await asyncio.to_thread(upgrade, service, url)
    engine = make_engine(url, timeout=10.0)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def created(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await new_database(infra, "schema_created"), timeout=10.0)
    async with engine.begin() as conn:
        for service in SERVICES:
            await conn.execute(sa.text(f'create schema "{service}"'))
            await conn.run_sync(_metadata(service).create_all)
    yield engine
    await engine.dispose()


def _described(conn: sa.Connection, schema: str) -> dict[str, Any]:
    """Everything PostgreSQL says of the schema's tables, in a form two databases compare by."""
    seen = sa.inspect(conn)
    tables: dict[str, Any] = {}
    for table in sorted(set(seen.get_table_names(schema=schema)) - {"alembic_version"}):
        columns = [(c["name"], str(c["type"]), c["nullable"], c.get("default"), bool(c.get("identity")))
                   for c in seen.get_columns(table, schema=schema)]
        indexes = sorted((i["name"] or "", tuple(map(str, i["column_names"])), bool(i["unique"]),
                          str(i.get("dialect_options", {}).get("postgresql_where")))
                         for i in seen.get_indexes(table, schema=schema))
        pk = seen.get_pk_constraint(table, schema=schema)
        foreign = sorted((f["name"] or "", tuple(f["constrained_columns"]), f"{f['referred_schema']}.{f['referred_table']}",
                          tuple(f["referred_columns"]), tuple(sorted(f["options"].items())))
                         for f in seen.get_foreign_keys(table, schema=schema))
        unique = sorted((u["name"] or "", tuple(u["column_names"])) for u in seen.get_unique_constraints(table, schema=schema))
        checks = sorted((c["name"] or "", c["sqltext"]) for c in seen.get_check_constraints(table, schema=schema))
        tables[table] = {"columns": columns, "primary key": (pk["name"], tuple(pk["constrained_columns"])),
                         "indexes": indexes, "foreign keys": foreign, "unique": unique, "checks": checks}
    return tables


async def _schema(engine: AsyncEngine, schema: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_described, schema)


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_give_the_schema_tables_py_describes(service: str, migrated: AsyncEngine, created: AsyncEngine) -> None:
    from_migrations, from_tables = await _schema(migrated, service), await _schema(created, service)
    assert from_tables, f"tables.py of {service} describes no table"
    assert sorted(from_migrations) == sorted(from_tables), "the migrations and tables.py have different tables"
    for table, description in from_tables.items():
        for part, value in description.items():
            assert from_migrations[table][part] == value, f"{service}.{table}: {part} differ (migrations, then tables.py)"
