"""The per-source limits' storage: counts in memory without a thread per hit, and forgets what
has expired."""

from __future__ import annotations

import threading
import time

from limits import RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from services.identity.handlers import Org
from services.identity.throttle import SourceLimits, _Storage
from shared.tenancy import TenantSettings


def test_counting_requests_starts_no_thread() -> None:
    limits = SourceLimits()
    time.sleep(0.05)  # the storage's one timer at construction has run
    org, before = Org(slug="acme", name="Acme", settings=TenantSettings(), host="acme.test"), threading.active_count()
    for n in range(500):
        limits.request(org, f"198.51.100.{n % 200}")
        limits.failed(org, "198.51.100.7")
    assert threading.active_count() == before


def test_expired_entries_are_swept_on_a_later_hit() -> None:
    storage = _Storage()
    windows, item = MovingWindowRateLimiter(storage), RateLimitItemPerSecond(3, 1)
    assert [windows.hit(item, "old") for _ in range(4)] == [True, True, True, False]
    time.sleep(1.1)
    windows.hit(item, "new")  # within SWEEP_SECONDS: nothing swept yet
    assert any("old" in key for key in storage.events)
    storage.SWEEP_SECONDS = 0.0
    windows.hit(item, "new")
    assert not any("old" in key for key in storage.events)
    assert windows.hit(item, "old")  # and the source may ask again
