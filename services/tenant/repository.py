"""All of tenant's SQL."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tenant.domain import Taken
from services.tenant.tables import domains, tenants


class TenantRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, *, slug: str, name: str, settings: dict[str, Any]) -> None:
        # ON CONFLICT waits for a concurrent insert of the same slug to commit or roll back, so
        # of two simultaneous creates exactly one gets the row and the other hears Taken.
        inserted = await self.conn.execute(
            insert(tenants).values(slug=slug, name=name, settings=settings).on_conflict_do_nothing().returning(tenants.c.slug))
        if inserted.first() is None:
            raise Taken("slug", slug)

    async def add_domain(self, *, slug: str, host: str) -> bool:
        """True if added, False if it was already this organization's; Taken if another's.
        The primary key on host is what makes one domain, one organization hold under concurrency."""
        inserted = await self.conn.execute(
            insert(domains).values(host=host, slug=slug).on_conflict_do_nothing().returning(domains.c.host))
        if inserted.first() is not None:
            return True
        if await self.conn.scalar(sa.select(domains.c.slug).where(domains.c.host == host)) == slug:
            return False
        raise Taken("domain", host)

    async def remove_domain(self, *, slug: str, host: str) -> bool:
        removed = await self.conn.execute(domains.delete().where(domains.c.host == host, domains.c.slug == slug))
        return removed.rowcount > 0

    async def get(self, slug: str, *, for_update: bool = False) -> dict[str, Any] | None:
        query = sa.select(tenants).where(tenants.c.slug == slug)
        row = (await self.conn.execute(query.with_for_update() if for_update else query)).mappings().first()
        return None if row is None else {**row, "domains": (await self._domains(slug)).get(slug, [])}

    async def list_all(self) -> list[dict[str, Any]]:
        rows = (await self.conn.execute(sa.select(tenants).order_by(tenants.c.slug))).mappings().all()
        hosts = await self._domains()
        return [{**row, "domains": hosts.get(row["slug"], [])} for row in rows]

    async def update(self, slug: str, *, name: str, settings: dict[str, Any]) -> None:
        await self.conn.execute(tenants.update().where(tenants.c.slug == slug)
                                .values(name=name, settings=settings, updated_at=sa.func.now()))

    async def resolve(self, host: str) -> dict[str, Any] | None:
        slug = await self.conn.scalar(sa.select(domains.c.slug).where(domains.c.host == host))
        return None if slug is None else await self.get(slug)

    async def _domains(self, slug: str | None = None) -> dict[str, list[str]]:
        """slug -> its hosts in order; one query for one organization or for all of them."""
        query = sa.select(domains.c.slug, domains.c.host).order_by(domains.c.host)
        by_slug: defaultdict[str, list[str]] = defaultdict(list)
        for row in await self.conn.execute(query if slug is None else query.where(domains.c.slug == slug)):
            by_slug[row.slug].append(row.host)
        return by_slug
