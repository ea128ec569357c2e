"""What a login costs when it need not cost a hash: locks answered from each replica's memory
(always 423, whatever the concurrency, on every replica, also after a restart), and a hash queue
that says 503 at once rather than letting everyone wait without bound."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import Org
from tests.identity.conftest import assert_problem, confirmed_account, lock, login, metric, new_email

pytestmark = pytest.mark.e2e

VERIFICATIONS = "identity_password_verifications_total"


def source() -> str:
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


async def parallel_logins(system: System, org: Org, email: str, password: str, *, source: str, count: int = 16,
                          replica: str = "identity") -> Counter[int]:
    headers = {"Host": org.host, "X-Forwarded-For": source}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=system.url(replica), headers=headers, limits=limits, timeout=30) as browser:
        answers = await asyncio.gather(*(login(browser, email, password) for _ in range(count)))
    for answer in answers:
        if answer.status_code == 423:
            assert_problem(answer, "account_locked")
            assert int(answer.headers["retry-after"]) > 0
    return Counter(a.status_code for a in answers)


async def until_ready(system: System, replica: str) -> None:
    for _ in range(300):
        if await metric(system, "identity_memory_ready", replica) == 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{replica} never caught up with tenant.events and lockout.events")


async def test_sixteen_parallel_attempts_on_a_locked_account_are_every_one_423_without_bcrypt(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    account, address = await confirmed_account(system, client), source()
    await lock(system, org, account.email, source=address)
    before = await metric(system, VERIFICATIONS)
    assert await parallel_logins(system, org, account.email, account.password, source=address) == {423: 16}
    assert await metric(system, VERIFICATIONS) == before


async def test_every_replica_refuses_every_lock_also_after_a_restart(system: System, client: httpx.AsyncClient,
                                                                     org: Org) -> None:
    """Replicas share one consumer group, so each gets the lock events of some partitions only:
    eight accounts spread over the partitions, and both replicas must refuse all eight."""
    await asyncio.to_thread(system.start, "identity", name="identity-2")
    try:
        address = source()
        emails = [new_email() for _ in range(8)]  # unknown emails are locked like known ones
        for email in emails:
            await lock(system, org, email, source=address)
        for replica in ("identity", "identity-2"):
            await until_ready(system, replica)
            for email in emails:
                await _eventually_423(system, org, email, address, replica)
                assert await parallel_logins(system, org, email, "any password at all", source=address,
                                             replica=replica) == {423: 16}
        await asyncio.to_thread(system.restart, "identity-2")
        await until_ready(system, "identity-2")
        for email in emails:  # rebuilt from the table and the log, before anything else is asked
            assert await parallel_logins(system, org, email, "any password at all", source=address,
                                         replica="identity-2") == {423: 16}
    finally:
        system.stop("identity-2")


async def _eventually_423(system: System, org: Org, email: str, address: str, replica: str) -> None:
    headers = {"Host": org.host, "X-Forwarded-For": address}
    async with httpx.AsyncClient(base_url=system.url(replica), headers=headers) as browser:
        for _ in range(200):
            answer = await login(browser, email, "")
            if answer.status_code == 423:
                return
            assert answer.status_code in (401, 429), answer.text
            await asyncio.sleep(0.05)
    raise AssertionError(f"{replica} never refused {email}")


async def test_a_full_hash_queue_answers_503_with_retry_after_at_once(system: System, org: Org) -> None:
    """One bcrypt worker at cost 12 (about a quarter of a second) and a bound of one millisecond:
    of eight logins at the same moment the first is checked and the others, which would wait
    behind it, are refused at once."""
    env = {"BCRYPT_ROUNDS": "12", "HASH_WORKERS": "1", "HASH_QUEUE_MAX_WAIT_SECONDS": "0.001"}
    await asyncio.to_thread(system.start, "identity", name="identity-bounded", env=env)
    try:
        async with httpx.AsyncClient(base_url=system.url("identity-bounded"), timeout=30) as browser:
            answers = await asyncio.gather(*(
                browser.post("/auth/login", json={"email": new_email(), "password": "a password nobody has"},
                             headers={"Host": org.host, "X-Forwarded-For": source()})
                for _ in range(8)))
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) == {401, 503} and statuses[401] >= 1, statuses
        for refused in (a for a in answers if a.status_code == 503):
            assert_problem(refused, "service_unavailable")
            assert int(refused.headers["retry-after"]) >= 1
        assert await metric(system, "identity_password_refused_total", "identity-bounded") == statuses[503]
    finally:
        system.stop("identity-bounded")
