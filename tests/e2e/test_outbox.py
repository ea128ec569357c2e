"""Nothing is lost between the database and the broker: events wait in the outbox."""

from __future__ import annotations

import pytest

from portal_auth.system import System
from tests.conftest import create_org, mail_to, portal

pytestmark = pytest.mark.e2e


async def test_registration_during_broker_outage_is_mailed_when_broker_returns(system: System) -> None:
    org = await create_org(system, name="Outage Ltd")
    kafka = system.infra.kafka
    assert kafka is not None, "this test stops the broker, so it needs the one the tests started"
    kafka.pause()
    try:
        async with portal(system, org) as browser:
            answer = await browser.post("/auth/register", json={"email": "bo@example.com", "password": "during the outage"})
        assert answer.status_code == 202  # the login path does not need the broker
        assert not [m for m in system.infra.mail.messages() if "bo@example.com" in m.get("X-Envelope-To", "")]
    finally:
        kafka.resume()
    [email] = await mail_to(system, "bo@example.com", timeout=60)
    assert "Outage Ltd" in email["Subject"] + email.get_body(preferencelist=("plain",)).get_content()
