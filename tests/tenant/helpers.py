"""What the tenant tests share: polling for the copies to catch up, and accounts on a portal."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import TypeVar

import httpx

from portal_auth.system import System
from tests.conftest import Org, portal, text_of, token_in

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
PROPAGATION_DEADLINE = 10.0  # generous for a loaded machine; the promise (about a second) is in the docs
MAIL_DEADLINE = 20.0


async def settle(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                 *, timeout: float = PROPAGATION_DEADLINE) -> T:
    """Probe until ``done`` or the deadline, and return the last answer for the test to assert on:
    the copies in the other services are updated by events, so the answer comes a moment later."""
    deadline = time.monotonic() + timeout
    answer = await probe()
    while not done(answer) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        answer = await probe()
    return answer


def code_of(answer: httpx.Response) -> str | None:
    return answer.json().get("code") if answer.headers.get("content-type", "").endswith("json") else None


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def on_host(system: System, host: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request to identity as a browser on ``host`` sends it."""
    async with portal(system, Org("", host)) as browser:
        return await browser.request(method, path, **kwargs)  # type: ignore[arg-type]


async def login(system: System, host: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return await on_host(system, host, "POST", "/auth/login", json={"email": email, "password": password})


async def register(system: System, org: Org, email: str, password: str = PASSWORD) -> httpx.Response:
    return await on_host(system, org.host, "POST", "/auth/register", json={"email": email, "password": password})


async def confirmed_account(system: System, org: Org, email: str, password: str = PASSWORD) -> None:
    """Registered in ``org`` and confirmed through the link the mailer sent to its domain."""
    assert (await register(system, org, email, password)).status_code == 202
    [message] = await mail_from(system, org, email)
    answer = await on_host(system, org.host, "POST", "/auth/confirm", json={"token": token_in(message, "/confirm"), "password": password})
    assert answer.status_code == 200, answer.text


async def mail_from(system: System, org: Org, email: str) -> list[EmailMessage]:
    """The messages to ``email`` that link to ``org``'s domain, once there is one: an address
    registered in several organizations gets mail from each."""
    mail = system.infra.mail
    assert mail is not None, "reading mail needs the SMTP catcher the tests started"

    async def arrived() -> list[EmailMessage]:
        return [m for m in mail.messages()
                if email in m.get("X-Envelope-To", "") and f"://{org.host}" in text_of(m)]
    return await settle(arrived, bool, timeout=MAIL_DEADLINE)
