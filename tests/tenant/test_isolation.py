"""Nothing crosses organizations: accounts, emails, sessions and locks all belong to one."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, create_org, link_in, text_of
from tests.tenant.helpers import (
    PASSWORD, code_of, confirmed_account, login, mail_from, new_email, on_host, register, settle,
)

pytestmark = pytest.mark.e2e

OTHER_PASSWORD = "a different passphrase"


async def test_same_email_in_two_organizations_is_two_accounts(system: System) -> None:
    alpha, beta, email = await create_org(system), await create_org(system), new_email()
    assert (await register(system, alpha, email, PASSWORD)).status_code == 202
    assert (await register(system, beta, email, OTHER_PASSWORD)).status_code == 202
    # Each account knows only its own password: the right one is told "not confirmed", the other is wrong.
    tries = [(alpha, PASSWORD), (alpha, OTHER_PASSWORD), (beta, OTHER_PASSWORD), (beta, PASSWORD)]
    answers = [code_of(await login(system, org.host, email, password)) for org, password in tries]
    assert answers == ["user_not_confirmed", "invalid_credentials", "user_not_confirmed", "invalid_credentials"]


async def test_each_organizations_email_carries_its_own_name_and_domain(system: System) -> None:
    alpha = await create_org(system, name="Alpha Industries")
    beta = await create_org(system, name="Beta Logistics")
    email = new_email()
    for org in (alpha, beta):
        assert (await register(system, org, email)).status_code == 202
    for org, name, other in ((alpha, "Alpha Industries", beta), (beta, "Beta Logistics", alpha)):
        [message] = await mail_from(system, org, email)
        assert name in message["Subject"] + text_of(message)
        assert urlsplit(link_in(message, "/confirm")).hostname == org.host
        assert other.host not in text_of(message)


async def test_session_from_one_organization_is_no_session_on_another(system: System) -> None:
    alpha, beta, email = await create_org(system), await create_org(system), new_email()
    for org in (alpha, beta):  # the same person with an account in both: still two sessions
        await confirmed_account(system, org, email)
    signed_in = await login(system, alpha.host, email)
    assert signed_in.status_code == 200, signed_in.text
    cookie = {"Cookie": "; ".join(f"{name}={value}" for name, value in signed_in.cookies.items())}
    on_alpha = await on_host(system, alpha.host, "GET", "/auth/session", headers=cookie)
    on_beta = await on_host(system, beta.host, "GET", "/auth/session", headers=cookie)
    assert on_alpha.status_code == 200, on_alpha.text
    assert (on_beta.status_code, code_of(on_beta)) == (401, "not_authenticated")


async def test_lock_in_one_organization_does_not_touch_the_other(system: System) -> None:
    strict = {"lockout": {"max_failures": 2, "max_failures_account": 2}}
    alpha, beta, email = await create_org(system, settings=strict), await create_org(system, settings=strict), new_email()
    for org in (alpha, beta):
        assert (await register(system, org, email)).status_code == 202
    locked = await settle(lambda: login(system, alpha.host, email, OTHER_PASSWORD), lambda a: code_of(a) == "account_locked")
    assert code_of(locked) == "account_locked"
    # Same email, same client address, other organization: the right password is still the right password.
    assert code_of(await login(system, beta.host, email)) == "user_not_confirmed"
    async with httpx.AsyncClient(base_url=system.url("lockout"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        beta_view = await admin.get(f"/admin/lockouts/{beta.slug}/{email}")
    assert beta_view.status_code == 200, beta_view.text
    assert (beta_view.json()["locked"], beta_view.json()["failures_in_window"]) == (False, 0)
