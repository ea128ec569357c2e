"""Lockout's clock entrypoint: a watch that announces the end of locks that ran out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.lockout import handlers
from services.lockout.repository import LockoutRepository
from shared.clock import utcnow
from shared.db import DatabaseUnavailable, transaction
from shared.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 200


async def watch_expiry(runtime: Runtime, *, interval: float, clock: Callable[[], datetime] = utcnow) -> None:
    """Every ``interval`` seconds, announce AccountUnlocked(expired) for each lock that ended. Any
    number of lockout processes may run this: each ended lock is taken by exactly one of them."""
    while True:
        announced = 0
        try:
            async with transaction(runtime.engine) as conn:
                announced = await handlers.announce_expired(LockoutRepository(conn), handlers.announcer(conn, runtime.outbox),
                                                            now=clock(), limit=BATCH)
        except DatabaseUnavailable as exc:
            log.warning("expiry watch: %s", exc)
        except Exception:  # the watch outlives any one bad round; the locks wait for the next
            log.exception("expiry watch failed, trying again")
        if announced:
            runtime.relay.wake()
        if announced < BATCH:
            await asyncio.sleep(interval)
