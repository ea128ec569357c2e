"""Kafka wiring: the broker, topics, the outbox relay and idempotent subscribers with a dead-letter topic."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import SASLScram256, SASLScram512
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import DatabaseUnavailable, transaction
from shared.events import EVENT_TYPES, PARTITIONS, TOPICS, Envelope, Event, dlq_topic
from shared.failpoints import crash_here
from shared.loop import AT_ONCE, PollLoop
from shared.messaging import AppliedEvents, Announcer

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 15.0
BUSY_RETRY_SECONDS = 0.01
# A consumer's fetch waits at the broker until a record arrives or this passes: the broker
# answers at once when one arrives, so a long wait costs no latency and spares idle round trips.
# Not longer: while a fetch waits at the broker, aiokafka does not fetch a partition whose records
# it had already buffered when that fetch was sent, so a record arriving there meanwhile can wait
# for the whole wait (a lock's way to identity's memory crosses two such readers).
FETCH_MAX_WAIT_MS = 500
# A relay is woken by every commit of its own process that wrote an event; its rounds between
# wake-ups only pick up rows whose process died before its relay sent them.
RELAY_IDLE_SECONDS = 5.0
RELAY_LINGER_SECONDS = 0.5  # the longest an UNHURRIED event waits for the relay's next round
COMMIT_INTERVAL = 1.0  # seconds between a subscriber's offset commits (see Offsets)


def make_broker(bootstrap_servers: str, *, client_id: str, client_options: Mapping[str, str] | None = None) -> KafkaBroker:
    """A producer that waits for every in-sync replica (acks=all) and never writes a retried
    message twice (idempotence). ``client_options`` are ``ConnectionSettings.kafka_client_options()``:
    who this service is to Kafka."""
    options = dict(client_options or {})
    security = None
    if options:
        scram = SASLScram512 if options["sasl_mechanism"] == "SCRAM-SHA-512" else SASLScram256
        security = scram(options["sasl_plain_username"], options["sasl_plain_password"])
    return KafkaBroker(
        [server.strip() for server in bootstrap_servers.split(",") if server.strip()],  # FastStream takes a list
        security=security,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        request_timeout_ms=10_000,
        graceful_timeout=5.0,
        # Subscribers take the message as it is (``decoder=as_is``) and parse the envelope
        # themselves: FastStream's injection resolved the message parameter in a worker thread,
        # a thread hand-off for every record.
        apply_types=False,
        logger=logging.getLogger(f"{client_id}.kafka"),
        log_level=logging.DEBUG,
    )


async def ensure_topics(bootstrap_servers: str, topics: tuple[str, ...] = TOPICS, *, replication_factor: int = 1,
                        client_options: Mapping[str, str] | None = None) -> None:
    """Event topics and their dead-letter topics: 6 partitions, kept forever (the audit log),
    on ``replication_factor`` brokers (the cluster's min.insync.replicas decides how many of
    them must have a write before acks=all answers)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000,
                                **dict(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics for t in (topic, dlq_topic(topic)) if t not in existing]
        for name in wanted:
            try:
                await admin.create_topics([NewTopic(name, PARTITIONS, replication_factor, topic_configs={"retention.ms": "-1"})])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def keep_connected(broker: KafkaBroker, *, bootstrap_servers: str, connected: asyncio.Event,
                         replication_factor: int = 1, client_options: Mapping[str, str] | None = None) -> None:
    """Start the broker, retrying while Kafka is away, so a service starts and serves without it."""
    while True:
        try:
            await asyncio.wait_for(ensure_topics(bootstrap_servers, replication_factor=replication_factor,
                                                 client_options=client_options), PUBLISH_TIMEOUT)
            await asyncio.wait_for(broker.start(), PUBLISH_TIMEOUT)
            connected.set()
            return
        except Exception as exc:  # noqa: BLE001 - any failure to reach Kafka means: try again
            log.warning("kafka not reachable yet: %s", exc)
            await _quietly(broker.stop())
            await asyncio.sleep(1.0)


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 - cleanup of a half-started client
        pass


