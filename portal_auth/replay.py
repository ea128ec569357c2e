"""`portal-auth replay`: the event log as JSON lines, for auditors; filters by time, organization, email."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import TOPICS, Envelope

PROGRESS_EVERY = 5000


@dataclass(frozen=True)
class Filter:
    tenant: str | None = None
    email: str | None = None
    types: frozenset[str] = frozenset()

    def keeps(self, envelope: Envelope) -> bool:
        return ((self.tenant is None or envelope.tenant == self.tenant)
                and (self.email is None or envelope.data.get("email") == self.email)
                and (not self.types or envelope.type in self.types))


async def read_log(bootstrap: str, *, topics: Iterable[str] = TOPICS, since: datetime | None = None,
                   progress: bool = True) -> AsyncIterator[tuple[str, Envelope | None, bytes]]:
    """Every message on ``topics`` from the start (or ``since``) up to the end as it is now,
    partition by partition in offset order: (topic, envelope or None if unreadable, raw bytes)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await _seek_start(consumer, partitions, since)
        pending, seen = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}, 0
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    seen += 1
                    if progress and seen % PROGRESS_EVERY == 0:
                        print(f"replay: {seen} events read", file=sys.stderr, flush=True)
                    yield tp.topic, _parse(record.value), record.value
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def _seek_start(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: datetime | None) -> None:
    if since is None:
        await consumer.seek_to_beginning(*partitions)
        return
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])


def _parse(raw: bytes) -> Envelope | None:
    try:
        return Envelope.from_bytes(raw)
    except ValueError:
        return None


async def replay(bootstrap: str, *, since: datetime | None, only: Filter, out=sys.stdout) -> int:  # type: ignore[no-untyped-def]
    """Write the matching events as JSON lines, ordered by when they occurred; returns how many."""
    matching = [e async for _, e, _ in read_log(bootstrap, since=since) if e is not None and only.keeps(e)]
    matching.sort(key=lambda e: (e.occurred_at, str(e.event_id)))
    for envelope in matching:
        out.write(json.dumps(envelope.model_dump(mode="json"), sort_keys=True) + "\n")
    return len(matching)
