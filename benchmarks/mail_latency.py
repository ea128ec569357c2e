"""How long a registration takes to reach the SMTP server: p50 and p95.

Starts the whole system on this machine (PostgreSQL, Kafka, the mail catcher and the services as
separate processes, as `portal-auth up` and the end-to-end tests do), creates an organization,
registers people one after another through identity, and for each one measures

  * request:  POST /auth/register until its 202,
  * pipeline: the 202 until the message is stored by the SMTP server (outbox relay, Kafka,
              the mailer's consumer, its stored queue, rendering, SMTP),
  * total:    both together, what a person waiting for the email sees.

The arrival time is the catcher's own clock, written into each message's file name when it is
stored; the catcher runs on the same machine, so the clocks agree. Nothing here asserts a time.

    python benchmarks/mail_latency.py [--count 100] [--concurrency 1] [--bcrypt-rounds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from portal_auth.devstack._mailfiles import message_paths, read_message
from portal_auth.system import System, local_system
from shared.secrets import new_mail_token_key

ADMIN_TOKEN = "benchmark-admin-token"
PASSWORD = "correct horse battery staple"


def arrivals(mail_dir: Path) -> dict[str, int]:
    """Envelope recipient -> arrival time (ns since the epoch) of the first message to it."""
    found: dict[str, int] = {}
    for path in message_paths(mail_dir):  # named <arrival ns>-<sequence>.eml by the catcher
        found.setdefault(str(read_message(path)["X-Envelope-To"]), int(path.name.split("-")[0]))
    return found


# One benchmark client is one source, far faster than people: the per-source limits would measure themselves.
BENCH_SETTINGS = {"limits": {"requests_per_source_per_minute": 100_000, "failed_logins_per_source": 100_000}}


async def create_org(system: System) -> str:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    host = f"{slug}.localhost"
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        answer = await admin.post("/admin/tenants", json={"slug": slug, "name": "Benchmark Corp", "domains": [host],
                                                          "settings": BENCH_SETTINGS})
        answer.raise_for_status()
    return host


async def register(client: httpx.AsyncClient, to: str) -> tuple[int, int]:
    """(request start, response) in ns since the epoch."""
    started = time.time_ns()
    answer = await client.post("/auth/register", json={"email": to, "password": PASSWORD})
    answer.raise_for_status()
    return started, time.time_ns()


async def wait_for(mail_dir: Path, addresses: set[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while not addresses <= (found := arrivals(mail_dir)).keys():
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(addresses & found.keys())} of {len(addresses)} emails arrived within {timeout} s")
        await asyncio.sleep(0.05)
    return found


async def measure(system: System, mail_dir: Path, *, count: int, concurrency: int) -> list[tuple[float, float, float]]:
    host = await create_org(system)
    async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": host}, timeout=30) as client:
        while (await client.get("/auth/session")).status_code == 404:  # until identity knows the organization
            await asyncio.sleep(0.05)
        warmup = f"warmup-{uuid.uuid4().hex[:8]}@example.com"
        await register(client, warmup)  # also until the mailer knows it: its first email may wait a retry
        await wait_for(mail_dir, {warmup}, timeout=60)
        gate, timings = asyncio.Semaphore(concurrency), {}

        async def one(n: int) -> None:
            to = f"bench-{n}-{uuid.uuid4().hex[:6]}@example.com"
            async with gate:
                timings[to] = await register(client, to)

        await asyncio.gather(*(one(n) for n in range(count)))
    arrived = await wait_for(mail_dir, set(timings), timeout=120)
    return [((done - start) / 1e6, (arrived[to] - done) / 1e6, (arrived[to] - start) / 1e6)
            for to, (start, done) in timings.items()]


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def report(samples: list[tuple[float, float, float]], *, concurrency: int, rounds: int) -> None:
    print(f"{len(samples)} registrations, concurrency {concurrency}, BCRYPT_ROUNDS {rounds}; milliseconds")
    print(f"{'':10}{'p50':>8}{'p95':>8}{'max':>8}")
    for name, column in (("request", 0), ("pipeline", 1), ("total", 2)):
        values = [s[column] for s in samples]
        print(f"{name:10}{percentile(values, 50):8.0f}{percentile(values, 95):8.0f}{max(values):8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="identity's BCRYPT_ROUNDS (12 is the default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mail-latency-") as tmp:
        env = {"ADMIN_TOKEN": ADMIN_TOKEN, "MAIL_TOKEN_KEY": new_mail_token_key(), "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
               "MAIL_FROM": "portal@example.test", "MAILER_RETRY_BASE_SECONDS": "0.5"}
        with local_system(Path(tmp), env=env) as system:
            assert system.infra.mail is not None
            samples = asyncio.run(measure(system, system.infra.mail.mail_dir, count=args.count, concurrency=args.concurrency))
    report(samples, concurrency=args.concurrency, rounds=args.bcrypt_rounds)


if __name__ == "__main__":
    main()
