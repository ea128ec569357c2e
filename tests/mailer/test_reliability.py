"""Every email exactly once: through SMTP outages and refusals, redelivered events, a mailer that
dies mid-send, two mailers on one queue; and no more than the throttle allows."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from email.message import EmailMessage

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from portal_auth.devstack import free_port
from portal_auth.system import System
from shared.events import IDENTITY_TOPIC, MAILER_TOPIC
from tests.conftest import Org, create_org, portal, token_in
from tests.mailer.conftest import address, events_on, eventually, inbox, queue_of, received, retried, smtp_down

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


async def register(system: System, org: Org, to: str) -> None:
    async with portal(system, org) as browser:
        answer = await browser.post("/auth/register", json={"email": to, "password": PASSWORD})
    assert answer.status_code == 202, answer.text


def ids(messages: list[EmailMessage]) -> list[str]:
    return [m["Message-ID"] for m in messages]


async def settled(system: System, org: Org, to: str, *, count: int = 1) -> list[dict]:  # type: ignore[type-arg]
    """The recipient's rows once none is waiting or being sent any more."""
    async def done() -> list[dict]:  # type: ignore[type-arg]
        rows = await queue_of(system, org, to)
        return rows if len(rows) >= count and all(r["status"] in ("sent", "failed", "throttled") for r in rows) else []

    return await eventually(done, timeout=30, what=f"emails to {to} settled")


async def test_smtp_down_then_up_delivers_the_email_once(system: System) -> None:
    org, to = await create_org(system, name="Outage Corp"), address()
    with smtp_down(system.infra):
        await register(system, org, to)
        await eventually(lambda: retried(system, org, to, times=2, code="SMTP server unreachable"), what="refused connections")
    [email] = await received(system, to, timeout=30)
    [row] = await settled(system, org, to)
    assert (row["status"], row["attempts"] >= 3) == ("sent", True)
    assert "Outage Corp" in email["Subject"] and ids(inbox(system, to)) == [email["Message-ID"]]


async def test_4xx_is_retried_until_the_server_accepts_once(system: System) -> None:
    org, to = await create_org(system, name="Greylist Inc"), address()
    system.infra.mail.fail_with(451)
    try:
        await register(system, org, to)
        await eventually(lambda: retried(system, org, to, times=2, code="451"), what="two 451 answers")
    finally:
        system.infra.mail.fail_with(None)
    [email] = await received(system, to)
    [row] = await settled(system, org, to)
    assert (row["status"], row["attempts"] >= 3, email["To"]) == ("sent", True, to)
    assert len(inbox(system, to)) == 1


async def test_5xx_ends_in_email_failed_and_nothing_is_sent(system: System) -> None:
    org, to = await create_org(system, name="Bounce Ltd"), address()
    system.infra.mail.fail_with(550)
    try:
        await register(system, org, to)
        [(key, value)] = await events_on(system.infra, MAILER_TOPIC, lambda e: e["tenant"] == org.slug, count=1)
    finally:
        system.infra.mail.fail_with(None)
    event = json.loads(value)
    assert (event["type"], event["data"]["email"], event["data"]["kind"]) == ("EmailFailed", to, "confirmation")
    assert event["data"]["reason"].startswith("550 ") and key == f"{org.slug}:{to}".encode()
    [row] = await settled(system, org, to)
    assert (row["status"], row["last_error"]) == ("failed", event["data"]["reason"])
    assert inbox(system, to) == []


async def test_operators_see_the_queue_only_with_the_admin_token_and_never_a_token(system: System) -> None:
    org, to = await create_org(system, name="Audit Co"), address()
    await register(system, org, to)
    [row] = await settled(system, org, to)
    assert (row["kind"], row["to_address"], row["status"]) == ("confirmation", to, "sent")
    assert "context" not in row and "token" not in json.dumps(row)
    async with httpx.AsyncClient(base_url=system.url("mailer")) as anonymous:
        assert (await anonymous.get("/admin/emails")).status_code == 401


