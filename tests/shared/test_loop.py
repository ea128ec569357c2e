"""The background loop's wakes, and the outbox relay's: at once, or within a while so that one
round takes several."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import cast

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.events import Event, LoginFailed, LoginSucceeded
from shared.kafka import RELAY_LINGER_SECONDS, OutboxRelay
from shared.loop import PollLoop
from shared.messaging import Announcer, Outbox, outbox_table

LINGER = 2.0


class Rounds:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> float | None:
        self.count += 1
        return None

    async def reach(self, count: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while self.count < count:
            assert time.monotonic() < deadline, f"{self.count} rounds, not {count}"
            await asyncio.sleep(0.01)


async def test_lazy_wakes_make_one_round_and_a_prompt_wake_takes_them_along() -> None:
    rounds = Rounds()
    loop = PollLoop("test", rounds, idle=60.0)
    async with loop.running():
        await rounds.reach(1)  # the first round, at start
        for _ in range(5):
            loop.wake_within(LINGER)
        await asyncio.sleep(0)
        assert rounds.count == 1, "a lazy wake waits"
        await rounds.reach(2)
        await asyncio.sleep(LINGER + 0.5)
        assert rounds.count == 2, "five lazy wakes made one round"

        loop.wake_within(LINGER)
        loop.wake()  # something urgent: its round comes now and takes the lazy work along
        await rounds.reach(3)
        await asyncio.sleep(LINGER + 0.5)
        assert rounds.count == 3, "the lazy wake left no round of its own after the prompt one"


async def test_the_relay_wakes_at_once_for_a_waited_for_event_later_for_an_unhurried_one_and_not_for_none() -> None:
    """A sign-in's LoginSucceeded (nobody waits for it) waits up to RELAY_LINGER_SECONDS for
    company; a failure wakes the relay at once; a transaction that wrote nothing wakes nothing."""
    rounds = Rounds()
    relay = OutboxRelay(engine=cast(AsyncEngine, None), table=outbox_table(sa.MetaData(schema="test")),
                        producer=lambda: cast(AIOKafkaProducer, None), connected=asyncio.Event())
    relay.loop = PollLoop("test", rounds, idle=60.0)
    outbox = Outbox(outbox_table(sa.MetaData(schema="test")), producer="identity")

    def announced(*written: Event) -> Announcer:
        announce = Announcer(cast(AsyncConnection, None), outbox)
        for event in written:
            announce.statement(event, tenant="acme")
        return announce

    success = LoginSucceeded(email="ann@example.com", user_id=uuid.uuid4(), source="198.51.100.1", failures_from_source=0)
    async with relay.loop.running():
        await rounds.reach(1)
        relay.after(announced())
        await asyncio.sleep(RELAY_LINGER_SECONDS + 0.5)
        assert rounds.count == 1, "nothing written, no round"

        relay.after(announced(success))
        await asyncio.sleep(0)
        assert rounds.count == 1, "an unhurried event waits"
        await rounds.reach(2)

        relay.after(announced(success, LoginFailed(email="ann@example.com", source="198.51.100.1")))
        await rounds.reach(3, within=RELAY_LINGER_SECONDS / 2)  # at once, with the success along
