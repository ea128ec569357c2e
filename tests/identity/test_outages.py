"""Dependencies down (article cause 7): a database that does not answer gives a fast 503, never a
hang; with Kafka away, logins and registrations go on and their events follow when it is back."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from portal_auth.devstack import free_port
from portal_auth.system import System
from tests.conftest import Org, portal
from tests.identity.conftest import (
    PASSWORD, account_events, assert_problem, confirmed_account, login, new_email, register,
)

pytestmark = pytest.mark.e2e

NEVER_HANGS = 10.0  # seconds: far above identity's database timeout; only a hang would reach it


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port that accepts connections and never says a word, like a database host that froze."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


@pytest.fixture
def identity_without_database(system: System, silent_database: int) -> Iterator[str]:
    """A second identity process whose database never answers. Its Kafka is a closed port too,
    so it does not join identity's consumer group and take partitions it cannot apply."""
    env = {"DATABASE_URL": f"postgresql+asyncpg://portal:portal@127.0.0.1:{silent_database}/portal_auth",
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    process = system.start("identity", name="identity-nodb", env=env, args=["--no-migrate"], probe="/healthz")
    try:
        yield process.url
    finally:
        system.stop("identity-nodb")


async def test_database_down_answers_503_service_unavailable_not_a_hang(identity_without_database: str, org: Org) -> None:
    async with httpx.AsyncClient(base_url=identity_without_database, headers={"Host": org.host}, timeout=NEVER_HANGS) as client:
        answer = await login(client, new_email(), PASSWORD)
        assert_problem(answer, "service_unavailable")
        assert int(answer.headers["retry-after"]) > 0
        page = await client.get("/login")
    assert page.status_code == 503 and "Service temporarily unavailable" in page.text


async def test_readiness_reports_the_database_down(identity_without_database: str) -> None:
    async with httpx.AsyncClient(base_url=identity_without_database, timeout=NEVER_HANGS) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["database"] == "down"


async def test_kafka_down_logins_and_registrations_still_work_and_events_follow(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    kafka = system.infra.kafka
    if kafka is None:
        pytest.skip("needs the local Kafka, which can be stopped and started again (KAFKA_BOOTSTRAP_SERVERS is set)")
    account, newcomer = await confirmed_account(system, client), new_email()
    kafka.pause()
    try:
        async with portal(system, org) as browser:
            await register(browser, newcomer)
            assert (await login(browser, account.email, account.password)).status_code == 200
            assert (await browser.get("/auth/session")).status_code == 200
    finally:
        kafka.resume()
    assert [e["type"] for e in await account_events(system, org, newcomer, until="UserRegistered", count=1)] == ["UserRegistered"]
    await account_events(system, org, account.email, until="LoginSucceeded", count=1)
