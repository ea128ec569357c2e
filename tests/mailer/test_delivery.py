"""What people receive: one email per request, with the organization's face and its own links."""

from __future__ import annotations

import json
from email.message import EmailMessage

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from portal_auth.system import System
from shared.events import MAILER_TOPIC, Envelope, Event, TenantUpdated
from shared.tenancy import TenantSettings
from tests.conftest import create_org, link_in, portal, text_of, token_in
from tests.mailer.conftest import (
    address,
    events_on,
    eventually,
    inbox,
    received,
    retried,
    wait_until_gone,
)

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


async def test_confirmation_email_names_the_organization_and_its_link_confirms(system: System) -> None:
    org = await create_org(system, name="Globex Corporation",
                           settings={"display_name": "Globex Portal", "support_email": "help@globex.example.com"})
    to = address()
    async with portal(system, org) as browser:
        registered = await browser.post("/auth/register",
                                        json={"email": to, "password": PASSWORD, "display_name": "Visit evil.example"})
        assert registered.status_code == 202
        [email] = await received(system, to)
        assert email["To"] == to and email["From"] == "Globex Portal <portal@example.test>"
        assert email["Subject"] == "Confirm your email address for Globex Portal"
        assert email["Reply-To"] == "help@globex.example.com"
        assert link_in(email, "/confirm").startswith(f"http://{org.host}:8080/confirm?token=")
        assert "help@globex.example.com" in text_of(email) and "evil.example" not in text_of(email)
        html = email.get_body(("html",)).get_content()
        assert f'href="{link_in(email, "/confirm")}"' in html and "Globex Portal" in html
        confirmed = await browser.post("/auth/confirm", json={"token": token_in(email, "/confirm"), "password": PASSWORD})
    assert (confirmed.status_code, confirmed.json()) == (200, {"status": "confirmed"})
    [(_, sent)] = await events_on(system.infra, MAILER_TOPIC, lambda e: e["tenant"] == org.slug, count=1)
    event = json.loads(sent)
    assert (event["type"], event["data"]["email"], event["data"]["kind"]) == ("EmailSent", to, "confirmation")
    assert email["Message-ID"].startswith(f"<{event['data']['dedup_key']}@")


async def test_reset_email_links_to_the_reset_page_and_the_link_sets_a_password(system: System) -> None:
    org = await create_org(system, name="Initech")
    to = address()
    async with portal(system, org) as browser:
        await browser.post("/auth/register", json={"email": to, "password": PASSWORD})
        await received(system, to)
        assert (await browser.post("/auth/password/forgot", json={"email": to})).status_code == 202
        [_, email] = await received(system, to, count=2)
        assert email["Subject"] == "Reset your Initech password" and email["From"] == "Initech <portal@example.test>"
        assert link_in(email, "/reset-password").startswith(f"http://{org.host}:8080/reset-password?token=")
        reset = await browser.post("/auth/password/reset", json={"token": token_in(email, "/reset-password"),
                                                                 "password": "a brand new passphrase"})
    assert reset.status_code == 200, reset.text


async def test_registering_a_taken_address_sends_a_notice_with_login_and_reset_links(system: System) -> None:
    org = await create_org(system, name="Umbrella")
    to = address()
    async with portal(system, org) as browser:
        await browser.post("/auth/register", json={"email": to, "password": PASSWORD})
        again = await browser.post("/auth/register", json={"email": to, "password": "another password here"})
    assert (again.status_code, again.json()) == (202, {"status": "confirmation_sent"})
    [_, notice] = await received(system, to, count=2)
    assert notice["Subject"] == "Someone tried to register at Umbrella with your email address"
    text = text_of(notice)
    assert f"http://{org.host}:8080/login" in text and f"http://{org.host}:8080/forgot-password" in text
    assert "token=" not in text


async def test_line_breaks_in_the_organization_name_add_no_header_and_no_recipient(system: System) -> None:
    """Tenant refuses such a name; the mailer holds the line on its own too, for an event that
    bypassed tenant's checks (an older producer, a hand-published or replayed event)."""
    org = await create_org(system, name="Umbrella")
    evil = TenantUpdated(slug=org.slug, name="Evil\r\nBcc: victim@evil.test\r\nX-Injected: yes",
                         settings=TenantSettings().model_dump(mode="json"), actor=None)
    await publish(system.infra.kafka_bootstrap, evil, tenant=org.slug)

    async def renamed_email() -> EmailMessage | None:
        to = address()
        async with portal(system, org) as browser:
            await browser.post("/auth/register", json={"email": to, "password": PASSWORD})
        [email] = await received(system, to)
        return email if "Evil" in email["Subject"] else None

    email = await eventually(renamed_email, what="the mailer's copy of the organization renamed")
    to = email["X-Envelope-To"]
    assert email["X-Envelope-To"] == to and email["Bcc"] is None and email["X-Injected"] is None
    assert email["Subject"] == "Confirm your email address for Evil Bcc: victim@evil.test X-Injected: yes"
    assert inbox(system, "victim@evil.test") == []


async def test_link_uses_the_first_domain_when_the_host_used_was_removed_before_sending(
        system: System, admin: httpx.AsyncClient) -> None:
    org = await create_org(system, name="Hooli")
    to, second = address(), f"portal.{org.host}"
    assert (await admin.put(f"/admin/tenants/{org.slug}/domains/{second}")).status_code == 200
    system.infra.mail.fail_with(451)
    try:
        async with portal(system, org) as browser:
            await browser.post("/auth/register", json={"email": to, "password": PASSWORD})
        await eventually(lambda: retried(system, org, to, times=1), what="a first refused attempt")
        assert (await admin.delete(f"/admin/tenants/{org.slug}/domains/{org.host}")).status_code == 200
        await wait_until_gone(system, org.host)
        await eventually(lambda: retried(system, org, to, times=2), what="an attempt after the removal")
    finally:
        system.infra.mail.fail_with(None)
    [email] = await received(system, to)
    assert link_in(email, "/confirm").startswith(f"http://{second}:8080/confirm?token=")


async def publish(bootstrap: str, event: Event, *, tenant: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        envelope = Envelope.wrap(event, tenant=tenant, producer="test")
        await producer.send_and_wait(event.TOPIC, envelope.to_bytes(), key=event.key(tenant).encode())
    finally:
        await producer.stop()
