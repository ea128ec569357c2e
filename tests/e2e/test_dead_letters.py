"""A message no consumer can handle goes to <topic>.dlq with the reason, and processing goes on."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from portal_auth.system import System
from shared.events import TENANT_TOPIC, dlq_topic
from tests.conftest import create_org, records_on

pytestmark = pytest.mark.e2e


async def test_unreadable_event_is_dead_lettered_with_reason_and_later_events_still_apply(system: System) -> None:
    poison = f"not an event {time.time_ns()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=system.infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(TENANT_TOPIC, poison, key=b"poison")
    finally:
        await producer.stop()

    await create_org(system)  # tenant.events goes on being applied after the poison message

    reasons = await _dead_letters_of(system.infra.kafka_bootstrap, dlq_topic(TENANT_TOPIC), poison)
    assert reasons and all("JSONDecodeError" in r or "ValidationError" in r for r in reasons)


async def _dead_letters_of(bootstrap: str, topic: str, payload: bytes, timeout: float = 15.0) -> list[str]:
    deadline, reasons = time.monotonic() + timeout, []
    while not reasons and time.monotonic() < deadline:
        reasons = [dict(r.headers)["reason"].decode() for r in await records_on(bootstrap, [topic]) if r.value == payload]
        await asyncio.sleep(0.2)
    return reasons
