"""What each identity replica keeps in memory so that a login asks the database about its account
only: the organizations by portal host, and the live locks lockout announced.

Identity's replicas share one consumer group, so the group consumer of one replica sees only some
partitions, and a lock on an account of another partition would never reach its memory. These
copies are therefore fed by a reader of each replica's own, outside any group, that reads every
partition of tenant.events and lockout.events. At start it takes the group's committed offsets
first, then loads the tables the group consumer keeps (they hold the effect of at least every
event before those offsets, since the group commits an offset only after applying it), then reads
on from those offsets: an event read twice sets what it set before, in the same order, so the copy
ends where the log ends. Once it has caught up with the end it found at start, the copies answer;
until then (Kafka or the database away at start) every question goes to the tables, as it did
before there were copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.identity.repository import IdentityRepository
from shared import events
from shared.db import transaction
from shared.eventlog import partitions_of
from shared.kafka import FETCH_MAX_WAIT_MS
from shared.events import Envelope
from shared.tenancy import TenantSettings

log = logging.getLogger(__name__)

ALL_SOURCES = ""  # as in identity's locks table: a lock for every source address
TOPICS = (events.TENANT_TOPIC, events.LOCKOUT_TOPIC)


@dataclass(frozen=True)
class Organization:
    slug: str
    name: str
    settings: TenantSettings


class Organizations:
    """Organizations by slug and their portal hosts, as tenant.events describe them."""

    def __init__(self) -> None:
        self._by_slug: dict[str, Organization] = {}
        self._hosts: dict[str, str] = {}

    def for_host(self, host: str) -> Organization | None:
        slug = self._hosts.get(host)
        return self._by_slug.get(slug) if slug is not None else None

    def save(self, *, slug: str, name: str, settings: dict[str, Any]) -> None:
        try:
            self._by_slug[slug] = Organization(slug, name, TenantSettings.model_validate(settings))
        except ValidationError:  # tenant validated them; only a newer, stricter rule gets here
            log.warning("organization %s: settings unusable in memory, the table answers for it", slug)
            self._by_slug.pop(slug, None)

    def add_domain(self, *, slug: str, host: str) -> None:
        self._hosts[host] = slug

    def remove_domain(self, *, slug: str, host: str) -> None:
        if self._hosts.get(host) == slug:
            del self._hosts[host]


class Locks:
    """The live locks of accounts: (organization, email) -> source ("" for all) -> until."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], dict[str, datetime]] = {}
        self._changes = 0

    def locked_until(self, *, tenant: str, email: str, source: str, now: datetime) -> datetime | None:
        held = self._locks.get((tenant, email))
        if not held:
            return None
        live = [until for held_for, until in held.items() if held_for in (ALL_SOURCES, source) and until > now]
        return max(live, default=None)

    def lock(self, *, tenant: str, email: str, source: str | None, until: datetime) -> None:
        self._locks.setdefault((tenant, email), {})[source or ALL_SOURCES] = until
        self._changes += 1
        if self._changes % 1000 == 0:
            self._forget_ended(now=datetime.now(UTC))

    def unlock(self, *, tenant: str, email: str, source: str | None, every: bool) -> None:
        held = self._locks.get((tenant, email))
        if held is None:
            return
        if every:
            held.clear()
        else:
            held.pop(source or ALL_SOURCES, None)
        if not held:
            del self._locks[(tenant, email)]

    def _forget_ended(self, *, now: datetime) -> None:
        for account in [a for a, held in self._locks.items() if all(until <= now for until in held.values())]:
            del self._locks[account]


class InFlight:
    """The accounts with a login being checked in this replica right now. A second attempt on the
    same account is refused at once, before it takes a database connection; the database's
    per-account lock does the same across replicas."""

    def __init__(self) -> None:
        self._accounts: set[tuple[str, str]] = set()

    @contextlib.contextmanager
    def claim(self, tenant: str, email: str) -> Iterator[bool]:
        account = (tenant, email)
        if account in self._accounts:
            yield False
            return
        self._accounts.add(account)
        try:
            yield True
        finally:
            self._accounts.discard(account)


class LiveCopies:
    """The two copies and the reader that keeps them; ``ready`` once it has caught up."""

    def __init__(self, *, engine: AsyncEngine, bootstrap_servers: str, group_id: str,
                 client_options: Mapping[str, str] | None = None) -> None:
        self._engine, self._bootstrap, self._group = engine, bootstrap_servers, group_id
        self._options = dict(client_options or {})  # identity's own Kafka principal, as its broker has
        self.organizations, self.locks = Organizations(), Locks()
        self.in_flight = InFlight()
        self.ready = False

    async def run(self) -> None:
        """For the life of the process: follow the topics, starting over after any failure."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Kafka or the database away: the tables answer meanwhile
                self.ready = False
                log.warning("in-memory copies: %s; the tables answer until they are back", exc)
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        partitions = await partitions_of(self._bootstrap, TOPICS, client_options=self._options)
        if len(partitions) < 2:
            raise RuntimeError("topics not created yet")
        starts = await self._committed(partitions)
        organizations, locks = await self._load()
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                                    client_id=f"{self._group}-memory", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, request_timeout_ms=10_000,
                                    **self._options)
        await consumer.start()
        try:
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            firsts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, starts.get(tp, firsts[tp]))
            self.organizations, self.locks = organizations, locks
            behind = set(partitions)
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        self._apply(record.value)
                if behind:
                    behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
                    self.ready = not behind
        finally:
            self.ready = False
            await consumer.stop()

    async def _committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=10_000, **self._options)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self._group, partitions=partitions)
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def _load(self) -> tuple[Organizations, Locks]:
        organizations, held = Organizations(), Locks()
        async with transaction(self._engine) as conn:
            repo = IdentityRepository(conn)
            for tenant in await repo.tenants():
                organizations.save(slug=tenant.slug, name=tenant.name, settings=tenant.settings)
            for domain in await repo.domains():
                organizations.add_domain(slug=domain.slug, host=domain.host)
            for lock in await repo.live_locks():
                held.lock(tenant=lock.tenant, email=lock.email, source=lock.source, until=lock.locked_until)
        return organizations, held

    def _apply(self, raw: bytes | None) -> None:
        try:
            envelope = Envelope.from_bytes(raw or b"")
            event = envelope.event()
        except (ValueError, ValidationError):
            return  # the group consumer dead-letters it
        match event:
            case events.TenantCreated():
                self.organizations.save(slug=event.slug, name=event.name, settings=event.settings)
                for host in event.domains:
                    self.organizations.add_domain(slug=event.slug, host=host)
            case events.TenantUpdated():
                self.organizations.save(slug=event.slug, name=event.name, settings=event.settings)
            case events.DomainAdded():
                self.organizations.add_domain(slug=event.slug, host=event.host)
            case events.DomainRemoved():
                self.organizations.remove_domain(slug=event.slug, host=event.host)
            case events.AccountLocked():
                self.locks.lock(tenant=envelope.tenant, email=event.email, source=event.source, until=event.locked_until)
            case events.AccountUnlocked():
                # An expired lock ends for its own source; an operator or a new password lifts them all.
                self.locks.unlock(tenant=envelope.tenant, email=event.email, source=event.source,
                                  every=event.reason != "expired")
