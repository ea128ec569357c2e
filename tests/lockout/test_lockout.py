"""Lockout end to end: the four services as separate processes over real Kafka, PostgreSQL and
SMTP. Every check is what a person at the portal, or an operator, sees."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import create_async_engine

from portal_auth.system import System
from services.lockout.rebuild import rebuild
from shared.eventlog import LogReader
from shared.events import IDENTITY_TOPIC, LOCKOUT_TOPIC, Envelope
from shared.replay import RebuildNotSettled
from tests.conftest import ADMIN_TOKEN, Org, create_org, mail_to, portal, token_in

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase here"
SOURCE_A, SOURCE_B = "198.51.100.1", "198.51.100.2"


# --- helpers ---------------------------------------------------------------------------------


@asynccontextmanager
async def lockout_admin(system: System, name: str = "lockout") -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.url(name), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, what: str = "condition") -> Any:
    """The first truthy result of ``check``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {result!r})")
        await asyncio.sleep(0.05)


async def lockout_org(system: System, settings: dict[str, Any] | None = None) -> Org:
    """A fresh organization, once lockout (not only identity) knows its settings."""
    org = await create_org(system, settings=settings)
    async with lockout_admin(system) as admin:
        await eventually(lambda: _known(admin, org), what=f"lockout learning {org.slug}")
    return org


async def _known(admin: httpx.AsyncClient, org: Org) -> bool:
    return (await admin.get(f"/admin/lockouts/{org.slug}/nobody@example.com")).status_code == 200


