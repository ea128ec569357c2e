"""Replaying the event log into a set of tables: a rebuild feeds what it reads back from Kafka
through the very subscribers the live consumer uses, each event once, then waits for the live
consumer to catch up before it compares (or replaces) the live state."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.eventlog import LogReader
from shared.events import EVENT_TYPES, Envelope, Event
from shared.kafka import Handler, recorded, wants
from shared.messaging import AppliedEvents

BATCH = 200  # events per transaction while replaying
SETTLE_POLL = 0.2  # seconds between looks at whether the live consumer caught up


class RebuildNotSettled(Exception):
    """The live consumer had not applied every event of the log in time: nothing was replaced."""

    def __init__(self, service: str, pending: int) -> None:
        super().__init__(f"the live {service} consumer has not applied {pending} event(s) of the log yet; nothing was "
                         f"replaced (is {service} running? try again once it has caught up)")
        self.pending = pending


class LiveState(Protocol):
    """The live side of a rebuild, in one transaction."""

    async def freeze(self) -> None:
        """Hold off the live consumer's writes until the transaction ends."""

    async def applied_among(self, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these events the live consumer applied."""


Live = TypeVar("Live", bound=LiveState)
Outcome = TypeVar("Outcome")


class Replayer:
    """Applies envelopes through ``subscribers``, recording them in ``applied``, ``BATCH`` to a
    transaction opened by ``transaction``. It counts what it read and applied, and keeps in
    ``consumed`` the ids of the events the live consumer applies and records too (``live_types``;
    every event it has a subscriber for when not given; never a ``replay_safe`` one, which the
    live consumer does not record), to see whether the live side caught up."""

    def __init__(self, *, subscribers: Mapping[type[Event], Handler], applied: AppliedEvents,
                 transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
                 live_types: frozenset[str] | None = None) -> None:
        self.subscribers, self.applied, self._transaction, self._live_types = subscribers, applied, transaction, live_types
        self.read = self.applied_count = 0
        self.consumed: set[uuid.UUID] = set()

    async def apply(self, envelopes: Sequence[Envelope]) -> None:
        for start in range(0, len(envelopes), BATCH):
            async with self._transaction() as conn:
                for envelope in envelopes[start:start + BATCH]:
                    await self._apply(conn, envelope)

    async def _apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        self.read += 1
        event_type = EVENT_TYPES.get(envelope.type)
        subscriber = self.subscribers.get(event_type) if event_type is not None else None
        if subscriber is None:
            return
        try:
            event = envelope.event()
        except (ValueError, ValidationError):
            return  # the live consumer dead-lettered it as well
        if not wants(subscriber, event):
            return  # the live consumer passed it over too
        if (self._live_types is None or envelope.type in self._live_types) and recorded(subscriber):
            self.consumed.add(envelope.event_id)  # the live consumer records it as applied
        if await self.applied.first_time(conn, envelope):
            await subscriber(conn, envelope, event)
            self.applied_count += 1

    async def settle(self, log: LogReader, live: Callable[[], AbstractAsyncContextManager[Live]],
                     finish: Callable[[Live, int], Awaitable[Outcome]], *, service: str, replace: bool,
                     seconds: float) -> Outcome:
        """``finish`` (compare, or replace) with the live state frozen, once the live consumer has
        applied every event the log holds, or after ``seconds`` with how many it had not.

        A replace must not happen before that: the rebuild applied the pending events without
        their effects beyond its tables (a rebuild announces nothing), and a replace records them
        as applied, so the live consumer would skip them. When the consumer has not caught up in
        time, a replace raises RebuildNotSettled and changes nothing; a comparison is told how
        many events the live side had not applied. Each look freezes the live state first, then
        reads what reached the log meanwhile, so both sides have seen the same events."""
        deadline = time.monotonic() + seconds
        while True:
            async with live() as state:
                await state.freeze()
                await self.apply(await log.read_to_end())
                pending = len(self.consumed - await state.applied_among(self.consumed))
                if not pending or time.monotonic() > deadline:
                    if replace and pending:
                        raise RebuildNotSettled(service, pending)
                    return await finish(state, pending)
            await asyncio.sleep(SETTLE_POLL)
