"""Login latency at the production bcrypt cost, BCRYPT_ROUNDS=12, over HTTP against identity.

Runs infrastructure where none is configured (as `portal-auth up` does), tenant and identity as
separate processes, one organization and a few confirmed accounts; then times logins and prints
p50/p95. It asserts nothing: the figures go into docs/identity.md.

    python benchmarks/login_latency.py [--logins 40] [--parallel 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from portal_auth.system import System, local_system
from services.identity.domain import hash_password, verify_password
from shared.events import IDENTITY_TOPIC
from shared.secrets import MailTokenCipher, new_mail_token_key

ROUNDS = 12
ADMIN = "bench-admin-token"
PASSWORD = "correct horse battery staple"

Call = Callable[[], Awaitable[httpx.Response]]


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:6.1f} ms   p95 {cuts[94] * 1000:6.1f} ms   (n={len(samples)})"


async def timed(call: Call, expected: int) -> float:
    started = time.perf_counter()
    answer = await call()
    elapsed = time.perf_counter() - started
    assert answer.status_code == expected, answer.text  # a wrong answer would make the figure meaningless
    return elapsed


async def series(count: int, call: Call, expected: int) -> list[float]:
    return [await timed(call, expected) for _ in range(count)]


async def interleaved(count: int, calls: dict[str, tuple[Call, int]]) -> dict[str, list[float]]:
    """``count`` rounds of one request of each kind in turn, so that load from anything else on
    the machine falls on every kind alike and the figures compare."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, (call, expected) in calls.items():
            samples[name].append(await timed(call, expected))
    return samples


async def new_org(system: System) -> str:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    # Lockout is not running here, and identity's own burst guard would answer 429 after five
    # failures: the thresholds are raised so that every failed login is a real bcrypt check.
    settings = {"lockout": {"max_failures": 100, "max_failures_account": 1000}}
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        answer = await admin.post("/admin/tenants", json={"slug": slug, "name": "Bench", "domains": [f"{slug}.localhost"],
                                                          "settings": settings})
        assert answer.status_code == 201, answer.text
    return f"{slug}.localhost"


async def wait_until_known(client: httpx.AsyncClient) -> None:
    while (await client.get("/auth/session")).status_code == 404:
        await asyncio.sleep(0.1)


async def confirm_accounts(client: httpx.AsyncClient, system: System, emails: list[str], key: str) -> None:
    """Registers and confirms with the token identity sent toward the mailer (no mailer runs here)."""
    for email in emails:
        assert (await client.post("/auth/register", json={"email": email, "password": PASSWORD})).status_code == 202
    cipher, wanted = MailTokenCipher(key), set(emails)
    consumer = AIOKafkaConsumer(IDENTITY_TOPIC, bootstrap_servers=system.infra.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async for record in consumer:
            event = json.loads(record.value)
            if event["type"] == "UserRegistered" and event["data"]["email"] in wanted:
                token = cipher.decrypt(event["data"]["token_encrypted"])
                assert (await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})).status_code == 200
                wanted.discard(event["data"]["email"])
                if not wanted:
                    return
    finally:
        await consumer.stop()


async def measure(system: System, key: str, *, logins: int, parallel: int) -> None:
    host = await new_org(system)
    async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": host}, timeout=60) as client:
        await wait_until_known(client)
        emails = [f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(parallel)]
        await confirm_accounts(client, system, emails, key)

        def attempt(email: str, password: str) -> Call:
            return lambda: client.post("/auth/login", json={"email": email, "password": password})

        await series(3, attempt(emails[0], PASSWORD), 200)  # warm-up: connections, caches
        kinds = {"right password": (attempt(emails[0], PASSWORD), 200),
                 "wrong password": (attempt(emails[0], "wrong " * 3), 401),
                 "unknown email": (attempt("nobody@example.com", PASSWORD), 401)}
        for name, samples in (await interleaved(logins, kinds)).items():
            print(f"login, {name:<19} {percentiles(samples)}")
        started = time.perf_counter()
        rounds = await asyncio.gather(*(series(logins // parallel, attempt(e, PASSWORD), 200) for e in emails))
        elapsed = time.perf_counter() - started
        samples = [s for r in rounds for s in r]
        print(f"login, {f'{parallel} in parallel':<19} {percentiles(samples)}   {len(samples) / elapsed:.1f} logins/s")


def bcrypt_alone(count: int = 10) -> None:
    hashed = hash_password(PASSWORD, rounds=ROUNDS)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        verify_password(PASSWORD, hashed)
        samples.append(time.perf_counter() - started)
    print(f"bcrypt verify, in-process  median {statistics.median(samples) * 1000:6.1f} ms   (n={count}, one core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    key = new_mail_token_key()
    env = {"ADMIN_TOKEN": ADMIN, "MAIL_TOKEN_KEY": key, "BCRYPT_ROUNDS": str(ROUNDS)}
    with tempfile.TemporaryDirectory(prefix="login-latency-") as tmp, \
            local_system(Path(tmp), env=env, services=("tenant", "identity")) as system:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"identity with BCRYPT_ROUNDS={ROUNDS}, over HTTP on 127.0.0.1, {os.cpu_count()} cores, load average {load}:")
        bcrypt_alone()
        asyncio.run(measure(system, key, logins=args.logins, parallel=args.parallel))


if __name__ == "__main__":
    main()
