"""All of identity's SQL, scoped by organization in every query."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.domain import RecentFailures
from services.identity.tables import domains, failures, locks, portal_lookups, sessions, tenants, tokens, users
from shared.db import hold, lock_key, record
from shared.messaging import Written

ALL_SOURCES = ""


@dataclass(frozen=True, slots=True)
class Tenant:
    slug: str
    name: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Domain:
    slug: str
    host: str


@dataclass(frozen=True, slots=True)
class Lock:
    tenant: str
    email: str
    source: str
    locked_until: datetime


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    tenant: str
    email: str
    password_hash: str
    display_name: str | None
    confirmed_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Token:
    token_hash: str
    tenant: str
    user_id: uuid.UUID
    purpose: str
    expires_at: datetime
    used_at: datetime | None
    superseded_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    """A session with its user's email and name."""
    id: uuid.UUID
    token_hash: str
    tenant: str
    user_id: uuid.UUID
    remember: bool
    created_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    revoked_at: datetime | None
    email: str
    display_name: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a password check needs before the hash, read in one round trip: whether this
    transaction now holds the account's lock, its recent failures, and its user."""
    serialized: bool
    recent: RecentFailures
    user: User | None


def _account_lock(tenant: str, email: str) -> str:
    """The advisory lock every attempt on an account takes (logins try it, a reset waits for it)."""
    return f"login:{tenant}:{email}"


def _attempt_query() -> sa.Select[Any]:
    """``IdentityRepository.attempt``'s statement, built once: its parameters are bound at each
    execution (building it for every login took a third of the Python work of that round trip)."""
    tenant, email = sa.bindparam("tenant", type_=sa.String), sa.bindparam("email", type_=sa.String)
    recent = sa.select(sa.func.count().filter(failures.c.source == sa.bindparam("source", type_=sa.String)).label("from_source"),
                       sa.func.count().label("from_all"), sa.func.max(failures.c.failed_at).label("latest")) \
        .where(failures.c.tenant == tenant, failures.c.email == email, failures.c.failed_at > sa.bindparam("since")) \
        .subquery("recent")
    serialized = sa.func.pg_try_advisory_xact_lock(lock_key(sa.bindparam("lock", type_=sa.String)))
    return (sa.select(serialized.label("serialized"), recent, users)
            .select_from(recent.outerjoin(users, sa.and_(users.c.tenant == tenant, users.c.email == email))))


_ATTEMPT = _attempt_query()


def _account(table: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.tenant == sa.bindparam("tenant", type_=sa.String), table.c.email == sa.bindparam("email", type_=sa.String))


@lru_cache(maxsize=8)
def _sign_in_query(announce: sa.Insert) -> sa.Insert:
    """``IdentityRepository.sign_in``'s statement around an outbox's insert, built once per outbox."""
    forgotten = failures.delete().where(_account(failures), failures.c.source == sa.bindparam("source", type_=sa.String))
    opened = sessions.insert().values({name: sa.bindparam(f"session_{name}", type_=sessions.c[name].type) for name in (
        "id", "token_hash", "tenant", "user_id", "remember", "created_at", "idle_expires_at", "absolute_expires_at")})
    return announce.add_cte(forgotten.cte("forgotten"), opened.cte("opened"))


@lru_cache(maxsize=8)
def _record_failure_query(announce: sa.Insert) -> sa.Insert:
    """``IdentityRepository.record_failure``'s statement around an outbox's insert, built once per outbox."""
    forgotten = failures.delete().where(_account(failures), failures.c.failed_at <= sa.bindparam("before", type_=failures.c.failed_at.type))
    added = failures.insert().values(tenant=sa.bindparam("tenant", type_=sa.String), email=sa.bindparam("email", type_=sa.String),
                                     source=sa.bindparam("source", type_=sa.String),
                                     failed_at=sa.bindparam("now", type_=failures.c.failed_at.type))
    return announce.add_cte(forgotten.cte("forgotten"), added.cte("added"))


class IdentityRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- copies of the tenant service's organizations -----------------------------------------

    async def tenant_for_host(self, host: str) -> Tenant | None:
        query = sa.select(tenants).join(domains, domains.c.slug == tenants.c.slug).where(domains.c.host == host)
        return record(Tenant, (await self.conn.execute(query)).first())

    async def tenant(self, slug: str) -> Tenant | None:
        return record(Tenant, (await self.conn.execute(sa.select(tenants).where(tenants.c.slug == slug))).first())

    async def tenants(self) -> list[Tenant]:
        """Every organization identity knows, for the replica's memory at start."""
        return [record(Tenant, row) for row in await self.conn.execute(sa.select(tenants))]

    async def domains(self) -> list[Domain]:
        return [record(Domain, row) for row in await self.conn.execute(sa.select(domains))]

    async def save_tenant(self, *, slug: str, name: str, settings: dict[str, Any]) -> None:
        stmt = insert(tenants).values(slug=slug, name=name, settings=settings)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[tenants.c.slug], set_={"name": name, "settings": settings}))

    async def add_domain(self, *, slug: str, host: str) -> None:
        stmt = insert(domains).values(host=host, slug=slug)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[domains.c.host], set_={"slug": slug}))

    async def remove_domain(self, *, slug: str, host: str) -> None:
        await self.conn.execute(domains.delete().where(domains.c.host == host, domains.c.slug == slug))

    # --- copies of the lockout service's decisions --------------------------------------------

    async def save_lock(self, *, tenant: str, email: str, source: str | None, until: datetime) -> None:
        stmt = insert(locks).values(tenant=tenant, email=email, source=source or ALL_SOURCES, locked_until=until)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[locks.c.tenant, locks.c.email, locks.c.source],
                                                           set_={"locked_until": until}))

    async def clear_locks(self, *, tenant: str, email: str, source: str | None = None, every: bool = False) -> None:
        query = locks.delete().where(locks.c.tenant == tenant, locks.c.email == email)
        if not every:
            query = query.where(locks.c.source == (source or ALL_SOURCES))
        await self.conn.execute(query)

    async def live_locks(self) -> list[Lock]:
        """Every lock still in force, for the replica's memory at start."""
        return [record(Lock, row) for row in await self.conn.execute(sa.select(locks).where(locks.c.locked_until > sa.func.now()))]

    async def locked_until(self, *, tenant: str, email: str, source: str, now: datetime) -> datetime | None:
        until: datetime | None = await self.conn.scalar(sa.select(sa.func.max(locks.c.locked_until)).where(
            locks.c.tenant == tenant, locks.c.email == email,
            locks.c.source.in_([ALL_SOURCES, source]), locks.c.locked_until > now))
        return until

    async def locked(self, *, tenant: str, email: str, now: datetime) -> bool:
        """Whether any lock of the account (for one source or for all) is in force."""
        return bool(await self.conn.scalar(sa.select(sa.exists().where(
            locks.c.tenant == tenant, locks.c.email == email, locks.c.locked_until > now))))

    async def wait_for_account(self, *, tenant: str, email: str) -> None:
        """Take the same lock, waiting: a password change waits for a login in flight to finish."""
        await hold(self.conn, _account_lock(tenant, email))

    # --- failed logins seen here, until lockout's verdict arrives -------------------------------

    async def record_failure(self, *, tenant: str, email: str, source: str, now: datetime, window: timedelta,
                             announce: Written) -> None:
        """Adds a failure, forgets this account's failures older than the window and writes the
        event (``announce``, its outbox row), in one statement."""
        await self.conn.execute(_record_failure_query(announce.statement), {
            "tenant": tenant, "email": email, "source": source, "now": now, "before": now - window, **announce.params})

    async def sign_in(self, *, tenant: str, email: str, source: str, session: dict[str, Any], announce: Written) -> None:
        """Forgets the failures from ``source``, opens the session and writes the event
        (``announce``, its outbox row), in one statement."""
        await self.conn.execute(_sign_in_query(announce.statement), {
            "tenant": tenant, "email": email, "source": source, **{f"session_{k}": v for k, v in session.items()},
            **announce.params})

    async def attempt(self, *, tenant: str, email: str, source: str, since: datetime) -> Attempt:
        """Try the account's lock, count its failures since ``since`` and read its user, in one
        statement. The statement's snapshot is taken just before the lock is tried: an attempt
        of another replica that released the lock within those microseconds may have its failure
        missed by this count (lockout, which decides every lock, counts it)."""
        row = (await self.conn.execute(_ATTEMPT, {"tenant": tenant, "email": email, "source": source, "since": since,
                                                  "lock": _account_lock(tenant, email)})).one()
        return Attempt(serialized=row.serialized,
                       recent=RecentFailures(from_source=row.from_source, from_all=row.from_all, latest=row.latest),
                       user=record(User, row) if row.id is not None else None)

    async def clear_failures(self, *, tenant: str, email: str, source: str | None = None) -> None:
        """Forget the failures from ``source``, or from every source when it is None."""
        query = failures.delete().where(failures.c.tenant == tenant, failures.c.email == email)
        await self.conn.execute(query if source is None else query.where(failures.c.source == source))

    # --- users --------------------------------------------------------------------------------

    async def user_by_email(self, *, tenant: str, email: str) -> User | None:
        return record(User, (await self.conn.execute(sa.select(users).where(users.c.tenant == tenant, users.c.email == email))).first())

    async def user_by_id(self, *, tenant: str, user_id: uuid.UUID) -> User:
        """A user a token or session points at (their foreign keys say it is there)."""
        return record(User, (await self.conn.execute(sa.select(users).where(users.c.tenant == tenant, users.c.id == user_id))).one())

    async def add_user(self, *, tenant: str, email: str, password_hash: str, display_name: str | None) -> uuid.UUID | None:
        """The new user's id, or None when the address is already registered in this organization."""
        stmt = insert(users).values(id=uuid.uuid4(), tenant=tenant, email=email, password_hash=password_hash,
                                    display_name=display_name).on_conflict_do_nothing().returning(users.c.id)
        user_id: uuid.UUID | None = await self.conn.scalar(stmt)
        return user_id

    async def confirm_user(self, *, tenant: str, user_id: uuid.UUID, now: datetime) -> None:
        await self.conn.execute(users.update().where(users.c.tenant == tenant, users.c.id == user_id, users.c.confirmed_at.is_(None))
                                .values(confirmed_at=now))

    async def set_password_hash(self, *, tenant: str, user_id: uuid.UUID, password_hash: str) -> None:
        await self.conn.execute(users.update().where(users.c.tenant == tenant, users.c.id == user_id).values(password_hash=password_hash))

    async def portals_of(self, *, email: str) -> list[Any]:
        """(name, settings, host) of each organization where the address has an account, with
        the first of its portal domains; across organizations, for find-portal only."""
        first_domain = (sa.select(domains.c.slug, sa.func.min(domains.c.host).label("host"))
                        .group_by(domains.c.slug).subquery())
        query = (sa.select(tenants.c.name, tenants.c.settings, first_domain.c.host)
                 .join(users, users.c.tenant == tenants.c.slug)
                 .join(first_domain, first_domain.c.slug == tenants.c.slug)
                 .where(users.c.email == email).order_by(tenants.c.name, first_domain.c.host))
        return list((await self.conn.execute(query)).all())

    async def note_portal_list(self, *, email_hash: str, now: datetime, interval: timedelta) -> bool:
        """Record that the address is sent its portals now; False (nothing recorded) when it
        was sent them less than ``interval`` ago. One statement, so parallel requests send one."""
        stmt = insert(portal_lookups).values(email_hash=email_hash, sent_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[portal_lookups.c.email_hash], set_={"sent_at": now},
                                          where=portal_lookups.c.sent_at <= now - interval)
        return (await self.conn.execute(stmt.returning(portal_lookups.c.email_hash))).first() is not None

    # --- single-use tokens --------------------------------------------------------------------

    async def issue_token(self, *, tenant: str, user_id: uuid.UUID, purpose: str, token_hash: str,
                          expires_at: datetime, now: datetime) -> None:
        """A new link voids none of the earlier ones: asking for links must not void someone's."""
        await self.conn.execute(tokens.insert().values(token_hash=token_hash, tenant=tenant, user_id=user_id,
                                                       purpose=purpose, expires_at=expires_at, created_at=now))

    async def tokens_issued(self, *, tenant: str, user_id: uuid.UUID, purpose: str, since: datetime) -> int:
        """How many links of ``purpose`` the account was sent since then; serialized per account
        (the user row is locked), so two requests at once cannot both take the last one."""
        await self.conn.execute(sa.select(users.c.id).where(users.c.tenant == tenant, users.c.id == user_id).with_for_update())
        return await self.conn.scalar(sa.select(sa.func.count()).select_from(tokens).where(
            tokens.c.tenant == tenant, tokens.c.user_id == user_id, tokens.c.purpose == purpose, tokens.c.created_at > since)) or 0

    async def supersede_tokens(self, *, tenant: str, user_id: uuid.UUID, purpose: str, now: datetime) -> None:
        """Every unused link of ``purpose`` stops working (one of them was just used)."""
        await self.conn.execute(tokens.update().where(
            tokens.c.tenant == tenant, tokens.c.user_id == user_id, tokens.c.purpose == purpose,
            tokens.c.used_at.is_(None), tokens.c.superseded_at.is_(None)).values(superseded_at=now))

    async def token(self, *, tenant: str, purpose: str, token_hash: str) -> Token | None:
        """The token's row, whatever its state (used, superseded, expired), locked."""
        return record(Token, (await self.conn.execute(sa.select(tokens).where(
            tokens.c.token_hash == token_hash, tokens.c.tenant == tenant, tokens.c.purpose == purpose).with_for_update())).first())

    async def use_token(self, *, token_hash: str, now: datetime) -> None:
        await self.conn.execute(tokens.update().where(tokens.c.token_hash == token_hash).values(used_at=now))

    # --- sessions -----------------------------------------------------------------------------

    async def session(self, *, tenant: str, token_hash: str, now: datetime) -> Session | None:
        """A live session of this organization, with its user."""
        query = (sa.select(sessions, users.c.email, users.c.display_name)
                 .join(users, users.c.id == sessions.c.user_id)
                 .where(sessions.c.token_hash == token_hash, sessions.c.tenant == tenant,
                        sessions.c.revoked_at.is_(None), sessions.c.idle_expires_at > now,
                        sessions.c.absolute_expires_at > now))
        return record(Session, (await self.conn.execute(query)).first())

    async def extend_session(self, *, session_id: uuid.UUID, idle_expires_at: datetime) -> None:
        await self.conn.execute(sessions.update().where(sessions.c.id == session_id).values(idle_expires_at=idle_expires_at))

    async def revoke_sessions(self, *, tenant: str, user_id: uuid.UUID, now: datetime,
                              session_id: uuid.UUID | None = None) -> list[uuid.UUID]:
        query = sessions.update().where(sessions.c.tenant == tenant, sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        if session_id is not None:
            query = query.where(sessions.c.id == session_id)
        return list((await self.conn.scalars(query.values(revoked_at=now).returning(sessions.c.id))).all())
