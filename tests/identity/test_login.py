"""Login (article causes 2, 3 and 5): one answer for unknown email and wrong password, locks
that cost no bcrypt work, bursts that cannot outrun lockout, and the organization from the host."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import System
from services.identity.domain import hash_password
from services.identity.tables import users
from tests.conftest import Org, create_org, portal
from tests.identity.conftest import (
    PASSWORD, account_events, assert_problem, confirmed_account, lock, login, metric, new_email, wait_for_lock,
)

pytestmark = pytest.mark.e2e

VERIFICATIONS = "identity_password_verifications_total"


def source() -> str:
    """A client address of its own, so that one test's failures lock nobody else's attempts."""
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}"


async def test_login_answers_user_and_organization(system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    answer = await login(client, account.email, account.password)
    assert answer.status_code == 200
    assert answer.json()["user"]["email"] == account.email
    assert answer.json()["organization"] == {"slug": org.slug, "name": "Acme Corp", "display_name": "Acme Corp"}


async def test_unknown_email_and_wrong_password_answer_alike(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    unknown = await login(client, new_email(), account.password)
    wrong = await login(client, account.email, "not the password at all")
    assert_problem(unknown, "invalid_credentials")
    assert (unknown.status_code, unknown.json(), unknown.headers.get("retry-after")) == \
           (wrong.status_code, wrong.json(), wrong.headers.get("retry-after"))


async def test_unknown_email_and_wrong_password_each_run_bcrypt_once(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    before = await metric(system, VERIFICATIONS)
    await login(client, new_email(), account.password)
    assert await metric(system, VERIFICATIONS) == before + 1
    await login(client, account.email, "not the password at all")
    assert await metric(system, VERIFICATIONS) == before + 2


async def test_failed_login_of_an_unknown_email_emits_login_failed(system: System, client: httpx.AsyncClient, org: Org) -> None:
    email = new_email()
    await login(client, email, PASSWORD)
    events = await account_events(system, org, email, until="LoginFailed", count=1)
    assert [(e["type"], e["data"]["email"], e["tenant"]) for e in events] == [("LoginFailed", email, org.slug)]

async def test_hash_made_with_other_rounds_is_upgraded_at_next_good_login(
        system: System, client: httpx.AsyncClient, identity_db: AsyncEngine) -> None:
    account = await confirmed_account(system, client)
    where = users.c.email == account.email
    async with identity_db.begin() as conn:
        await conn.execute(users.update().where(where).values(password_hash=hash_password(account.password, rounds=5)))
    assert (await login(client, account.email, account.password)).status_code == 200
    async with identity_db.connect() as conn:
        upgraded = await conn.scalar(sa.select(users.c.password_hash).where(where))
    assert upgraded.startswith("$2b$04$")  # the system's BCRYPT_ROUNDS in the tests
    assert (await login(client, account.email, account.password)).status_code == 200


async def test_locked_account_answers_account_locked_without_running_bcrypt(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account, address = await confirmed_account(system, client), source()
    locked = await lock(system, org, account.email, source=address)
    body = assert_problem(locked, "account_locked")
    assert body["locked_until"] and int(locked.headers["retry-after"]) > 0
    before = await metric(system, VERIFICATIONS)
    async with portal(system, org, source=address) as browser:
        assert_problem(await login(browser, account.email, account.password), "account_locked")
    assert await metric(system, VERIFICATIONS) == before


async def test_lock_holds_for_the_failing_address_only(system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    await lock(system, org, account.email, source=source())
    async with portal(system, org, source=source()) as elsewhere:
        assert (await login(elsewhere, account.email, account.password)).status_code == 200


async def test_burst_of_32_wrong_passwords_gets_at_most_one_answer_beyond_the_threshold(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account, address = await confirmed_account(system, client), source()
    async with portal(system, org, source=address) as attacker:
        answers = await asyncio.gather(*(login(attacker, account.email, f"guess number {i:04d}") for i in range(32)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) <= 5 + 1, statuses
    assert set(statuses) <= {401, 423, 429}, statuses
    for refused in (a for a in answers if a.status_code in (423, 429)):
        assert refused.json()["locked_until"] and int(refused.headers["retry-after"]) > 0
    assert_problem(await wait_for_lock(system, org, account.email, source=address), "account_locked")


async def test_unknown_host_is_organization_not_found(system: System) -> None:
    async with portal(system, Org("nobody", "nobody.localhost")) as stranger:
        assert_problem(await login(stranger, new_email(), PASSWORD), "organization_not_found")


async def test_organization_comes_from_x_forwarded_host_of_a_trusted_proxy(system: System, org: Org) -> None:
    headers = {"Host": "gateway.internal", "X-Forwarded-Host": f"{org.host.upper()}:8080"}
    async with httpx.AsyncClient(base_url=system.url("identity"), headers=headers) as via_gateway:
        assert_problem(await via_gateway.get("/auth/session"), "not_authenticated")


async def test_display_name_of_the_organization_is_in_the_login_answer(system: System) -> None:
    named = await create_org(system, settings={"display_name": "Acme Customer Portal"})
    async with portal(system, named) as client:
        account = await confirmed_account(system, client)
        organization = (await login(client, account.email, account.password)).json()["organization"]
    assert organization["display_name"] == "Acme Customer Portal"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"])
async def test_json_api_refuses_other_content_types(client: httpx.AsyncClient, content_type: str) -> None:
    answer = await client.post("/auth/login", content=b"email=a&password=b", headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "unsupported_media_type"
