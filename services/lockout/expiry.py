"""Lockout's clock entrypoint: a watch that announces the end of locks that ran out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.lockout import handlers
from services.lockout.repository import LockoutRepository
from shared.clock import utcnow
from shared.db import transaction
from shared.loop import AT_ONCE, PollLoop
from shared.messaging import Announcer
from shared.runtime import Runtime

BATCH = 200


def expiry_watch(runtime: Runtime, *, interval: float, clock: Callable[[], datetime] = utcnow) -> PollLoop:
    """Every ``interval`` seconds, announce AccountUnlocked(expired) for each lock that ended. Any
    number of lockout processes may run this: each ended lock is taken by exactly one of them."""

    async def announce_round() -> float | None:
        async with transaction(runtime.engine) as conn:
            announced = await handlers.announce_expired(LockoutRepository(conn), Announcer(conn, runtime.outbox),
                                                        now=clock(), limit=BATCH)
        if announced:
            runtime.relay.wake()
        return AT_ONCE if announced >= BATCH else None

    return PollLoop("expiry watch", announce_round, idle=interval)