async def mailer_metrics(system: System) -> dict[str, float]:
    """GET /metrics of the running mailer: each sample's name (with its labels) and value."""
    async with httpx.AsyncClient(base_url=system.url("mailer")) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = (line.rsplit(" ", 1) for line in answer.text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


async def test_metrics_show_the_sent_email_and_an_emptied_outbox(system: System) -> None:
    statuses = ("queued", "sending", "sent", "failed", "throttled")
    before = await mailer_metrics(system)
    assert {f'portal_mailer_emails{{status="{s}"}}' for s in statuses} | {"portal_mailer_outbox_unsent"} <= before.keys()
    org, to = await create_org(system, name="Metrics Ltd"), address()
    await register(system, org, to)
    await received(system, to)
    await settled(system, org, to)
    after = await mailer_metrics(system)
    assert after['portal_mailer_emails{status="sent"}'] >= before['portal_mailer_emails{status="sent"}'] + 1
    await eventually(lambda: _outbox_empty(system), what="the EmailSent event published")


async def _outbox_empty(system: System) -> bool:
    return (await mailer_metrics(system))["portal_mailer_outbox_unsent"] == 0

async def test_redelivered_event_sends_nothing_more(system: System) -> None:
    org, to = await create_org(system, name="Replay GmbH"), address()
    await register(system, org, to)
    [first] = await received(system, to)
    registered = await events_on(system.infra, IDENTITY_TOPIC, count=1,
                                 keep=lambda e: e["type"] == "UserRegistered" and e["data"]["email"] == to)
    [(key, value)] = registered
    producer = AIOKafkaProducer(bootstrap_servers=system.infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(IDENTITY_TOPIC, value, key=key)  # the very same bytes, same partition
    finally:
        await producer.stop()
    async with portal(system, org) as browser:  # queued behind the copy on that partition: a marker
        assert (await browser.post("/auth/confirmation/resend", json={"email": to})).status_code == 202
    [_, resent] = await received(system, to, count=2)
    await settled(system, org, to, count=2)
    assert len(inbox(system, to)) == 2 and len(await queue_of(system, org, to)) == 2
    assert first["Message-ID"] != resent["Message-ID"] and token_in(first, "/confirm") != token_in(resent, "/confirm")


async def test_more_than_five_requests_an_hour_are_recorded_but_not_sent(system: System) -> None:
    org, to = await create_org(system, name="Flood Control"), address()
    await register(system, org, to)
    async with portal(system, org) as browser:  # identity issues at most 3 links of a kind: mix them
        answers = [await browser.post("/auth/confirmation/resend", json={"email": to}) for _ in range(2)]
        answers += [await browser.post("/auth/password/forgot", json={"email": to}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202] * 5
    await register(system, org, to)  # the notice of a repeated registration: a seventh email asked for
    rows = await settled(system, org, to, count=7)
    # Settled is final: a throttled row is never claimed (no attempt), and each sent row was
    # handed to the SMTP server once, before it was recorded sent. So the inbox holds these five.
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1)] * 5 + [("throttled", 0)] * 2
    subjects = sorted(m["Subject"] for m in inbox(system, to))  # a batch is sent at once: in any order
    assert subjects == ["Confirm your email address for Flood Control"] * 3 + ["Reset your Flood Control password"] * 2


async def test_two_mailers_send_each_email_once(system: System) -> None:
    system.start("mailer", name="mailer-2")
    try:
        org = await create_org(system, name="Twin Mailers")
        people = [address() for _ in range(12)]
        await asyncio.gather(*(register(system, org, to) for to in people))
        for to in people:
            await received(system, to)
        # Each email settled as sent at its first attempt: one claim, by one of the two mailers, and
        # a row is sent only by the mailer that claimed it. No second copy can follow.
        rows = {to: [(r["status"], r["attempts"]) for r in await settled(system, org, to)] for to in people}
        assert rows == {to: [("sent", 1)] for to in people}
        assert {to: len(inbox(system, to)) for to in people} == {to: 1 for to in people}
    finally:
        system.stop("mailer-2")


async def test_mailer_dying_mid_send_leaves_the_email_to_another_once_the_lease_ends(system: System) -> None:
    connected = asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # hold the connection open without a greeting

    hole = await asyncio.start_server(never_answers, "127.0.0.1", free_port())
    org, to = await create_org(system, name="Phoenix Mail"), address()
    system.stop("mailer")
    try:
        doomed = system.start("mailer", name="mailer-doomed", env={
            "SMTP_PORT": str(hole.sockets[0].getsockname()[1]), "SMTP_TIMEOUT_SECONDS": "3", "MAILER_LEASE_SECONDS": "8"})
        await register(system, org, to)
        await asyncio.wait_for(connected.wait(), 30)
        os.kill(doomed.process.pid, signal.SIGKILL)  # a crash: no chance to record anything
        system.stop("mailer-doomed")
    finally:
        hole.close()
        system.start("mailer")
    [email] = await received(system, to, timeout=30)
    [row] = await settled(system, org, to)
    assert (row["status"], row["attempts"]) == ("sent", 2)  # final: the dead mailer's claim never reached SMTP
    assert ids(inbox(system, to)) == [email["Message-ID"]]
