"""The mailer's use cases against real PostgreSQL, with a fake SMTP transport and a settable clock."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.mailer import handlers
from services.mailer import sender as sender_module
from services.mailer.domain import TOKEN_PURPOSE, DeliveryFailure, Email, Kind, RetryPolicy, Status
from services.mailer.handlers import Deps, Job
from services.mailer.rendering import JinjaRenderer
from services.mailer.repository import MailerRepository
from services.mailer.sender import Sender
from services.mailer.tables import emails, metadata
from shared import events
from shared.db import transaction
from shared.messaging import Announcer, Outbox
from shared.secrets import MailTokenCipher, TokenBinding, new_mail_token_key
from tests.mailer.conftest import DatabaseSwitch

KEY = new_mail_token_key()
CIPHER = MailTokenCipher(KEY)


@dataclass
class FakeTransport:
    fail_with: DeliveryFailure | None = None
    sent: list[Email] = field(default_factory=list)

    async def send(self, email: Email) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(email)


@dataclass
class Clock:
    now: datetime = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    engine: AsyncEngine
    deps: Deps
    transport: FakeTransport
    clock: Clock

    def as_worker(self, worker: str) -> Deps:
        return replace(self.deps, worker=worker)


@pytest.fixture
async def world(mailer_engine: AsyncEngine) -> World:
    async with transaction(mailer_engine) as conn:
        await conn.execute(sa.text("truncate mailer.emails, mailer.outbox, mailer.organizations"))
        await MailerRepository(conn).save_organization(slug="acme", name="Acme Corp", domains=["acme.localhost"],
                                                       settings={"display_name": "Acme Portal", "support_email": None})
    transport, clock = FakeTransport(), Clock()
    deps = Deps(outbox=Outbox(metadata.tables["mailer.outbox"], producer="mailer"), cipher=CIPHER, transport=transport,
                renderer=JinjaRenderer(), retry=RetryPolicy(base=timedelta(seconds=5), cap=timedelta(minutes=5), max_attempts=3),
                mail_from="portal@example.test", portal_url_template="http://{host}:8080", throttle_per_hour=5,
                lease=timedelta(seconds=60), worker="worker-a", clock=clock)
    return World(mailer_engine, deps, transport, clock)


PURPOSES = {Kind.RESET: events.ResetRequested.PURPOSE, Kind.CONFIRMATION: events.UserRegistered.PURPOSE}
EXPIRES = "2025-03-01T12:30:00+00:00"


def sealed_for(token: str, *, tenant: str = "acme", to: str = "ann@example.test", kind: Kind = Kind.RESET,
               expires_at: str = EXPIRES) -> str:
    """The token as identity seals it for an event with these fields."""
    binding = TokenBinding(tenant=tenant, email=to, purpose=PURPOSES[kind], expires_at=datetime.fromisoformat(expires_at))
    return CIPHER.seal(token, binding)


async def request(world: World, *, to: str = "ann@example.test", kind: Kind = Kind.RESET, event_id: uuid.UUID | None = None,
                  token: str = "the-token", tenant: str = "acme", sealed: str | None = None) -> Status | None:
    context = {"host": "acme.localhost", "token_encrypted": sealed or sealed_for(token, tenant=tenant, to=to, kind=kind),
               "expires_at": EXPIRES, TOKEN_PURPOSE: PURPOSES.get(kind)}
    async with transaction(world.engine) as conn:
        return await handlers.request_email(MailerRepository(conn), world.deps, tenant=tenant, kind=kind, to=to,
                                            event_id=event_id or uuid.uuid4(), context=context)


async def claim(world: World, deps: Deps | None = None, limit: int = 10) -> list[Job]:
    async with transaction(world.engine) as conn:
        return await handlers.claim_due(MailerRepository(conn), deps or world.deps, limit=limit)


async def send_and_record(world: World, jobs: list[Job], deps: Deps | None = None) -> None:
    deps = deps or world.deps
    for job in jobs:
        failure = await handlers.send(deps, job)
        async with transaction(world.engine) as conn:
            await handlers.record(MailerRepository(conn), Announcer(conn, deps.outbox), deps, job, failure)


async def rows(world: World) -> list[Any]:
    async with transaction(world.engine) as conn:
        return list((await conn.execute(sa.select(emails).order_by(emails.c.id))).all())


async def outbox(world: World) -> list[dict[str, Any]]:
    async with transaction(world.engine) as conn:
        return [r.payload for r in (await conn.execute(sa.text("select payload from mailer.outbox order by id"))).all()]


async def test_the_same_event_twice_queues_one_email(world: World) -> None:
    event_id = uuid.uuid4()
    assert await request(world, event_id=event_id) is Status.QUEUED
    assert await request(world, event_id=event_id) is None
    assert len(await rows(world)) == 1


async def test_sent_email_links_with_the_opened_token_and_keeps_no_token(world: World) -> None:
    await request(world, token="s3cret-token")
    await send_and_record(world, await claim(world))
    [email] = world.transport.sent
    assert "http://acme.localhost:8080/reset-password?token=s3cret-token" in email.text
    assert (email.to, email.from_name, email.subject) == ("ann@example.test", "Acme Portal", "Reset your Acme Portal password")
    [row] = await rows(world)
    assert (row.status, row.attempts, "token_encrypted" in row.context) == ("sent", 1, False)
    [event] = await outbox(world)
    assert (event["type"], event["data"]["dedup_key"], event["tenant"]) == ("EmailSent", row.dedup_key, "acme")


async def test_sixth_request_within_an_hour_is_throttled_without_its_token(world: World) -> None:
    statuses = [await request(world) for _ in range(6)]
    assert statuses == [Status.QUEUED] * 5 + [Status.THROTTLED]
    throttled = (await rows(world))[-1]
    assert throttled.context == {"host": "acme.localhost", "expires_at": "2025-03-01T12:30:00+00:00", TOKEN_PURPOSE: "reset"}
    assert len(await claim(world)) == 5


async def test_throttle_counts_per_address_and_forgets_after_an_hour(world: World) -> None:
    for _ in range(5):
        await request(world)
    assert await request(world, to="bob@example.test") is Status.QUEUED
    world.clock.now += timedelta(minutes=61)
    assert await request(world) is Status.QUEUED


async def test_two_senders_never_claim_the_same_email(world: World) -> None:
    for n in range(3):
        await request(world, to=f"user{n}@example.test")
    async with world.engine.connect() as first, world.engine.connect() as second:
        await first.begin()
        await second.begin()
        mine = await handlers.claim_due(MailerRepository(first), world.deps, limit=2)
        theirs = await handlers.claim_due(MailerRepository(second), world.as_worker("worker-b"), limit=2)
        await first.commit()
        await second.commit()
    assert (len(mine), len(theirs)) == (2, 1)
    assert {j.email.id for j in mine}.isdisjoint({j.email.id for j in theirs})


async def test_claimed_email_waits_for_its_lease_then_goes_to_another_sender(world: World) -> None:
    await request(world)
    [lost] = await claim(world)  # worker-a dies before recording anything
    assert await claim(world, world.as_worker("worker-b")) == []
    world.clock.now += timedelta(seconds=61)
    [taken_over] = await claim(world, world.as_worker("worker-b"))
    await send_and_record(world, [taken_over], world.as_worker("worker-b"))
    await send_and_record(world, [lost])  # a late outcome from the lost claim changes nothing
    [row] = await rows(world)
    assert (row.status, row.attempts, row.claimed_by) == ("sent", 2, "worker-b")
    assert [e["type"] for e in await outbox(world)] == ["EmailSent"]


async def test_email_whose_senders_keep_dying_fails_after_max_attempts(world: World) -> None:
    await request(world)
    for _ in range(3):  # max_attempts claims, each lost with its sender
        assert len(await claim(world)) == 1
        world.clock.now += timedelta(seconds=61)
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.attempts, world.transport.sent) == ("failed", 4, [])
    assert [e["type"] for e in await outbox(world)] == ["EmailFailed"]


async def test_temporary_failure_is_retried_with_backoff_then_sent(world: World) -> None:
    await request(world)
    world.transport.fail_with = DeliveryFailure("try again later", code=451)
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.last_error) == ("queued", "451 try again later")
    assert row.next_attempt_at == world.clock.now + timedelta(seconds=5)
    assert await claim(world) == []
    world.clock.now += timedelta(seconds=5)
    world.transport.fail_with = None
    await send_and_record(world, await claim(world))
    assert [(r.status, r.attempts) for r in await rows(world)] == [("sent", 2)]
    assert len(world.transport.sent) == 1


async def test_permanent_failure_ends_in_email_failed(world: World) -> None:
    await request(world)
    world.transport.fail_with = DeliveryFailure("5.1.1 mailbox unknown", code=550)
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.last_error, "token_encrypted" in row.context) == ("failed", "550 5.1.1 mailbox unknown", False)
    [event] = await outbox(world)
    assert (event["type"], event["data"]["email"]) == ("EmailFailed", "ann@example.test")
    assert event["data"]["reason"] == "550 5.1.1 mailbox unknown"


async def test_temporary_failures_end_in_email_failed_after_max_attempts(world: World) -> None:
    await request(world)
    world.transport.fail_with = DeliveryFailure("connection refused")
    for _ in range(3):
        world.clock.now += timedelta(minutes=5)
        await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.attempts) == ("failed", 3)
    assert [e["type"] for e in await outbox(world)] == ["EmailFailed"]


async def test_email_waits_for_an_organization_the_mailer_does_not_know_yet(world: World) -> None:
    await request(world, tenant="newcomer")
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, world.transport.sent) == ("queued", [])
    async with transaction(world.engine) as conn:
        await MailerRepository(conn).save_organization(slug="newcomer", name="Newcomer Ltd", domains=["new.localhost"],
                                                       settings={})
    world.clock.now += timedelta(seconds=5)
    await send_and_record(world, await claim(world))
    assert [e.subject for e in world.transport.sent] == ["Reset your Newcomer Ltd password"]


async def test_token_sealed_with_another_key_fails_without_retrying(world: World) -> None:
    async with transaction(world.engine) as conn:
        binding = TokenBinding(tenant="acme", email="ann@example.test", purpose="reset",
                               expires_at=datetime.fromisoformat(EXPIRES))
        foreign = MailTokenCipher(new_mail_token_key()).seal("x", binding)
        await handlers.request_email(MailerRepository(conn), world.deps, tenant="acme", kind=Kind.RESET, to="ann@example.test",
                                     event_id=uuid.uuid4(), context={"host": "acme.localhost", "token_encrypted": foreign})
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.attempts, world.transport.sent) == ("failed", 1, [])


async def test_link_that_expired_while_queued_is_not_sent(world: World) -> None:
    await request(world)
    world.clock.now += timedelta(minutes=31)  # the reset link is valid for 30 minutes
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.last_error, world.transport.sent) == ("failed", "the link expired before it could be sent", [])


async def test_removed_domain_links_to_the_first_remaining_domain(world: World) -> None:
    async with transaction(world.engine) as conn:
        repo = MailerRepository(conn)
        await repo.add_domain(slug="acme", host="portal.acme.test")
        await repo.remove_domain(slug="acme", host="acme.localhost")
    await request(world, kind=Kind.CONFIRMATION, token="tok")
    await send_and_record(world, await claim(world))
    assert "http://portal.acme.test:8080/confirm?token=tok" in world.transport.sent[0].text


async def test_shutdown_lets_the_send_in_flight_finish_and_be_recorded(world: World) -> None:
    started = asyncio.Event()

    class SlowTransport(FakeTransport):
        async def send(self, email: Email) -> None:
            started.set()
            await asyncio.sleep(0.5)
            await super().send(email)

    slow = SlowTransport()
    sender = Sender(engine=world.engine, deps=replace(world.deps, transport=slow), batch=10, poll_seconds=0.05)
    await request(world)
    async with sender.loop.running(drain_seconds=5):
        await asyncio.wait_for(started.wait(), 5)
    [row] = await rows(world)
    assert (row.status, len(slow.sent)) == ("sent", 1)


async def test_metrics_count_the_queue_by_status_and_the_unpublished_events(world: World) -> None:
    for _ in range(6):  # five queued, the sixth throttled
        await request(world)
    await send_and_record(world, await claim(world, limit=2))
    await claim(world, limit=1)  # being sent
    async with transaction(world.engine) as conn:
        repo = MailerRepository(conn)
        counts, unsent = await repo.count_by_status(), await repo.count_unsent(world.deps.outbox.table)
    assert counts == {Status.QUEUED: 2, Status.SENDING: 1, Status.SENT: 2, Status.FAILED: 0, Status.THROTTLED: 1}
    assert unsent == 2  # the two EmailSent events; no relay runs here

# --- issue 6: the database away after the SMTP server accepted an email ----------------------


@dataclass
class AcceptedThenDatabaseAway(FakeTransport):
    """The SMTP server accepts the first email; right after, the database goes away."""

    switch: DatabaseSwitch | None = None

    async def send(self, email: Email) -> None:
        await super().send(email)
        if len(self.sent) == 1 and self.switch is not None:
            self.switch.off()


@pytest.fixture
def quick_record_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tries to record 20 to 100 ms apart instead of 1 to 10 s, so many fit in a short test."""
    monkeypatch.setattr(sender_module, "RECORD_FIRST_PAUSE", 0.02, raising=False)
    monkeypatch.setattr(sender_module, "RECORD_LONGEST_PAUSE", 0.1, raising=False)


