"""One Kafka broker of three killed for good, in the production shape (issue 13): topics have
three replicas and min.insync.replicas 2, so the two brokers left take every write. Under a
light steady stream of registrations and logins through the gateway, `docker kill` of one broker:
logins keep answering 200, every registration's confirmation mail arrives, and every event the
services wrote to their outboxes is on its topic afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.compose.conftest import Inbox, Stack, wait_for

pytestmark = pytest.mark.compose

HOST = "brokers.portal.localhost"
PASSWORD = "correct horse battery staple"
BROKER = "kafka-1"  # the first broker of every service's bootstrap list
LOGINS_BEFORE, LOGINS_AFTER, PAUSE_SECONDS = 15, 60, 0.5  # about a second a round, less on an idle machine


@dataclass
class Traffic:
    """Registrations and logins, one after the other, until stopped; each answer noted."""

    portal: httpx.Client
    email: str
    registered: list[str] = field(default_factory=list)
    answers: list[tuple[str, float, int, float]] = field(default_factory=list)  # (what, at, status, seconds)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            address = f"loss-{uuid.uuid4().hex[:10]}@example.com"
            if self._ask("register", "/auth/register", {"email": address, "password": PASSWORD}) == 202:
                self.registered.append(address)
            self._ask("login", "/auth/login", {"email": self.email, "password": PASSWORD})
            self.stop.wait(PAUSE_SECONDS)

    def _ask(self, what: str, path: str, body: dict[str, str]) -> int:
        started = time.monotonic()
        try:
            status = self.portal.post(path, json=body).status_code
        except httpx.HTTPError:
            status = 0
        self.answers.append((what, started, status, time.monotonic() - started))
        return status

    def statuses(self, what: str, *, after: float = 0.0) -> list[int]:
        return [status for kind, at, status, _ in self.answers if kind == what and at >= after]

    def slowest(self, what: str, *, after: float) -> float:
        return max(seconds for kind, at, _, seconds in self.answers if kind == what and at >= after)


def test_a_broker_killed_for_good_loses_nothing(stack: Stack) -> None:
    stack.exec("tenant", "portal-auth", "tenant", "create", "brokers", "--name", "Brokers Ltd", "--domain", HOST,
               "--set", "limits.requests_per_source_per_minute=100000")
    inbox, seen = Inbox(stack.inbox_port), set()
    with stack.client(HOST) as portal:
        email = "steady@example.com"
        wait_for(lambda: portal.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 202,
                 what="registration on the new organization")
        token = inbox.wait_for_link(email, "/confirm", seen=seen).split("token=", 1)[1]
        assert portal.post("/auth/confirm", json={"token": token, "password": PASSWORD}).status_code == 200

        traffic, started = Traffic(portal, email), time.monotonic()
        worker = threading.Thread(target=traffic.run)
        worker.start()
        try:
            wait_for(lambda: len(traffic.statuses("login")) >= LOGINS_BEFORE, timeout=300, what="the stream before the kill")
            [broker] = stack.containers(BROKER)
            killed_at = time.monotonic()
            subprocess.run(["docker", "kill", broker["Name"]], check=True, capture_output=True, timeout=60)
            wait_for(lambda: len(traffic.statuses("login", after=killed_at)) >= LOGINS_AFTER, timeout=600,
                     what="the stream after the kill")
        finally:
            traffic.stop.set()
            worker.join()

    state = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}}", broker["Name"]], check=True,
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert state == "exited"  # dead for good: its restart policy did not bring it back
    logins, registrations = traffic.statuses("login", after=killed_at), traffic.statuses("register", after=killed_at)
    print(f"\nbroker {BROKER} killed: {len(traffic.statuses('register'))} registrations and "
          f"{len(traffic.statuses('login'))} logins in {time.monotonic() - started:.0f} s, "
          f"{len(logins)} logins after the kill (slowest {traffic.slowest('login', after=killed_at):.2f} s)")
    assert logins and set(logins) == {200}, logins
    assert registrations and set(registrations) == {202}, registrations

    stopped = time.monotonic()
    wait_for(lambda: _all_mailed(inbox, traffic.registered), timeout=300,
             what=f"the confirmation mails of {len(traffic.registered)} registrations")
    print(f"every one of {len(traffic.registered)} confirmation mails arrived, the last {time.monotonic() - stopped:.0f} s "
          "after the stream stopped")

    log = wait_for(lambda: (found := _log_check(stack))["unsent"] == 0 and found, timeout=180, what="every outbox sent")
    print(f"event log after the kill: {log}")
    assert log["missing"] == 0 and log["outbox"] > 0


def _all_mailed(inbox: Inbox, addresses: list[str]) -> bool:
    mailed = {str(m.get("To", "")) for m in inbox.messages()}
    return all(any(address in to for to in mailed) for address in addresses)


_LOG_CHECK = """
import asyncio, json, os
import asyncpg
from shared.eventlog import LogReader

async def main():
    conn = await asyncpg.connect(os.environ["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql"))
    rows = []
    try:
        for schema in ("identity", "lockout", "tenant", "mailer"):
            rows += await conn.fetch(f'select event_id::text as id, topic, sent_at is not null as sent from "{schema}".outbox')
    finally:
        await conn.close()
    admin = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
             "sasl_plain_username": "admin", "sasl_plain_password": os.environ["KAFKA_ADMIN_PASSWORD"]}
    async with LogReader(os.environ["KAFKA_BOOTSTRAP_SERVERS"], sorted({r["topic"] for r in rows}), client_options=admin) as log:
        on_topics = {str(envelope.event_id) for envelope in await log.read_to_end()}
    print("log:", json.dumps({"outbox": len(rows), "unsent": sum(not r["sent"] for r in rows),
                      "on_topics": len(on_topics), "missing": len({r["id"] for r in rows} - on_topics)}))

asyncio.run(main())
"""


def _log_check(stack: Stack) -> dict[str, int]:
    """Every service's outbox rows against the topics, read from the start as the Kafka admin."""
    output = stack.python("identity", _LOG_CHECK, env={"KAFKA_ADMIN_PASSWORD": stack.compose.env["KAFKA_ADMIN_PASSWORD"]})
    found = re.search(r"^log: (.*)$", output, re.M)
    assert found, output[-3000:]
    result: dict[str, int] = json.loads(found.group(1))
    return result