def make_producer(bootstrap_servers: str, *, client_id: str,
                  client_options: Mapping[str, str] | None = None) -> AIOKafkaProducer:
    """The outbox relay's producer: acks=all and idempotent, like the broker's, as the service's
    own Kafka principal (``client_options``, as for ``make_broker``)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, client_id=f"{client_id}-relay", acks="all",
                            enable_idempotence=True, linger_ms=0, request_timeout_ms=10_000,
                            **dict(client_options or {}))


class OutboxRelay:
    """Sends committed outbox rows to Kafka and marks them sent.

    Relays of one service may run in many processes: a transaction-scoped advisory lock lets one
    of them send at a time, which keeps each key's events in order, and rows are taken with
    FOR UPDATE SKIP LOCKED so no row is ever taken by two relays. A round takes and marks its rows
    in one statement and commits the marks once the broker acknowledged them; a crash between
    sending and that commit sends a row again; consumers are idempotent, so that is harmless.

    The relay has a producer of its own, and a batch that fails throws it away: an idempotent
    producer cut off from the broker mid-batch (a network partition) can be left with sequence
    numbers the broker refuses for ever (OutOfOrderSequenceNumber); a new one starts afresh.
    """

    def __init__(self, *, engine: AsyncEngine, table: sa.Table, producer: Callable[[], AIOKafkaProducer],
                 connected: asyncio.Event, batch: int = 500, idle_seconds: float = RELAY_IDLE_SECONDS) -> None:
        self._engine, self._table, self._new_producer, self._connected = engine, table, producer, connected
        self._batch = batch
        self._lock_id = zlib.crc32(f"outbox:{table.fullname}".encode())
        # The lock, the rows and their marking in one round trip: the rows are taken only when the
        # lock was had, and marked sent in the transaction that stays open while they are sent, so
        # a failed send (or a crash) rolls the marks back and they are sent again.
        lock = sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_id).label("held")).cte("relay_lock")
        pending = (sa.select(table.c.id).where(sa.select(lock.c.held).scalar_subquery(), table.c.sent_at.is_(None))
                   .order_by(table.c.id).limit(batch).with_for_update(skip_locked=True).cte("pending"))
        marked = (table.update().where(table.c.id == pending.c.id).values(sent_at=sa.func.now())
                  .returning(table.c.id, table.c.topic, table.c.key, table.c.payload).cte("marked"))
        self._take = sa.select(lock.c.held, marked).select_from(lock.outerjoin(marked, sa.true()))
        self._producer: AIOKafkaProducer | None = None
        self.loop = PollLoop("outbox relay", self._round, idle=idle_seconds)

    def wake(self) -> None:
        self.loop.wake()

    def after(self, announced: Announcer) -> None:
        """Wake after the commit of ``announced``'s transaction: at once when somebody waits for
        one of its events; within RELAY_LINGER_SECONDS when nobody does (``Event.UNHURRIED``), so
        that one round, one produce and one fetch per consumer carry several, and any prompt wake
        takes them along in order; not at all when it wrote none."""
        if announced.hurried:
            self.loop.wake()
        elif announced.wrote:
            self.loop.wake_within(RELAY_LINGER_SECONDS)

    async def run(self) -> None:
        await self.loop.run()

    async def _round(self) -> float | None:
        await self._connected.wait()
        sent = await self.relay_once()
        if sent is None:  # another process's relay is sending; it may have missed our rows
            return BUSY_RETRY_SECONDS
        return AT_ONCE if sent >= self._batch else None

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly(producer.stop())

    async def relay_once(self) -> int | None:
        """How many rows were sent; None when another relay of the service held the lock."""
        async with transaction(self._engine) as conn:
            found = (await conn.execute(self._take)).all()
            if not found[0].held:
                return None
            rows = sorted((row for row in found if row.id is not None), key=lambda row: row.id)
            if not rows:
                return 0
            try:
                await asyncio.wait_for(self._publish(rows), PUBLISH_TIMEOUT)
            except BaseException:
                await self.close()
                raise
            crash_here(f"{self._table.schema}.relay-after-publish")
        return len(rows)

    async def _publish(self, rows: Sequence[sa.Row[int, str, str, Any]]) -> None:
        if self._producer is None:
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException:
                await _quietly(producer.stop())
                raise
            self._producer = producer
        # The payload was written from a valid envelope: it is sent as it is, with its type in a
        # header, so that a consumer can pass over the types it does not handle without parsing them.
        futures = [
            await self._producer.send(r.topic, json.dumps(r.payload, separators=(",", ":")).encode(), key=r.key.encode(),
                                      headers=[("content-type", b"application/json"), ("type", r.payload["type"].encode())])
            for r in rows
        ]
        await asyncio.gather(*futures)


Handler = Callable[[AsyncConnection, Envelope, Any], Awaitable[None]]


def replay_safe(handler: Handler) -> Handler:
    """Marks a handler whose effect is one statement that gives the same result however often
    it is applied, in whatever order with the other events: it runs as that one statement, with
    no transaction and no applied-events row (three round trips fewer per event)."""
    handler.replay_safe = True  # type: ignore[attr-defined]
    return handler


def only_when(wanted: Callable[[Any], bool]) -> Callable[[Handler], Handler]:
    """Marks a handler that has nothing to do for an event ``wanted`` says False of: the consumer
    (and a rebuild) passes that event over without taking a connection."""
    def mark(handler: Handler) -> Handler:
        handler.wanted = wanted  # type: ignore[attr-defined]
        return handler
    return mark


def wants(handler: Handler, event: Event) -> bool:
    """Whether ``handler`` has anything to do for ``event`` (see ``only_when``)."""
    wanted: Callable[[Any], bool] | None = getattr(handler, "wanted", None)
    return wanted is None or wanted(event)


def recorded(handler: Handler) -> bool:
    """Whether the live consumer records the events ``handler`` applies (not ``replay_safe``)."""
    return not getattr(handler, "replay_safe", False)


class EventConsumer:
    """Applies each event once: its id is recorded in the same transaction as its effect (or,
    for a ``replay_safe`` handler, its effect needs no record)."""

    def __init__(self, *, engine: AsyncEngine, applied: AppliedEvents,
                 handlers: Mapping[type[Event], Handler], after_commit: Callable[[], None] = lambda: None) -> None:
        self._engine, self._applied, self._handlers = engine, applied, handlers
        self._types = frozenset(event_type.TYPE for event_type in handlers)
        self._after_commit = after_commit

    def handles(self, type_name: str) -> bool:
        return type_name in self._types

    async def __call__(self, envelope: Envelope, event: Event | None = None) -> None:
        event = event or envelope.event()  # raises for unknown or malformed events: dead letter
        handler = self._handlers.get(type(event))
        if handler is None or not wants(handler, event):
            return  # someone else's concern, or nothing to do
        if not recorded(handler):
            async with transaction(self._engine, autocommit=True) as conn:
                await handler(conn, envelope, event)
        else:
            async with transaction(self._engine) as conn:
                if await self._applied.first_time(conn, envelope):
                    await handler(conn, envelope, event)
        crash_here(f"{self._applied.table.schema}.consumer-after-commit")
        self._after_commit()


class PoisonMessage(Exception):
    """A message no handler can take: it goes to the dead-letter topic and processing goes on."""


MAX_ATTEMPTS = 5


def subscribe(broker: KafkaBroker, *, topics: tuple[str, ...], group_id: str, consume: EventConsumer) -> None:
    """Subscribe ``consume`` at least once, in order per partition, dead-lettering poison."""
    attempts: dict[tuple[str, int, int], int] = {}
    offsets = Offsets()

    @broker.subscriber(*topics, group_id=group_id, auto_offset_reset="earliest", decoder=as_is,
                       fetch_max_wait_ms=FETCH_MAX_WAIT_MS, ack_policy=AckPolicy.MANUAL)
    async def on_message(message: KafkaMessage) -> None:
        type_name = message.headers.get("type")
        # a known type this service has no use for is not even parsed
        if type_name not in EVENT_TYPES or consume.handles(type_name):
            try:
                await _deliver(broker, message, consume, attempts)
            except BaseException:
                await message.nack()  # back to this record: it comes again
                raise
        await offsets.processed(message)


async def as_is(message: KafkaMessage) -> KafkaMessage:
    """A subscriber's decoder on a broker without injection (``make_broker``): the handler gets
    the message itself, headers and record included, and its body undecoded."""
    return message


class Offsets:
    """Commits a subscriber's offsets at most once per ``interval``, not after every record.

    Every consumer is idempotent (an applied-events record, or a ``replay_safe`` effect), so a
    crash that loses the last interval's commits only brings those records again, and they are
    passed over. Only the offsets of records already processed are committed (never the
    consumer's position, which may be ahead of them), and a record whose processing failed is not
    among them. An offset commit is a round trip to the broker: after every record it cost more
    than passing over a record of a type the service does not use."""

    def __init__(self, interval: float = COMMIT_INTERVAL) -> None:
        self._interval = interval
        self._done: dict[TopicPartition, OffsetAndMetadata] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._later: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def processed(self, message: KafkaMessage) -> None:
        record: Any = message.raw_message  # one record: the subscriber takes no batches
        self._consumer = message.consumer
        self._done[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(record.offset + 1, "")
        loop = asyncio.get_running_loop()
        if loop.time() - self._last >= self._interval:
            await self.commit()
        elif self._later is None:
            self._later = loop.call_later(self._interval, self._commit_later)

    def _commit_later(self) -> None:
        self._later = None
        task = asyncio.ensure_future(self.commit())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def commit(self) -> None:
        if self._later is not None:
            self._later.cancel()
            self._later = None
        offsets, self._done = self._done, {}
        if not offsets or not isinstance(self._consumer, AIOKafkaConsumer):
            return  # nothing processed yet, or FastStream's in-memory test broker, which keeps no offsets
        self._last = asyncio.get_running_loop().time()
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # partitions moved to another member, or the broker is away
            log.info("offsets %s not committed (%r): those records come again and are passed over", offsets, exc)


async def _deliver(broker: KafkaBroker, message: Any, consume: EventConsumer,
                   attempts: dict[tuple[str, int, int], int]) -> None:
    record = message.raw_message
    where = (record.topic, record.partition, record.offset)
    try:
        await consume(*_parse(message.body))
        attempts.pop(where, None)
    except PoisonMessage as exc:
        await _dead_letter(broker, record, str(exc))
    except DatabaseUnavailable:
        await asyncio.sleep(1.0)
        raise  # redelivered once the database is back
    except Exception as exc:
        attempts[where] = attempts.get(where, 0) + 1
        if attempts[where] >= MAX_ATTEMPTS:
            attempts.pop(where)
            await _dead_letter(broker, record, f"failed {MAX_ATTEMPTS} times: {exc!r}")
            return
        log.exception("event at %s failed, will retry", where)
        await asyncio.sleep(0.5 * attempts[where])
        raise


def _parse(raw: bytes) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.from_bytes(raw)
        return envelope, envelope.event()
    except (ValueError, ValidationError) as exc:  # includes json errors and UnknownEvent
        raise PoisonMessage(f"{type(exc).__name__}: {exc}"[:500]) from exc


async def _dead_letter(broker: KafkaBroker, record: Any, reason: str) -> None:
    log.error("dead-lettering %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason)
    await broker.publish(record.value, dlq_topic(record.topic), key=record.key, headers={
        "reason": reason, "original-topic": record.topic,
        "original-partition": str(record.partition), "original-offset": str(record.offset),
    })
