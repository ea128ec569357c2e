"""Per-source limits: what one source address may ask of one organization's portal, how a source
is told apart (X-Forwarded-For read as addresses, IPv6 by its /64), and credential stuffing."""

from __future__ import annotations

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import Org, create_org, portal
from tests.identity.conftest import account_events, assert_problem, confirmed_account, login, new_email
from tests.identity.test_pages import open_form

pytestmark = pytest.mark.e2e


async def limited_org(system: System, **limits: int) -> Org:
    return await create_org(system, settings={"limits": limits})


async def forgot(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/auth/password/forgot", json={"email": new_email()})


async def test_a_source_over_the_organizations_limit_gets_429_with_retry_after(system: System) -> None:
    org = await limited_org(system, requests_per_source_per_minute=5)
    async with portal(system, org, source="198.51.100.20") as noisy, portal(system, org, source="198.51.100.21") as other:
        assert [(await forgot(noisy)).status_code for _ in range(5)] == [202] * 5
        for refused in (await forgot(noisy), await login(noisy, new_email(), "whatever password"),
                        await noisy.post("/auth/register", json={"email": new_email(), "password": "a long passphrase"})):
            assert_problem(refused, "too_many_requests")
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await forgot(other)).status_code == 202  # another source is not held back
        assert (await noisy.get("/auth/session")).status_code == 401  # only POSTs count


async def test_the_limit_is_per_organization(system: System) -> None:
    first, second = await limited_org(system, requests_per_source_per_minute=2), await limited_org(system)
    async with portal(system, first, source="198.51.100.22") as here, portal(system, second, source="198.51.100.22") as there:
        assert [(await forgot(here)).status_code for _ in range(3)] == [202, 202, 429]
        assert (await forgot(there)).status_code == 202


async def test_an_ipv6_source_is_counted_by_its_64(system: System) -> None:
    org = await limited_org(system, requests_per_source_per_minute=2)
    async with portal(system, org, source="2001:db8:5:6::1") as one, portal(system, org, source="2001:db8:5:6:ffff::9") as same_64:
        assert (await forgot(one)).status_code == 202
        assert (await forgot(same_64)).status_code == 202
        assert_problem(await forgot(one), "too_many_requests")
    async with portal(system, org, source="2001:db8:5:7::1") as next_64:
        assert (await forgot(next_64)).status_code == 202


async def test_the_self_service_requests_are_limited_too(system: System) -> None:
    for path, body in (("/auth/unlock/request", {"email": new_email()}), ("/auth/unlock", {"token": "x" * 43})):
        org = await limited_org(system, requests_per_source_per_minute=1)
        async with portal(system, org, source="198.51.100.24") as client:
            assert (await client.post(path, json=body)).status_code != 429
            assert_problem(await client.post(path, json=body), "too_many_requests")


async def test_find_portal_is_limited_on_every_host_together(system: System) -> None:
    """Find-portal belongs to no organization: its default limit (60 a minute) is counted over
    every host, so that inventing hosts buys no fresh allowance."""
    hosts = [f"unknown-{n}.invalid" for n in range(3)]
    answers = []
    for n in range(61):
        headers = {"Host": hosts[n % 3], "X-Forwarded-For": "198.51.100.25"}
        async with httpx.AsyncClient(base_url=system.url("identity"), headers=headers) as client:
            answers.append(await client.post("/auth/find-portal", json={"email": new_email()}))
    assert [a.status_code for a in answers[:60]] == [202] * 60
    assert_problem(answers[60], "too_many_requests")


async def test_the_page_forms_are_limited_too(system: System) -> None:
    org = await limited_org(system, requests_per_source_per_minute=1)
    async with portal(system, org, source="198.51.100.23") as browser:
        _, csrf = await open_form(browser, "/forgot-password")
        assert (await forgot(browser)).status_code == 202
        page = await browser.post("/forgot-password", data={"csrf_token": csrf, "email": new_email()})
    assert page.status_code == 429 and "Too many attempts, try again shortly" in page.text
    assert int(page.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("forwarded", "source"), [
    ("198.51.100.1, 203.0.113.7", "203.0.113.7"),                     # the rightmost untrusted hop
    ("203.0.113.7, 127.0.0.1", "203.0.113.7"),                        # trusted proxies are skipped
    ("203.0.113.7:4711", "203.0.113.7"),                              # a port is no part of the address
    ("[2001:db8:9:9::42]:443", "2001:db8:9:9::/64"),
    ("2001:db8:9:9::43", "2001:db8:9:9::/64"),
    ("::ffff:203.0.113.8", "203.0.113.8"),
    ("203.0.113.7, not-an-address", "127.0.0.1"),                     # garbage: only the peer is known
    ("not-an-address, 203.0.113.9", "203.0.113.9"),
], ids=["rightmost", "trusted-skipped", "port", "ipv6-port", "ipv6", "v4-mapped", "garbage-right", "garbage-left"])
async def test_the_source_of_an_attempt_is_read_from_x_forwarded_for_as_addresses(
        system: System, org: Org, forwarded: str, source: str) -> None:
    email = new_email()
    async with portal(system, org, source=forwarded) as client:
        assert_problem(await login(client, email, "not the password at all"), "invalid_credentials")
    [failed] = [e for e in await account_events(system, org, email, until="LoginFailed", count=1) if e["type"] == "LoginFailed"]
    assert failed["data"]["source"] == source


async def test_one_source_failing_on_many_accounts_is_held_back(system: System) -> None:
    """Credential stuffing: a few passwords on each of many accounts never reaches one account's
    lock, so the source's failures across the organization are bounded as well."""
    org = await limited_org(system, failed_logins_per_source=3)
    async with portal(system, org) as setup:
        victim = await confirmed_account(system, setup)
    async with portal(system, org, source="198.51.100.30") as stuffer:
        for _ in range(3):
            assert_problem(await login(stuffer, new_email(), "password from a leak"), "invalid_credentials")
        refused = await login(stuffer, victim.email, victim.password)  # even the right password, before any work
        assert_problem(refused, "too_many_requests")
        assert int(refused.headers["retry-after"]) >= 1
    async with portal(system, org, source="198.51.100.31") as owner:
        assert (await login(owner, victim.email, victim.password)).status_code == 200