async def signed_up(system: System, org: Org, *, prefix: str = "user") -> str:
    """A confirmed account's address, in its organization."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    async with portal(system, org) as browser:
        assert (await browser.post("/auth/register", json={"email": email, "password": PASSWORD})).status_code == 202
        [message] = await mail_to(system, email)
        assert (await browser.post("/auth/confirm", json={"token": token_in(message, "/confirm"), "password": PASSWORD})).status_code == 200
    return email


async def login(system: System, org: Org, email: str, password: str, *, source: str) -> httpx.Response:
    async with portal(system, org, source=source) as browser:
        return await browser.post("/auth/login", json={"email": email, "password": password})


async def fail(system: System, org: Org, email: str, *, source: str, times: int) -> None:
    for _ in range(times):
        answer = await login(system, org, email, WRONG, source=source)
        assert answer.status_code == 401, answer.text


async def answered(system: System, org: Org, email: str, *, source: str, status: int, password: str = PASSWORD,
                   timeout: float = 15.0) -> httpx.Response:
    """Log in until the answer has ``status`` (lockout decides off the login path, a moment later)."""
    async def attempt() -> httpx.Response | None:
        answer = await login(system, org, email, password, source=source)
        return answer if answer.status_code == status else None
    return await eventually(attempt, timeout=timeout, what=f"{status} for {email} from {source}")


async def standing(system: System, org: Org, email: str, *, name: str = "lockout") -> dict[str, Any]:
    async with lockout_admin(system, name) as admin:
        answer = await admin.get(f"/admin/lockouts/{org.slug}/{email}")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def lockout_events(system: System, org: Org, kind: str) -> list[Envelope]:
    async with LogReader(system.infra.kafka_bootstrap, [LOCKOUT_TOPIC]) as log:
        return [e for e in await log.read_to_end() if e.tenant == org.slug and e.type == kind]


def assert_locked(answer: httpx.Response) -> datetime:
    """A 423 as the contract words it; its locked_until."""
    assert answer.status_code == 423, answer.text
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert (body["code"], body["title"]) == ("account_locked", "Account temporarily locked")
    assert int(answer.headers["Retry-After"]) >= 1
    assert body["actions"] == ["send_unlock_link"]
    # answered ahead of the route (LocksFirst) or by it, with the headers of every other answer
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.headers["cache-control"] == "no-store"
    return datetime.fromisoformat(body["locked_until"])


# --- the two tiers ---------------------------------------------------------------------------


async def test_five_failures_lock_their_source_with_423_and_retry_after_while_another_source_logs_in(system: System) -> None:
    org = await lockout_org(system)
    email = await signed_up(system, org)

    await fail(system, org, email, source=SOURCE_A, times=5)

    locked_until = assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))
    assert 800 <= int((await login(system, org, email, PASSWORD, source=SOURCE_A)).headers["Retry-After"]) <= 900
    assert (await login(system, org, email, PASSWORD, source=SOURCE_B)).status_code == 200
    seen = await standing(system, org, email)
    assert seen["locked"] and seen["locked_sources"] == [SOURCE_A] and not seen["every_source_locked"]
    assert abs(datetime.fromisoformat(seen["locked_until"]) - locked_until) <= timedelta(seconds=1)  # identity rounds up


async def test_failures_from_all_sources_reaching_the_account_bound_lock_every_source(system: System) -> None:
    org = await lockout_org(system)
    email = await signed_up(system, org)
    strangers = [f"203.0.113.{i}" for i in range(1, 5)]
    for stranger in strangers[:3]:
        await fail(system, org, email, source=stranger, times=5)
    await fail(system, org, email, source=strangers[3], times=4)  # 19 in all: one short of the bound
    await eventually(lambda: _failures_counted(system, org, email, 19), what="19 failures counted")

    owner = await login(system, org, email, PASSWORD, source=SOURCE_A)
    assert owner.status_code == 200, owner.text  # and the owner's success does not wipe the strangers' count

    await fail(system, org, email, source=strangers[3], times=1)
    assert_locked(await answered(system, org, email, source=SOURCE_B, status=423))
    seen = await standing(system, org, email)
    assert seen["every_source_locked"] and seen["locked_sources"] == strangers


async def _failures_counted(system: System, org: Org, email: str, count: int) -> bool:
    seen = await standing(system, org, email)
    return seen["failures_in_window"] == count and len(seen["locked_sources"]) == 3


# --- how a lock ends -------------------------------------------------------------------------


async def test_lock_ends_by_itself_after_lock_seconds(system: System) -> None:
    org = await lockout_org(system, {"lockout": {"lock_seconds": 2}})
    email = await signed_up(system, org)
    await fail(system, org, email, source=SOURCE_A, times=5)

    locked = await answered(system, org, email, source=SOURCE_A, status=423)
    assert_locked(locked)
    assert int(locked.headers["Retry-After"]) <= 2

    await asyncio.sleep(int(locked.headers["Retry-After"]))
    assert (await answered(system, org, email, source=SOURCE_A, status=200)).status_code == 200
    assert not (await standing(system, org, email))["locked"]
    expired = await eventually(lambda: lockout_events(system, org, "AccountUnlocked"), what="expiry announced")
    assert [(e.data["email"], e.data["source"], e.data["reason"]) for e in expired] == [(email, SOURCE_A, "expired")]


async def test_operator_unlock_lifts_the_lock(system: System) -> None:
    org = await lockout_org(system)
    email = await signed_up(system, org)
    await fail(system, org, email, source=SOURCE_A, times=5)
    assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))

    async with httpx.AsyncClient(base_url=system.url("lockout")) as anonymous:
        assert (await anonymous.delete(f"/admin/lockouts/{org.slug}/{email}")).status_code == 401
    async with lockout_admin(system) as admin:
        unlocked = await admin.delete(f"/admin/lockouts/{org.slug}/{email.upper()}",  # normalized like identity does
                                      headers={"X-Request-ID": "ticket-99"})
    assert unlocked.status_code == 204 and unlocked.headers["x-request-id"] == "ticket-99"
    [by_operator] = await eventually(lambda: lockout_events(system, org, "AccountUnlocked"), what="the unlock announced")
    assert (by_operator.version, by_operator.correlation_id) == (3, "ticket-99")
    assert by_operator.data["actor"] == {"address": "127.0.0.1", "request_id": "ticket-99", "name": None}

    assert (await standing(system, org, email)) | {"locked_until": None} == {
        "locked": False, "locked_until": None, "failures_in_window": 0, "locked_sources": [], "every_source_locked": False}
    assert (await answered(system, org, email, source=SOURCE_A, status=200)).status_code == 200


async def test_operator_api_names_unknown_organizations_and_invalid_emails(system: System) -> None:
    async with lockout_admin(system) as admin:
        missing = await admin.get("/admin/lockouts/no-such-org/ann@example.com")
        assert (missing.status_code, missing.json()["code"]) == (404, "organization_not_found")
        org = await lockout_org(system)
        invalid = await admin.delete(f"/admin/lockouts/{org.slug}/not-an-email")
        assert (invalid.status_code, invalid.json()["code"]) == (422, "invalid_email")


async def test_password_reset_lifts_the_lock(system: System) -> None:
    org = await lockout_org(system)
    email = await signed_up(system, org)
    await fail(system, org, email, source=SOURCE_A, times=5)
    assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))

    async with portal(system, org, source=SOURCE_A) as browser:
        assert (await browser.post("/auth/password/forgot", json={"email": email})).status_code == 202
        reset_mail = (await mail_to(system, email, count=2))[-1]
        reset = await browser.post("/auth/password/reset", json={"token": token_in(reset_mail, "/reset-password"),
                                                                 "password": NEW_PASSWORD})
        assert reset.status_code == 200, reset.text

    assert (await login(system, org, email, NEW_PASSWORD, source=SOURCE_A)).status_code == 200
    await eventually(lambda: _unlocked(system, org, email), what="lockout lifting the lock")
    [lifted] = await eventually(lambda: lockout_events(system, org, "AccountUnlocked"), what="unlock announced")
    assert (lifted.data["email"], lifted.data["source"], lifted.data["reason"]) == (email, None, "password_changed")


async def _unlocked(system: System, org: Org, email: str) -> bool:
    seen = await standing(system, org, email)
    return not seen["locked"] and seen["failures_in_window"] == 0


# --- whose count is whose --------------------------------------------------------------------


async def test_unknown_email_is_locked_like_a_known_one(system: System) -> None:
    org = await lockout_org(system)
    known, unknown = await signed_up(system, org), f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    for email in (known, unknown):
        await fail(system, org, email, source=SOURCE_A, times=5)

    for_known = await answered(system, org, known, source=SOURCE_A, status=423)
    for_unknown = await answered(system, org, unknown, source=SOURCE_A, status=423, password=WRONG)
    assert_locked(for_unknown)
    assert for_unknown.json().keys() == for_known.json().keys()
    assert (await standing(system, org, unknown))["locked_sources"] == [SOURCE_A]


async def test_same_email_in_two_organizations_is_locked_independently(system: System) -> None:
    first, second = await lockout_org(system), await lockout_org(system)
    email = await signed_up(system, first)
    async with portal(system, second) as browser:
        assert (await browser.post("/auth/register", json={"email": email, "password": PASSWORD})).status_code == 202
        [_, message] = await mail_to(system, email, count=2)
        assert (await browser.post("/auth/confirm", json={"token": token_in(message, "/confirm"), "password": PASSWORD})).status_code == 200

    await fail(system, first, email, source=SOURCE_A, times=5)
    assert_locked(await answered(system, first, email, source=SOURCE_A, status=423))

    assert (await login(system, second, email, PASSWORD, source=SOURCE_A)).status_code == 200
    assert not (await standing(system, second, email))["locked"]


# --- state from the log ----------------------------------------------------------------------


async def test_rebuilt_state_equals_live_state(system: System) -> None:
    org = await lockout_org(system)
    email, other = await signed_up(system, org), f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    await fail(system, org, email, source=SOURCE_A, times=5)
    await fail(system, org, email, source=SOURCE_B, times=2)
    assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))
    await fail(system, org, other, source=SOURCE_B, times=5)
    async with lockout_admin(system) as admin:
        assert (await admin.delete(f"/admin/lockouts/{org.slug}/{other}")).status_code == 204

    summary = await rebuild(system.infra.database_url, system.infra.kafka_bootstrap)

    assert summary.differences == []
    assert summary.not_yet_applied_live == 0 and not summary.replaced
    assert summary.rows["locks"] >= 2 and summary.rows["failures"] >= 2


async def test_rebuild_restores_a_lost_lock(system: System) -> None:
    org = await lockout_org(system)
    email = await signed_up(system, org)
    await fail(system, org, email, source=SOURCE_A, times=5)
    assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))
    before = await standing(system, org, email)
    await _lose_state_of(system, org)
    assert not (await standing(system, org, email))["locked"]

    summary = await rebuild(system.infra.database_url, system.infra.kafka_bootstrap, replace=True)

    assert summary.replaced and any(org.slug in line for line in summary.differences)
    assert await standing(system, org, email) == before
    assert (await rebuild(system.infra.database_url, system.infra.kafka_bootstrap)).differences == []


async def test_rebuild_replaces_only_once_the_live_consumer_has_applied_the_log(system: System) -> None:
    """Replacing records the replayed events as applied live, so an event the live consumer had not
    applied yet would be skipped by it, and the lock it decides never announced: identity would
    never refuse. Here lockout is down while the failures arrive, so they are pending for it."""
    org = await lockout_org(system)
    email = await signed_up(system, org)
    system.stop("lockout")
    try:
        await fail(system, org, email, source=SOURCE_A, times=5)
        await eventually(lambda: _failures_logged(system, org, email, 5), what="the failures in identity.events")
        with pytest.raises(RebuildNotSettled):
            await rebuild(system.infra.database_url, system.infra.kafka_bootstrap, replace=True, settle_seconds=1.0)
        replacing = asyncio.create_task(rebuild(system.infra.database_url, system.infra.kafka_bootstrap, replace=True,
                                                settle_seconds=60.0))
    finally:
        await asyncio.to_thread(system.start, "lockout")

    assert (await replacing).replaced  # once the live consumer caught up
    assert_locked(await answered(system, org, email, source=SOURCE_A, status=423))
    [locked] = await eventually(lambda: lockout_events(system, org, "AccountLocked"), what="the lock announced")
    assert (locked.data["email"], locked.data["source"]) == (email, SOURCE_A)


async def _failures_logged(system: System, org: Org, email: str, count: int) -> bool:
    async with LogReader(system.infra.kafka_bootstrap, [IDENTITY_TOPIC]) as log:
        return count == sum(1 for e in await log.read_to_end()
                            if e.tenant == org.slug and e.type == "LoginFailed" and e.data["email"] == email)


async def _lose_state_of(system: System, org: Org) -> None:
    engine = create_async_engine(system.infra.database_url)
    try:
        async with engine.begin() as conn:
            for table in ("locks", "failures"):
                await conn.execute(sa.text(f"DELETE FROM lockout.{table} WHERE tenant = :slug"), {"slug": org.slug})
    finally:
        await engine.dispose()


# --- scaling out -----------------------------------------------------------------------------


async def test_with_two_lockout_processes_stopping_one_loses_no_lock_and_makes_none_twice(system: System) -> None:
    org = await lockout_org(system)
    emails = [f"many-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(8)]  # spread over the partitions
    await asyncio.to_thread(system.start, "lockout", name="lockout-2")
    try:
        await eventually(lambda: _group_members(system, 2), timeout=30.0, what="two lockout consumers in the group")
        await asyncio.gather(*(fail(system, org, email, source=SOURCE_A, times=3) for email in emails))
        stopping = asyncio.create_task(asyncio.to_thread(system.stop, "lockout-2"))
        await asyncio.gather(*(fail(system, org, email, source=SOURCE_A, times=2) for email in emails))
        await stopping
    finally:
        if "lockout-2" in system.processes:
            system.stop("lockout-2")

    for email in emails:
        assert_locked(await answered(system, org, email, source=SOURCE_A, status=423, password=WRONG, timeout=30.0))
        assert (await standing(system, org, email))["locked_sources"] == [SOURCE_A]
    decided = {e.event_id: e.data["email"] for e in await lockout_events(system, org, "AccountLocked")}
    assert sorted(decided.values()) == sorted(emails)  # one lock decision per account, none twice


async def _group_members(system: System, count: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=system.infra.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups(["lockout"])
        [(_, _, state, _, _, members, *_)] = described.groups
        return state == "Stable" and len(members) == count
    finally:
        await admin.close()
