"""The one way a service runs background work (the outbox relay, lockout's expiry watch, the
mailer's sender): rounds, again at once while there is more, else after a pause or when woken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)

AT_ONCE = 0.0  # what a round returns when it found a full batch: more is waiting


class PollLoop:
    """Runs ``round`` until stopped. A round returns how many seconds to wait before the next one
    (AT_ONCE: none), or None for the usual ``idle`` wait, which ``wake`` cuts short. A round that
    raises is logged and followed, ``retry`` seconds later, by the usual wait; the loop goes on."""

    def __init__(self, what: str, round: Callable[[], Awaitable[float | None]], *, idle: float, retry: float = 1.0) -> None:
        self.what, self._round, self._idle, self._retry = what, round, idle, retry
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._due: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        self._wake.set()

    def wake_within(self, seconds: float) -> None:
        """Wake the loop ``seconds`` from now at the latest: work that can wait a moment for
        company, so that one round takes it all. A wake that comes sooner covers it."""
        if self._due is None and not self._wake.is_set():
            self._due = asyncio.get_running_loop().call_later(seconds, self._wake_due)

    def _wake_due(self) -> None:
        self._due = None
        self.wake()

    async def run(self) -> None:
        while not self._stopping:
            if self._due is not None:  # this round takes what that wake was for
                self._due.cancel()
                self._due = None
            try:
                pause = await self._round()
            except Exception as exc:  # noqa: BLE001 - the work waits for the next round, not for a restart
                log.warning("%s: %r", self.what, exc)
                pause = None
                await asyncio.sleep(self._retry)
            if pause is None:
                await self._wait()
            elif pause > 0:
                await asyncio.sleep(pause)

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._idle)
        self._wake.clear()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run())

    async def finish(self, *, drain_seconds: float = 0.0) -> None:
        """Start no new round; give the one in flight ``drain_seconds`` to end, then cancel it."""
        self._stopping = True
        self.wake()
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, drain_seconds)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # wait_for cancelled it when the time ran out; let it unwind

    @contextlib.asynccontextmanager
    async def running(self, *, drain_seconds: float = 0.0) -> AsyncIterator[None]:
        self.start()
        try:
            yield
        finally:
            await self.finish(drain_seconds=drain_seconds)
