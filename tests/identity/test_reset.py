"""Password reset (article cause 4), and the secrets it handles: no token, password or cookie
value is left in any topic, table or log once a person has been through it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import System
from tests.conftest import Org, mail_to, portal, records_on, text_of
from tests.identity.conftest import (
    PASSWORD, Account, account_events, assert_problem, confirmed_account, every_row, expire_link, lock, login,
    mailed_tokens, new_email, register,
)

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase"


async def reset_link(system: System, client: httpx.AsyncClient, email: str, *, nth: int = 1) -> str:
    """Asks for a reset and returns the token of the ``nth`` reset link mailed to ``email``."""
    await client.post("/auth/password/forgot", json={"email": email})
    return (await mailed_tokens(system, email, "/reset-password", count=nth))[nth - 1]


async def reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post("/auth/password/reset", json={"token": token, "password": password})


async def test_forgot_answers_the_same_for_any_address(system: System, client: httpx.AsyncClient) -> None:
    known = (await confirmed_account(system, client)).email
    answers = [await client.post("/auth/password/forgot", json={"email": e}) for e in (new_email(), known)]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"reset_sent"}')}


async def test_reset_changes_the_password_and_logs_out_every_session(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    assert (await login(client, account.email, account.password)).status_code == 200
    answer = await reset(client, await reset_link(system, client, account.email))
    assert (answer.status_code, answer.json()) == (200, {"status": "password_changed"})
    assert_problem(await client.get("/auth/session"), "not_authenticated")
    assert_problem(await login(client, account.email, account.password), "invalid_credentials")
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_a_password_change_is_told_to_the_account_once_without_a_token(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    assert (await reset(client, await reset_link(system, client, account.email))).status_code == 200
    changed = [m for m in await mail_to(system, account.email, count=3) if "password was changed" in m["Subject"]]
    assert len(changed) == 1 and "Acme Corp" in changed[0]["Subject"] + text_of(changed[0])
    assert "token=" not in text_of(changed[0]) and "token=" not in changed[0].get_body(("html",)).get_content()
    assert f"http://{org.host}:8080/forgot-password" in text_of(changed[0])

    await reset_link(system, client, account.email, nth=2)  # a later email to the same address, sent after it
    later = await mail_to(system, account.email, count=4)
    assert sum("password was changed" in m["Subject"] for m in later) == 1


async def test_a_newer_reset_request_voids_no_link_and_using_one_voids_the_rest(system: System, client: httpx.AsyncClient) -> None:
    """Nobody can void the link in someone's inbox by asking for another; once the person has
    used one, the others have done their work."""
    account = await confirmed_account(system, client)
    older = await reset_link(system, client, account.email, nth=1)
    newer = await reset_link(system, client, account.email, nth=2)
    assert (await reset(client, older)).status_code == 200
    assert assert_problem(await reset(client, newer, "yet another passphrase"), "token_invalid")["actions"] == ["request_new"]


async def test_a_fourth_reset_request_in_15_minutes_answers_the_same_sends_nothing_and_voids_nothing(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    for _ in range(3):
        await client.post("/auth/password/forgot", json={"email": account.email})
    links = await mailed_tokens(system, account.email, "/reset-password", count=3)
    fourth = await client.post("/auth/password/forgot", json={"email": account.email})
    assert (fourth.status_code, fourth.json()) == (202, {"status": "reset_sent"})

    await register(client, account.email)  # a later event and email for the same account: the notice
    events = await account_events(system, org, account.email, until="RegistrationRepeated", count=1)
    assert sum(e["type"] == "ResetRequested" for e in events) == 3
    notice = [m for m in await mail_to(system, account.email, count=5) if "register" in m["Subject"]]
    assert notice and len(await mailed_tokens(system, account.email, "/reset-password")) == 3
    assert (await reset(client, links[0])).status_code == 200


async def test_reset_link_works_once(system: System, client: httpx.AsyncClient) -> None:
    token = await reset_link(system, client, (await confirmed_account(system, client)).email)
    assert (await reset(client, token)).status_code == 200
    assert_problem(await reset(client, token, "yet another passphrase"), "token_invalid")


async def test_expired_reset_link_is_token_expired_and_offers_a_new_one(
        system: System, client: httpx.AsyncClient, identity_db: AsyncEngine) -> None:
    token = await reset_link(system, client, (await confirmed_account(system, client)).email)
    await expire_link(identity_db, token)
    assert assert_problem(await reset(client, token), "token_expired")["actions"] == ["request_new"]


async def test_common_new_password_is_password_too_common_and_leaves_the_link_usable(
        system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    token = await reset_link(system, client, account.email)
    assert_problem(await reset(client, token, "Password1234"), "password_too_common")
    assert (await login(client, account.email, account.password)).status_code == 200
    assert (await reset(client, token)).status_code == 200


async def test_too_short_new_password_leaves_the_link_usable(system: System, client: httpx.AsyncClient) -> None:
    token = await reset_link(system, client, (await confirmed_account(system, client)).email)
    assert_problem(await reset(client, token, "too short"), "password_too_short")
    assert (await reset(client, token)).status_code == 200


async def test_reset_lifts_the_lock(system: System, client: httpx.AsyncClient, org: Org) -> None:
    account, address = await confirmed_account(system, client), "203.0.113.7"
    await lock(system, org, account.email, source=address)
    assert (await reset(client, await reset_link(system, client, account.email))).status_code == 200
    async with portal(system, org, source=address) as browser:
        assert (await login(browser, account.email, NEW_PASSWORD)).status_code == 200


async def test_reset_of_an_unconfirmed_account_confirms_it(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    assert (await reset(client, await reset_link(system, client, email))).status_code == 200
    assert (await login(client, email, NEW_PASSWORD)).status_code == 200


async def test_no_token_password_or_cookie_in_any_topic_table_or_log_after_a_full_reset(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = Account(new_email(), PASSWORD)
    await register(client, account.email)
    [confirmation] = await mailed_tokens(system, account.email, "/confirm")
    await client.post("/auth/confirm", json={"token": confirmation, "password": PASSWORD})
    await login(client, account.email, account.password)
    first_cookie = client.cookies["portal_session"]
    reset_token = await reset_link(system, client, account.email)
    await reset(client, reset_token)
    await login(client, account.email, NEW_PASSWORD)
    secrets = {"confirmation token": confirmation, "reset token": reset_token, "old password": PASSWORD,
               "new password": NEW_PASSWORD, "first session": first_cookie, "second session": client.cookies["portal_session"]}

    events = await account_events(system, org, account.email, until="LoginSucceeded", count=2)
    stored = {"topics": "\n".join(r.value.decode(errors="replace") for r in await records_on(system.infra.kafka_bootstrap)),
              "tables": await every_row(system.infra.database_url),
              "logs": "\n".join(p.read_text(errors="replace") for p in (system.workdir / "logs").glob("*.log"))}
    expected = {"UserRegistered", "EmailConfirmed", "ResetRequested", "PasswordChanged", "SessionRevoked"}
    assert expected <= {e["type"] for e in events}
    assert {(what, where) for what, secret in secrets.items() for where, text in stored.items() if secret in text} == set()

