"""All of lockout's SQL. A repository works on one set of tables: the live schema, or the
scratch schema a rebuild fills from the log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.lockout.domain import EVERY_SOURCE, Failure, Lock
from services.lockout.tables import SCHEMA, applied_events, failures, locks, tenants
from shared.db import hold
from shared.messaging import AppliedEvents

ALL_SOURCES = ""  # how EVERY_SOURCE is stored: a primary key cannot hold NULL


@dataclass(frozen=True)
class Tables:
    schema: str
    tenants: sa.Table
    failures: sa.Table
    locks: sa.Table
    applied_events: sa.Table

    def state(self) -> tuple[sa.Table, ...]:
        """The tables that hold lockout's state, in the order every writer locks them."""
        return (self.tenants, self.failures, self.locks)

    def in_schema(self, schema: str) -> tuple[sa.MetaData, Tables]:
        """The same tables in another schema, for a rebuild to fill."""
        target = sa.MetaData(schema=schema)
        copies = [t.to_metadata(target, schema=schema) for t in (*self.state(), self.applied_events)]
        return target, Tables(schema, *copies)


LIVE = Tables(SCHEMA, tenants, failures, locks, applied_events)


def _stored(source: str | None) -> str:
    return ALL_SOURCES if source is EVERY_SOURCE else source


def _loaded(source: str) -> str | None:
    return EVERY_SOURCE if source == ALL_SOURCES else source


