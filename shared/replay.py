"""Replaying the event log into a set of tables: a rebuild feeds what it reads back from Kafka
through the very subscribers the live consumer uses, each event once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import EVENT_TYPES, Envelope, Event
from shared.kafka import Handler
from shared.messaging import AppliedEvents

BATCH = 200  # events per transaction while replaying


class Replayer:
    """Applies envelopes through ``subscribers``, recording them in ``applied``, ``BATCH`` to a
    transaction opened by ``transaction``. It counts what it read and applied, and keeps in
    ``consumed`` the ids of the events the live consumer applies too (``live_types``; every
    event it has a subscriber for when not given), to see whether the live side caught up."""

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
        if self._live_types is None or envelope.type in self._live_types:
            self.consumed.add(envelope.event_id)
        if await self.applied.first_time(conn, envelope):
            await subscriber(conn, envelope, event)
            self.applied_count += 1
