"""Fixtures of the mailer's tests: a private database for the handler tests; for the end-to-end
tests, what the SMTP server caught, what the mailer's queue and events say, and an SMTP outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.devstack import start_mail_catcher
from portal_auth.system import Infrastructure, System
from shared.db import make_engine
from shared.events import Envelope
from shared.migrations import upgrade
from tests.conftest import ADMIN_TOKEN, Org, new_database

T = TypeVar("T")

# --- a database of their own for the handler tests: no running mailer may claim their emails --


@pytest.fixture(scope="session")
async def mailer_engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    url = await new_database(infra, "mailer_handlers")
    await asyncio.to_thread(upgrade, "mailer", url)
    engine = make_engine(url)
    yield engine
    await engine.dispose()


class DatabaseSwitch:
    """A TCP relay in front of the real PostgreSQL that can be switched off, like a database host
    that went away: switching off cuts the open connections, and while off every new connection
    is closed as soon as it arrives (and counted in ``refused``)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.up = True
        self.refused = 0
        self.on_refused: Callable[[int], None] = lambda refused: None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.off()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def off(self) -> None:
        self.up = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def on(self) -> None:
        self.up = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            writer.transport.abort()
            self.on_refused(self.refused)
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._open |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open -= {writer, up_writer}


@pytest.fixture
async def database_switch(mailer_engine: AsyncEngine) -> AsyncIterator[tuple[DatabaseSwitch, AsyncEngine]]:
    """The handler tests' database behind a switch, and an engine that reaches it only through it."""
    url = mailer_engine.url
    switch = DatabaseSwitch(url.host or "127.0.0.1", url.port or 5432)
    port = await switch.start()
    engine = make_engine(url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False))
    try:
        yield switch, engine
    finally:
        await engine.dispose()
        await switch.stop()


# --- end to end -------------------------------------------------------------------------------


def address() -> str:
    """An address no other test uses (the catcher's inbox is shared by the whole session)."""
    return f"p-{uuid.uuid4().hex[:12]}@example.com"


def inbox(system: System, to: str) -> list[EmailMessage]:
    """What the SMTP server has received for exactly this envelope recipient, oldest first."""
    return [m for m in system.infra.mail.messages() if m["X-Envelope-To"] == to]


async def received(system: System, to: str, *, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
    """Once at least ``count`` emails to ``to`` arrived: all of them."""
    async def arrived() -> list[EmailMessage]:
        found = inbox(system, to)
        return found if len(found) >= count else []

    return await eventually(arrived, timeout=timeout, what=f"{count} email(s) to {to}")


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, what: str = "condition") -> T:
    """The first truthy answer of ``probe``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (answer := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return answer


async def queue_of(system: System, org: Org, to: str) -> list[dict[str, Any]]:
    """The mailer's rows for one recipient, oldest first, as operators see them."""
    async with httpx.AsyncClient(base_url=system.url("mailer"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        answer = await client.get("/admin/emails", params={"tenant": org.slug, "to": to})
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()["emails"]))


async def events_on(infra: Infrastructure, topic: str, keep: Callable[[dict[str, Any]], bool], *, count: int,
                    timeout: float = 20.0) -> list[tuple[bytes, bytes]]:
    """The first ``count`` (key, value) records on ``topic`` whose JSON ``keep`` accepts, from the
    beginning; records that are not JSON (the poison other tests write) are passed over."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            found += [(r.key, r.value) for records in batches.values() for r in records if _is_event(r.value) and keep(json.loads(r.value))]
    finally:
        await consumer.stop()
    assert len(found) >= count, f"{len(found)} of {count} records on {topic} within {timeout} s"
    return found


def _is_event(raw: bytes) -> bool:
    try:
        Envelope.from_bytes(raw)
    except ValueError:  # pydantic's ValidationError included
        return False
    return True


@contextmanager
def smtp_down(infra: Infrastructure) -> Iterator[None]:
    """The SMTP server really stops (connections refused) and comes back on the same port."""
    old = infra.mail
    assert old is not None, "this test stops the SMTP server, so it needs the catcher the tests started"
    old.stop()
    try:
        yield
    finally:
        infra.mail = start_mail_catcher(old.mail_dir.parent, smtp_port=old.smtp_port, web_port=old.web_port)


async def retried(system: System, org: Org, to: str, *, times: int, code: str = "451") -> bool:
    """The (only) email to ``to`` is queued again after ``times`` attempts the server refused with ``code``."""
    rows = await queue_of(system, org, to)
    return len(rows) == 1 and rows[0]["status"] == "queued" and rows[0]["attempts"] >= times \
        and (rows[0]["last_error"] or "").startswith(code)


async def wait_until_gone(system: System, host: str) -> None:
    """Until identity, and so by the same tenant event the mailer, no longer knows ``host``."""
    async def gone() -> bool:
        async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": host}) as client:
            return (await client.get("/auth/session")).status_code == 404

    await eventually(gone, what=f"{host} removed")
