"""Identity keeps its own copies of organizations and locks, fed by tenant and lockout events."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.repository import IdentityRepository
from shared import events
from shared.events import Envelope
from shared.kafka import Handler


async def tenant_created(conn: AsyncConnection, envelope: Envelope, event: events.TenantCreated) -> None:
    repo = IdentityRepository(conn)
    await repo.save_tenant(slug=event.slug, name=event.name, settings=event.settings)
    for host in event.domains:
        await repo.add_domain(slug=event.slug, host=host)


async def tenant_updated(conn: AsyncConnection, envelope: Envelope, event: events.TenantUpdated) -> None:
    await IdentityRepository(conn).save_tenant(slug=event.slug, name=event.name, settings=event.settings)


async def domain_added(conn: AsyncConnection, envelope: Envelope, event: events.DomainAdded) -> None:
    await IdentityRepository(conn).add_domain(slug=event.slug, host=event.host)


async def domain_removed(conn: AsyncConnection, envelope: Envelope, event: events.DomainRemoved) -> None:
    await IdentityRepository(conn).remove_domain(slug=event.slug, host=event.host)


async def account_locked(conn: AsyncConnection, envelope: Envelope, event: events.AccountLocked) -> None:
    await IdentityRepository(conn).save_lock(tenant=envelope.tenant, email=event.email, source=event.source, until=event.locked_until)


async def account_unlocked(conn: AsyncConnection, envelope: Envelope, event: events.AccountUnlocked) -> None:
    # An expired lock ends for its own source; an operator or a new password lifts them all.
    # The failures that led to it go too, so they hold back no new attempt (see domain.awaiting_lockout).
    repo, every = IdentityRepository(conn), event.reason != "expired"
    await repo.clear_locks(tenant=envelope.tenant, email=event.email, source=event.source, every=every)
    await repo.clear_failures(tenant=envelope.tenant, email=event.email, source=None if every else event.source)


HANDLERS: dict[type[events.Event], Handler] = {
    events.TenantCreated: tenant_created,
    events.TenantUpdated: tenant_updated,
    events.DomainAdded: domain_added,
    events.DomainRemoved: domain_removed,
    events.AccountLocked: account_locked,
    events.AccountUnlocked: account_unlocked,
}
TOPICS = (events.TENANT_TOPIC, events.LOCKOUT_TOPIC)
