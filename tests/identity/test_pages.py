"""The portal pages, driven as a browser without JavaScript would: GET a form, POST it back with
its hidden CSRF token, follow the redirect, read the words on the page."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import System
from tests.conftest import Org, mail_to, portal
from tests.identity.conftest import (
    PASSWORD, confirmed_account, expire_link, lock, mailed_tokens, new_email, register,
)

pytestmark = pytest.mark.e2e

HIDDEN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def open_form(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, str]:
    """The page and its CSRF token (the cookie half stays in the client's jar)."""
    page = await client.get(path)
    match = HIDDEN_TOKEN.search(page.text)
    assert match, page.text
    return page, match.group(1)


async def submit(client: httpx.AsyncClient, form_path: str, action: str, **fields: str) -> httpx.Response:
    _, token = await open_form(client, form_path)
    return await client.post(action, data={"csrf_token": token, **fields})


def words(page: httpx.Response) -> str:
    """The page's text as a person reads it: tags dropped, entities decoded, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


async def test_login_page_shows_the_organization_an_accessible_form_and_forgot_password(client: httpx.AsyncClient) -> None:
    page, _ = await open_form(client, "/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Acme Corp" in words(page)
    assert '<label for="email">' in page.text and '<label for="password">' in page.text
    assert 'autocomplete="username"' in page.text and 'autocomplete="current-password"' in page.text
    assert '<a href="/forgot-password">Forgot Password</a>' in page.text


@pytest.mark.parametrize("path", ["/login", "/register", "/forgot-password", "/resend-confirmation",
                                  "/reset-password?token=unknown", "/confirm?token=unknown"])
async def test_every_page_names_the_organization_and_is_not_cached(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert "Acme Corp" in words(page)
    assert page.headers["cache-control"] == "no-store"


async def test_wrong_password_page_says_incorrect_email_or_password_and_keeps_the_email(
        system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    page = await submit(client, "/login", "/login", email=account.email, password="not the password at all")
    assert page.status_code == 401
    assert "Incorrect email or password" in words(page) and "Forgot Password" in words(page)
    assert f'value="{account.email}"' in page.text and "not the password at all" not in page.text


async def test_unconfirmed_login_page_offers_send_confirmation_email(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    page = await submit(client, "/login", "/login", email=email, password=PASSWORD)
    assert page.status_code == 403 and "User not confirmed" in words(page)
    assert 'action="/resend-confirmation"' in page.text and "Send Confirmation Email" in words(page)
    sent = await client.post("/resend-confirmation", data={"csrf_token": HIDDEN_TOKEN.search(page.text).group(1), "email": email})
    assert sent.status_code == 200 and "Check your email" in words(sent)
    assert len(await mailed_tokens(system, email, "/confirm", count=2)) == 2


async def test_locked_login_page_says_until_when(system: System, org: Org) -> None:
    address = "192.0.2.44"
    async with portal(system, org, source=address) as client:
        account = await confirmed_account(system, client)
        await lock(system, org, account.email, source=address)
        page = await submit(client, "/login", "/login", email=account.email, password=account.password)
    assert page.status_code == 423 and int(page.headers["retry-after"]) > 0
    assert "Account temporarily locked" in words(page) and "You can try again after" in words(page)
    assert re.search(r'<time datetime="[^"]+">\d\d:\d\d UTC on ', page.text)


async def test_signing_in_lands_on_the_account_page_and_signing_out_leaves_it(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    signed_in = await submit(client, "/login", "/login", email=account.email, password=account.password)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/?signed_in=1")
    home, token = await open_form(client, signed_in.headers["location"])
    assert home.status_code == 200 and account.email in words(home) and "Acme Corp" in words(home)
    signed_out = await client.post("/logout", data={"csrf_token": token})
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/login?notice=signed_out")
    assert (await client.get("/")).headers["location"] == "/login"


async def test_account_page_without_a_session_redirects_to_login(client: httpx.AsyncClient) -> None:
    answer = await client.get("/")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")


async def test_form_post_without_the_csrf_token_is_refused(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    await client.get("/login")  # the cookie half is there; the form half is missing
    page = await client.post("/login", data={"email": account.email, "password": account.password})
    assert page.status_code == 403 and "This form has expired" in words(page)
    assert "set-cookie" not in page.headers or "portal_session" not in page.headers["set-cookie"]


@pytest.mark.parametrize("sender", [{"Origin": "http://attacker.example"}, {"Sec-Fetch-Site": "cross-site"},
                                    {"Sec-Fetch-Site": "same-site"}])  # same-site: a sibling organization's portal
async def test_form_post_from_another_origin_is_refused(system: System, client: httpx.AsyncClient,
                                                        sender: dict[str, str]) -> None:
    account = await confirmed_account(system, client)
    _, token = await open_form(client, "/login")
    page = await client.post("/login", data={"csrf_token": token, "email": account.email, "password": account.password},
                             headers=sender)
    assert page.status_code == 403 and "This form has expired" in words(page)


async def test_confirm_link_is_used_only_by_the_button_not_by_opening_it(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    await client.get(f"/confirm?token={token}")  # a mail scanner's prefetch
    page, csrf = await open_form(client, f"/confirm?token={token}")
    assert page.status_code == 200 and "Confirm my email address" in words(page)
    confirmed = await client.post("/confirm", data={"csrf_token": csrf, "token": token, "password": PASSWORD})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/login?notice=confirmed")
    assert "Your email address is confirmed" in words(await client.get(confirmed.headers["location"]))
    used = await client.get(f"/confirm?token={token}")
    assert used.status_code == 400 and "Link invalid or already used" in words(used)
    assert 'action="/renew-link"' in used.text and "Send Confirmation Email" in words(used)


async def test_account_page_signs_out_everywhere(system: System, client: httpx.AsyncClient, org: Org) -> None:
    account = await confirmed_account(system, client)
    async with portal(system, org) as phone:
        await submit(phone, "/login", "/login", email=account.email, password=account.password)
        await submit(client, "/login", "/login", email=account.email, password=account.password)
        page, csrf = await open_form(client, "/")
        assert "Sign out everywhere" in words(page)
        ended = await client.post("/logout-all", data={"csrf_token": csrf})
        assert (ended.status_code, ended.headers["location"]) == (303, "/login?notice=signed_out_everywhere")
        assert "You are signed out on every device." in words(await client.get(ended.headers["location"]))
        assert (await phone.get("/")).headers["location"] == "/login"


async def test_confirm_page_asks_for_the_password_and_a_wrong_one_keeps_the_link(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    page, csrf = await open_form(client, f"/confirm?token={token}")
    assert '<label for="password">Your password</label>' in page.text and 'autocomplete="current-password"' in page.text
    wrong = await client.post("/confirm", data={"csrf_token": csrf, "token": token, "password": "not the password at all"})
    assert wrong.status_code == 401 and "Incorrect email or password" in words(wrong)
    assert "Confirm my email address" in words(wrong)  # the form again, the link still good
    confirmed = await client.post("/confirm", data={"csrf_token": csrf, "token": token, "password": PASSWORD})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/login?notice=confirmed")


async def test_expired_reset_link_page_says_link_expired_and_offers_a_new_one(
        system: System, client: httpx.AsyncClient, identity_db: AsyncEngine) -> None:
    account = await confirmed_account(system, client)
    await submit(client, "/forgot-password", "/forgot-password", email=account.email)
    [token] = await mailed_tokens(system, account.email, "/reset-password")
    await expire_link(identity_db, token)
    page = await client.get(f"/reset-password?token={token}")
    assert page.status_code == 410 and "Link expired" in words(page)
    assert 'action="/renew-link"' in page.text and "Request a new reset link" in words(page)  # one click, see test_selfservice
    assert 'name="password"' not in page.text


async def test_reset_password_page_sets_the_new_password(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client)
    sent = await submit(client, "/forgot-password", "/forgot-password", email=account.email)
    assert sent.status_code == 200 and "Check your email" in words(sent)
    [token] = await mailed_tokens(system, account.email, "/reset-password")
    changed = await submit(client, f"/reset-password?token={token}", "/reset-password",
                           token=token, password="a brand new passphrase")
    assert (changed.status_code, changed.headers["location"]) == (303, "/login?notice=password_changed")
    signed_in = await submit(client, "/login", "/login", email=account.email, password="a brand new passphrase")
    assert signed_in.status_code == 303


async def test_register_page_mails_a_confirmation(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    page = await submit(client, "/register", "/register", email=email, password=PASSWORD, display_name="Ada")
    assert page.status_code == 200 and "Check your email" in words(page)
    assert await mail_to(system, email)


async def test_short_password_on_the_register_page_states_the_rule(client: httpx.AsyncClient) -> None:
    page = await submit(client, "/register", "/register", email=new_email(), password="too short")
    assert page.status_code == 422 and "Password must be at least 12 characters" in words(page)


async def test_unknown_host_page_says_organization_not_found(system: System) -> None:
    async with portal(system, Org("nobody", "nobody.localhost")) as stranger:
        page = await stranger.get("/login")
    assert page.status_code == 404 and "Organization not found" in words(page)


@pytest.mark.parametrize("path", ["/login", "/auth/session", "/healthz"])
async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    headers = (await client.get(path)).headers
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert (headers["x-content-type-options"], headers["referrer-policy"], headers["x-frame-options"]) == \
           ("nosniff", "no-referrer", "DENY")
