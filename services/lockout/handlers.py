"""Lockout's use cases. Each runs inside one transaction opened by its entrypoint; the decisions
it announces go into the outbox in that same transaction (or nowhere, during a rebuild)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.lockout import domain
from services.lockout.domain import EVERY_SOURCE, Lock, Policy, Standing
from services.lockout.repository import LockoutRepository
from shared import events
from shared.clock import utcnow
from shared.messaging import Announce
from shared.tenancy import LockoutSettings

log = logging.getLogger(__name__)


async def silent(event: events.Event, *, tenant: str) -> None:
    """A rebuild recomputes decisions that were already announced: it announces nothing."""
    return None


class UnknownOrganization(Exception):
    pass


async def save_settings(repo: LockoutRepository, *, slug: str, settings: dict[str, Any]) -> None:
    await repo.save_settings(slug=slug, settings=settings)


async def record_failure(repo: LockoutRepository, announce: Announce, *, tenant: str, email: str, source: str,
                         at: datetime, event_id: uuid.UUID) -> list[Lock]:
    """Count a failed login and announce the locks it causes. Unknown emails arrive here too and
    are counted alike, so a lock says nothing about whether an account exists."""
    await repo.serialize(tenant=tenant, email=email)
    policy = await _policy(repo, tenant)
    await repo.add_failure(event_id=event_id, tenant=tenant, email=email, source=source, at=at)
    await repo.forget_failures(tenant=tenant, email=email, up_to=policy.window_start(at))
    failures = await repo.failures(tenant=tenant, email=email, after=policy.window_start(at))
    decided = domain.decide(policy, failures, await repo.locks(tenant=tenant, email=email), at=at, source=source)
    for lock in decided:
        await repo.save_lock(tenant=tenant, email=email, lock=lock)
        await announce(events.AccountLocked(email=email, source=lock.source, locked_until=lock.locked_until,
                                            failures=lock.failures), tenant=tenant)
    return decided


async def record_success(repo: LockoutRepository, *, tenant: str, email: str, source: str, at: datetime) -> None:
    """A successful login clears the failures *from its own source* only.

    The person who just proved the password from this address made those typos; the failures from
    other addresses are someone else's guesses, and a success must not wipe them: otherwise an
    attacker spreading guesses over many addresses would get a fresh account-wide budget every time
    the owner logs in (ASVS 6.1.1 asks that the owner can log in and the guesser stays bounded).
    Active locks stay: a success from one source does not unlock another.

    Only the failures up to the success's own time go: one statement that leaves the same rows
    however often and whenever it is applied (a redelivery, a rebuild), so it needs neither the
    account's lock nor an applied-events record (``replay_safe``).
    """
    await repo.forget_failures(tenant=tenant, email=email, source=source, up_to=at)


async def password_changed(repo: LockoutRepository, announce: Announce, *, tenant: str, email: str, at: datetime) -> None:
    """A new password (a reset proves control of the mailbox) lifts every lock and clears every count."""
    if await lift(repo, tenant=tenant, email=email, at=at, reason="password_changed"):
        await announce(events.AccountUnlocked(email=email, source=EVERY_SOURCE, reason="password_changed"), tenant=tenant)


async def unlock(repo: LockoutRepository, announce: Announce, *, tenant: str, email: str, actor: events.Actor) -> None:
    """An operator lifts every lock and clears every count. The unlock is announced even when
    nothing was locked: it is the operator's decision on the record, and a rebuild replays it at
    the announced event's own time, so both lift exactly the same.

    The account is held before the unlock is announced, not only while lifting: a lock decided
    meanwhile would otherwise take a later outbox id than this AccountUnlocked, though this unlock
    lifts it, and identity (which gets them in id order) would apply Unlocked, then Locked."""
    await _policy(repo, tenant, known=True)
    await repo.serialize(tenant=tenant, email=email)
    envelope = await announce(events.AccountUnlocked(email=email, source=EVERY_SOURCE, reason="admin", actor=actor),
                              tenant=tenant)
    await lift(repo, tenant=tenant, email=email, at=envelope.occurred_at if envelope else utcnow(), reason="admin")


async def email_unlock(repo: LockoutRepository, announce: Announce, *, tenant: str, email: str, at: datetime) -> None:
    """The owner used an emailed unlock link: every lock lifted and every count cleared, as an
    operator's unlock does, and announced the same way (even when the locks had ended meanwhile),
    under the account's lock so that no lock decided meanwhile is announced after it."""
    await repo.serialize(tenant=tenant, email=email)
    await announce(events.AccountUnlocked(email=email, source=EVERY_SOURCE, reason="email_link"), tenant=tenant)
    await lift(repo, tenant=tenant, email=email, at=at, reason="email_link")


async def lift(repo: LockoutRepository, *, tenant: str, email: str, at: datetime, reason: str) -> int:
    """Lift the locks active at ``at`` and forget every failure; how many locks were lifted."""
    await repo.serialize(tenant=tenant, email=email)
    await repo.forget_failures(tenant=tenant, email=email)
    return await repo.lift_locks(tenant=tenant, email=email, at=at, reason=reason)


async def announce_expired(repo: LockoutRepository, announce: Announce, *, now: datetime, limit: int = 200) -> int:
    """Announce the end of locks that ran out; how many. Identity already ignores a lock past its
    end: the event is for the record and clears every copy."""
    due = await repo.due_locks(now=now, limit=limit)
    for tenant, email, source in due:
        await repo.mark_announced(tenant=tenant, email=email, source=source)
        await announce(events.AccountUnlocked(email=email, source=source, reason="expired"), tenant=tenant)
    return len(due)


async def standing(repo: LockoutRepository, *, tenant: str, email: str, now: datetime) -> Standing:
    policy = await _policy(repo, tenant, known=True)
    failures = await repo.failures(tenant=tenant, email=email, after=policy.window_start(now))
    locks = await repo.locks(tenant=tenant, email=email)
    return domain.standing(policy, failures, locks.values(), now=now)


async def replay_unlock(repo: LockoutRepository, *, tenant: str, email: str, source: str | None, reason: str,
                        at: datetime) -> None:
    """During a rebuild, an AccountUnlocked read back from lockout.events: an operator's unlock is an
    input no other log holds, so it is applied at its own time; an announced expiry only records
    that its end needs no second announcement. (``password_changed`` and ``email_link`` follow from
    identity's PasswordChanged and UnlockLinkUsed, which the rebuild replays too.)"""
    if reason == "admin":
        await lift(repo, tenant=tenant, email=email, at=at, reason="admin")
    elif reason == "expired":
        await repo.mark_announced(tenant=tenant, email=email, source=source, ended_by=at)


async def _policy(repo: LockoutRepository, tenant: str, *, known: bool = False) -> Policy:
    """The organization's lockout settings; the defaults while its TenantCreated has not arrived
    (or UnknownOrganization, when ``known`` is asked for: an operator's typo must not pass)."""
    settings = await repo.settings(tenant)
    if settings is None and known:
        raise UnknownOrganization(tenant)
    given = (settings or {}).get("lockout") or {}
    try:
        section = LockoutSettings.model_validate({k: v for k, v in given.items() if k in LockoutSettings.model_fields})
    except ValidationError as exc:  # tenant validated them: only a newer, stricter rule gets here
        log.warning("organization %s: lockout settings %s unusable, using the defaults: %s", tenant, given, exc)
        section = LockoutSettings()
    return Policy(**section.model_dump())
