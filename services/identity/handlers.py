"""Identity's use cases. Each takes the repository of one transaction opened by its entrypoint
and the announcer bound to that transaction (the outbox): events are written in it too.
Entrypoints call nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from services.identity import domain
from services.identity.domain import Refused, SessionPolicy
from services.identity.memory import LiveCopies
from services.identity.repository import Attempt, IdentityRepository
from shared import events
from shared.accounts import InvalidEmail, normalize_email
from shared.clock import utcnow
from shared.messaging import Announcer
from shared.secrets import MailTokenCipher, TokenBinding, new_token, token_hash
from shared.tenancy import TenantSettings

# The purposes tokens are issued and sealed for: the mailer checks them against the event.
CONFIRM, RESET, UNLOCK = events.UserRegistered.PURPOSE, events.ResetRequested.PURPOSE, events.UnlockRequested.PURPOSE
UNLOCK_TTL = timedelta(minutes=30)
FIND_PORTAL_INTERVAL = timedelta(minutes=15)
T = TypeVar("T")


class PasswordHasher:
    """bcrypt off the event loop in a queue of its own, one worker per core; a dummy hash answers
    for unknown emails.

    The queue is bounded by time: when a new hash would wait longer than ``max_wait`` (the work in
    the queue, at the measured time of one hash, spread over the workers), it is refused at once
    with 503 service_unavailable and Retry-After, rather than letting every login's latency grow
    without bound under overload.

    The counters are exported at /metrics: they show, without timing anything, that every login
    that reaches the password runs bcrypt once and a locked account runs it not at all; and how
    much CPU bcrypt took, which the benchmark subtracts to find the cost of everything else."""

    def __init__(self, rounds: int, *, workers: int | None = None, max_wait: float = 1.0) -> None:
        self.rounds, self.max_wait = rounds, max_wait
        self.workers = workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bcrypt", initializer=_yielding)
        started = time.perf_counter()
        self._dummy = domain.hash_password(new_token(), rounds=rounds)
        self._seconds_each = time.perf_counter() - started  # moving average of one hash's run time
        self._in_queue = 0
        self.hashes = 0
        self.verifications = 0
        self.refused = 0
        self.cpu_seconds = 0.0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return await self._run(domain.hash_password, password, rounds=self.rounds)

    async def verify(self, password: str, hashed: str | None) -> bool:
        self.verifications += 1
        ok = await self._run(domain.verify_password, password, hashed or self._dummy)
        return ok and hashed is not None

    def outdated(self, hashed: str) -> bool:
        return domain.hash_rounds(hashed) != self.rounds

    def expected_wait(self) -> float:
        return self._in_queue // self.workers * self._seconds_each

    async def _run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        wait = self.expected_wait()
        if wait > self.max_wait:
            self.refused += 1
            raise Refused("service_unavailable", retry_after=max(1, math.ceil(wait)))
        self._in_queue += 1
        try:
            result, wall, cpu = await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(_timed, work, *args, **kwargs))
        finally:
            self._in_queue -= 1
        self.cpu_seconds += cpu
        self._seconds_each += (wall - self._seconds_each) / 8
        return result


HASH_NICENESS = 5


def _yielding() -> None:
    """A bcrypt worker runs at a lower priority (niceness +5) than the event loop's thread: the
    workers keep every core busy, and the loop's short bursts of work (a request to parse, a
    database answer to take) would otherwise wait for the scheduler to take a core from a hash.
    The hashes lose almost nothing, since the loop needs little CPU; each login's time beyond its
    hash shrinks."""
    with contextlib.suppress(OSError, AttributeError):  # a platform without per-thread niceness
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + HASH_NICENESS)


def _timed(work: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = work(*args, **kwargs)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


@dataclass(frozen=True)
class Org:
    slug: str
    name: str
    settings: TenantSettings
    host: str


@dataclass(frozen=True)
class Deps:
    cipher: MailTokenCipher
    hasher: PasswordHasher
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    clock: Callable[[], datetime] = utcnow
    memory: LiveCopies | None = None  # organizations and live locks; None: the tables answer


@dataclass(frozen=True)
class SignedIn:
    cookie_value: str
    max_age: int | None
    user: dict[str, Any]
    organization: dict[str, Any]


async def organization(repo: IdentityRepository, *, host: str) -> Org:
    """The organization a host serves, from identity's copy of tenant's (organization_not_found)."""
    row = await repo.tenant_for_host(host)
    if row is None:
        raise Refused("organization_not_found", host=host)
    return Org(slug=row.slug, name=row.name, settings=TenantSettings.model_validate(row.settings), host=host)


async def register(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str, password: str,
                   display_name: str | None) -> None:
    address = _email(email)
    password_hash = await deps.hasher.hash(_password(password, org))
    user_id = await repo.add_user(tenant=org.slug, email=address, password_hash=password_hash, display_name=display_name)
    if user_id is None:
        existing = await repo.user_by_email(tenant=org.slug, email=address)
        if existing is not None:
            await announce(events.RegistrationRepeated(email=address, user_id=existing.id, host=org.host), tenant=org.slug)
        return
    sealed, expires_at = await _issue(repo, deps, org, user_id, address, CONFIRM)  # the first link: never over the limit
    await announce(events.UserRegistered(email=address, user_id=user_id, host=org.host, token_encrypted=sealed,
                                         expires_at=expires_at, display_name=display_name), tenant=org.slug)


async def resend_confirmation(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str) -> None:
    user = await repo.user_by_email(tenant=org.slug, email=_email(email))
    if user is None or user.confirmed_at is not None or not await _may_issue(repo, deps, org, user.id, CONFIRM):
        return
    sealed, expires_at = await _issue(repo, deps, org, user.id, user.email, CONFIRM)
    await announce(events.ConfirmationRequested(email=user.email, user_id=user.id, host=org.host,
                                                token_encrypted=sealed, expires_at=expires_at), tenant=org.slug)


async def confirm(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, token: str, password: str,
                  source: str) -> Refused | None:
    """The link proves the mailbox, the password proves the registrant: someone who registered
    another person's address cannot have that person confirm the squatter's account. A wrong
    password is a failed login (returned, so its LoginFailed commits) and leaves the link usable."""
    now = deps.clock()
    row = await _live_token(repo, deps, org, token, CONFIRM)
    user = await repo.user_by_id(tenant=org.slug, user_id=row.user_id)
    await _admit(repo, deps, org, user.email, source, now)
    if not await deps.hasher.verify(password, user.password_hash):
        return await _login_failed(repo, announce, deps, org, email=user.email, source=source, now=now)
    await _use(repo, deps, org, row)
    await repo.confirm_user(tenant=org.slug, user_id=user.id, now=now)
    await announce(events.EmailConfirmed(email=user.email, user_id=user.id), tenant=org.slug)
    return None


@contextlib.contextmanager
def admitted(deps: Deps, org: Org, *, email: str, source: str) -> Iterator[None]:
    """What a login checks before anything else (no database, no bcrypt): the replica's memory of
    lockout's decisions, first, so a locked account is answered 423 and never 429 whatever the
    concurrency; then whether another attempt on the account is in flight here (429). Without
    that memory (still catching up) ``login`` asks the table."""
    if deps.memory is None:
        yield
        return
    now, address = deps.clock(), _email(email)
    known_locked = locked_in_memory(deps, org, address=address, source=source, now=now)
    if known_locked is not None:
        raise known_locked
    with deps.memory.in_flight.claim(org.slug, address) as claimed:
        if not claimed:
            raise _one_at_a_time(now)
        yield


def locked_in_memory(deps: Deps, org: Org, *, address: str, source: str, now: datetime) -> Refused | None:
    """account_locked when the replica's memory of lockout's decisions, caught up, holds a lock
    of this account for this source (``address`` normalized)."""
    if deps.memory is None or not deps.memory.ready:
        return None
    locked_until = deps.memory.locks.locked_until(tenant=org.slug, email=address, source=source, now=now)
    return _locked(now, until=locked_until) if locked_until is not None else None


async def login(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str, password: str, remember: bool,
                source: str) -> SignedIn | Refused:
    """A refusal is returned, not raised, when its effects must be committed (LoginFailed).
    The entrypoint runs it ``admitted``, outside the transaction.
    The database is asked once before the hash and written once after it."""
    address, now = _email(email), deps.clock()
    attempt = await _admit(repo, deps, org, address, source, now)
    user = attempt.user
    verified = await deps.hasher.verify(password, user.password_hash if user else None)
    if user is None or not verified:
        return await _login_failed(repo, announce, deps, org, email=address, source=source, now=now)
    if user.confirmed_at is None:  # said only now, after the right password
        raise Refused("user_not_confirmed", actions=["resend_confirmation"])
    if deps.hasher.outdated(user.password_hash):
        await repo.set_password_hash(tenant=org.slug, user_id=user.id, password_hash=await deps.hasher.hash(password))
    cookie_value, (idle, absolute) = new_token(), deps.sessions.limits(remember=remember)
    written = announce.statement(events.LoginSucceeded(email=address, user_id=user.id, source=source,
                                                       failures_from_source=attempt.recent.from_source), tenant=org.slug)
    await repo.sign_in(tenant=org.slug, email=address, source=source, announce=written, session={
        "id": uuid.uuid4(), "token_hash": token_hash(cookie_value), "tenant": org.slug, "user_id": user.id,
        "remember": remember, "created_at": now, "idle_expires_at": now + idle, "absolute_expires_at": now + absolute})
    return SignedIn(cookie_value=cookie_value, max_age=int(absolute.total_seconds()) if remember else None,
                    user=_user(user.id, user.email, user.display_name), organization=_org(org))


async def _login_failed(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str, source: str,
                        now: datetime) -> Refused:
    """A wrong password, at login or on a confirmation link: lockout counts it either way."""
    written = announce.statement(events.LoginFailed(email=email, source=source), tenant=org.slug)
    await repo.record_failure(tenant=org.slug, email=email, source=source, now=now, window=_window(org), announce=written)
    return Refused("invalid_credentials")


async def _admit(repo: IdentityRepository, deps: Deps, org: Org, address: str, source: str, now: datetime) -> Attempt:
    """The refusals that cost no bcrypt work: a parallel attempt on the same account (the
    transaction-scoped advisory lock is held until this attempt commits), a lock (from the table
    while the memory is not there), or failures that reached a threshold while lockout's verdict
    is on its way. Otherwise the attempt: the account's user and recent failures, read in the same
    round trip."""
    attempt = await repo.attempt(tenant=org.slug, email=address, source=source, since=now - _window(org))
    if not attempt.serialized:
        raise _one_at_a_time(now)
    if deps.memory is not None and deps.memory.ready:
        locked_until = deps.memory.locks.locked_until(tenant=org.slug, email=address, source=source, now=now)
    else:
        locked_until = await repo.locked_until(tenant=org.slug, email=address, source=source, now=now)
    if locked_until is not None:
        raise _locked(now, until=locked_until)
    policy = org.settings.lockout
    verdict_due = domain.awaiting_lockout(attempt.recent, max_from_source=policy.max_failures,
                                          max_from_all=policy.max_failures_account, now=now)
    if verdict_due is not None:
        raise _retry_later("too_many_requests", now, until=verdict_due)
    return attempt


def _locked(now: datetime, *, until: datetime) -> Refused:
    """account_locked offers the emailed unlock link (issue 14)."""
    return _retry_later("account_locked", now, until=until, actions=["send_unlock_link"])


def _one_at_a_time(now: datetime) -> Refused:
    return _retry_later("too_many_requests", now, until=now + timedelta(seconds=1))


def _retry_later(code: str, now: datetime, *, until: datetime, **extra: object) -> Refused:
    """account_locked and too_many_requests carry when to come back, as locked_until and Retry-After."""
    seconds = max(1, math.ceil((until - now).total_seconds()))
    return Refused(code, retry_after=seconds, locked_until=until.isoformat(), **extra)


async def _lift_locks(repo: IdentityRepository, deps: Deps, org: Org, email: str) -> None:
    """Identity's copies of every lock of the account, and its failure count, gone now (a reset,
    an unlock link): the person signs in at once; lockout's AccountUnlocked tells every replica."""
    await repo.clear_locks(tenant=org.slug, email=email, every=True)
    await repo.clear_failures(tenant=org.slug, email=email)
    if deps.memory is not None:
        deps.memory.locks.unlock(tenant=org.slug, email=email, source=None, every=True)


