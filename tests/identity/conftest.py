"""Helpers for identity's tests: accounts, the links mailed to them, identity's metrics, and
direct reads of what the system stored (topics, tables) for the checks no HTTP answer can show."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from portal_auth.system import System
from services.identity.tables import tokens
from shared.secrets import token_hash
from tests.conftest import Org, create_org, mail_to, portal, records_on, text_of, token_in

PASSWORD = "correct horse battery staple"
MAIL_WAIT_SECONDS = 30.0


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@dataclass(frozen=True)
class Account:
    email: str
    password: str


@pytest.fixture(scope="session")
async def org(system: System) -> Org:
    """One organization for the tests that need nothing special of it: every test uses its own
    addresses, so they do not meet."""
    return await create_org(system, name="Acme Corp")


@pytest.fixture(scope="session")
async def other_org(system: System) -> Org:
    return await create_org(system, name="Other Org")


@pytest.fixture
async def client(system: System, org: Org) -> AsyncIterator[httpx.AsyncClient]:
    async with portal(system, org) as browser:
        yield browser


@pytest.fixture(scope="session")
async def identity_db(system: System) -> AsyncIterator[AsyncEngine]:
    """The database, for what a test must arrange or observe behind the API (a past expiry, a hash)."""
    engine = create_async_engine(system.infra.database_url)
    yield engine
    await engine.dispose()


# --- mail -----------------------------------------------------------------------------------------


async def mailed_tokens(system: System, address: str, path: str, *, count: int = 1) -> list[str]:
    """The tokens of the ``path`` links (/confirm, /reset-password) mailed to ``address``, oldest
    first, once ``count`` of them have come."""
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while True:
        tokens = [token_in(m, path) for m in await mail_to(system, address, count=0) if f"{path}?token=" in text_of(m)]
        if len(tokens) >= count:
            return tokens
        assert time.monotonic() < deadline, f"{len(tokens)} of {count} mails with a {path} link reached {address}"
        await asyncio.sleep(0.1)


# --- accounts ---------------------------------------------------------------------------------------


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    answer = await client.post("/auth/register", json={"email": email, "password": password, **extra})
    assert answer.status_code == 202, answer.text
    return answer


async def confirmed_account(system: System, client: httpx.AsyncClient, password: str = PASSWORD) -> Account:
    account = Account(new_email(), password)
    await register(client, account.email, password)
    [token] = await mailed_tokens(system, account.email, "/confirm")
    assert (await client.post("/auth/confirm", json={"token": token, "password": password})).status_code == 200
    return account


async def login(client: httpx.AsyncClient, email: str, password: str, **extra: object) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password, **extra})


# The contract's table, word for word: the tests hold the code to it, not to itself.
CONTRACT = {
    "organization_not_found": (404, "Organization not found"),
    "invalid_credentials": (401, "Incorrect email or password"),
    "user_not_confirmed": (403, "User not confirmed"),
    "account_locked": (423, "Account temporarily locked"),
    "password_too_short": (422, "Password must be at least 12 characters"),
    "password_too_long": (422, "Password is too long"),
    "password_too_common": (422, "Password is too common"),
    "invalid_email": (422, "Invalid email address"),
    "token_expired": (410, "Link expired"),
    "token_invalid": (400, "Link invalid or already used"),
    "not_authenticated": (401, "Not signed in"),
    "too_many_requests": (429, "Too many attempts, try again shortly"),
    "service_unavailable": (503, "Service temporarily unavailable"),
}


def assert_problem(answer: httpx.Response, code: str, title: str | None = None) -> dict:
    """The answer is the contract's problem ``code``: status, title and media type."""
    status, contract_title = CONTRACT[code]
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert (body["code"], body["status"], body["title"]) == (code, status, title or contract_title)
    return body


async def expire_link(engine: AsyncEngine, token: str) -> None:
    """Moves a mailed link's expiry into the past, as if its lifetime had run out."""
    async with engine.begin() as conn:
        await conn.execute(tokens.update().where(tokens.c.token_hash == token_hash(token))
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


async def lock(system: System, org: Org, email: str, *, source: str, failures: int = 5) -> httpx.Response:
    """Fails ``failures`` logins from ``source`` (the default threshold) and returns the first
    account_locked answer, once lockout's AccountLocked has reached identity."""
    async with portal(system, org, source=source) as browser:
        for _ in range(failures):
            assert (await login(browser, email, "not the password at all")).status_code == 401
    return await wait_for_lock(system, org, email, source=source)


async def wait_for_lock(system: System, org: Org, email: str, *, source: str | None = None) -> httpx.Response:
    """The account_locked answer, once lockout's AccountLocked has reached identity. Asked with an
    empty password: were the account not locked, that is one more failure, never a success."""
    async with portal(system, org, source=source) as browser:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            answer = await login(browser, email, "")
            if answer.status_code == 423:
                return answer
            assert answer.status_code in (401, 429), answer.text
            await asyncio.sleep(0.2)
    raise AssertionError(f"{email} was never locked")


# --- what the system stored ----------------------------------------------------------------------


async def metric(system: System, name: str, service: str = "identity") -> float:
    async with httpx.AsyncClient(base_url=system.url(service)) as client:
        text = (await client.get("/metrics")).text
    [value] = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


async def account_events(system: System, org: Org, email: str, *, until: str, count: int) -> list[dict]:
    """identity.events for one account (its key is <organization>:<email>), once ``count`` events
    of type ``until`` are there: the outbox relay sends them shortly after each commit."""
    key = f"{org.slug}:{email}".encode()
    for _ in range(150):
        records = await records_on(system.infra.kafka_bootstrap, ["identity.events"])
        events = [json.loads(r.value) for r in records if r.key == key]
        if sum(e["type"] == until for e in events) >= count:
            return events
        await asyncio.sleep(0.2)
    raise AssertionError(f"{count} {until} events for {email} never reached identity.events")


async def every_row(database_url: str) -> str:
    """Every row of every table of every schema, as text."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await conn.fetch("select table_schema, table_name from information_schema.tables "
                                  "where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')")
        rows = [str(r) for t in tables for r in await conn.fetch(f'select t::text from "{t[0]}"."{t[1]}" t')]
        return "\n".join(rows)
    finally:
        await conn.close()
