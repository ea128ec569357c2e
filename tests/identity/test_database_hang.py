"""A database host that hangs (every PostgreSQL process stopped with SIGSTOP: connections stay
open, nothing answers) gives 503 service_unavailable within the contract's 2 s, for every
request, the first included: the pooled connection's pre-ping and the new connection that
follows share one budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portal_auth.devstack import PostgresHandle, free_port, start_postgres
from portal_auth.system import System
from tests.identity.conftest import PASSWORD, assert_problem, new_email

pytestmark = pytest.mark.e2e

CONTRACT_BOUND = 2.0  # seconds: the client gives up after this, so a slower answer fails the test


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[PostgresHandle]:
    """A PostgreSQL of this test's own, so that stopping it stops nobody else."""
    database = start_postgres(tmp_path / "postgres", port=free_port())
    try:
        yield database
    finally:
        database.thaw()
        database.stop()


@pytest.fixture
def identity_on_own_database(system: System, own_database: PostgresHandle) -> Iterator[str]:
    """A second identity over that database. Its Kafka is a closed port, so it does not join
    identity's consumer group and take partitions from the real one."""
    env = {"DATABASE_URL": own_database.url, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    process = system.start("identity", name="identity-hung-db", env=env, probe="/healthz")
    try:
        yield process.url
    finally:
        system.stop("identity-hung-db")


async def test_hung_database_answers_503_within_two_seconds_from_the_first_request(
        identity_on_own_database: str, own_database: PostgresHandle) -> None:
    host = {"Host": "hung.localhost"}
    async with httpx.AsyncClient(base_url=identity_on_own_database, timeout=CONTRACT_BOUND) as client:
        assert (await client.get("/readyz")).json()["database"] == "up"  # the pool now holds a connection
        own_database.freeze()
        requests = [
            ("login", lambda: client.post("/auth/login", json={"email": new_email(), "password": PASSWORD}, headers=host)),
            ("register", lambda: client.post("/auth/register", json={"email": new_email(), "password": PASSWORD}, headers=host)),
            ("forgot", lambda: client.post("/auth/password/forgot", json={"email": new_email()}, headers=host)),
            ("login again", lambda: client.post("/auth/login", json={"email": new_email(), "password": PASSWORD}, headers=host)),
            ("session", lambda: client.get("/auth/session", headers=host)),
        ]
        figures = []
        for name, send in requests:
            started = time.monotonic()
            answer = await send()
            figures.append(f"{name} {time.monotonic() - started:.2f} s")
            assert_problem(answer, "service_unavailable"), (name, answer.text)
        print("hung database, 503 after: " + ", ".join(figures))
        own_database.thaw()
        assert (await client.get("/readyz")).json()["database"] == "up"
