"""Reading the event log whole: for auditors (`portal-auth replay`) and for rebuilding a
service's state from it (`portal-auth replay --rebuild`)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from shared.events import Envelope

PROGRESS_EVERY = 5000


class LogReader:
    """Reads whole topics from the beginning, outside any consumer group. Each ``read_to_end``
    returns what arrived since the last call, merged across partitions by event time (each
    partition keeps its own order, so one account's events stay in the order they happened)."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str], *, since: datetime | None = None,
                 client_id: str = "portal-auth-log-reader", progress: Callable[[int], None] | None = None,
                 client_options: Mapping[str, str] | None = None) -> None:
        self.bootstrap_servers, self.topics, self._since, self._progress = bootstrap_servers, tuple(topics), since, progress
        self._options = dict(client_options or {})
        self._read = 0
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                          client_id=client_id, request_timeout_ms=10_000, **self._options)
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> LogReader:
        self._partitions = await partitions_of(self.bootstrap_servers, self.topics, client_options=self._options)
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        if self._partitions:
            await self._seek_start()
        return self

    async def _seek_start(self) -> None:
        if self._since is None:
            await self._consumer.seek_to_beginning(*self._partitions)
            return
        found = await self._consumer.offsets_for_times({tp: int(self._since.timestamp() * 1000) for tp in self._partitions})
        ends = await self._consumer.end_offsets(self._partitions)
        for tp in self._partitions:
            self._consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])

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
                self._count(len(records))
            waiting = await self._behind(ends, waiting)
        return list(heapq.merge(*streams.values(), key=lambda envelope: envelope.occurred_at))

    def _count(self, records: int) -> None:
        before, self._read = self._read, self._read + records
        if self._progress is not None and before // PROGRESS_EVERY != self._read // PROGRESS_EVERY:
            self._progress(self._read)

    async def _behind(self, ends: dict[TopicPartition, int], partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        return {tp for tp in partitions if await self._consumer.position(tp) < ends[tp]}


async def partitions_of(bootstrap_servers: str, topics: Sequence[str], *,
                        client_options: Mapping[str, str] | None = None) -> list[TopicPartition]:
    """Every partition of the topics that exist (a consumer outside a group learns none by itself);
    ``client_options`` are a principal's SASL settings (``ConnectionSettings.kafka_client_options``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, **dict(client_options or {}))
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
