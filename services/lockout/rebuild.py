"""Rebuild lockout's state from the event log; compare it with the live state, or replace it.

The log holds everything lockout decides from: ``identity.events`` (the logins), ``tenant.events``
(each organization's settings) and, in ``lockout.events``, the one input no other log holds, the
operators' unlocks (plus which expiries were already announced). A rebuild reads these topics
from the beginning with a plain consumer (no group, so it moves nobody's offsets), replays them
in event-time order through the very subscribers the live service uses, announcing nothing,
into a scratch schema. Then, holding off the live writers for a moment, it reads what arrived
meanwhile, waits until the live consumer has applied everything the log holds, and compares the
two states row by row, or replaces the live one (the replayed events are recorded as applied,
so the live consumer does not count them twice).
"""

from __future__ import annotations

import asyncio
import heapq
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.lockout.consumers import REPLAY_TOPICS, replay_subscribers, subscribers
from services.lockout.repository import LIVE, LockoutRepository, Tables
from shared.db import make_engine, transaction
from shared.events import EVENT_TYPES, Envelope
from shared.messaging import AppliedEvents

BATCH = 200  # events per transaction while replaying
LIVE_TYPES = frozenset(cls.TYPE for cls in subscribers(None))  # what the live consumer applies


@dataclass
class RebuildSummary:
    events_read: int = 0
    events_applied: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # per table of the rebuilt state
    not_yet_applied_live: int = 0  # log events the live consumer had not applied when compared
    differences: list[str] = field(default_factory=list)
    replaced: bool = False

    @property
    def equal(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "equal": self.equal}


async def rebuild(database_url: str, bootstrap_servers: str, *, replace: bool = False,
                  settle_seconds: float = 15.0) -> RebuildSummary:
    """Rebuild the state from the log and compare it with the live one; with ``replace``, make it
    the live one. Comparing waits up to ``settle_seconds`` for the live consumer to catch up."""
    engine = make_engine(database_url, timeout=5.0, pool_size=2)
    schema = f"lockout_rebuild_{uuid.uuid4().hex[:12]}"
    metadata, scratch = LIVE.in_schema(schema)
    try:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all)
        async with LogReader(bootstrap_servers, REPLAY_TOPICS) as log:
            replayer = Replayer(engine, scratch)
            await replayer.apply(await log.read_to_end())
            return await _settle(engine, log, replayer, replace=replace, deadline=time.monotonic() + settle_seconds)
    finally:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def _settle(engine: AsyncEngine, log: LogReader, replayer: Replayer, *, replace: bool, deadline: float) -> RebuildSummary:
    while True:
        async with transaction(engine) as conn:
            live = LockoutRepository(conn)
            await live.freeze()
            await replayer.apply(await log.read_to_end())
            pending = replayer.consumed - await live.applied_among(replayer.consumed)
            if replace or not pending or time.monotonic() > deadline:
                return await _finish(live, replayer, pending=len(pending), replace=replace)
        await asyncio.sleep(0.2)


async def _finish(live: LockoutRepository, replayer: Replayer, *, pending: int, replace: bool) -> RebuildSummary:
    rebuilt = await LockoutRepository(live.conn, replayer.tables).snapshot()
    summary = RebuildSummary(events_read=replayer.read, events_applied=replayer.applied_count,
                             rows={name: len(rows) for name, rows in rebuilt.items()},
                             differences=differences(await live.snapshot(), rebuilt))
    if replace:
        await live.replace_with(replayer.tables)
        summary.replaced = True
    else:
        summary.not_yet_applied_live = pending
    return summary


def differences(live: dict[str, set[tuple[Any, ...]]], rebuilt: dict[str, set[tuple[Any, ...]]], *, limit: int = 20) -> list[str]:
    found = [f"{table}: {where} only: ({', '.join(map(str, row))})"
             for table in live
             for where, rows in (("live", live[table] - rebuilt[table]), ("rebuilt", rebuilt[table] - live[table]))
             for row in sorted(rows, key=repr)]
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


class Replayer:
    """Applies events to a set of tables through the replay subscribers, each event once."""

    def __init__(self, engine: AsyncEngine, tables: Tables) -> None:
        self.engine, self.tables = engine, tables
        self.handlers = replay_subscribers(tables)
        self.applied = AppliedEvents(tables.applied_events)
        self.read = self.applied_count = 0
        self.consumed: set[uuid.UUID] = set()  # ids of the events the live consumer applies too

    async def apply(self, envelopes: Sequence[Envelope]) -> None:
        for start in range(0, len(envelopes), BATCH):
            async with transaction(self.engine) as conn:
                for envelope in envelopes[start:start + BATCH]:
                    await self._apply(conn, envelope)

    async def _apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        self.read += 1
        handler = self.handlers.get(EVENT_TYPES.get(envelope.type))  # type: ignore[arg-type]
        if handler is None:
            return
        try:
            event = envelope.event()
        except (ValueError, ValidationError):
            return  # the live consumer dead-lettered it as well
        if envelope.type in LIVE_TYPES:
            self.consumed.add(envelope.event_id)
        if await self.applied.first_time(conn, envelope):
            await handler(conn, envelope, event)
            self.applied_count += 1


class LogReader:
    """Reads whole topics from the beginning, outside any consumer group. Each ``read_to_end``
    returns what arrived since the last call, merged across partitions by event time (each
    partition keeps its own order, so one account's events stay in the order they happened)."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        self.bootstrap_servers, self.topics = bootstrap_servers, tuple(topics)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                          client_id="lockout-rebuild", request_timeout_ms=10_000)
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> LogReader:
        self._partitions = await _partitions(self.bootstrap_servers, self.topics)
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        if self._partitions:
            await self._consumer.seek_to_beginning(*self._partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read_to_end(self, *, timeout: float = 120.0) -> list[Envelope]:
        ends = await self._consumer.end_offsets(self._partitions) if self._partitions else {}
        streams: dict[TopicPartition, list[Envelope]] = {tp: [] for tp in self._partitions}
        waiting = await self._behind(ends, self._partitions)
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(map(str, waiting))} to their end within {timeout} s")
            for tp, records in (await self._consumer.getmany(*waiting, timeout_ms=500)).items():
                streams[tp].extend(_envelopes(r.value for r in records))
            waiting = await self._behind(ends, waiting)
        return list(heapq.merge(*streams.values(), key=lambda envelope: envelope.occurred_at))

    async def _behind(self, ends: dict[TopicPartition, int], partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        return {tp for tp in partitions if await self._consumer.position(tp) < ends[tp]}


async def _partitions(bootstrap_servers: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist (a consumer outside a group learns none by itself)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = (TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0 for p in t["partitions"])
    return sorted(found, key=lambda tp: (tp.topic, tp.partition))


def _envelopes(values: Iterator[bytes | None]) -> Iterator[Envelope]:
    for value in values:
        try:
            yield Envelope.from_bytes(value or b"")
        except (ValueError, ValidationError):
            continue  # unreadable: the live consumer dead-lettered it
