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
import time
import uuid
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


class RebuildNotSettled(Exception):
    """The live consumer had not applied every event of the log in time: nothing was replaced."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"the live lockout consumer has not applied {pending} event(s) of the log yet; nothing was "
                         "replaced (is lockout running? try again once it has caught up)")
        self.pending = pending


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
    the live one. Both wait up to ``settle_seconds`` for the live consumer to catch up: comparing
    then reports what it had not applied, replacing raises RebuildNotSettled."""
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
            return await _settle(engine, log, replayer, scratch, replace=replace, deadline=time.monotonic() + settle_seconds)
    finally:
        async with transaction(engine) as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def _settle(engine: AsyncEngine, log: LogReader, replayer: Replayer, scratch: Tables, *, replace: bool,
                 deadline: float) -> RebuildSummary:
    """Compare or replace once the live consumer has applied every event the log holds.

    A replace must not happen before that: the rebuild applied the pending events silently, and
    ``replace_with`` records them as applied, so the live consumer would skip them and the locks
    they decide would never be announced (identity would never refuse). Waiting is the simplest
    fix: once nothing is pending, the live consumer has applied every replayed event itself and
    announced what it decided. (Announcing from the rebuild instead would mean telling, event by
    event while replaying, which ones are pending.) When the consumer has not caught up by
    ``deadline``, a replace fails and changes nothing; a comparison says how many it had not applied."""
    while True:
        async with transaction(engine) as conn:
            live = LockoutRepository(conn)
            await live.freeze()
            await replayer.apply(await log.read_to_end())
            pending = replayer.consumed - await live.applied_among(replayer.consumed)
            if not pending or time.monotonic() > deadline:
                if replace and pending:
                    raise RebuildNotSettled(len(pending))
                return await _finish(live, replayer, scratch, pending=len(pending), replace=replace)
        await asyncio.sleep(0.2)


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