def _window(org: Org) -> timedelta:
    return timedelta(seconds=org.settings.lockout.window_seconds)


async def current_session(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *,
                          cookie_value: str | None) -> dict[str, Any]:
    now = deps.clock()
    row = await repo.session(tenant=org.slug, token_hash=token_hash(cookie_value), now=now) if cookie_value else None
    if row is None:
        raise Refused("not_authenticated")
    idle = deps.sessions.idle_deadline(now, remember=row.remember, absolute_expires_at=row.absolute_expires_at)
    if idle - row.idle_expires_at > timedelta(minutes=1):  # slide the idle window, at most one write a minute
        await repo.extend_session(session_id=row.id, idle_expires_at=idle)
    return {"user": _user(row.user_id, row.email, row.display_name), "organization": _org(org)}


async def logout(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, cookie_value: str | None) -> None:
    now = deps.clock()
    row = await repo.session(tenant=org.slug, token_hash=token_hash(cookie_value), now=now) if cookie_value else None
    if row is not None:
        await _revoke(repo, announce, deps, org, email=row.email, user_id=row.user_id, reason="logout", session_id=row.id)


async def logout_all(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, cookie_value: str | None) -> None:
    """Every session of the signed-in person ends, this one too: after a suspected compromise."""
    now = deps.clock()
    row = await repo.session(tenant=org.slug, token_hash=token_hash(cookie_value), now=now) if cookie_value else None
    if row is None:
        raise Refused("not_authenticated")
    await _revoke(repo, announce, deps, org, email=row.email, user_id=row.user_id, reason="logout_all")


