"""Lockout's handlers against real PostgreSQL, in a scratch schema of their own (no services, no
broker, nothing the live state or the log would see): how two handlers acting on one account at
once order what they announce."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from portal_auth.system import Infrastructure
from services.lockout import consumers, handlers
from services.lockout.repository import LIVE, LockoutRepository, Tables
from shared import events
from shared.clock import utcnow
from shared.db import make_engine
from shared.kafka import EventConsumer
from shared.messaging import AppliedEvents, Announcer, Outbox, outbox_table

TENANT, EMAIL, SOURCE = "org-race", "ann@example.com", "198.51.100.1"


@asynccontextmanager
async def scratch(infra: Infrastructure) -> AsyncIterator[tuple[AsyncEngine, Tables, Outbox]]:
    """Lockout's tables and outbox in a fresh schema, dropped afterwards."""
    schema = f"lockout_test_{uuid.uuid4().hex[:12]}"
    metadata, tables = LIVE.in_schema(schema)
    outbox = Outbox(outbox_table(metadata), producer="lockout")
    engine = make_engine(infra.database_url, timeout=10.0)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all)
        yield engine, tables, outbox
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def failure(conn: AsyncConnection, tables: Tables, outbox: Outbox) -> None:
    await handlers.record_failure(LockoutRepository(conn, tables), Announcer(conn, outbox), tenant=TENANT,
                                  email=EMAIL, source=SOURCE, at=utcnow(), event_id=uuid.uuid4())


async def operator_unlock(conn: AsyncConnection, tables: Tables, outbox: Outbox) -> None:
    await handlers.unlock(LockoutRepository(conn, tables), Announcer(conn, outbox), tenant=TENANT, email=EMAIL,
                          actor=events.Actor(address="192.0.2.1", request_id="test"))


async def password_changed(conn: AsyncConnection, tables: Tables, outbox: Outbox) -> None:
    await handlers.password_changed(LockoutRepository(conn, tables), Announcer(conn, outbox), tenant=TENANT,
                                    email=EMAIL, at=utcnow())


Lift = Callable[[AsyncConnection, Tables, Outbox], Awaitable[None]]


@pytest.mark.parametrize("lift", [operator_unlock, password_changed], ids=["unlock", "password_changed"])
async def test_a_lift_waiting_on_a_lock_decision_is_announced_after_it(infra: Infrastructure, lift: Lift) -> None:
    """The relay sends the outbox by id and identity applies the announcements in that order, so
    an unlock that lifts a lock decided concurrently must take its outbox id after that lock's
    AccountLocked: otherwise identity applies Unlocked, then Locked, and refuses an account that
    lockout has unlocked. The lock decision holds the account while the lift starts; the lift
    runs until it waits on the account, then the decision completes."""
    async with scratch(infra) as (engine, tables, outbox):
        async with engine.begin() as conn:
            await LockoutRepository(conn, tables).save_settings(slug=TENANT, settings={})
            for _ in range(4):  # one short of max_failures
                await failure(conn, tables, outbox)

        async with engine.begin() as deciding:
            await LockoutRepository(deciding, tables).serialize(tenant=TENANT, email=EMAIL)
            pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            lifting = asyncio.create_task(_in_own_transaction(engine, pid, lambda conn: lift(conn, tables, outbox)))
            await _until_waiting_on_the_account(engine, await pid, lifting)
            await failure(deciding, tables, outbox)  # the fifth: AccountLocked
        await lifting

        async with engine.begin() as conn:
            announced = [row.payload["type"] for row in await conn.execute(
                sa.select(outbox.table.c.payload).order_by(outbox.table.c.id))]
            locks = await LockoutRepository(conn, tables).locks(tenant=TENANT, email=EMAIL)
        assert announced == ["AccountLocked", "AccountUnlocked"]  # identity's copy ends unlocked...
        assert not locks[SOURCE].active(utcnow())  # ...as lockout's own state does