def test_outcome_is_tried_again_until_just_before_the_lease_ends() -> None:
    waited, pauses = 0.0, []
    while (pause := sender_module.record_pause(len(pauses) + 1, left=120.0 - waited)) is not None:
        pauses.append(pause)
        waited += pause
    assert pauses[:6] == [1, 2, 4, 8, 10, 10] and max(pauses) == 10
    assert (len(pauses) + 1, waited) == (16, 119.0)  # 16 tries, the last 1 s before a 120 s lease ends
    assert sender_module.record_pause(1, left=1.0) is None  # no try can start before the lease ends


async def test_sent_email_is_recorded_once_the_database_is_back_so_nobody_sends_it_again(
        world: World, database_switch: tuple[DatabaseSwitch, AsyncEngine], quick_record_pauses: None) -> None:
    """The outage outlasts more tries than the sender used to make (five); well within the lease."""
    switch, engine = database_switch
    switch.on_refused = lambda refused: switch.on() if refused == 8 else None
    transport = AcceptedThenDatabaseAway(switch=switch)
    deps = replace(world.deps, transport=transport)
    await request(world)
    assert await asyncio.wait_for(Sender(engine=engine, deps=deps, batch=10, poll_seconds=0.05).send_once(), 30) == 1
    world.clock.now += deps.lease + timedelta(seconds=1)  # the lease is over: any sender may claim the email now
    other = replace(deps, worker="worker-b")
    await send_and_record(world, await claim(world, other), other)
    [row] = await rows(world)
    assert (len(transport.sent), row.status, row.claimed_by, switch.refused) == (1, "sent", "worker-a", 8)
    assert [e["type"] for e in await outbox(world)] == ["EmailSent"]