async def _revoke(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str, user_id: uuid.UUID,
                  reason: events.RevokeReason, session_id: uuid.UUID | None = None) -> None:
    """One session, or with no ``session_id`` every session of the user; a SessionRevoked for each."""
    for revoked in await repo.revoke_sessions(tenant=org.slug, user_id=user_id, session_id=session_id, now=deps.clock()):
        await announce(events.SessionRevoked(email=email, user_id=user_id, session_id=revoked, reason=reason), tenant=org.slug)


async def forgot_password(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str) -> None:
    user = await repo.user_by_email(tenant=org.slug, email=_email(email))
    if user is None or not await _may_issue(repo, deps, org, user.id, RESET):
        return
    sealed, expires_at = await _issue(repo, deps, org, user.id, user.email, RESET)
    await announce(events.ResetRequested(email=user.email, user_id=user.id, host=org.host,
                                         token_encrypted=sealed, expires_at=expires_at), tenant=org.slug)


async def reset_password(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, token: str, password: str) -> None:
    """A new password revokes every session and lifts every lock; it also proves the address."""
    new_password = _password(password, org)
    now = deps.clock()
    row = await _redeem(repo, deps, org, token, RESET)
    user = await repo.user_by_id(tenant=org.slug, user_id=row.user_id)
    # A login that checked the old password may still be opening its session: wait for it, so
    # the revocation below sees that session too.
    await repo.wait_for_account(tenant=org.slug, email=user.email)
    await repo.set_password_hash(tenant=org.slug, user_id=user.id, password_hash=await deps.hasher.hash(new_password))
    await repo.confirm_user(tenant=org.slug, user_id=user.id, now=now)
    await _lift_locks(repo, deps, org, user.email)
    await _revoke(repo, announce, deps, org, email=user.email, user_id=user.id, reason="password_changed")
    await announce(events.PasswordChanged(email=user.email, user_id=user.id, host=org.host), tenant=org.slug)


