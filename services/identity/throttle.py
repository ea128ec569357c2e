"""Per-source limits, kept in this process's memory (the ``limits`` library's moving windows).

They answer before any database or bcrypt work, and add no round trip to the login path. Each
identity replica counts on its own, so with N replicas behind the gateway a source gets up to N
times the organization's limit; the gateway's own coarse ``limit_req`` (portal_auth/gateway.py)
bounds the total. Counts start afresh when a replica restarts.

The library's in-memory storage drops expired entries on a ``threading.Timer`` it starts 10 ms
after any hit that finds none running: under steady load a new thread a hundred times a second,
each sweeping every key. Profiled at cost 4, those threads and the sweeps took about a tenth of
identity's event-loop CPU (docs/performance.md). ``_Storage`` keeps the library's storage and
strategy and sweeps inline instead, at most every ``SWEEP_SECONDS``, on a hit, and also forgets
the sources whose entries all expired.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from services.identity.domain import Refused
from services.identity.handlers import Org
from shared.tenancy import TenantSettings


class _Storage(MemoryStorage):
    """limits' MemoryStorage, its expired entries swept on a hit every ``SWEEP_SECONDS`` instead
    of by a timer thread per 10 ms of activity. The storage calls ``__schedule_expiry`` (name
    mangled: ``_MemoryStorage__schedule_expiry``) on every hit; that is the one method replaced."""

    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._swept = time.monotonic()

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_SECONDS:
            self._swept = now
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
            for key in [key for key, entries in self.events.items() if not entries]:
                del self.events[key]  # the library keeps a key's empty list: one per source ever seen


class SourceLimits:
    """Two limits per (organization, source): unauthenticated POSTs per minute, and failed
    logins on any of the organization's accounts within its lockout window."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._windows = MovingWindowRateLimiter(_Storage())
        self._clock = clock

    def request(self, org: Org | None, source: str) -> None:
        """Counts one request; refuses it once the source is over the organization's limit. A
        request that belongs to no organization (find-portal) counts against the default limit,
        in one bucket shared by every host."""
        limit = (org.settings if org is not None else TenantSettings()).limits.requests_per_source_per_minute
        item, scope = RateLimitItemPerMinute(limit), org.slug if org is not None else ""
        if not self._windows.hit(item, "requests", scope, source):
            raise self._refusal(item, "requests", scope, source)

    def check_failures(self, org: Org, source: str) -> None:
        """Refuses a login from a source whose failures across the organization reached the bound."""
        item = self._failures(org)
        if not self._windows.test(item, "failures", org.slug, source):
            raise self._refusal(item, "failures", org.slug, source)

    def failed(self, org: Org, source: str) -> None:
        self._windows.hit(self._failures(org), "failures", org.slug, source)

    @staticmethod
    def _failures(org: Org) -> RateLimitItem:
        return RateLimitItemPerSecond(org.settings.limits.failed_logins_per_source, org.settings.lockout.window_seconds)

    def _refusal(self, item: RateLimitItem, *identifiers: str) -> Refused:
        reset_at = self._windows.get_window_stats(item, *identifiers).reset_time
        return Refused("too_many_requests", retry_after=max(1, math.ceil(reset_at - self._clock())))
