"""The mailer's Kafka entrypoints: requests for emails from identity, and its own copy of
organizations from tenant. Each subscriber takes the event and calls one handler."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from services.mailer import domain, handlers
from services.mailer.domain import Kind
from services.mailer.handlers import Deps
from services.mailer.repository import MailerRepository
from shared import events
from shared.events import Envelope
from shared.kafka import Handler

KINDS: dict[type[events.AccountEvent], Kind] = {
    events.UserRegistered: Kind.CONFIRMATION,
    events.ConfirmationRequested: Kind.CONFIRMATION,
    events.ResetRequested: Kind.RESET,
    events.RegistrationRepeated: Kind.REGISTRATION_NOTICE,
    events.UnlockRequested: Kind.UNLOCK,
    events.PortalsRequested: Kind.PORTALS,
    events.PasswordChanged: Kind.PASSWORD_CHANGED,
}
TOPICS = (events.IDENTITY_TOPIC, events.TENANT_TOPIC)


async def email_requested(conn: AsyncConnection, envelope: Envelope, event: events.AccountEvent, *, deps: Deps) -> None:
    context = event.model_dump(mode="json", exclude={"email"})
    purpose = getattr(type(event), "PURPOSE", None)
    if purpose is not None:  # what the event's token must have been sealed for
        context[domain.TOKEN_PURPOSE] = purpose
    await handlers.request_email(MailerRepository(conn), deps, tenant=envelope.tenant, kind=KINDS[type(event)], to=event.email,
                                 event_id=envelope.event_id, context=context)


async def tenant_created(conn: AsyncConnection, envelope: Envelope, event: events.TenantCreated) -> None:
    await handlers.save_organization(MailerRepository(conn), slug=event.slug, name=event.name, settings=event.settings,
                                     domains=event.domains)


async def tenant_updated(conn: AsyncConnection, envelope: Envelope, event: events.TenantUpdated) -> None:
    await handlers.save_organization(MailerRepository(conn), slug=event.slug, name=event.name, settings=event.settings,
                                     domains=None)


async def domain_added(conn: AsyncConnection, envelope: Envelope, event: events.DomainAdded) -> None:
    await handlers.add_domain(MailerRepository(conn), slug=event.slug, host=event.host)


async def domain_removed(conn: AsyncConnection, envelope: Envelope, event: events.DomainRemoved) -> None:
    await handlers.remove_domain(MailerRepository(conn), slug=event.slug, host=event.host)


def subscribers(deps: Deps) -> dict[type[events.Event], Handler]:
    """Which subscriber takes each event the mailer consumes."""
    return {
        **{event_type: partial(email_requested, deps=deps) for event_type in KINDS},
        events.TenantCreated: tenant_created,
        events.TenantUpdated: tenant_updated,
        events.DomainAdded: domain_added,
        events.DomainRemoved: domain_removed,
    }