async def request_unlock(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, email: str) -> None:
    """An unlock link, only when the account exists and is locked (identity's copy of lockout's
    decisions); the answer is the same either way."""
    user = await repo.user_by_email(tenant=org.slug, email=_email(email))
    if user is None or not await repo.locked(tenant=org.slug, email=user.email, now=deps.clock()) \
            or not await _may_issue(repo, deps, org, user.id, UNLOCK):
        return
    sealed, expires_at = await _issue(repo, deps, org, user.id, user.email, UNLOCK)
    await announce(events.UnlockRequested(email=user.email, user_id=user.id, host=org.host,
                                          token_encrypted=sealed, expires_at=expires_at), tenant=org.slug)


async def unlock(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, token: str) -> None:
    """The link proves the mailbox: lockout lifts every lock when UnlockLinkUsed reaches it (it
    stays the one that decides locks); identity clears its own copy now, so the person can sign
    in at once, as after a reset."""
    row = await _redeem(repo, deps, org, token, UNLOCK)
    user = await repo.user_by_id(tenant=org.slug, user_id=row.user_id)
    await _lift_locks(repo, deps, org, user.email)
    await announce(events.UnlockLinkUsed(email=user.email, user_id=user.id), tenant=org.slug)


async def renew_link(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, token: str, purpose: str) -> None:
    """A new link for the account of an expired or used one, as its request form would send:
    the page needs no address, and shows none. An unknown token sends nothing."""
    row = await repo.token(tenant=org.slug, purpose=purpose, token_hash=token_hash(token or ""))
    user = await repo.user_by_id(tenant=org.slug, user_id=row.user_id) if row is not None else None
    if user is not None:
        await RENEWALS[purpose](repo, announce, deps, org, email=user.email)


