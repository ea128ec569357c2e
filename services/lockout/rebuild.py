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

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.lockout.consumers import REPLAY_TOPICS, replay_subscribers, subscribers
from services.lockout.repository import LIVE, LockoutRepository, Tables
from shared.db import make_engine, transaction
from shared.eventlog import LogReader
from shared.messaging import AppliedEvents
from shared.replay import Replayer

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
    the live one. Both wait up to ``settle_seconds`` for the live consumer to catch up
    (Replayer.settle): comparing then reports what it had not applied, replacing raises
    RebuildNotSettled.

    Waiting is what keeps a replace right: the rebuild applied the pending events silently, so
    until the live consumer has applied them itself, the locks they decide were never announced
    (identity would never refuse). (Announcing from the rebuild instead would mean telling, event
    by event while replaying, which ones are pending.)"""
    engine = make_engine(database_url, timeout=5.0, pool_size=2)
    schema = f"lockout_rebuild_{uuid.uuid4().hex[:12]}"
    metadata, scratch = LIVE.in_schema(schema)
    try:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all)
        async with LogReader(bootstrap_servers, REPLAY_TOPICS, client_id="lockout-rebuild") as log:
            replayer = Replayer(subscribers=replay_subscribers(scratch), applied=AppliedEvents(scratch.applied_events),
                                transaction=lambda: transaction(engine), live_types=LIVE_TYPES)
            await replayer.apply(await log.read_to_end())

            async def finish(live: LockoutRepository, pending: int) -> RebuildSummary:
                return await _finish(live, replayer, scratch, pending=pending, replace=replace)

            return await replayer.settle(log, lambda: _live(engine), finish, service="lockout", replace=replace,
                                         seconds=settle_seconds)
    finally:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


@asynccontextmanager
async def _live(engine: AsyncEngine) -> AsyncIterator[LockoutRepository]:
    async with transaction(engine) as conn:
        yield LockoutRepository(conn)


async def _finish(live: LockoutRepository, replayer: Replayer, scratch: Tables, *, pending: int,
                  replace: bool) -> RebuildSummary:
    rebuilt = await LockoutRepository(live.conn, scratch).snapshot()
    summary = RebuildSummary(events_read=replayer.read, events_applied=replayer.applied_count,
                             rows={name: len(rows) for name, rows in rebuilt.items()},
                             differences=differences(await live.snapshot(), rebuilt))
    if replace:
        await live.replace_with(scratch)
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
