"""The pages in a real browser (Debian's Chromium, headless): a person signs in, is told what went
wrong in the contract's words, and the session cookie holds across pages (article cause 6)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from portal_auth.system import System
from tests.conftest import Org
from tests.identity.conftest import PASSWORD, confirmed_account, mailed_tokens, new_email, register

# `make test` installs Debian's chromium (scripts/system-packages).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.e2e


@pytest.fixture
async def page(system: System, org: Org) -> AsyncIterator[Page]:
    """A browser tab on the organization's portal; *.localhost resolves to this machine in Chromium."""
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            context = await browser.new_context(base_url=f"http://{org.host}:{system.processes['identity'].port}")
            yield await context.new_page()
        finally:
            await browser.close()


async def test_a_person_signs_in_sees_the_account_and_signs_out(system: System, client: httpx.AsyncClient, page: Page) -> None:
    account = await confirmed_account(system, client)
    await page.goto("/")
    await page.get_by_label("Email address").fill(account.email)
    await page.get_by_label("Password", exact=True).fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(account.email)).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()


async def test_a_wrong_password_is_told_in_the_contracts_words_with_forgot_password(
        system: System, client: httpx.AsyncClient, page: Page) -> None:
    account = await confirmed_account(system, client)
    await page.goto("/login")
    await page.get_by_label("Email address").fill(account.email)
    await page.get_by_label("Password", exact=True).fill("not the password at all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password")
    await page.get_by_role("link", name="Forgot Password").click()
    await expect(page.get_by_role("heading", name="Forgot Password")).to_be_visible()


@pytest.fixture
async def cookieless_page(system: System, org: Org, tmp_path) -> AsyncIterator[Page]:
    """A tab of a Chromium whose settings refuse every cookie (content setting "block"), as a
    person's browser may: a profile directory whose preferences say so."""
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(
        json.dumps({"profile": {"default_content_setting_values": {"cookies": 2}}}))
    async with async_playwright() as driver:
        context = await driver.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=["--no-sandbox", "--headless"],
            base_url=f"http://{org.host}:{system.processes['identity'].port}")
        try:
            yield await context.new_page()
        finally:
            await context.close()


async def test_a_browser_that_refuses_cookies_is_told_so_instead_of_landing_on_the_login_page(
        system: System, client: httpx.AsyncClient, cookieless_page: Page) -> None:
    """Article cause 6: "login seems to work but leads back to the login page"."""
    account = await confirmed_account(system, client)
    page = cookieless_page
    await page.goto("/login")
    await page.get_by_label("Email address").fill(account.email)
    await page.get_by_label("Password", exact=True).fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Cookies are blocked for this site")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("Allow cookies for this site")
    assert await page.context.cookies() == []


async def test_a_person_confirms_the_address_with_the_password_chosen_at_registration(
        system: System, client: httpx.AsyncClient, page: Page) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    await page.goto(f"/confirm?token={token}")
    await page.get_by_label("Your password").fill("not the password at all")
    await page.get_by_role("button", name="Confirm my email address").click()
    await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password")
    await page.get_by_label("Your password").fill(PASSWORD)
    await page.get_by_role("button", name="Confirm my email address").click()
    await expect(page.get_by_text("Your email address is confirmed. You can sign in now.")).to_be_visible()