async def find_portals(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org | None, *, email: str) -> None:
    """On any host: one email listing the address's organizations and their login pages, at most
    once per FIND_PORTAL_INTERVAL; nothing when it has no account."""
    address, now = _email(email), deps.clock()
    portals = await repo.portals_of(email=address)
    if not portals or not await repo.note_portal_list(email_hash=token_hash(address), now=now, interval=FIND_PORTAL_INTERVAL):
        return
    listed = [events.Portal(name=TenantSettings.model_validate(p.settings).display_name or p.name, host=p.host)
              for p in portals]
    await announce(events.PortalsRequested(email=address, portals=listed), tenant=events.NO_TENANT)


async def check_link(repo: IdentityRepository, announce: Announcer, deps: Deps, org: Org, *, token: str, purpose: str) -> None:
    """Whether a confirmation or reset link can still be used, without using it: the pages say
    "Link expired" before asking for a new password, and a mail scanner's GET changes nothing."""
    await _live_token(repo, deps, org, token, purpose)


# --- identity's copies of organizations and locks, fed by tenant's and lockout's events -----------


async def save_organization(repo: IdentityRepository, *, slug: str, name: str, settings: dict[str, Any],
                            domains: list[str] | None = None) -> None:
    """An organization created (with its ``domains``) or changed (domains untouched)."""
    await repo.save_tenant(slug=slug, name=name, settings=settings)
    for host in domains or ():
        await repo.add_domain(slug=slug, host=host)


async def add_domain(repo: IdentityRepository, *, slug: str, host: str) -> None:
    await repo.add_domain(slug=slug, host=host)


async def remove_domain(repo: IdentityRepository, *, slug: str, host: str) -> None:
    await repo.remove_domain(slug=slug, host=host)


async def account_locked(repo: IdentityRepository, *, tenant: str, email: str, source: str | None, until: datetime) -> None:
    await repo.save_lock(tenant=tenant, email=email, source=source, until=until)


