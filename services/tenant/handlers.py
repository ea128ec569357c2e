"""Tenant's use cases: each changes state and writes its event in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.tenant.domain import check_slug, normalize_host
from services.tenant.repository import TenantRepository
from shared.events import DomainAdded, DomainRemoved, TenantCreated, TenantUpdated
from shared.messaging import Outbox
from shared.tenancy import TenantSettings


class NotFound(Exception):
    pass


def _settings(raw: dict[str, Any] | None) -> dict[str, Any]:
    return TenantSettings.model_validate(raw or {}).model_dump(mode="json")


async def create_tenant(conn: AsyncConnection, outbox: Outbox, *, slug: str, name: str,
                        domains: list[str], settings: dict[str, Any] | None) -> dict[str, Any]:
    slug, hosts = check_slug(slug), sorted({normalize_host(h) for h in domains})
    repo, clean = TenantRepository(conn), _settings(settings)
    await repo.add(slug=slug, name=name, settings=clean)
    for host in hosts:
        await repo.add_domain(slug=slug, host=host)
    await outbox.add(conn, TenantCreated(slug=slug, name=name, domains=hosts, settings=clean), tenant=slug)
    return await _found(repo, slug)


async def update_tenant(conn: AsyncConnection, outbox: Outbox, *, slug: str, name: str | None,
                        settings: dict[str, Any] | None) -> dict[str, Any]:
    repo = TenantRepository(conn)
    current = await _found(repo, slug, for_update=True)
    merged = _merge(current["settings"], settings or {})
    new_name, clean = name or current["name"], _settings(merged)
    await repo.update(slug, name=new_name, settings=clean)
    await outbox.add(conn, TenantUpdated(slug=slug, name=new_name, settings=clean), tenant=slug)
    return await _found(repo, slug)


async def add_domain(conn: AsyncConnection, outbox: Outbox, *, slug: str, host: str) -> dict[str, Any]:
    repo, host = TenantRepository(conn), normalize_host(host, field="host")
    await _found(repo, slug, for_update=True)
    if await repo.add_domain(slug=slug, host=host):
        await outbox.add(conn, DomainAdded(slug=slug, host=host), tenant=slug)
    return await _found(repo, slug)


async def remove_domain(conn: AsyncConnection, outbox: Outbox, *, slug: str, host: str) -> dict[str, Any]:
    repo, host = TenantRepository(conn), normalize_host(host, field="host")
    await _found(repo, slug, for_update=True)
    if not await repo.remove_domain(slug=slug, host=host):
        raise NotFound(f"{host} is not a domain of {slug}")
    await outbox.add(conn, DomainRemoved(slug=slug, host=host), tenant=slug)
    return await _found(repo, slug)


async def _found(repo: TenantRepository, slug: str, *, for_update: bool = False) -> dict[str, Any]:
    tenant = await repo.get(slug, for_update=for_update)
    if tenant is None:
        raise NotFound(f"no organization {slug!r}")
    return tenant


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics for nested settings: only the given keys change."""
    merged = dict(base)
    for key, value in change.items():
        merged[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged
