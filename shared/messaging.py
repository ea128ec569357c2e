"""The two tables every service has in its own schema: the outbox and the applied-events record.

The outbox makes "publish only what was committed" true: an event row is written in the same
transaction as the state change and a relay sends it later. The applied-events table makes every
consumer idempotent: an event's id is recorded in the same transaction as its effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import Envelope, Event


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox", metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Index(None, "id", postgresql_where=sa.text("sent_at IS NULL")),
    )


def applied_events_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "applied_events", metadata,
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


@dataclass(frozen=True)
class Written:
    """An event's outbox row as a statement built once per outbox (``statement``) and the values
    it is executed with (``params``): a repository that writes the event together with its own
    change makes its one statement from ``statement``, once, and passes ``params`` each time."""

    statement: sa.Insert
    params: dict[str, Any]


class Outbox:
    """Writes events into a service's outbox inside the caller's transaction."""

    def __init__(self, table: sa.Table, *, producer: str) -> None:
        self.table = table
        self.producer = producer
        self.statement = table.insert().values(
            event_id=sa.bindparam("outbox_event_id"), topic=sa.bindparam("outbox_topic"), key=sa.bindparam("outbox_key"),
            payload=sa.bindparam("outbox_payload", type_=table.c.payload.type))

    async def add(self, conn: AsyncConnection, event: Event, *, tenant: str, correlation_id: str | None = None) -> Envelope:
        envelope, written = self.insert(event, tenant=tenant, correlation_id=correlation_id)
        await conn.execute(written.statement, written.params)
        return envelope

    def insert(self, event: Event, *, tenant: str, correlation_id: str | None = None) -> tuple[Envelope, Written]:
        """The event's envelope and its row to write, for a caller that writes it together with
        its own change in one statement (with the change as a CTE)."""
        envelope = Envelope.wrap(event, tenant=tenant, producer=self.producer, correlation_id=correlation_id)
        return envelope, Written(self.statement, {
            "outbox_event_id": envelope.event_id, "outbox_topic": event.TOPIC, "outbox_key": event.key(tenant),
            "outbox_payload": envelope.model_dump(mode="json")})


class Announce(Protocol):
    """A use case's way to publish an event: returns its envelope, or None where nothing is
    published (lockout's rebuild recomputes decisions that were announced already)."""

    def __call__(self, event: Event, *, tenant: str) -> Awaitable[Envelope | None]: ...


class Announcer:
    """The outbox bound to one transaction (and to the correlation id of what caused it): the
    port every use case writes its events through. ``statement`` gives the insert instead, for a
    repository that writes the event and its own change in one statement."""

    def __init__(self, conn: AsyncConnection, outbox: Outbox, *, correlation_id: str | None = None) -> None:
        self.conn, self.outbox, self.correlation_id = conn, outbox, correlation_id
        self.wrote = self.hurried = False  # any event, and any event somebody waits for (not UNHURRIED)

    async def __call__(self, event: Event, *, tenant: str) -> Envelope:
        self._note(event)
        return await self.outbox.add(self.conn, event, tenant=tenant, correlation_id=self.correlation_id)

    def statement(self, event: Event, *, tenant: str) -> Written:
        self._note(event)
        return self.outbox.insert(event, tenant=tenant, correlation_id=self.correlation_id)[1]

    def _note(self, event: Event) -> None:
        self.wrote = True
        self.hurried = self.hurried or not event.UNHURRIED


class AppliedEvents:
    """Records the ids of applied events; ``first_time`` is False for a redelivery."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table

    async def first_time(self, conn: AsyncConnection, envelope: Envelope) -> bool:
        stmt = insert(self.table).values(event_id=envelope.event_id).on_conflict_do_nothing().returning(self.table.c.event_id)
        return (await conn.execute(stmt)).first() is not None

    async def among(self, conn: AsyncConnection, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these events were applied."""
        ids, found = list(event_ids), set()
        for start in range(0, len(ids), 10_000):
            chunk = ids[start:start + 10_000]
            found |= set(await conn.scalars(sa.select(self.table.c.event_id).where(self.table.c.event_id.in_(chunk))))
        return found
