"""The price of deciding locks off the login path: how long after the N-th failure identity
starts answering 423, and how many extra tries a burst of concurrent wrong passwords gets.

Starts PostgreSQL, Kafka, tenant, identity and lockout on this machine (as the end-to-end tests
do; the mailer is not needed: accounts are confirmed with the token identity sends toward it).

  * lag: for each of --accounts confirmed accounts, one after another: max_failures (5) wrong
    passwords from one address, then the right password from that address, again and again,
    until identity answers 423 account_locked. Printed: from the answer to the 5th failure to the
    first refusal of any kind (identity's own burst guard answers 429 at once) and to the first
    423; and, from the events' own times, LoginFailed -> AccountLocked (lockout's decision).
  * burst: for each of --bursts fresh accounts, --concurrency wrong passwords at the same moment
    from one address; counted: answers 401 (attempts that really checked a password) beyond
    max_failures, then 429 and 423.

It asserts nothing about time; the figures go into docs/lockout.md.

    python benchmarks/lockout_lag.py [--accounts 100] [--bursts 10] [--concurrency 32] [--bcrypt-rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal_auth.system import System, local_system  # noqa: E402
from shared.eventlog import LogReader  # noqa: E402
from shared.events import IDENTITY_TOPIC, LOCKOUT_TOPIC  # noqa: E402
from shared.secrets import MailTokenCipher, new_mail_token_key  # noqa: E402

ADMIN = "bench-admin-token"
PASSWORD = "correct horse battery staple"
WRONG = "certainly not the password"
SOURCE = "192.0.2.10"
MAX_FAILURES = 5


async def new_org(system: System) -> tuple[str, str]:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        answer = await admin.post("/admin/tenants", json={"slug": slug, "name": "Bench", "domains": [f"{slug}.localhost"]})
        answer.raise_for_status()
    async with httpx.AsyncClient(base_url=system.url("lockout"), headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        while (await admin.get(f"/admin/lockouts/{slug}/nobody@example.com")).status_code == 404:
            await asyncio.sleep(0.05)  # until lockout knows the organization
    return slug, f"{slug}.localhost"


async def confirmed_accounts(client: httpx.AsyncClient, system: System, key: str, count: int) -> list[str]:
    emails = [f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(count)]
    for email in emails:
        (await client.post("/auth/register", json={"email": email, "password": PASSWORD})).raise_for_status()
    cipher, waiting = MailTokenCipher(key), set(emails)
    while waiting:
        async with LogReader(system.infra.kafka_bootstrap, [IDENTITY_TOPIC]) as log:
            for envelope in await log.read_to_end():
                if envelope.type == "UserRegistered" and envelope.data["email"] in waiting:
                    token = cipher.decrypt(envelope.data["token_encrypted"])
                    (await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})).raise_for_status()
                    waiting.discard(envelope.data["email"])
        await asyncio.sleep(0.1)
    return emails


async def login(client: httpx.AsyncClient, email: str, password: str) -> int:
    return (await client.post("/auth/login", json={"email": email, "password": password})).status_code


async def lag_of(client: httpx.AsyncClient, email: str) -> tuple[float, float]:
    """(seconds to the first refusal, seconds to the first 423) after the last failure's answer."""
    for _ in range(MAX_FAILURES):
        status = await login(client, email, WRONG)
        assert status == 401, status  # anything else would make the figure meaningless
    answered, refused = time.perf_counter(), None
    while True:
        status = await login(client, email, PASSWORD)
        now = time.perf_counter()
        if status in (423, 429) and refused is None:
            refused = now - answered
        if status == 423:
            return refused or 0.0, now - answered
        if now - answered > 30:
            raise SystemExit(f"{email} not locked 30 s after its 5th failure (last answer {status})")
        await asyncio.sleep(0.002)


async def burst(client: httpx.AsyncClient, email: str, concurrency: int) -> Counter[int]:
    answers = await asyncio.gather(*(login(client, email, WRONG) for _ in range(concurrency)))
    return Counter(answers)


async def decision_times(system: System, slug: str) -> list[float]:
    """LoginFailed (the one that reached the bound) -> AccountLocked, by the events' own times."""
    async with LogReader(system.infra.kafka_bootstrap, [IDENTITY_TOPIC, LOCKOUT_TOPIC]) as log:
        envelopes = [e for e in await log.read_to_end() if e.tenant == slug]
    failures: dict[str, list] = {}
    for e in envelopes:
        if e.type == "LoginFailed":
            failures.setdefault(e.data["email"], []).append(e.occurred_at)
    return [(e.occurred_at - sorted(failures[e.data["email"]])[MAX_FAILURES - 1]).total_seconds()
            for e in envelopes if e.type == "AccountLocked" and len(failures.get(e.data["email"], [])) >= MAX_FAILURES]


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:7.1f} ms   p99 {cuts[98] * 1000:7.1f} ms   max {max(samples) * 1000:7.1f} ms"


async def measure(system: System, key: str, *, accounts: int, bursts: int, concurrency: int) -> None:
    slug, host = await new_org(system)
    headers = {"Host": host, "X-Forwarded-For": SOURCE}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=system.url("identity"), headers=headers, timeout=60, limits=limits) as client:
        emails = await confirmed_accounts(client, system, key, accounts + bursts)
        lags = [await lag_of(client, email) for email in emails[:accounts]]
        print(f"lag over {accounts} accounts, one at a time (from the answer to failure #{MAX_FAILURES}):")
        print(f"  to the first refusal (429 or 423)   {percentiles([refused for refused, _ in lags])}")
        print(f"  to 423 account_locked               {percentiles([locked for _, locked in lags])}")
        print(f"  LoginFailed -> AccountLocked        {percentiles(await decision_times(system, slug))}   (event times)")

        totals: Counter[int] = Counter()
        extras = []
        for email in emails[accounts:]:
            answers = await burst(client, email, concurrency)
            totals += answers
            extras.append(max(0, answers[401] - MAX_FAILURES))
        print(f"burst: {bursts} accounts x {concurrency} concurrent wrong passwords from one address:")
        print(f"  answers {dict(sorted(totals.items()))}")
        print(f"  401s beyond the threshold of {MAX_FAILURES}: mean {statistics.mean(extras):.2f}, max {max(extras)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bcrypt-rounds", type=int, default=4, help="identity's BCRYPT_ROUNDS; the lag does not depend on it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockout-lag-") as tmp:
        key = new_mail_token_key()
        env = {"ADMIN_TOKEN": ADMIN, "MAIL_TOKEN_KEY": key, "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
               "TRUSTED_PROXIES": "127.0.0.1"}
        with local_system(Path(tmp), env=env, services=("tenant", "identity", "lockout")) as system:
            print(f"tenant, identity, lockout as processes; BCRYPT_ROUNDS={args.bcrypt_rounds}; HTTP on 127.0.0.1")
            asyncio.run(measure(system, key, accounts=args.accounts, bursts=args.bursts, concurrency=args.concurrency))


if __name__ == "__main__":
    main()
