"""All of tenant's SQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tenant.tables import domains, tenants


class Taken(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class TenantRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, *, slug: str, name: str, settings: dict[str, Any]) -> None:
        inserted = await self.conn.execute(
            insert(tenants).values(slug=slug, name=name, settings=settings).on_conflict_do_nothing().returning(tenants.c.slug))
        if inserted.first() is None:
            raise Taken("slug")

    async def add_domain(self, *, slug: str, host: str) -> bool:
        """True if added, False if it was already this organization's; Taken if another's."""
        inserted = await self.conn.execute(
            insert(domains).values(host=host, slug=slug).on_conflict_do_nothing().returning(domains.c.host))
        if inserted.first() is not None:
            return True
        if await self.conn.scalar(sa.select(domains.c.slug).where(domains.c.host == host)) == slug:
            return False
        raise Taken("domain")

    async def remove_domain(self, *, slug: str, host: str) -> bool:
        removed = await self.conn.execute(domains.delete().where(domains.c.host == host, domains.c.slug == slug))
        return removed.rowcount > 0

    async def get(self, slug: str, *, for_update: bool = False) -> dict[str, Any] | None:
        query = sa.select(tenants).where(tenants.c.slug == slug)
        row = (await self.conn.execute(query.with_for_update() if for_update else query)).mappings().first()
        return None if row is None else {**row, "domains": await self._domains_of(slug)}

    async def list(self) -> list[dict[str, Any]]:
        rows = (await self.conn.execute(sa.select(tenants).order_by(tenants.c.slug))).mappings().all()
        return [{**row, "domains": await self._domains_of(row["slug"])} for row in rows]

    async def update(self, slug: str, *, name: str, settings: dict[str, Any]) -> None:
        await self.conn.execute(tenants.update().where(tenants.c.slug == slug)
                                .values(name=name, settings=settings, updated_at=sa.func.now()))

    async def resolve(self, host: str) -> dict[str, Any] | None:
        slug = await self.conn.scalar(sa.select(domains.c.slug).where(domains.c.host == host))
        return None if slug is None else await self.get(slug)

    async def _domains_of(self, slug: str) -> list[str]:
        return list((await self.conn.scalars(sa.select(domains.c.host).where(domains.c.slug == slug).order_by(domains.c.host))).all())
