"""Self-service for the article's causes (issue 14): a locked person unlocks with an emailed link
(cause 5), a person who does not know their portal gets the list of them (causes 3 and 8), and
the page of an expired or used link sends a new one in one click (cause 4)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, Org, create_org, link_in, mail_to, portal, records_on, text_of
from tests.identity.conftest import (
    assert_problem,
    confirmed_account,
    every_row,
    expire_link,
    lock,
    login,
    mailed_tokens,
    new_email,
    register,
)
from tests.identity.test_pages import HIDDEN_TOKEN, open_form, submit, words

pytestmark = pytest.mark.e2e

SOURCE = "198.51.100.23"


async def unlock_link(system: System, client: httpx.AsyncClient, email: str, *, nth: int = 1) -> str:
    answer = await client.post("/auth/unlock/request", json={"email": email})
    assert (answer.status_code, answer.json()) == (202, {"status": "unlock_sent"})
    return (await mailed_tokens(system, email, "/unlock", count=nth))[nth - 1]


async def lockout_standing(system: System, org: Org, email: str) -> dict:
    async with httpx.AsyncClient(base_url=system.url("lockout"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        return (await client.get(f"/admin/lockouts/{org.slug}/{email}")).json()


# --- cause 5: the unlock link ------------------------------------------------------------------


async def test_locked_answer_offers_the_unlock_link(system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    answer = await lock(system, org, account.email, source=SOURCE)
    body = assert_problem(answer, "account_locked")
    assert body["actions"] == ["send_unlock_link"] and "locked_until" in body


async def test_unlock_request_answers_alike_and_mails_only_a_locked_account(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    locked, unlocked = await confirmed_account(system, client), await confirmed_account(system, client)
    await lock(system, org, locked.email, source=SOURCE)
    answers = [await client.post("/auth/unlock/request", json={"email": e}) for e in (new_email(), unlocked.email, locked.email)]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"unlock_sent"}')}

    [mail] = [m for m in await mail_to(system, locked.email, count=2) if "/unlock?token=" in text_of(m)]
    assert "Acme Corp" in mail["Subject"] and "Acme Corp" in text_of(mail)
    assert link_in(mail, "/unlock").startswith(f"http://{org.host}:8080/unlock?token=")
    # The account that is not locked got no unlock link: its reset mail, asked for afterwards, comes alone.
    await client.post("/auth/password/forgot", json={"email": unlocked.email})
    await mailed_tokens(system, unlocked.email, "/reset-password")
    assert not [m for m in await mail_to(system, unlocked.email, count=0) if "/unlock?token=" in text_of(m)]


async def test_unlock_link_lifts_every_lock_once_and_lockout_records_it(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    await lock(system, org, account.email, source=SOURCE)
    token = await unlock_link(system, client, account.email)

    page = await client.get(f"/unlock?token={token}")  # a mail scanner's GET changes nothing
    assert page.status_code == 200 and "Unlock my account" in words(page)
    async with portal(system, org, source=SOURCE) as browser:
        assert_problem(await login(browser, account.email, account.password), "account_locked")

        answer = await client.post("/auth/unlock", json={"token": token})
        assert (answer.status_code, answer.json()) == (200, {"status": "unlocked"})
        assert (await login(browser, account.email, account.password)).status_code == 200
    assert_problem(await client.post("/auth/unlock", json={"token": token}), "token_invalid")

    for _ in range(100):  # lockout lifts it when UnlockLinkUsed reaches it
        if not (await lockout_standing(system, org, account.email))["locked"]:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("lockout never lifted the lock")
    unlocked = [json.loads(r.value) for r in await records_on(system.infra.kafka_bootstrap, ["lockout.events"])
                if r.key == f"{org.slug}:{account.email}".encode()]
    assert [(e["type"], e["version"], e["data"]["reason"]) for e in unlocked if e["type"] == "AccountUnlocked"] \
        == [("AccountUnlocked", 3, "email_link")]
    stored = {"topics": "\n".join(r.value.decode(errors="replace") for r in await records_on(system.infra.kafka_bootstrap)),
              "tables": await every_row(system.infra.database_url),
              "logs": "\n".join(p.read_text(errors="replace") for p in (system.workdir / "logs").glob("*.log"))}
    assert [where for where, text in stored.items() if token in text] == []


async def test_expired_unlock_link_is_token_expired(
        system: System, client: httpx.AsyncClient, org: Org, identity_db: AsyncEngine) -> None:
    account = await confirmed_account(system, client)
    await lock(system, org, account.email, source=SOURCE)
    token = await unlock_link(system, client, account.email)
    await expire_link(identity_db, token)
    assert assert_problem(await client.post("/auth/unlock", json={"token": token}), "token_expired")["actions"] == ["request_new"]


async def test_locked_page_sends_the_unlock_link_in_one_click(system: System, org: Org) -> None:
    async with portal(system, org, source="192.0.2.77") as browser:
        account = await confirmed_account(system, browser)
        await lock(system, org, account.email, source="192.0.2.77")
        page = await submit(browser, "/login", "/login", email=account.email, password=account.password)
        assert page.status_code == 423 and "Send unlock link" in words(page)
        sent = await browser.post("/unlock/request", data={"csrf_token": HIDDEN_TOKEN.search(page.text).group(1),
                                                           "email": account.email})
        assert sent.status_code == 200 and "Check your email" in words(sent)
        [token] = await mailed_tokens(system, account.email, "/unlock")
        page, csrf = await open_form(browser, f"/unlock?token={token}")
        done = await browser.post("/unlock", data={"csrf_token": csrf, "token": token}, follow_redirects=True)
        assert "Your account is unlocked" in words(done)
        assert (await login(browser, account.email, account.password)).status_code == 200


# --- causes 3 and 8: find your portal ------------------------------------------------------------


async def test_find_portal_on_an_unknown_host_mails_each_organization_once(system: System) -> None:
    first, second = await create_org(system, name="Northwind Traders"), await create_org(system, name="Fabrikam Ltd")
    email = new_email()
    for org in (first, second):
        async with portal(system, org) as client:
            await register(client, email)
    nowhere = {"Host": f"nowhere-{uuid.uuid4().hex[:8]}.localhost"}
    async with httpx.AsyncClient(base_url=system.url("identity"), headers=nowhere) as anywhere:
        answers = [await anywhere.post("/auth/find-portal", json={"email": e}) for e in (new_email(), email, email)]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"sent_if_known"}')}

    [mail] = [m for m in await mail_to(system, email, count=3) if "customer portal" in m["Subject"].lower()]
    text = text_of(mail)
    assert "Northwind Traders" in text and "Fabrikam Ltd" in text
    assert f"http://{first.host}:8080/login" in text and f"http://{second.host}:8080/login" in text
    assert "token=" not in text
    # The second request, within 15 minutes, sent nothing: a reset mail asked for afterwards comes, and still one list.
    async with portal(system, first) as client:
        await client.post("/auth/password/forgot", json={"email": email})
    await mailed_tokens(system, email, "/reset-password")
    assert len([m for m in await mail_to(system, email, count=0) if "customer portal" in m["Subject"].lower()]) == 1


async def test_organization_not_found_page_links_to_find_portal_which_works_there(system: System) -> None:
    unknown_host = {"Host": f"lost-{uuid.uuid4().hex[:8]}.localhost"}
    async with httpx.AsyncClient(base_url=system.url("identity"), headers=unknown_host) as lost:
        page = await lost.get("/login")
        assert page.status_code == 404 and "Organization not found" in words(page)
        assert 'href="/find-portal"' in page.text and "Find your portal" in words(page)
        unknown = new_email()
        sent = await submit(lost, "/find-portal", "/find-portal", email=unknown)
    assert sent.status_code == 200 and "Check your email" in words(sent)
    assert f"If {unknown} has an account with any organization" in words(sent)


# --- cause 4: a new link from the page of an expired or used one -----------------------------------


@pytest.mark.parametrize("path,purpose", [("/reset-password", "reset"), ("/confirm", "confirm")])
async def test_expired_link_page_sends_a_new_link_without_showing_the_address(
        system: System, client: httpx.AsyncClient, identity_db: AsyncEngine, path: str, purpose: str) -> None:
    email = new_email()
    await register(client, email)
    if purpose == "reset":
        await client.post("/auth/password/forgot", json={"email": email})
    [old] = await mailed_tokens(system, email, path)
    await expire_link(identity_db, old)

    page, csrf = await open_form(client, f"{path}?token={old}")
    assert page.status_code == 410 and "Link expired" in words(page) and 'action="/renew-link"' in page.text
    sent = await client.post("/renew-link", data={"csrf_token": csrf, "token": old, "purpose": purpose})
    assert sent.status_code == 200 and "Check your email" in words(sent) and email not in sent.text

    [_, new] = await mailed_tokens(system, email, path, count=2)
    assert (await client.get(f"{path}?token={new}")).status_code == 200


async def test_renewing_an_unknown_link_answers_the_same_and_sends_nothing(client: httpx.AsyncClient) -> None:
    page, csrf = await open_form(client, "/reset-password?token=not-a-real-token")
    assert page.status_code == 400 and "Link invalid or already used" in words(page)
    sent = await client.post("/renew-link", data={"csrf_token": csrf, "token": "not-a-real-token", "purpose": "reset"})
    assert sent.status_code == 200 and "Check your email" in words(sent)


# --- cause 6: a browser that refuses cookies (the browser itself: test_browser.py) -------------------


async def test_a_form_that_comes_back_without_cookies_is_told_from_a_refused_cookie(system: System, org: Org) -> None:
    async with portal(system, org) as first_visit:
        _, csrf = await open_form(first_visit, "/login")
    async with portal(system, org) as refusing:  # sends back no cookie, whatever it was given
        probe = await refusing.post("/login", data={"csrf_token": csrf, "email": "a@example.com", "password": "x"})
        assert probe.status_code == 303
        refusing.cookies.clear()
        page = await refusing.get(probe.headers["location"])
        assert page.status_code == 400 and "Cookies are blocked for this site" in words(page)
    async with portal(system, org) as keeping:  # its cookie had merely gone (a browser restart): it keeps the new one
        probe = await keeping.post("/login", data={"csrf_token": csrf, "email": "a@example.com", "password": "x"})
        page = await keeping.get(probe.headers["location"])
        assert page.status_code == 403 and "This form has expired" in words(page) and 'href="/login"' in page.text


async def test_account_page_right_after_sign_in_without_the_cookie_says_cookies_are_blocked(client: httpx.AsyncClient) -> None:
    page = await client.get("/?signed_in=1")
    assert page.status_code == 400 and "Cookies are blocked for this site" in words(page)