class LockoutRepository:
    def __init__(self, conn: AsyncConnection, tables: Tables = LIVE) -> None:
        self.conn, self.t = conn, tables

    async def serialize(self, *, tenant: str, email: str) -> None:
        """Take the account's transaction lock: its events and its operator act on it one at a time."""
        await hold(self.conn, f"lockout:{self.t.schema}:{tenant}:{email}")

    # --- copies of the tenant service's organizations -----------------------------------------

    async def settings(self, slug: str) -> dict[str, Any] | None:
        return await self.conn.scalar(sa.select(self.t.tenants.c.settings).where(self.t.tenants.c.slug == slug))

    async def save_settings(self, *, slug: str, settings: dict[str, Any]) -> None:
        stmt = insert(self.t.tenants).values(slug=slug, settings=settings)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[self.t.tenants.c.slug], set_={"settings": settings}))

    # --- failures -----------------------------------------------------------------------------

    async def add_failure(self, *, event_id: uuid.UUID, tenant: str, email: str, source: str, at: datetime) -> None:
        stmt = insert(self.t.failures).values(event_id=event_id, tenant=tenant, email=email, source=source, occurred_at=at)
        await self.conn.execute(stmt.on_conflict_do_nothing())

    async def failures(self, *, tenant: str, email: str, after: datetime) -> list[Failure]:
        f = self.t.failures
        rows = await self.conn.execute(sa.select(f.c.source, f.c.occurred_at)
                                       .where(f.c.tenant == tenant, f.c.email == email, f.c.occurred_at > after))
        return [Failure(row.source, row.occurred_at) for row in rows]

    async def forget_failures(self, *, tenant: str, email: str, up_to: datetime | None = None,
                              source: str | None = None) -> None:
        """Drop the account's failures, only those at or before ``up_to`` or from ``source`` if given."""
        f = self.t.failures
        query = f.delete().where(f.c.tenant == tenant, f.c.email == email)
        if up_to is not None:
            query = query.where(f.c.occurred_at <= up_to)
        if source is not None:
            query = query.where(f.c.source == source)
        await self.conn.execute(query)

    # --- locks --------------------------------------------------------------------------------

    async def locks(self, *, tenant: str, email: str) -> dict[str | None, Lock]:
        k = self.t.locks
        rows = await self.conn.execute(sa.select(k).where(k.c.tenant == tenant, k.c.email == email))
        return {_loaded(r.source): Lock(_loaded(r.source), r.locked_at, r.locked_until, r.failures, r.lifted_at) for r in rows}

    async def save_lock(self, *, tenant: str, email: str, lock: Lock) -> None:
        k = self.t.locks
        values = {"locked_at": lock.locked_at, "locked_until": lock.locked_until, "failures": lock.failures,
                  "lifted_at": None, "lift_reason": None, "expiry_announced": False}
        stmt = insert(k).values(tenant=tenant, email=email, source=_stored(lock.source), **values)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[k.c.tenant, k.c.email, k.c.source], set_=values))

    async def lift_locks(self, *, tenant: str, email: str, at: datetime, reason: str) -> int:
        """Lift the account's locks still active at ``at``; how many there were."""
        k = self.t.locks
        lifted = await self.conn.execute(k.update().where(
            k.c.tenant == tenant, k.c.email == email, k.c.lifted_at.is_(None), k.c.locked_until > at,
        ).values(lifted_at=at, lift_reason=reason).returning(k.c.source))
        return len(lifted.all())

    async def due_locks(self, *, now: datetime, limit: int) -> list[tuple[str, str, str | None]]:
        """(tenant, email, source) of locks ended by time whose end is not announced yet. Taken
        FOR UPDATE SKIP LOCKED, so two lockout processes never announce the same one."""
        k = self.t.locks
        rows = await self.conn.execute(
            sa.select(k.c.tenant, k.c.email, k.c.source)
            .where(k.c.lifted_at.is_(None), k.c.expiry_announced.is_(False), k.c.locked_until <= now)
            .order_by(k.c.locked_until).limit(limit).with_for_update(skip_locked=True))
        return [(r.tenant, r.email, _loaded(r.source)) for r in rows]

    async def mark_announced(self, *, tenant: str, email: str, source: str | None, ended_by: datetime | None = None) -> None:
        k = self.t.locks
        query = k.update().where(k.c.tenant == tenant, k.c.email == email, k.c.source == _stored(source))
        if ended_by is not None:
            query = query.where(k.c.locked_until <= ended_by)
        await self.conn.execute(query.values(expiry_announced=True))

    # --- for a rebuild ------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, set[tuple[Any, ...]]]:
        """The whole state as comparable rows. Whether an expiry was announced is left out:
        that depends on when the expiry watch last ran, not on the events."""
        t = self.t
        settings = await self.conn.execute(sa.select(t.tenants.c.slug, t.tenants.c.settings))
        failure_rows = await self.conn.execute(sa.select(t.failures))
        lock_rows = await self.conn.execute(sa.select(*(c for c in t.locks.c if c.name != "expiry_announced")))
        return {
            "tenants": {(slug, json.dumps(value, sort_keys=True)) for slug, value in settings},
            "failures": {tuple(row) for row in failure_rows},
            "locks": {tuple(row) for row in lock_rows},
        }

    async def freeze(self) -> None:
        """Hold off every writer until this transaction ends. applied_events comes first, as in
        a consumer's transaction, so the two never wait for each other."""
        names = ", ".join(f'"{t.schema}"."{t.name}"' for t in (self.t.applied_events, *self.t.state()))
        await self.conn.execute(sa.text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))

    async def applied_among(self, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return await AppliedEvents(self.t.applied_events).among(self.conn, event_ids)

    async def replace_with(self, source: Tables) -> None:
        """Make this state the copy of ``source``'s, keeping which expiries were already announced,
        and record ``source``'s applied events so that the live consumer skips them."""
        mine, theirs = self.t.locks, source.locks
        await self.conn.execute(theirs.update().where(
            theirs.c.tenant == mine.c.tenant, theirs.c.email == mine.c.email, theirs.c.source == mine.c.source,
            theirs.c.locked_at == mine.c.locked_at, mine.c.expiry_announced.is_(True),
        ).values(expiry_announced=True))
        for target, origin in zip(self.t.state(), source.state(), strict=True):
            await self.conn.execute(target.delete())
            await self.conn.execute(target.insert().from_select([c.name for c in origin.c], sa.select(origin)))
        applied = source.applied_events
        await self.conn.execute(insert(self.t.applied_events).from_select([c.name for c in applied.c], sa.select(applied))
                                .on_conflict_do_nothing())
