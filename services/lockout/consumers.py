"""Lockout's Kafka entrypoints: identity's login events feed the counts, tenant's events the
settings. Each subscriber takes the event and calls one handler."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.lockout import handlers
from services.lockout.repository import LIVE, LockoutRepository, Tables
from shared import events
from shared.events import Envelope
from shared.kafka import Handler, only_when, replay_safe
from shared.messaging import Announce, Announcer, Outbox

TOPICS = (events.IDENTITY_TOPIC, events.TENANT_TOPIC)
REPLAY_TOPICS = (*TOPICS, events.LOCKOUT_TOPIC)


def subscribers(outbox: Outbox | None, tables: Tables = LIVE) -> dict[type[events.Event], Handler]:
    """The live consumer announces its decisions through ``outbox``; a rebuild passes None and its
    own tables, and the very same code recomputes the state without announcing anything."""

    def announce(conn: AsyncConnection, envelope: Envelope) -> Announce:
        return handlers.silent if outbox is None else Announcer(conn, outbox, correlation_id=envelope.correlation_id)

    async def login_failed(conn: AsyncConnection, envelope: Envelope, event: events.LoginFailed) -> None:
        await handlers.record_failure(LockoutRepository(conn, tables), announce(conn, envelope), tenant=envelope.tenant,
                                      email=event.email, source=event.source, at=envelope.occurred_at, event_id=envelope.event_id)

    @replay_safe
    @only_when(lambda event: event.failures_from_source != 0)  # identity counted none: nothing to forget
    async def login_succeeded(conn: AsyncConnection, envelope: Envelope, event: events.LoginSucceeded) -> None:
        await handlers.record_success(LockoutRepository(conn, tables), tenant=envelope.tenant, email=event.email,
                                      source=event.source, at=envelope.occurred_at)

    async def password_changed(conn: AsyncConnection, envelope: Envelope, event: events.PasswordChanged) -> None:
        await handlers.password_changed(LockoutRepository(conn, tables), announce(conn, envelope), tenant=envelope.tenant,
                                        email=event.email, at=envelope.occurred_at)

    async def unlock_link_used(conn: AsyncConnection, envelope: Envelope, event: events.UnlockLinkUsed) -> None:
        await handlers.email_unlock(LockoutRepository(conn, tables), announce(conn, envelope), tenant=envelope.tenant,
                                    email=event.email, at=envelope.occurred_at)

    async def tenant_saved(conn: AsyncConnection, envelope: Envelope, event: events.TenantCreated | events.TenantUpdated) -> None:
        await handlers.save_settings(LockoutRepository(conn, tables), slug=event.slug, settings=event.settings)

    return {
        events.LoginFailed: login_failed,
        events.LoginSucceeded: login_succeeded,
        events.PasswordChanged: password_changed,
        events.UnlockLinkUsed: unlock_link_used,
        events.TenantCreated: tenant_saved,
        events.TenantUpdated: tenant_saved,
    }


def replay_subscribers(tables: Tables) -> dict[type[events.Event], Handler]:
    """What a rebuild replays: the live subscribers, silent, and lockout's own AccountUnlocked."""

    async def account_unlocked(conn: AsyncConnection, envelope: Envelope, event: events.AccountUnlocked) -> None:
        await handlers.replay_unlock(LockoutRepository(conn, tables), tenant=envelope.tenant, email=event.email,
                                     source=event.source, reason=event.reason, at=envelope.occurred_at)

    return {**subscribers(None, tables), events.AccountUnlocked: account_unlocked}
