"""The production shape, run for real (issue 9): built images, a three-node Kafka cluster with
per-service SASL identities and ACLs, PostgreSQL, the gateway on TLS, scaled services.

The tests run in file order on one stack: the portal journey, what the gateway lets out and
logs, Kafka's ACLs, then `down` and `up` (nothing lost) and a scale-out."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.compose.conftest import SCALE, Inbox, Stack, wait_for

pytestmark = pytest.mark.compose

HOST = "acme.portal.localhost"
EMAIL = "ann@example.com"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a new and longer passphrase"
SERVICES = ("identity", "lockout", "tenant", "mailer")
seen_tokens: set[str] = set()


def test_only_the_gateway_and_the_local_inbox_are_published(stack: Stack) -> None:
    config = json.loads(stack.compose.run("config", "--format", "json").stdout)
    published = {name: [(p.get("host_ip", ""), p["target"]) for p in service.get("ports", [])]
                 for name, service in config["services"].items() if service.get("ports")}
    assert published == {"gateway": [("", 80), ("", 443)], "mailcatcher": [("127.0.0.1", 8025)]}
    for name, service in config["services"].items():
        assert service.get("pull_policy") == "never", name
        assert service.get("restart") == ("on-failure" if name == "kafka-init" else "unless-stopped"), name
    for name in (*SERVICES, "postgres", "gateway", "kafka-1", "kafka-2", "kafka-3"):
        assert config["services"][name].get("healthcheck"), name


def test_every_replica_is_healthy(stack: Stack) -> None:
    for service, replicas in (("identity", 2), ("lockout", 2), ("mailer", 2), ("tenant", 1)):
        states = [(c["State"], c["Health"]) for c in stack.containers(service)]
        assert states == [("running", "healthy")] * replicas, service


def test_the_portal_journey_over_https(stack: Stack) -> None:
    """Create an organization, register, confirm from the email, log in, get locked, be
    unlocked, reset the password: every step through the gateway on TLS."""
    stack.exec("tenant", "portal-auth", "tenant", "create", "acme", "--name", "Acme Ltd", "--domain", HOST)
    inbox = Inbox(stack.inbox_port)
    with stack.client(HOST) as portal:
        def register() -> bool:  # identity learns of the organization from tenant.events
            answer = portal.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
            return answer.status_code == 202
        wait_for(register, timeout=60, what="registration on the new organization")

        confirm_url = inbox.wait_for_link(EMAIL, "/confirm", seen=seen_tokens)
        assert confirm_url.startswith(f"https://{HOST}/confirm?token=")
        token = confirm_url.split("token=", 1)[1]
        answer = portal.post("/auth/confirm", json={"token": token, "password": PASSWORD})
        assert (answer.status_code, answer.json()) == (200, {"status": "confirmed"})

        login = portal.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200, login.text
        assert "__Host-portal_session=" in login.headers["set-cookie"] and "Secure" in login.headers["set-cookie"]
        assert portal.get("/auth/session").status_code == 200

        for _ in range(5):
            assert portal.post("/auth/login", json={"email": EMAIL, "password": "wrong password!!"}).status_code in (401, 423)
        locked = wait_for(lambda: _login(portal, PASSWORD).status_code == 423, timeout=60, what="the lock")
        assert locked

        stack.exec("lockout", "portal-auth", "unlock", "acme", EMAIL)
        wait_for(lambda: _login(portal, PASSWORD).status_code == 200, timeout=60, what="login after the unlock")

        assert portal.post("/auth/password/forgot", json={"email": EMAIL}).status_code == 202
        reset_url = inbox.wait_for_link(EMAIL, "/reset-password", seen=seen_tokens)
        reset = portal.post("/auth/password/reset", json={"token": reset_url.split("token=", 1)[1],
                                                          "password": NEW_PASSWORD})
        assert reset.status_code == 200, reset.text
        assert _login(portal, NEW_PASSWORD).status_code == 200
        assert _login(portal, PASSWORD).status_code == 401


def _login(portal: httpx.Client, password: str) -> httpx.Response:
    return portal.post("/auth/login", json={"email": EMAIL, "password": password})


def test_plain_http_only_redirects_and_tls_carries_hsts(stack: Stack) -> None:
    answer = httpx.get(f"http://127.0.0.1:{stack.http_port}/login?next=1", headers={"Host": HOST})
    assert (answer.status_code, answer.headers["location"]) == (301, f"https://{HOST}/login?next=1")
    with stack.client(HOST) as portal:
        page = portal.get("/login")
        assert page.status_code == 200
        assert page.headers["strict-transport-security"].startswith("max-age=63072000")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/metrics", "/readyz", "/healthz",
                                  "/admin/tenants", "/admin/lockouts/acme/ann@example.test", "/resolve?host=x"])
def test_only_the_portal_is_routed_to_the_outside(stack: Stack, path: str) -> None:
    with stack.client(HOST) as portal:
        assert portal.get(path, headers={"Authorization": "Bearer x"}).status_code == 404


def test_no_token_reaches_the_gateway_logs(stack: Stack) -> None:
    """Confirmation and reset links carry their token in the query string: the path only is logged."""
    with stack.client(HOST) as portal:
        assert portal.get("/reset-password?token=token-in-the-query-1",
                          headers={"Referer": f"https://{HOST}/x?token=token-in-the-referer-1"}).status_code in (200, 400, 410)
    logs = wait_for(lambda: (text := stack.logs("gateway")) and "GET /reset-password" in text and text,
                    what="the gateway's access log line")
    assert "token-in-the" not in logs


def test_kafka_refuses_identity_writing_tenant_events(stack: Stack) -> None:
    """Each service is its own Kafka principal: identity's credentials cannot forge a tenant event."""
    result = stack.python("identity", _KAFKA_PRODUCE)
    assert result.strip().splitlines()[-2:] == ["tenant.events: TopicAuthorizationFailedError",
                                                 "identity.events.dlq: TopicAuthorizationFailedError"]


