"""Changes made at the tenant service reach identity's own copy through tenant.events: a new domain
works, a removed one stops working, a raised password minimum is enforced."""

from __future__ import annotations

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import create_org
from tests.tenant.helpers import code_of, confirmed_account, login, new_email, on_host, register, settle

pytestmark = pytest.mark.e2e


async def session_on(system: System, host: str) -> httpx.Response:
    return await on_host(system, host, "GET", "/auth/session")


async def second_domain(system: System, admin: httpx.AsyncClient, slug: str) -> str:
    """A second portal domain for ``slug``, once identity answers on it."""
    host = f"login.{slug}.localhost"
    assert (await admin.put(f"/admin/tenants/{slug}/domains/{host}")).status_code == 200
    answer = await settle(lambda: session_on(system, host), lambda a: code_of(a) != "organization_not_found")
    assert code_of(answer) == "not_authenticated"
    return host


async def test_second_domain_answers_for_the_organization_at_identity(system: System, admin: httpx.AsyncClient) -> None:
    org = await create_org(system)
    host = await second_domain(system, admin, org.slug)
    answer = await login(system, host, new_email(), "no such account here")
    assert (answer.status_code, code_of(answer)) == (401, "invalid_credentials")


async def test_account_signs_in_on_a_second_domain(system: System, admin: httpx.AsyncClient) -> None:
    org, email = await create_org(system), new_email()
    await confirmed_account(system, org, email)
    host = await second_domain(system, admin, org.slug)
    answer = await login(system, host, email)
    assert answer.status_code == 200, answer.text
    assert answer.json()["organization"]["slug"] == org.slug


async def test_removed_domain_answers_organization_not_found(system: System, admin: httpx.AsyncClient) -> None:
    org = await create_org(system)
    assert (await admin.delete(f"/admin/tenants/{org.slug}/domains/{org.host}")).status_code == 200
    answer = await settle(lambda: session_on(system, org.host), lambda a: code_of(a) == "organization_not_found")
    assert (answer.status_code, code_of(answer)) == (404, "organization_not_found")


async def test_raised_password_minimum_is_enforced_at_registration(system: System, admin: httpx.AsyncClient) -> None:
    org = await create_org(system)
    changed = await admin.patch(f"/admin/tenants/{org.slug}", json={"settings": {"password": {"min_length": 16}}})
    assert changed.json()["settings"]["password"]["min_length"] == 16
    fourteen = "fourteen chars"
    answer = await settle(lambda: register(system, org, new_email(), fourteen),
                          lambda a: code_of(a) == "password_too_short")
    assert (answer.status_code, code_of(answer)) == (422, "password_too_short")
    assert answer.json()["title"] == "Password must be at least 16 characters"
    assert (await register(system, org, new_email(), "sixteen chars ok")).status_code == 202
