"""The sender loop, the mailer's second entrypoint beside the Kafka subscribers: claim due
emails, send them, record each outcome. Many processes may run it over one queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.mailer import handlers
from services.mailer.domain import DeliveryFailure
from services.mailer.handlers import Deps, Job
from services.mailer.repository import MailerRepository
from shared.db import DatabaseUnavailable, transaction
from shared.loop import AT_ONCE, PollLoop
from shared.messaging import Announcer

log = logging.getLogger(__name__)

# Recording an outcome is tried again while the database is away, backing off from the first
# pause to the longest, until shortly before the claim's lease ends: only then may another
# sender take the email, so giving up any earlier would turn a short outage into a second copy.
RECORD_FIRST_PAUSE = 1.0
RECORD_LONGEST_PAUSE = 10.0
RECORD_MARGIN = 1.0  # the last try starts this long before the lease ends, to win the race


def record_pause(attempt: int, *, left: float) -> float | None:
    """Seconds to wait after the ``attempt``-th failed try to record an outcome, when ``left``
    seconds of the claim's lease remain; None when no try could start before the lease ends."""
    room = left - RECORD_MARGIN
    if room <= 0:
        return None
    pause: float = min(RECORD_FIRST_PAUSE * 2 ** (attempt - 1), RECORD_LONGEST_PAUSE, room)
    return pause


class Sender:
    def __init__(self, *, engine: AsyncEngine, deps: Deps, batch: int, poll_seconds: float,
                 after_record: Callable[[], None] = lambda: None) -> None:
        self._engine, self._deps, self._batch = engine, deps, batch
        self._after_record = after_record
        self.loop = PollLoop("sender", self._round, idle=poll_seconds)

    def wake(self) -> None:
        self.loop.wake()

    async def _round(self) -> float | None:
        return AT_ONCE if await self.send_once() >= self._batch else None

    async def send_once(self) -> int:
        async with transaction(self._engine) as conn:
            jobs = await handlers.claim_due(MailerRepository(conn), self._deps, limit=self._batch)
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
        """Keep trying while the database is away, until the lease ends: an email recorded
        neither sent nor failed is claimed again after its lease, and so sent again."""
        loop = asyncio.get_running_loop()
        lease_ends = loop.time() + (job.email.next_attempt_at - self._deps.clock()).total_seconds()
        started, attempt = loop.time(), 0
        while True:
            attempt += 1
            try:
                async with transaction(self._engine) as conn:
                    await handlers.record(MailerRepository(conn), Announcer(conn, self._deps.outbox), self._deps, job, failure)
            except DatabaseUnavailable as exc:
                pause = record_pause(attempt, left=lease_ends - loop.time())
                if pause is None:
                    self._not_recorded(job, failure, tries=attempt, seconds=loop.time() - started, error=exc)
                    return
                if attempt == 1:
                    log.warning("email %s: database away, trying to record its outcome until its lease ends in %.0f s: %s",
                                job.email.dedup_key, lease_ends - loop.time(), exc)
                await asyncio.sleep(pause)
            else:
                if attempt > 1:
                    log.info("email %s: outcome recorded at try %d, after %.1f s", job.email.dedup_key, attempt,
                             loop.time() - started)
                self._after_record()
                return

    @staticmethod
    def _not_recorded(job: Job, failure: DeliveryFailure | None, *, tries: int, seconds: float,
                      error: Exception) -> None:
        if failure is None:
            log.error("email %s WAS SENT but could not be recorded: the database stayed away for its whole lease "
                      "(%d tries over %.0f s). Another sender will send it again once the lease has ended "
                      "(same Message-ID). Last error: %s", job.email.dedup_key, tries, seconds, error)
        else:
            log.warning("email %s: its failure (%s) could not be recorded within its lease (%d tries over %.0f s); "
                        "it will be tried again: %s", job.email.dedup_key, failure, tries, seconds, error)
