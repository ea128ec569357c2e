"""What every service's composition root builds: engine, broker, outbox relay, consumers.

Nothing connects at import time; ``Runtime.start`` is called from the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine, ping
from shared.events import Event
from shared.http import health_router
from shared.loop import PollLoop
from shared.kafka import EventConsumer, Handler, OutboxRelay, keep_connected, make_broker, make_producer, subscribe
from shared.messaging import AppliedEvents, Outbox, applied_events_table, outbox_table
from shared.settings import ServiceSettings


@dataclass
class Runtime:
    name: str
    settings: ServiceSettings
    engine: AsyncEngine
    broker: KafkaBroker
    outbox: Outbox
    applied: AppliedEvents | None  # None for a service that consumes no events
    relay: OutboxRelay
    connected: asyncio.Event
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _beside: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    _loops: list[tuple[PollLoop, float]] = field(default_factory=list)

    @classmethod
    def build(cls, *, name: str, settings: ServiceSettings, metadata: sa.MetaData) -> Runtime:
        engine = make_engine(settings.database_url, timeout=settings.db_timeout_seconds)
        broker = make_broker(settings.kafka_bootstrap_servers, client_id=name, client_options=settings.kafka_client_options())
        connected = asyncio.Event()
        out = metadata.tables[f"{metadata.schema}.outbox"]
        relay = OutboxRelay(engine=engine, table=out, connected=connected,
                            producer=lambda: make_producer(settings.kafka_bootstrap_servers, client_id=name,
                                                           client_options=settings.kafka_client_options()))
        applied_table = metadata.tables.get(f"{metadata.schema}.applied_events")
        applied = AppliedEvents(applied_table) if applied_table is not None else None
        return cls(name, settings, engine, broker, Outbox(out, producer=name), applied, relay, connected)

    def consume(self, *, topics: tuple[str, ...], subscribers: Mapping[type[Event], Handler],
                after_commit: Callable[[], None] | None = None) -> None:
        """Subscribe this service's consumer group to ``topics``, applying each event once. After
        each commit the outbox relay wakes (and ``after_commit``, for work the event queued)."""
        if self.applied is None:
            raise RuntimeError(f"{self.name}'s tables have no applied-events record: service_metadata(consumes=True)")
        def woken() -> None:
            self.relay.wake()
            if after_commit is not None:
                after_commit()
        consumer = EventConsumer(engine=self.engine, applied=self.applied, handlers=subscribers, after_commit=woken)
        subscribe(self.broker, topics=topics, group_id=self.name, consume=consumer)

    def beside(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` as a task for as long as the runtime runs (started and cancelled with it)."""
        self._beside.append(work)

    def loop(self, loop: PollLoop, *, drain_seconds: float = 0.0) -> None:
        """Run ``loop`` for as long as the runtime runs. On stop it starts no new round and has
        ``drain_seconds`` to end the one in flight, while the rest of the runtime still runs."""
        self._loops.append((loop, drain_seconds))

    def health(self) -> APIRouter:
        async def kafka_up() -> bool:
            return self.connected.is_set() and await self.broker.ping(timeout=1.0)
        return health_router(database=lambda: ping(self.engine), kafka=kafka_up)

    async def start(self) -> None:
        bootstrap = self.settings.kafka_bootstrap_servers
        self._tasks = [
            asyncio.create_task(keep_connected(
                self.broker, bootstrap_servers=bootstrap, connected=self.connected,
                replication_factor=self.settings.kafka_replication_factor,
                client_options=self.settings.kafka_client_options())),
            asyncio.create_task(self.relay.run()),
            *(asyncio.create_task(work()) for work in self._beside),
        ]
        for loop, _ in self._loops:
            loop.start()

    async def stop(self) -> None:
        for loop, drain_seconds in self._loops:
            await loop.finish(drain_seconds=drain_seconds)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.relay.close()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def service_metadata(schema: str, *, consumes: bool = True) -> sa.MetaData:
    """A service's tables live in its own schema, next to its outbox and, if it ``consumes``
    events, its applied-events record."""
    metadata = sa.MetaData(schema=schema)
    outbox_table(metadata)
    if consumes:
        applied_events_table(metadata)
    return metadata


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
