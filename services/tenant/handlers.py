"""Tenant's use cases: each checks its input, changes state through the repository of one
transaction and writes its event through ``announce`` (the outbox, in that same transaction, with the
request's id as the correlation id)."""

from __future__ import annotations

from typing import Any

from services.tenant.domain import (
    InvalidInput,
    check_all,
    check_settings,
    check_slug,
    merge_settings,
    normalize_host,
    normalize_hosts,
    without_port,
)
from services.tenant.repository import TenantRepository
from shared.events import Actor, DomainAdded, DomainRemoved, TenantCreated, TenantUpdated
from shared.messaging import Announce


class NotFound(Exception):
    pass


async def create_tenant(repo: TenantRepository, announce: Announce, *, slug: str, name: str,
                        domains: list[str], settings: dict[str, Any] | None, actor: Actor) -> dict[str, Any]:
    slug, hosts, clean = check_all(lambda: check_slug(slug), lambda: normalize_hosts(domains),
                                   lambda: check_settings(settings or {}))
    await repo.add(slug=slug, name=name, settings=clean)
    for host in hosts:
        await repo.add_domain(slug=slug, host=host)
    await announce(TenantCreated(slug=slug, name=name, domains=hosts, settings=clean, actor=actor), tenant=slug)
    return await _found(repo, slug)


async def update_tenant(repo: TenantRepository, announce: Announce, *, slug: str, name: str | None,
                        settings: dict[str, Any] | None, actor: Actor) -> dict[str, Any]:
    current = await _found(repo, slug, for_update=True)
    new_name, clean = name or current["name"], check_settings(merge_settings(current["settings"], settings or {}))
    if (new_name, clean) == (current["name"], current["settings"]):
        return current  # nothing changed: no event for the copies to apply
    await repo.update(slug, name=new_name, settings=clean)
    await announce(TenantUpdated(slug=slug, name=new_name, settings=clean, actor=actor), tenant=slug)
    return await _found(repo, slug)


async def add_domain(repo: TenantRepository, announce: Announce, *, slug: str, host: str, actor: Actor) -> dict[str, Any]:
    host = normalize_host(host, field="host")
    await _found(repo, slug, for_update=True)
    if await repo.add_domain(slug=slug, host=host):
        await announce(DomainAdded(slug=slug, host=host, actor=actor), tenant=slug)
    return await _found(repo, slug)


async def remove_domain(repo: TenantRepository, announce: Announce, *, slug: str, host: str, actor: Actor) -> dict[str, Any]:
    host = normalize_host(host, field="host")
    await _found(repo, slug, for_update=True)
    if not await repo.remove_domain(slug=slug, host=host):
        raise NotFound(f"{host} is not a domain of {slug}")
    await announce(DomainRemoved(slug=slug, host=host, actor=actor), tenant=slug)
    return await _found(repo, slug)


async def show_tenant(repo: TenantRepository, *, slug: str) -> dict[str, Any]:
    return await _found(repo, slug)


async def list_tenants(repo: TenantRepository) -> list[dict[str, Any]]:
    return await repo.list_all()


async def resolve_host(repo: TenantRepository, *, host: str) -> dict[str, Any] | None:
    """The organization a request to ``host`` (a Host header value, port and all) is for."""
    try:
        name = normalize_host(without_port(host), field="host")
    except InvalidInput:
        return None  # no organization can own a name that is not a host name
    return await repo.resolve(name)


async def _found(repo: TenantRepository, slug: str, *, for_update: bool = False) -> dict[str, Any]:
    tenant = await repo.get(slug, for_update=for_update)
    if tenant is None:
        raise NotFound(f"no organization {slug!r}")
    return tenant
