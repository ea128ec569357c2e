"""Test infrastructure: real PostgreSQL, Kafka and SMTP; the four services as separate processes.

KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and SMTP_HOST are used when set; otherwise the
processes are started here (Apache Kafka from Maven's jars on Java 17, embedded PostgreSQL,
an aiosmtpd catcher). With PORTAL_AUTH_INFRA=containers, PostgreSQL and Kafka run instead in
containers of the project's own images, started by testcontainers
(portal_auth.devstack.containers; needs a Docker engine and the images built).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from portal_auth.system import SERVICES, Infrastructure, System, start_infrastructure
from shared.eventlog import partitions_of
from shared.secrets import new_mail_token_key

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("portal-auth")


@pytest.fixture(scope="session")
def infra(workdir: Path) -> Iterator[Infrastructure]:
    env = dict(os.environ)
    if env.get("PORTAL_AUTH_INFRA") == "containers":
        # PostgreSQL and Kafka in containers of the project's own images (docs/operations.md).
        from portal_auth.devstack.containers import start_container_infrastructure

        postgres, kafka = start_container_infrastructure()
        env.update(DATABASE_URL=postgres.address, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap)
        infrastructure = start_infrastructure(workdir, env=env, say=lambda line: None)
        infrastructure.postgres, infrastructure.kafka = postgres, kafka  # type: ignore[assignment]
        yield infrastructure
        infrastructure.stop()
        return
    infrastructure = start_infrastructure(workdir, env=env, say=lambda line: None)
    yield infrastructure
    infrastructure.stop()


def service_env(infra: Infrastructure) -> dict[str, str]:
    return {
        "ENVIRONMENT": "local",  # plain HTTP, 4 bcrypt rounds and a short admin token are for here only
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "MAIL_TOKEN_KEY": new_mail_token_key(),
        "BCRYPT_ROUNDS": "4",
        "COOKIE_SECURE": "false",
        "TRUSTED_PROXIES": "127.0.0.1",
        "MAIL_FROM": "portal@example.test",
        "MAILER_RETRY_BASE_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def system(infra: Infrastructure, workdir: Path) -> Iterator[System]:
    running = System(infra=infra, workdir=workdir, env=service_env(infra))
    try:
        for service in SERVICES:
            running.start(service)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="session")
def gateway(system: System, workdir: Path) -> Iterator[str]:
    """nginx in front of identity, as in production; its base URL."""
    from portal_auth.devstack import free_port
    from portal_auth.gateway import start_gateway

    port = free_port()
    process = start_gateway(workdir / "gateway", port=port, identity_port=system.processes["identity"].port)
    assert process is not None, "nginx is not installed (apt-get install nginx-light)"
    yield f"http://127.0.0.1:{port}"
    process.stop()


async def new_database(infra: Infrastructure, prefix: str) -> str:
    """The URL of a new, empty database on the tests' PostgreSQL, for tests that need one alone."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(infra.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return f"{infra.database_url.rsplit('/', 1)[0]}/{name}"


@dataclass(frozen=True)
class Org:
    slug: str
    host: str


@pytest.fixture
async def admin(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


# Tests play every visitor from a few addresses, far faster than people: their organizations
# raise the per-source limits unless a test sets "limits" itself to see them work.
TEST_LIMITS = {"requests_per_source_per_minute": 100_000, "failed_logins_per_source": 100_000}


async def create_org(system: System, *, settings: dict | None = None, name: str = "Acme Corp") -> Org:
    """A fresh organization with its own domain, once identity, lockout and mailer know it."""
    slug = f"org-{uuid.uuid4().hex[:10]}"
    host = f"{slug}.localhost"
    settings = {"limits": TEST_LIMITS, **(settings or {})}
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        answer = await client.post("/admin/tenants", json={"slug": slug, "name": name, "domains": [host], "settings": settings})
        assert answer.status_code == 201, answer.text
    await wait_until_resolves(system, host)
    return Org(slug, host)


async def wait_until_resolves(system: System, host: str, timeout: float = 10.0) -> None:
    async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": host}) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await client.get("/auth/session")).status_code != 404:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"identity never learned {host}")


def portal(system: System, org: Org, *, source: str | None = None) -> httpx.AsyncClient:
    """A browser-like client on the organization's host; ``source`` plays the client address
    (sent as X-Forwarded-For, believed because the tests run as a trusted proxy)."""
    headers = {"Host": org.host, **({"X-Forwarded-For": source} if source else {})}
    return httpx.AsyncClient(base_url=system.url("identity"), headers=headers)



async def mail_to(system: System, address: str, *, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
    """The messages the SMTP server received for ``address`` (envelope recipient), once ``count`` arrived."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in system.infra.mail.messages() if address in m.get("X-Envelope-To", "")]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} emails to {address} arrived within {timeout} s"
            return found
        await asyncio.sleep(0.05)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",)) or message
    return part.get_content()


def link_in(message: EmailMessage, path: str) -> str:
    """The link to ``path`` (e.g. "/confirm") in the email's text."""
    match = re.search(rf"https?://[^\s\"'<>]+{re.escape(path)}\?token=[A-Za-z0-9_\-]+", text_of(message))
    assert match, f"no {path} link in:\n{text_of(message)}"
    return match.group(0)


def token_in(message: EmailMessage, path: str) -> str:
    return parse_qs(urlsplit(link_in(message, path)).query)["token"][0]


async def records_on(bootstrap: str, topics: list[str] | None = None) -> list[ConsumerRecord]:
    """Every raw record on the topics (default: all but Kafka's own), from the beginning to their
    end as it is now: for tests that look at the log itself, dead letters included."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = topics or sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    finally:
        await admin.close()
    partitions = await partitions_of(bootstrap, names)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        await consumer.stop()
