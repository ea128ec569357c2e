"""Poison on every topic a service consumes goes to its dead-letter topic, and the events behind
it on the same partition (the same account's) still apply."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer

from portal_auth.system import System
from shared.events import IDENTITY_TOPIC, LOCKOUT_TOPIC, account_key, dlq_topic
from tests.conftest import create_org, mail_to
from tests.e2e.test_dead_letters import _dead_letters_of
from tests.e2e.test_operator_commands import locked_unconfirmed_account

pytestmark = pytest.mark.e2e

POISONS = {
    "not json": lambda: f"not an event {time.time_ns()}".encode(),
    "unknown type": lambda: (b'{"event_id": "00000000-0000-4000-8000-%012d", "type": "NoSuchEvent", "version": 1, '
                             b'"occurred_at": "2026-01-01T00:00:00Z", "tenant": "x", "producer": "x", "data": {}}'
                             % (time.time_ns() % 10**12)),
    "invalid data": lambda: (b'{"event_id": "00000000-0000-4000-8000-%012d", "type": "LoginFailed", "version": 1, '
                             b'"occurred_at": "2026-01-01T00:00:00Z", "tenant": "x", "producer": "x", "data": {"email": 7}}'
                             % (time.time_ns() % 10**12)),
}


@pytest.mark.parametrize("topic", [IDENTITY_TOPIC, LOCKOUT_TOPIC])
@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_poison_is_dead_lettered_and_the_accounts_later_events_apply(system: System, topic: str, poison: str) -> None:
    org = await create_org(system)
    email = f"poisoned-{time.time_ns()}@example.com"
    payload = POISONS[poison]()
    producer = AIOKafkaProducer(bootstrap_servers=system.infra.kafka_bootstrap)
    await producer.start()
    try:  # keyed like the account's own events: the same partition, just before them
        await producer.send_and_wait(topic, payload, key=account_key(org.slug, email).encode())
    finally:
        await producer.stop()

    # identity.events: the mailer and lockout go past it (a mail comes, then a lock);
    # lockout.events: identity goes past it (the lock reaches identity's copy: 423)
    await locked_unconfirmed_account(system, org, email)
    await mail_to(system, email)

    assert await _dead_letters_of(system.infra.kafka_bootstrap, dlq_topic(topic), payload)
