"""The outbox relay against real PostgreSQL and Kafka: several relays at once send every row
exactly once, each key's events in the order they were written; topics are made to keep events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from portal_auth.system import Infrastructure
from shared.db import make_engine
from shared.events import PARTITIONS, TOPICS, Envelope, LoginFailed, dlq_topic
from shared.kafka import OutboxRelay, ensure_topics, make_producer
from shared.messaging import outbox_table
from tests.conftest import records_on

ROWS, KEYS = 300, 10


async def _outbox(infra: Infrastructure, rows: int) -> tuple[AsyncEngine, sa.Table, str]:
    """An outbox of its own, in a fresh schema, holding ``rows`` rows for a fresh topic."""
    suffix = uuid.uuid4().hex[:8]
    topic, schema = f"relaytest-{suffix}.events", f"relaytest_{suffix}"
    await ensure_topics(infra.kafka_bootstrap, (topic,))
    engine = make_engine(infra.database_url)
    table = outbox_table(sa.MetaData(schema=schema))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'create schema "{schema}"'))
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(table.insert(), [_row(topic, n) for n in range(rows)])
    return engine, table, topic


async def test_two_relays_send_every_row_once_and_keep_each_keys_order(infra: Infrastructure) -> None:
    engine, table, topic = await _outbox(infra, ROWS)
    connected = asyncio.Event()
    connected.set()
    relays = [OutboxRelay(engine=engine, table=table, connected=connected, batch=20,
                          producer=lambda i=i: make_producer(infra.kafka_bootstrap, client_id=f"relay-{i}"))
              for i in range(2)]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await _until_all_sent(engine, table)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for relay in relays:
            await relay.close()
        await engine.dispose()

    # The relays are stopped and every publish was acknowledged: the topic's end is final, and
    # reading up to it sees every copy that was ever sent.
    received = [(int(Envelope.from_bytes(r.value).data["source"]), r.key.decode())
                for r in await records_on(infra.kafka_bootstrap, [topic])]
    assert sorted(n for n, _ in received) == list(range(ROWS))  # each once
    per_key: dict[str, list[int]] = defaultdict(list)
    for n, key in received:
        per_key[key].append(n)
    assert all(seq == sorted(seq) for seq in per_key.values())  # in the order written


async def test_a_batch_the_broker_did_not_take_stays_unsent_and_goes_out_later(infra: Infrastructure) -> None:
    """A round marks its rows sent in the statement that takes them; a send that fails rolls the
    marks back, so the rows go out with the next round that reaches the broker."""
    engine, table, topic = await _outbox(infra, 5)
    connected = asyncio.Event()
    connected.set()
    nowhere = OutboxRelay(engine=engine, table=table, connected=connected,
                          producer=lambda: make_producer("127.0.0.1:9", client_id="relay-nowhere"))
    relay = OutboxRelay(engine=engine, table=table, connected=connected,
                        producer=lambda: make_producer(infra.kafka_bootstrap, client_id="relay-test"))
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a broker it cannot reach
            await nowhere.relay_once()
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).where(table.c.sent_at.is_(None))) == 5
        assert await relay.relay_once() == 5
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).where(table.c.sent_at.is_(None))) == 0
    finally:
        await nowhere.close()
        await relay.close()
        await engine.dispose()
    received = sorted(int(Envelope.from_bytes(r.value).data["source"]) for r in await records_on(infra.kafka_bootstrap, [topic]))
    assert received == list(range(5))


async def test_event_topics_have_six_partitions_and_keep_events_forever(infra: Infrastructure) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        names = [t for topic in TOPICS for t in (topic, dlq_topic(topic))]
        described = await admin.describe_topics(names)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(names, PARTITIONS)
    retention = {r[3]: {e[0]: e[1] for e in r[4]}["retention.ms"] for c in configs for r in c.resources}
    assert retention == dict.fromkeys(names, "-1")


def _row(topic: str, n: int) -> dict[str, object]:
    event = LoginFailed(email=f"k{n % KEYS}@example.com", source=str(n))  # source carries the sequence number
    envelope = Envelope.wrap(event, tenant="relaytest", producer="test")
    return {"event_id": envelope.event_id, "topic": topic, "key": event.key("relaytest"),
            "payload": envelope.model_dump(mode="json")}


async def _until_all_sent(engine: sa.ext.asyncio.AsyncEngine, table: sa.Table, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if not await conn.scalar(sa.select(sa.func.count()).where(table.c.sent_at.is_(None))):
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the relays left rows unsent")
