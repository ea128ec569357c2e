"""All of the mailer's SQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.mailer.domain import SECRET_CONTEXT, Organization, Status
from services.mailer.tables import emails, organizations
from shared.db import hold

# Spelled out as in the partial index emails_due, so the planner can use it.
_UNFINISHED = sa.text("mailer.emails.status in ('queued', 'sending')")
_LISTED = [c for c in emails.c if c.name not in ("context", "claim_id")]


class MailerRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- copies of the tenant service's organizations -----------------------------------------

    async def save_organization(self, *, slug: str, name: str, settings: dict[str, Any], domains: list[str] | None) -> None:
        """Domains are replaced when given (TenantCreated) and kept when not (TenantUpdated)."""
        shown = {"name": name, "display_name": settings.get("display_name"), "support_email": settings.get("support_email")}
        stmt = insert(organizations).values(slug=slug, domains=domains or [], **shown)
        changes = {**shown, **({"domains": domains} if domains is not None else {})}
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=[organizations.c.slug], set_=changes))

    async def add_domain(self, *, slug: str, host: str) -> None:
        await self.conn.execute(organizations.update()
                                .where(organizations.c.slug == slug, sa.not_(organizations.c.domains.any_() == host))
                                .values(domains=sa.func.array_append(organizations.c.domains, host, type_=ARRAY(sa.Text))))

    async def remove_domain(self, *, slug: str, host: str) -> None:
        await self.conn.execute(organizations.update().where(organizations.c.slug == slug)
                                .values(domains=sa.func.array_remove(organizations.c.domains, host, type_=ARRAY(sa.Text))))

    async def organizations(self, slugs: set[str]) -> dict[str, Organization]:
        rows = (await self.conn.execute(sa.select(organizations).where(organizations.c.slug.in_(slugs)))).all()
        return {row.slug: Organization(slug=row.slug, name=row.name, display_name=row.display_name,
                                       support_email=row.support_email, domains=tuple(row.domains)) for row in rows}

    # --- the queue ----------------------------------------------------------------------------

    async def serialize_recipient(self, *, tenant: str, to: str) -> None:
        """Counting and adding an address's emails happen one request at a time."""
        await hold(self.conn, f"mail:{tenant}:{to}")

    async def count_since(self, *, tenant: str, to: str, since: datetime) -> int:
        return await self.conn.scalar(sa.select(sa.func.count()).where(
            emails.c.tenant == tenant, emails.c.to_address == to, emails.c.created_at > since,
            emails.c.status != Status.THROTTLED.value)) or 0

    async def add(self, *, dedup_key: str, tenant: str, kind: str, to: str, context: dict[str, Any],
                  status: Status, now: datetime) -> bool:
        """False when an email with this key exists already."""
        stmt = insert(emails).values(dedup_key=dedup_key, tenant=tenant, kind=kind, to_address=to, context=context,
                                     status=status.value, next_attempt_at=now, created_at=now)
        return await self.conn.scalar(stmt.on_conflict_do_nothing().returning(emails.c.id)) is not None

    async def claim_due(self, *, now: datetime, lease_until: datetime, worker: str, limit: int) -> list[Any]:
        """Due emails, queued or with a lapsed lease, that no other sender holds: now this one's."""
        due = (sa.select(emails.c.id).where(_UNFINISHED, emails.c.next_attempt_at <= now)
               .order_by(emails.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
        stmt = (emails.update().where(emails.c.id.in_(due.scalar_subquery()))
                .values(status=Status.SENDING.value, attempts=emails.c.attempts + 1, next_attempt_at=lease_until,
                        claim_id=uuid.uuid4(), claimed_by=worker)
                .returning(emails))
        return list((await self.conn.execute(stmt)).all())

    async def mark_sent(self, email: Any, *, now: datetime) -> bool:
        return await self._finish(email, status=Status.SENT, sent_at=now, last_error=None, context=_scrubbed())

    async def mark_failed(self, email: Any, *, error: str) -> bool:
        return await self._finish(email, status=Status.FAILED, last_error=error, context=_scrubbed())

    async def reschedule(self, email: Any, *, at: datetime, error: str) -> bool:
        return await self._finish(email, status=Status.QUEUED, next_attempt_at=at, last_error=error)

    async def _finish(self, email: Any, *, status: Status, **values: Any) -> bool:
        """Only the holder of the current claim records an outcome: False if the lease was lost."""
        done = await self.conn.execute(emails.update().where(
            emails.c.id == email.id, emails.c.claim_id == email.claim_id, emails.c.status == Status.SENDING.value,
        ).values(status=status.value, claim_id=None, **values))
        return done.rowcount > 0

    async def count_by_status(self) -> dict[Status, int]:
        """How many emails are in each status, every status present (0 when none)."""
        counted: dict[str, int] = dict((await self.conn.execute(
            sa.select(emails.c.status, sa.func.count()).group_by(emails.c.status))).all())
        return {status: counted.get(status.value, 0) for status in Status}

    async def count_unsent(self, outbox: sa.Table) -> int:
        """Events committed to the outbox that the relay has not published yet."""
        return await self.conn.scalar(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))) or 0

    async def listing(self, *, tenant: str | None, to: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(*_LISTED).order_by(emails.c.id.desc()).limit(limit)
        for column, value in ((emails.c.tenant, tenant), (emails.c.to_address, to), (emails.c.status, status)):
            if value is not None:
                query = query.where(column == value)
        return [dict(row) for row in (await self.conn.execute(query)).mappings().all()]


def _scrubbed() -> sa.ColumnElement[Any]:
    """The stored context without its sealed token, once the email is finished with."""
    return emails.c.context.op("-", return_type=JSONB)(sa.cast(sa.literal(list(SECRET_CONTEXT), ARRAY(sa.Text)), ARRAY(sa.Text)))
