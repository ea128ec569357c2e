"""The walking skeleton: a new organization to a first login, through the four services as
separate processes over real Kafka, PostgreSQL and SMTP."""

from __future__ import annotations

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, Org, link_in, mail_to, portal, token_in, wait_until_resolves

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


async def test_new_organization_to_first_login(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        created = await admin.post("/admin/tenants", json={"slug": "acme", "name": "Acme Corp", "domains": ["acme.localhost"]})
    assert created.status_code == 201, created.text
    await wait_until_resolves(system, "acme.localhost")
    acme = Org("acme", "acme.localhost")

    async with portal(system, acme) as browser:
        registered = await browser.post("/auth/register", json={"email": "Ann@Example.com", "password": PASSWORD})
        assert registered.status_code == 202
        assert registered.json() == {"status": "confirmation_sent"}

        [email] = await mail_to(system, "ann@example.com")
        assert "Acme Corp" in email["Subject"] + email.get_body(preferencelist=("plain",)).get_content()
        assert link_in(email, "/confirm").startswith("http://acme.localhost:8080/confirm?token=")

        too_early = await browser.post("/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
        assert too_early.status_code == 403
        assert too_early.json()["code"] == "user_not_confirmed"

        confirmed = await browser.post("/auth/confirm", json={"token": token_in(email, "/confirm"), "password": PASSWORD})
        assert confirmed.json() == {"status": "confirmed"}

        login = await browser.post("/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
        assert login.status_code == 200, login.text
        assert login.json()["organization"]["slug"] == "acme"
        assert "portal_session" in login.cookies

        session = await browser.get("/auth/session")
        assert session.status_code == 200
        assert session.json()["user"]["email"] == "ann@example.com"


async def test_unknown_portal_host_is_organization_not_found(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": "nobody.localhost"}) as browser:
        answer = await browser.post("/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {"type": "about:blank", "status": 404, "title": "Organization not found",
                             "code": "organization_not_found", "host": "nobody.localhost"}
