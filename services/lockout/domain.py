"""Lockout's rules, with no framework in them: failed logins counted in a sliding window, and
locks decided in two tiers so that a stranger cannot easily lock a person out (ASVS 6.1.1).

Every time here is an event's time (``occurred_at`` of the event that caused it), never the
wall clock, so that replaying the log gives the same decisions as the live service made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

EVERY_SOURCE = None  # the key of the account-wide lock: it holds for every source address


@dataclass(frozen=True)
class Policy:
    """An organization's ``lockout`` settings (the contract's defaults)."""

    max_failures: int = 5
    max_failures_account: int = 20
    window_seconds: int = 900
    lock_seconds: int = 900

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    @property
    def lock(self) -> timedelta:
        return timedelta(seconds=self.lock_seconds)

    def window_start(self, at: datetime) -> datetime:
        """Failures at or before this instant no longer count at ``at``."""
        return at - self.window

    def threshold(self, source: str | None) -> int:
        return self.max_failures_account if source is EVERY_SOURCE else self.max_failures


@dataclass(frozen=True)
class Failure:
    source: str
    at: datetime


@dataclass(frozen=True)
class Lock:
    """The latest lock of one key: a source address, or EVERY_SOURCE."""

    source: str | None
    locked_at: datetime
    locked_until: datetime
    failures: int
    lifted_at: datetime | None = None

    def active(self, at: datetime) -> bool:
        return self.lifted_at is None and self.locked_until > at


def count(policy: Policy, failures: Iterable[Failure], *, at: datetime, source: str | None,
          since: datetime | None = None) -> int:
    """Failures inside the window ending at ``at``, from ``source`` (EVERY_SOURCE: from all),
    and after ``since``: the failures that caused a lock do not cause the next one as well."""
    start = max(policy.window_start(at), since) if since is not None else policy.window_start(at)
    return sum(1 for f in failures if start < f.at <= at and (source is EVERY_SOURCE or f.source == source))


def decide(policy: Policy, failures: Iterable[Failure], locks: Mapping[str | None, Lock], *,
           at: datetime, source: str) -> list[Lock]:
    """The new locks a failure from ``source`` at ``at`` causes, given every failure of the
    account (that one included) and its latest lock per key.

    The source's own count against ``max_failures`` locks that source; the count over all sources
    against ``max_failures_account`` locks every source. A key whose lock is still active gets no
    second lock (its failures go on counting, toward the next lock once this one ends).
    """
    failures = list(failures)
    decided = []
    for key in (source, EVERY_SOURCE):
        current = locks.get(key)
        if current is not None and current.active(at):
            continue
        since = current.locked_at if current is not None else None
        failed = count(policy, failures, at=at, source=key, since=since)
        if failed >= policy.threshold(key):
            decided.append(Lock(key, locked_at=at, locked_until=at + policy.lock, failures=failed))
    return decided


@dataclass(frozen=True)
class Standing:
    """What an operator sees of one account at one moment."""

    locked: bool
    locked_until: datetime | None
    failures_in_window: int
    locked_sources: list[str]
    every_source_locked: bool


def standing(policy: Policy, failures: Iterable[Failure], locks: Iterable[Lock], *, now: datetime) -> Standing:
    active = [lock for lock in locks if lock.active(now)]
    return Standing(
        locked=bool(active),
        locked_until=max((lock.locked_until for lock in active), default=None),
        failures_in_window=count(policy, failures, at=now, source=EVERY_SOURCE),
        locked_sources=sorted(lock.source for lock in active if lock.source is not EVERY_SOURCE),
        every_source_locked=any(lock.source is EVERY_SOURCE for lock in active),
    )
