"""Identity's Kafka entrypoints: its copies of organizations and locks, fed by tenant's and
lockout's events. Each subscriber takes the event and calls one handler."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity import handlers
from services.identity.repository import IdentityRepository
from shared import events
from shared.events import Envelope
from shared.kafka import Handler

TOPICS = (events.TENANT_TOPIC, events.LOCKOUT_TOPIC)


async def tenant_created(conn: AsyncConnection, envelope: Envelope, event: events.TenantCreated) -> None:
    await handlers.save_organization(IdentityRepository(conn), slug=event.slug, name=event.name, settings=event.settings,
                                     domains=event.domains)


async def tenant_updated(conn: AsyncConnection, envelope: Envelope, event: events.TenantUpdated) -> None:
    await handlers.save_organization(IdentityRepository(conn), slug=event.slug, name=event.name, settings=event.settings)


async def domain_added(conn: AsyncConnection, envelope: Envelope, event: events.DomainAdded) -> None:
    await handlers.add_domain(IdentityRepository(conn), slug=event.slug, host=event.host)


async def domain_removed(conn: AsyncConnection, envelope: Envelope, event: events.DomainRemoved) -> None:
    await handlers.remove_domain(IdentityRepository(conn), slug=event.slug, host=event.host)


async def account_locked(conn: AsyncConnection, envelope: Envelope, event: events.AccountLocked) -> None:
    await handlers.account_locked(IdentityRepository(conn), tenant=envelope.tenant, email=event.email, source=event.source,
                                  until=event.locked_until)


async def account_unlocked(conn: AsyncConnection, envelope: Envelope, event: events.AccountUnlocked) -> None:
    await handlers.account_unlocked(IdentityRepository(conn), tenant=envelope.tenant, email=event.email, source=event.source,
                                    reason=event.reason)


def subscribers() -> dict[type[events.Event], Handler]:
    """Which subscriber takes each event identity consumes."""
    return {
        events.TenantCreated: tenant_created,
        events.TenantUpdated: tenant_updated,
        events.DomainAdded: domain_added,
        events.DomainRemoved: domain_removed,
        events.AccountLocked: account_locked,
        events.AccountUnlocked: account_unlocked,
    }
