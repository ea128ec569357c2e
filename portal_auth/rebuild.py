"""Rebuild a service's copies of other services' state from the event log, and compare them row
by row with the live ones (or replace them): identity's organizations, domains and locks, the
mailer's organizations. (Lockout's own state has its rebuild in services.lockout.rebuild.)

The copies are replayed through the very handlers the live consumer uses, on a connection whose
``schema_translate_map`` points the service's schema at a scratch one, so not a line of SQL is
written twice. The log is read outside any consumer group; the comparison waits until the live
consumer has applied every event the log holds, so both sides saw the same events.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.lockout.rebuild import RebuildSummary, differences
from shared import events
from shared.db import make_engine, transaction
from shared.eventlog import LogReader
from shared.kafka import Handler
from shared.messaging import AppliedEvents
from shared.replay import Replayer

TENANT_EVENTS = (events.TenantCreated, events.TenantUpdated, events.DomainAdded, events.DomainRemoved)


@dataclass(frozen=True)
class Copies:
    """What a service keeps of others' state: its tables, the topics and subscribers that feed them."""

    schema: str
    metadata: sa.MetaData
    tables: tuple[str, ...]
    topics: tuple[str, ...]
    subscribers: Mapping[type[events.Event], Handler]
    # Tables the handlers also write that are the service's own state, not copies (identity's
    # failures, which an unlock clears): made in the scratch schema so the handlers run, never compared.
    own_tables: tuple[str, ...] = ()


def copies_of(service: str) -> Copies:
    if service == "identity":
        from services.identity import consumers as identity
        from services.identity.tables import metadata as identity_tables

        return Copies("identity", identity_tables, ("tenants", "domains", "locks"), identity.TOPICS, identity.subscribers(),
                      own_tables=("failures",))
    if service == "mailer":
        from services.mailer import consumers as mailer
        from services.mailer.tables import metadata as mailer_tables

        feeding: dict[type[events.Event], Handler] = {
            kind: handler for kind, handler in mailer.subscribers(None).items()  # type: ignore[arg-type]
            if kind in TENANT_EVENTS}  # the emails' handler (which needs the sender) is not a copy
        return Copies("mailer", mailer_tables, ("organizations",), (events.TENANT_TOPIC,), feeding)
    raise ValueError(f"no copies to rebuild for {service!r}")


@dataclass
class CopiesSummary(RebuildSummary):
    """Lockout's rebuild summary, naming whose copies were rebuilt."""

    service: str = ""


async def rebuild_copies(service: str, database_url: str, bootstrap_servers: str, *, replace: bool = False,
                         settle_seconds: float = 15.0) -> CopiesSummary:
    copies = copies_of(service)
    engine = make_engine(database_url, timeout=5.0, pool_size=2)
    scratch = f"{copies.schema}_rebuild_{uuid.uuid4().hex[:12]}"
    try:
        async with _in(engine, copies, scratch) as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{scratch}"'))
            await conn.run_sync(copies.metadata.create_all, tables=_tables(copies, "applied_events", *copies.own_tables))
        async with LogReader(bootstrap_servers, copies.topics, client_id=f"{service}-copies-rebuild") as log:
            applied = AppliedEvents(copies.metadata.tables[f"{copies.schema}.applied_events"])
            replayer = Replayer(subscribers=copies.subscribers, applied=applied, transaction=lambda: _in(engine, copies, scratch))
            await replayer.apply(await log.read_to_end())

            async def finish(live: _LiveCopies, pending: int) -> CopiesSummary:
                return await _finish(live.conn, copies, scratch, replayer, pending=pending, replace=replace)

            return await replayer.settle(log, lambda: _live(engine, copies), finish, service=service, replace=replace,
                                         seconds=settle_seconds)
    finally:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE'))
        await engine.dispose()


def _tables(copies: Copies, *extra: str) -> list[sa.Table]:
    return [copies.metadata.tables[f"{copies.schema}.{name}"] for name in (*copies.tables, *extra)]


@asynccontextmanager
async def _in(engine: AsyncEngine, copies: Copies, scratch: str) -> AsyncIterator[AsyncConnection]:
    """A transaction in which the service's schema means the scratch one."""
    async with transaction(engine) as conn:
        yield await conn.execution_options(schema_translate_map={copies.schema: scratch})


@dataclass(frozen=True)
class _LiveCopies:
    """The live copies, in one transaction (what Replayer.settle waits on)."""

    conn: AsyncConnection
    copies: Copies

    async def freeze(self) -> None:
        """Hold the live consumer off the copies while the tail is read and compared (and replaced)."""
        for table in _tables(self.copies):
            await self.conn.execute(sa.text(f'LOCK TABLE "{table.schema}"."{table.name}" IN SHARE ROW EXCLUSIVE MODE'))

    async def applied_among(self, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        applied = AppliedEvents(self.copies.metadata.tables[f"{self.copies.schema}.applied_events"])
        return await applied.among(self.conn, event_ids)


@asynccontextmanager
async def _live(engine: AsyncEngine, copies: Copies) -> AsyncIterator[_LiveCopies]:
    async with transaction(engine) as conn:
        yield _LiveCopies(conn, copies)


async def _snapshot(conn: AsyncConnection, tables: list[sa.Table]) -> dict[str, set[tuple[Any, ...]]]:
    return {t.name: {tuple(_hashable(v) for v in row) for row in (await conn.execute(sa.select(t))).all()} for t in tables}


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


async def _finish(live: AsyncConnection, copies: Copies, scratch: str, replayer: Replayer, *, pending: int,
                  replace: bool) -> CopiesSummary:
    tables = _tables(copies)
    current = await _snapshot(live, tables)
    # (execution_options changes the connection itself: the live snapshot is taken first)
    rebuilt = await _snapshot(await live.execution_options(schema_translate_map={copies.schema: scratch}), tables)
    summary = CopiesSummary(service=copies.schema, events_read=replayer.read, events_applied=replayer.applied_count,
                            rows={name: len(rows) for name, rows in rebuilt.items()},
                            differences=differences(current, rebuilt))
    if replace:
        for table in tables:
            await live.execute(sa.text(f'DELETE FROM "{copies.schema}"."{table.name}"'))
            await live.execute(sa.text(f'INSERT INTO "{copies.schema}"."{table.name}" SELECT * FROM "{scratch}"."{table.name}"'))
        summary.replaced = True
    else:
        summary.not_yet_applied_live = pending
    return summary