_KAFKA_PRODUCE = """
import asyncio
from aiokafka import AIOKafkaProducer
from services.identity.settings import IdentitySettings

async def main():
    producer = AIOKafkaProducer(bootstrap_servers=IdentitySettings().kafka_bootstrap_servers, acks="all",
                                request_timeout_ms=10000, **IdentitySettings().kafka_client_options())
    await producer.start()
    try:
        for topic in ("tenant.events", "identity.events.dlq"):
            try:
                await producer.send_and_wait(topic, b'{"type": "DomainAdded"}', key=b"acme")
                print(f"{topic}: written")
            except Exception as exc:
                print(f"{topic}: {type(exc).__name__}")
    finally:
        await producer.stop()

asyncio.run(main())
"""

_EVENT_COUNT = """
import asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from services.identity.settings import IdentitySettings

async def main():
    settings = IdentitySettings()
    options = settings.kafka_client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **options)
    await admin.start()
    try:
        [topic] = await admin.describe_topics(["identity.events"])
    finally:
        await admin.close()
    parts = [TopicPartition("identity.events", p["partition"]) for p in topic["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, **options)
    await consumer.start()
    try:
        print("events:", sum((await consumer.end_offsets(parts)).values()))
    finally:
        await consumer.stop()

asyncio.run(main())
"""


def test_down_and_up_keeps_accounts_and_the_event_log(stack: Stack) -> None:
    events_before = _events(stack)
    assert events_before > 0
    stack.down()
    took = stack.up(*SCALE)
    print(f"\ncompose stack healthy again in {took:.0f} s after down/up")
    assert _events(stack) >= events_before
    with stack.client(HOST) as portal:
        assert wait_for(lambda: _login(portal, NEW_PASSWORD).status_code == 200, what="login after down/up")


def _events(stack: Stack) -> int:
    """How many events identity.events holds (its end offsets), read with identity's credentials."""
    output = stack.python("identity", _EVENT_COUNT)
    found = re.search(r"^events: (\d+)$", output, re.M)
    assert found, output
    return int(found.group(1))


def test_a_replica_added_by_scale_serves_logins(stack: Stack) -> None:
    """nginx asks Docker's DNS again, so a replica added with --scale gets requests: with the
    first two stopped, the third alone answers."""
    before = {c["Name"] for c in stack.containers("identity")}
    stack.up("--scale", "identity=3", "--scale", "lockout=2", "--scale", "mailer=2")
    added = {c["Name"] for c in stack.containers("identity")} - before
    assert len(added) == 1
    subprocess_run(["docker", "stop", "--time", "5", *before])
    with stack.client(HOST) as portal:
        assert wait_for(lambda: _login(portal, NEW_PASSWORD).status_code == 200, timeout=30,
                        what="a login served by the new replica")
    # With no identity left, the gateway answers for it, and its error log holds no query string.
    subprocess_run(["docker", "stop", "--time", "5", *added])
    with stack.client(HOST) as portal:
        page = portal.get("/reset-password?token=token-while-identity-is-down")
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert "Service temporarily unavailable" in page.text
        api = portal.post("/auth/login", json={"email": EMAIL, "password": NEW_PASSWORD})
        assert api.status_code == 503 and api.headers["content-type"].startswith("application/problem+json")
        assert api.json()["code"] == "service_unavailable"
    assert "token-while-identity-is-down" not in stack.logs("gateway")


def subprocess_run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
