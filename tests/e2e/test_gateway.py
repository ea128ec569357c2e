"""Behind the nginx gateway: the portal host comes through, and a session sticks (cause 6)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from portal_auth.devstack import free_port
from portal_auth.gateway import start_gateway
from portal_auth.system import System
from tests.conftest import create_org, mail_to, token_in

pytestmark = pytest.mark.e2e

PASSWORD = "through the gateway"


async def test_login_through_gateway_keeps_the_session_on_later_requests(system: System, gateway: str) -> None:
    org = await create_org(system, name="Gateway GmbH")
    async with httpx.AsyncClient(base_url=gateway, headers={"Host": org.host}) as browser:
        await browser.post("/auth/register", json={"email": "gw@example.com", "password": PASSWORD})
        [email] = await mail_to(system, "gw@example.com")
        assert (await browser.post("/auth/confirm", json={"token": token_in(email, "/confirm"), "password": PASSWORD})).status_code == 200

        login = await browser.post("/auth/login", json={"email": "gw@example.com", "password": PASSWORD})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie and "domain=" not in cookie

        for _ in range(3):
            session = await browser.get("/auth/session")
            assert session.status_code == 200
            assert session.json()["organization"]["slug"] == org.slug


async def test_gateway_answers_unknown_host_with_organization_not_found(system: System, gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway, headers={"Host": "nowhere.localhost"}) as browser:
        answer = await browser.get("/auth/session")
    assert answer.status_code == 404
    assert answer.json()["code"] == "organization_not_found"


async def test_gateway_log_keeps_no_link_token(system: System, gateway: str) -> None:
    """Links carry tokens in their query: the gateway logs the path only (contract: no secret in logs)."""
    org = await create_org(system)
    secret = "gatewaylogsecret" + "x" * 27
    async with httpx.AsyncClient(base_url=gateway, headers={"Host": org.host}) as browser:
        assert (await browser.get(f"/reset-password?token={secret}")).status_code == 400
    logs = await _gateway_log_once_it_has(system, "/reset-password")
    assert secret not in logs


async def _gateway_log_once_it_has(system: System, text: str, timeout: float = 10.0) -> str:
    """nginx writes its access line just after the answer has left, so it may trail the client."""
    deadline = time.monotonic() + timeout
    while True:
        logs = "".join(p.read_text() for p in (system.workdir / "gateway").glob("*.log"))
        if text in logs or time.monotonic() > deadline:
            assert text in logs, f"{text} never reached the gateway's log"
            return logs
        await asyncio.sleep(0.05)


async def test_gateway_bounds_the_posts_of_one_address_before_identity(system: System, workdir: Path) -> None:
    """A coarse first line: beyond the gateway's rate and burst a POST is 429 in the contract's
    words without reaching identity (the organization's own limit here is far higher)."""
    org = await create_org(system)
    process = start_gateway(workdir / "strict-gateway", port=(port := free_port()),
                            identity_port=system.processes["identity"].port, post_rate="1r/m", post_burst=2)
    assert process is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Host": org.host}) as browser:
            answers = [await browser.post("/auth/password/forgot", json={"email": "someone@example.com"}) for _ in range(5)]
            assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
            assert answers[-1].json()["code"] == "too_many_requests" and answers[-1].headers["retry-after"] == "1"
            assert (await browser.get("/login")).status_code == 200  # pages are read freely
    finally:
        process.stop()


async def test_identity_down_behind_the_gateway_gets_its_own_503_page_and_problem(system: System) -> None:
    """Cause 7: identity stopped behind nginx. People get the portal's "Service temporarily
    unavailable" page, programs the contract's problem, both 503 with Retry-After, at once."""
    from portal_auth.devstack import free_port
    from portal_auth.gateway import start_gateway

    identity = system.start("identity", name="identity-behind-gateway", args=["--no-migrate"])
    port = free_port()
    gateway = start_gateway(system.workdir / "gateway-down", port=port, identity_port=identity.port)
    assert gateway is not None, "nginx is not installed (apt-get install nginx-light)"
    org = await create_org(system, name="Down Time AG")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Host": org.host}) as browser:
            assert (await browser.get("/login")).status_code == 200
            system.stop("identity-behind-gateway")
            page = await browser.get("/login")
            api = await browser.post("/auth/login", json={"email": "down@example.com", "password": PASSWORD})
    finally:
        gateway.stop()
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert page.headers["content-type"].startswith("text/html")
    assert "Service temporarily unavailable" in page.text and "try again in a few seconds" in page.text
    assert "nginx" not in page.text
    assert api.status_code == 503 and api.headers["retry-after"] == "5"
    assert api.headers["content-type"].startswith("application/problem+json")
    assert api.json() == {"type": "about:blank", "status": 503, "title": "Service temporarily unavailable",
                          "code": "service_unavailable"}
