"""The sender loop, the mailer's second entrypoint beside the Kafka subscribers: claim due
emails, send them, record each outcome. Many processes may run it over one queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.mailer import handlers
from services.mailer.domain import DeliveryFailure
from services.mailer.handlers import Deps, Job
from shared.db import DatabaseUnavailable, transaction

log = logging.getLogger(__name__)

RECORD_TRIES = 5


class Sender:
    def __init__(self, *, engine: AsyncEngine, deps: Deps, batch: int, poll_seconds: float,
                 after_record: Callable[[], None] = lambda: None) -> None:
        self._engine, self._deps, self._batch, self._poll = engine, deps, batch, poll_seconds
        self._after_record = after_record
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.send_once()
            except Exception as exc:  # noqa: BLE001 - the emails stay queued for the next pass
                log.warning("sender: %s", exc)
                sent = 0
                await asyncio.sleep(1.0)
            if sent < self._batch:
                await self._sleep()

    async def send_once(self) -> int:
        async with transaction(self._engine) as conn:
            jobs = await handlers.claim_due(conn, self._deps, limit=self._batch)
        outcomes = await asyncio.gather(*(self._deliver(job) for job in jobs), return_exceptions=True)
        for error in (o for o in outcomes if isinstance(o, Exception)):
            log.warning("sender: outcome not recorded, the lease will bring the email back: %s", error)
        return len(jobs)

    async def _deliver(self, job: Job) -> None:
        failure = await handlers.send(self._deps, job)
        if failure is not None:
            log.warning("email %s not sent (attempt %d): %s", job.email.dedup_key, job.email.attempts, failure)
        await self._record(job, failure)

    async def _record(self, job: Job, failure: DeliveryFailure | None) -> None:
        """Keep trying while the database is away: an unrecorded send would be sent again."""
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                async with transaction(self._engine) as conn:
                    await handlers.record(conn, self._deps, job, failure)
                self._after_record()
                return
            except DatabaseUnavailable:
                if attempt == RECORD_TRIES:
                    raise
                await asyncio.sleep(attempt)

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)
        self._wake.clear()

    @contextlib.asynccontextmanager
    async def running(self, *, drain_seconds: float) -> AsyncIterator[None]:
        """Run beside the app; on shutdown, claim nothing more and let sends in flight be recorded."""
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            self._stopping = True
            self.wake()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, drain_seconds)