async def test_sent_email_still_unrecorded_when_the_lease_ends_is_logged_as_sent(
        world: World, database_switch: tuple[DatabaseSwitch, AsyncEngine], quick_record_pauses: None,
        caplog: pytest.LogCaptureFixture) -> None:
    switch, engine = database_switch
    transport = AcceptedThenDatabaseAway(switch=switch)
    deps = replace(world.deps, transport=transport, lease=timedelta(seconds=3))
    await request(world)
    with caplog.at_level(logging.INFO, logger="services.mailer.sender"):
        assert await asyncio.wait_for(Sender(engine=engine, deps=deps, batch=10, poll_seconds=0.05).send_once(), 30) == 1
    [row] = await rows(world)
    assert (row.status, len(transport.sent)) == ("sending", 1)  # its lease will bring it back to a sender
    # The sender gave up on its own, having tried far more than five times (the schedule of its
    # tries, up to just before the lease ends, is test_outcome_is_tried_again_until_just_before_the_lease_ends).
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert row.dedup_key in error.getMessage() and "WAS SENT" in error.getMessage()
    tries = re.search(r"\((\d+) tries over", error.getMessage())
    assert tries is not None and int(tries.group(1)) > 5


@pytest.mark.parametrize("copied_from", [
    {"to": "victim@example.test"},                      # another person's reset link
    {"tenant": "globex"},                               # another organization's
    {"kind": Kind.CONFIRMATION},                        # a confirmation token asked for as a reset
    {"expires_at": "2025-03-01T12:00:00+00:00"},        # an older expiry than the event claims
], ids=["other-address", "other-organization", "other-purpose", "other-expiry"])
async def test_token_copied_into_a_forged_event_sends_nothing(world: World, copied_from: dict[str, Any]) -> None:
    """A token_encrypted taken from a real event and put in a forged one (the attacker's address,
    organization, purpose or expiry) does not open: no email, the request fails at once."""
    await request(world, to="mallory@example.test", sealed=sealed_for("victims-token", **{"to": "mallory@example.test",
                                                                                          **copied_from}))
    await send_and_record(world, await claim(world))
    [row] = await rows(world)
    assert (row.status, row.attempts, row.last_error, world.transport.sent) == (
        "failed", 1, "the link's token was sealed for another event", [])
