"""Sessions (article causes 6 and 8): the cookie, its attributes, logout, restarts, organizations."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Response

from portal_auth.system import System
from services.identity.http import set_session_cookie
from services.identity.settings import IdentitySettings
from tests.conftest import Org, portal
from tests.identity.conftest import account_events, assert_problem, confirmed_account, login

pytestmark = pytest.mark.e2e

COOKIE = "portal_session"  # COOKIE_SECURE=false in the tests
THIRTY_DAYS = 30 * 86400


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """The cookie's name and its attributes, names in lower case."""
    first, *attributes = [part.strip() for part in set_cookie.split(";")]
    pairs = [a.partition("=") for a in attributes]
    return first.partition("=")[0], {name.lower(): value for name, _, value in pairs}


async def signed_in(system: System, client: httpx.AsyncClient, **extra: object) -> httpx.Response:
    account = await confirmed_account(system, client)
    answer = await login(client, account.email, account.password, **extra)
    assert answer.status_code == 200, answer.text
    return answer


async def test_session_answers_the_signed_in_user_and_organization(system: System, client: httpx.AsyncClient, org: Org) -> None:
    user = (await signed_in(system, client)).json()["user"]
    answer = await client.get("/auth/session")
    assert answer.status_code == 200
    assert answer.json()["user"] == user
    assert answer.json()["organization"]["slug"] == org.slug


async def test_without_a_cookie_there_is_no_session(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/auth/session"), "not_authenticated")


async def test_logout_revokes_the_session(system: System, client: httpx.AsyncClient) -> None:
    await signed_in(system, client)
    cookie = client.cookies[COOKIE]
    answer = await client.post("/auth/logout")  # the contract's logout carries no body
    assert answer.status_code == 204
    assert_problem(await client.get("/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"}), "not_authenticated")


async def test_logout_all_ends_every_session_of_the_person_and_only_theirs(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account, someone_else = await confirmed_account(system, client), await confirmed_account(system, client)
    cookies = []
    for _ in range(3):  # three devices
        async with portal(system, org) as device:
            assert (await login(device, account.email, account.password)).status_code == 200
            cookies.append(device.cookies[COOKIE])
    async with portal(system, org) as other:
        assert (await login(other, someone_else.email, someone_else.password)).status_code == 200
        other_cookie = other.cookies[COOKIE]

    ended = await client.post("/auth/logout-all", headers={"Cookie": f"{COOKIE}={cookies[0]}"})
    assert ended.status_code == 204
    for cookie in cookies:
        assert_problem(await client.get("/auth/session", headers={"Cookie": f"{COOKIE}={cookie}"}), "not_authenticated")
    assert (await client.get("/auth/session", headers={"Cookie": f"{COOKIE}={other_cookie}"})).status_code == 200
    revoked = [e for e in await account_events(system, org, account.email, until="SessionRevoked", count=3)
               if e["type"] == "SessionRevoked"]
    assert [(e["version"], e["data"]["reason"]) for e in revoked] == [(2, "logout_all")] * 3


async def test_logout_all_without_a_session_is_not_authenticated(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/auth/logout-all"), "not_authenticated")
    assert_problem(await client.post("/auth/logout-all", headers={"Cookie": f"{COOKIE}=forged"}), "not_authenticated")


async def test_session_cookie_is_host_only_httponly_lax_on_every_path(system: System, client: httpx.AsyncClient) -> None:
    name, attributes = cookie_attributes((await signed_in(system, client)).headers["set-cookie"])
    assert name == COOKIE
    assert attributes["path"] == "/" and attributes["samesite"].lower() == "lax"
    assert "httponly" in attributes and "domain" not in attributes
    assert "max-age" not in attributes and "expires" not in attributes  # ends with the browser


async def test_remember_me_keeps_the_cookie_beyond_the_browser_session(system: System, client: httpx.AsyncClient) -> None:
    _, attributes = cookie_attributes((await signed_in(system, client, remember_me=True)).headers["set-cookie"])
    assert int(attributes["max-age"]) == THIRTY_DAYS


@pytest.mark.parametrize(("secure", "name"), [(True, "__Host-portal_session"), (False, "portal_session")])
def test_secure_cookie_is_host_prefixed(secure: bool, name: str) -> None:
    response = Response()
    set_session_cookie(response, IdentitySettings(cookie_secure=secure, environment="local"), "value", max_age=None)
    cookie_name, attributes = cookie_attributes(response.headers["set-cookie"])
    assert cookie_name == name
    assert ("secure" in attributes) is secure
    assert attributes["path"] == "/" and "domain" not in attributes and "httponly" in attributes


async def test_sessions_survive_a_restart_of_identity(system: System, client: httpx.AsyncClient) -> None:
    user = (await signed_in(system, client)).json()["user"]
    system.restart("identity")
    answer = await client.get("/auth/session")
    assert answer.status_code == 200
    assert answer.json()["user"] == user


async def test_cookie_from_one_organization_is_no_session_on_another(
        system: System, client: httpx.AsyncClient, other_org: Org) -> None:
    await signed_in(system, client)
    async with portal(system, other_org) as elsewhere:
        shown = await elsewhere.get("/auth/session", headers={"Cookie": f"{COOKIE}={client.cookies[COOKIE]}"})
    assert_problem(shown, "not_authenticated")
