"""Each consuming service's Kafka wiring, on FastStream's in-memory TestKafkaBroker: the broker and
subscribers its composition root builds, its real handlers and a real database, no Kafka. A
poison message (not JSON, or a type no version of the contract has) goes to the topic's
dead-letter topic with the reason, and the next event on the topic is still applied."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from portal_auth.system import Infrastructure
from services.identity.bootstrap import create_app as identity_app
from services.identity.settings import IdentitySettings
from services.lockout.bootstrap import create_app as lockout_app
from services.lockout.settings import LockoutServiceSettings
from services.mailer.bootstrap import create_app as mailer_app
from services.mailer.settings import MailerSettings
from shared import events
from shared.events import Envelope, dlq_topic
from shared.kafka import as_is
from shared.migrations import upgrade
from shared.runtime import Runtime
from tests.conftest import new_database

NOWHERE = "127.0.0.1:9"  # no Kafka is reached: TestKafkaBroker stands in for it

APPS: dict[str, Callable[[str], FastAPI]] = {
    "identity": lambda url: identity_app(IdentitySettings(environment="local", database_url=url, bcrypt_rounds=4,
                                                          kafka_bootstrap_servers=NOWHERE)),
    "lockout": lambda url: lockout_app(LockoutServiceSettings(environment="local", database_url=url,
                                                              kafka_bootstrap_servers=NOWHERE)),
    "mailer": lambda url: mailer_app(MailerSettings(environment="local", database_url=url, kafka_bootstrap_servers=NOWHERE)),
}
CONSUMED = [("identity", events.TENANT_TOPIC), ("identity", events.LOCKOUT_TOPIC),
            ("lockout", events.IDENTITY_TOPIC), ("lockout", events.TENANT_TOPIC),
            ("mailer", events.IDENTITY_TOPIC), ("mailer", events.TENANT_TOPIC)]
UNKNOWN = "TenantRenamed"  # a type no version of the contract has
POISON = {"not JSON": "JSONDecodeError", "unknown type": "UnknownEvent"}  # and the reason each is dead-lettered for


@pytest.fixture(scope="module")
async def database(infra: Infrastructure) -> str:
    url = await new_database(infra, "consumer_wiring")
    for service in APPS:
        await asyncio.to_thread(upgrade, service, url)
    return url


def _event_on(topic: str) -> tuple[events.Event, str]:
    """An event that the consumers of ``topic`` apply, and its organization."""
    slug = f"org-{uuid.uuid4().hex[:10]}"
    if topic == events.TENANT_TOPIC:
        return events.TenantCreated(slug=slug, name="Wiring Ltd", domains=[f"{slug}.localhost"], settings={}, actor=None), slug
    if topic == events.LOCKOUT_TOPIC:
        return events.AccountUnlocked(email="ada@example.test", source=None, reason="expired"), slug
    return events.PasswordChanged(email="ada@example.test", user_id=uuid.uuid4(), host=f"{slug}.localhost"), slug


@pytest.mark.parametrize("poison", POISON, ids=list(POISON))
@pytest.mark.parametrize(("service", "topic"), CONSUMED, ids=[f"{s}-{t}" for s, t in CONSUMED])
async def test_poison_goes_to_the_dead_letter_topic_and_the_next_event_is_applied(
        service: str, topic: str, poison: str, database: str) -> None:
    runtime: Runtime = APPS[service](database).state.runtime
    dead: list[tuple[bytes, dict[str, Any]]] = []

    @runtime.broker.subscriber(dlq_topic(topic), group_id="wiring-test", decoder=as_is)
    async def on_dead_letter(message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    event, slug = _event_on(topic)
    envelope = Envelope.wrap(event, tenant=slug, producer="wiring-test")
    if poison == "not JSON":
        body, type_header = b"\x00not json at all", envelope.type
    else:
        body, type_header = envelope.model_copy(update={"type": UNKNOWN}).model_dump_json().encode(), UNKNOWN
    try:
        async with TestKafkaBroker(runtime.broker) as broker:
            await broker.publish(body, topic, key=b"poison", headers={"type": type_header})
            await broker.publish(envelope.model_dump_json().encode(), topic, key=event.key(slug).encode(),
                                 headers={"type": envelope.type})
        [(dead_body, headers)] = dead
        assert (dead_body, headers["original-topic"]) == (body, topic)
        assert headers["reason"].startswith(f"{POISON[poison]}: ")
        async with runtime.engine.connect() as conn:
            applied = await conn.scalar(sa.text(f"select count(*) from {service}.applied_events where event_id = :id"),
                                        {"id": envelope.event_id})
        assert applied == 1
    finally:
        await runtime.engine.dispose()