async def _in_own_transaction(engine: AsyncEngine, pid: asyncio.Future[int],
                               work: Callable[[AsyncConnection], Awaitable[None]]) -> None:
    """Run ``work`` in a transaction of its own, first telling ``pid`` its backend's, so that the
    test can watch what it waits for."""
    async with engine.begin() as conn:
        pid.set_result(await conn.scalar(sa.select(sa.func.pg_backend_pid())))
        await work(conn)


WAITING = sa.text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = :pid AND locktype = 'advisory' AND NOT granted)")


async def _until_waiting_on_the_account(engine: AsyncEngine, pid: int, task: asyncio.Task[None],
                                        timeout: float = 10.0) -> None:
    """Until backend ``pid`` waits for an advisory lock: the account's, the only kind lockout takes."""
    deadline = time.monotonic() + timeout
    async with engine.connect() as watcher:
        while not await watcher.scalar(WAITING, {"pid": pid}):
            assert not task.done(), f"the lift finished without waiting for the account: {task!r}"
            assert time.monotonic() < deadline, "the lift never waited for the account"
            await asyncio.sleep(0.02)


async def test_a_success_applied_again_forgets_only_the_failures_before_it(infra: Infrastructure) -> None:
    """LoginSucceeded runs without an applied-events record, so a redelivery (or a rebuild's
    replay) applies it again after later events: it must forget only the failures up to its own
    time, from its own source, and leave a later typo and another address's guesses counted."""
    async with scratch(infra) as (engine, tables, _):
        start = utcnow()
        at = [start + datetime.timedelta(seconds=n) for n in range(4)]
        async with engine.begin() as conn:
            repo = LockoutRepository(conn, tables)
            await repo.add_failure(event_id=uuid.uuid4(), tenant=TENANT, email=EMAIL, source=SOURCE, at=at[0])
            await repo.add_failure(event_id=uuid.uuid4(), tenant=TENANT, email=EMAIL, source="203.0.113.9", at=at[0])
            await handlers.record_success(repo, tenant=TENANT, email=EMAIL, source=SOURCE, at=at[1])
            await repo.add_failure(event_id=uuid.uuid4(), tenant=TENANT, email=EMAIL, source=SOURCE, at=at[2])
            await handlers.record_success(repo, tenant=TENANT, email=EMAIL, source=SOURCE, at=at[1])  # the redelivery
            left = await repo.failures(tenant=TENANT, email=EMAIL, after=start - datetime.timedelta(seconds=1))
        assert sorted((f.source, f.at) for f in left) == sorted([(SOURCE, at[2]), ("203.0.113.9", at[0])])


async def test_a_success_identity_counted_no_failure_for_is_passed_over(infra: Infrastructure) -> None:
    """LoginSucceeded says how many failures from its source identity had counted; lockout's
    consumer forgets the source's failures when that is not 0 (or not said, as in events written
    before the field), and passes a 0 over without touching the database."""
    async with scratch(infra) as (engine, tables, _):
        consume = EventConsumer(engine=engine, applied=AppliedEvents(tables.applied_events),
                                handlers=consumers.subscribers(None, tables))

        async def counted() -> int:
            async with engine.begin() as conn:
                found = await LockoutRepository(conn, tables).failures(
                    tenant=TENANT, email=EMAIL, after=utcnow() - datetime.timedelta(minutes=1))
            return len(found)

        async def success(failures_from_source: int | None) -> None:
            event = events.LoginSucceeded(email=EMAIL, user_id=uuid.uuid4(), source=SOURCE,
                                          failures_from_source=failures_from_source)
            await consume(events.Envelope.wrap(event, tenant=TENANT, producer="identity"))

        for said in (0, 1, None):
            async with engine.begin() as conn:
                await LockoutRepository(conn, tables).add_failure(event_id=uuid.uuid4(), tenant=TENANT, email=EMAIL,
                                                                  source=SOURCE, at=utcnow())
            assert await counted() == 1
            await success(said)
            assert await counted() == (1 if said == 0 else 0), said
            await success(1)  # forgets it, for the next round