async def account_unlocked(repo: IdentityRepository, *, tenant: str, email: str, source: str | None, reason: str) -> None:
    """An expired lock ends for its own source; an operator or a new password lifts them all. The
    failures that led to it go too, so they hold back no new attempt (see domain.awaiting_lockout)."""
    every = reason != "expired"
    await repo.clear_locks(tenant=tenant, email=email, source=source, every=every)
    await repo.clear_failures(tenant=tenant, email=email, source=None if every else source)


# --- helpers ------------------------------------------------------------------------------------


def _email(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidEmail:
        raise Refused("invalid_email") from None


def _password(raw: str, org: Org) -> str:
    try:
        return domain.check_password(raw, min_length=org.settings.password.min_length)
    except domain.PasswordTooShort as exc:
        title = f"Password must be at least {exc.min_length} characters"
        raise Refused("password_too_short", min_length=exc.min_length, title=title) from None
    except domain.PasswordTooLong:
        raise Refused("password_too_long", max_length=domain.MAX_PASSWORD_CHARS) from None
    except domain.PasswordTooCommon:
        raise Refused("password_too_common") from None


async def _may_issue(repo: IdentityRepository, deps: Deps, org: Org, user_id: uuid.UUID, purpose: str) -> bool:
    """Whether another link may go out; when not, the request is answered the same and nothing changes."""
    since = deps.clock() - domain.LINK_WINDOW
    return await repo.tokens_issued(tenant=org.slug, user_id=user_id, purpose=purpose, since=since) < domain.LINKS_PER_WINDOW


async def _issue(repo: IdentityRepository, deps: Deps, org: Org, user_id: uuid.UUID, email: str,
                 purpose: str) -> tuple[str, datetime]:
    token, now = new_token(), deps.clock()
    expires_at = now + _ttl(org, purpose)
    await repo.issue_token(tenant=org.slug, user_id=user_id, purpose=purpose, token_hash=token_hash(token),
                           expires_at=expires_at, now=now)
    return deps.cipher.seal(token, TokenBinding(tenant=org.slug, email=email, purpose=purpose, expires_at=expires_at)), expires_at


def _ttl(org: Org, purpose: str) -> timedelta:
    if purpose == CONFIRM:
        return timedelta(seconds=org.settings.tokens.confirmation_ttl_seconds)
    if purpose == RESET:
        return timedelta(seconds=org.settings.tokens.reset_ttl_seconds)
    return UNLOCK_TTL


async def _live_token(repo: IdentityRepository, deps: Deps, org: Org, token: str, purpose: str) -> Any:
    """The token's row, locked, if the link can still be used; else the refusal the person sees."""
    row = await repo.token(tenant=org.slug, purpose=purpose, token_hash=token_hash(token or ""))
    if row is None or row.used_at is not None or row.superseded_at is not None:
        raise Refused("token_invalid", actions=["request_new"])
    if row.expires_at <= deps.clock():
        raise Refused("token_expired", actions=["request_new"])
    return row


async def _redeem(repo: IdentityRepository, deps: Deps, org: Org, token: str, purpose: str) -> Any:
    row = await _live_token(repo, deps, org, token, purpose)
    await _use(repo, deps, org, row)
    return row


async def _use(repo: IdentityRepository, deps: Deps, org: Org, row: Any) -> None:
    """Once one link of a purpose is used, its siblings have done their work and stop working."""
    now = deps.clock()
    await repo.use_token(token_hash=row.token_hash, now=now)
    await repo.supersede_tokens(tenant=org.slug, user_id=row.user_id, purpose=row.purpose, now=now)


def _user(user_id: uuid.UUID, email: str, display_name: str | None) -> dict[str, Any]:
    return {"id": str(user_id), "email": email, "display_name": display_name}


def _org(org: Org) -> dict[str, Any]:
    return {"slug": org.slug, "name": org.name, "display_name": org.settings.display_name or org.name}


# What a renewed link of each purpose sends: exactly what its request form sends.
RENEWALS: dict[str, Callable[..., Any]] = {CONFIRM: resend_confirmation, RESET: forgot_password, UNLOCK: request_unlock}
