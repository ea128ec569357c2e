"""The mailer's use cases: take a request for an email, claim due emails, send one, record the outcome.

Each that touches the database takes the repository of one transaction opened by its entrypoint
(the events it writes go into the outbox in that transaction); sending runs outside any
transaction, between the claim and the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from services.mailer import domain
from services.mailer.domain import DeliveryFailure, Email, Kind, Organization, Rendered, RetryPolicy, Status, Undeliverable
from services.mailer.repository import MailerRepository
from shared import events
from shared.clock import utcnow
from shared.messaging import Announce, Outbox
from shared.secrets import MailTokenCipher, TokenBinding, TokenMismatch

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def send(self, email: Email) -> None:
        """Hand the email to the SMTP server; raise DeliveryFailure if it was not accepted."""


class Renderer(Protocol):
    def render(self, kind: Kind, values: dict[str, Any]) -> Rendered: ...


@dataclass(frozen=True)
class Deps:
    outbox: Outbox
    cipher: MailTokenCipher
    transport: Transport
    renderer: Renderer
    retry: RetryPolicy
    mail_from: str
    portal_url_template: str
    throttle_per_hour: int
    lease: timedelta
    worker: str
    clock: Callable[[], datetime] = utcnow


@dataclass(frozen=True)
class Job:
    """A claimed email and the organization it speaks for (None while the mailer has no copy yet)."""

    email: Any
    org: Organization | None


async def request_email(repo: MailerRepository, deps: Deps, *, tenant: str, kind: Kind, to: str,
                        event_id: Any, context: dict[str, Any]) -> Status | None:
    """Queue one email for an event, or record it as throttled; None if this event was queued before."""
    now = deps.clock()
    await repo.serialize_recipient(tenant=tenant, to=to)
    recent = await repo.count_since(tenant=tenant, to=to, since=now - domain.THROTTLE_WINDOW)
    status = domain.admit(kind, recent, limit=deps.throttle_per_hour)
    kept = context if status is Status.QUEUED else domain.without_secrets(context)
    added = await repo.add(dedup_key=domain.dedup_key(event_id, kind), tenant=tenant, kind=kind.value, to=to,
                           context=kept, status=status, now=now)
    return status if added else None


async def save_organization(repo: MailerRepository, *, slug: str, name: str, settings: dict[str, Any],
                            domains: list[str] | None) -> None:
    """The mailer's copy of an organization: domains replaced when given (created), kept when not."""
    await repo.save_organization(slug=slug, name=name, settings=settings, domains=domains)


async def add_domain(repo: MailerRepository, *, slug: str, host: str) -> None:
    await repo.add_domain(slug=slug, host=host)


async def remove_domain(repo: MailerRepository, *, slug: str, host: str) -> None:
    await repo.remove_domain(slug=slug, host=host)


async def listing(repo: MailerRepository, *, tenant: str | None, to: str | None, status: Status | None,
                  limit: int) -> list[dict[str, Any]]:
    """The newest emails first, without their context: operators see what happened, never a token."""
    return await repo.listing(tenant=tenant, to=to, status=status.value if status else None, limit=limit)


async def queue_counts(repo: MailerRepository, outbox: Outbox) -> tuple[dict[Status, int], int]:
    """The queue by status, and how many of the mailer's events wait in its outbox."""
    return await repo.count_by_status(), await repo.count_unsent(outbox.table)


async def claim_due(repo: MailerRepository, deps: Deps, *, limit: int) -> list[Job]:
    now = deps.clock()
    claimed = await repo.claim_due(now=now, lease_until=now + deps.lease, worker=deps.worker, limit=limit)
    orgs = await repo.organizations({row.tenant for row in claimed}) if claimed else {}
    return [Job(row, orgs.get(row.tenant)) for row in claimed]


async def send(deps: Deps, job: Job) -> DeliveryFailure | None:
    """Render at send time (the token is opened only here, in memory) and hand over to SMTP."""
    if job.email.attempts > deps.retry.max_attempts:  # claimed again and again, never recorded
        return Undeliverable(f"no outcome recorded in {job.email.attempts - 1} attempts")
    try:
        await deps.transport.send(compose(deps, job))
    except DeliveryFailure as failure:
        return failure
    except Exception as exc:  # noqa: BLE001 - a bug must cost attempts, not loop forever
        # Type only: the message of an error met while the link was in memory could hold the token.
        log.error("email %s could not be composed: %s", job.email.dedup_key, type(exc).__name__)
        return DeliveryFailure(f"unexpected {type(exc).__name__}")
    return None


def compose(deps: Deps, job: Job) -> Email:
    row, org = job.email, job.org
    if row.kind == Kind.PORTALS:  # for no single organization: the list names each one
        rendered = deps.renderer.render(Kind.PORTALS, domain.portal_list(row.context, template=deps.portal_url_template))
        return domain.compose(to=row.to_address, org=domain.DIRECTORY, rendered=rendered, mail_from=deps.mail_from,
                              key=row.dedup_key)
    if org is None:  # its TenantCreated is on another topic and may simply not have arrived yet
        raise DeliveryFailure(f"organization {row.tenant!r} not known to the mailer yet")
    kind, context = Kind(row.kind), row.context
    if domain.link_expired(context, now=deps.clock()):
        raise Undeliverable("the link expired before it could be sent")
    host = org.portal_host(str(context.get("host", "")))
    links = domain.links(kind, template=deps.portal_url_template, host=host, token=_opened(deps, row, context))
    rendered = deps.renderer.render(kind, domain.template_values(kind, org=org, context=context, links=links))
    return domain.compose(to=row.to_address, org=org, rendered=rendered, mail_from=deps.mail_from, key=row.dedup_key)


def _opened(deps: Deps, row: Any, context: dict[str, Any]) -> str | None:
    """The token, opened only for the event it was sealed with: a token copied into a forged
    event (another address, organization, purpose or expiry) sends nothing."""
    sealed = context.get("token_encrypted")
    if sealed is None:
        return None
    try:
        binding = TokenBinding(tenant=row.tenant, email=row.to_address, purpose=str(context.get(domain.TOKEN_PURPOSE)),
                               expires_at=datetime.fromisoformat(str(context.get("expires_at"))))
        return deps.cipher.open(sealed, binding)
    except TokenMismatch:
        raise Undeliverable("the link's token was sealed for another event") from None
    except ValueError:
        raise Undeliverable("the link's token was not sealed with this mailer's MAIL_TOKEN_KEY") from None


async def record(repo: MailerRepository, announce: Announce, deps: Deps, job: Job, failure: DeliveryFailure | None) -> None:
    """Sent, tried again later, or given up: with EmailSent or EmailFailed in the same transaction."""
    row, now = job.email, deps.clock()
    if failure is None:
        if await repo.mark_sent(row, now=now):
            await announce(events.EmailSent(email=row.to_address, kind=row.kind, dedup_key=row.dedup_key), tenant=row.tenant)
        else:
            log.warning("email %s was sent after its lease ran out; another sender may send it too", row.dedup_key)
        return
    decision = deps.retry.after(failure, attempts=row.attempts, now=now)
    if isinstance(decision, domain.Retry):
        await repo.reschedule(row, at=decision.at, error=str(failure))
    elif await repo.mark_failed(row, error=decision.reason):
        await announce(events.EmailFailed(email=row.to_address, kind=row.kind, dedup_key=row.dedup_key, reason=decision.reason),
                       tenant=row.tenant)
