"""The project's benchmark: every figure of the login path's table (issue 10), in one run.

Starts the whole system on this machine (embedded PostgreSQL, Apache Kafka, the mail catcher and
the four services as separate processes, BCRYPT_ROUNDS=12) and measures, against the cost of one
bcrypt verification measured in the same run:

  T_hash  one verification on one core (median, in this process)
  C       verifications per second with every core busy: the most logins/s the machine could give
  cpu     service CPU per login beyond the hash: the four services' process CPU (from /proc) over
          a given number of logins (2 clients per core), minus their idle CPU over as long right
          after, minus the CPU identity spent in bcrypt (its own counter), divided by the logins
  peak    the best logins/s of closed loops of 2 to 16 clients, divided by C
  p95     login latency with Poisson arrivals at 0.7*C, against an ideal M/D/c queue that only
          hashes (c = cores, service time T_hash), simulated; and at 2*C, with the share of 503s
  locked  right-password logins to a locked account over 16 connections: answers per second
  lag     from the answer to the 5th wrong password to the first 423 account_locked (p99)
  burst   32 concurrent wrong passwords on one account: 401s beyond the threshold of 5
  mail    registration -> stored by the SMTP server (from the 202), p95

It asserts no timing (CI runs --quick as a smoke test); it fails only when an answer is wrong.
The table is printed and written, with the date and commit, into docs/performance.md.

    python benchmarks/bench.py [--quick] [--no-write] [--profile DIR]

--profile DIR runs py-spy on each service while the CPU per login is measured and prints the top items of
each profile (py-spy's raw stacks stay in DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal_auth.devstack._mailfiles import message_paths, read_message  # noqa: E402
from portal_auth.system import System, local_system  # noqa: E402
from services.identity.domain import hash_password, verify_password  # noqa: E402
from shared.eventlog import LogReader  # noqa: E402
from shared.events import IDENTITY_TOPIC  # noqa: E402
from shared.secrets import MailTokenCipher, new_mail_token_key  # noqa: E402

ROUNDS = 12
ADMIN = "bench-admin-token-of-at-least-32-characters"
PASSWORD = "correct horse battery staple"
WRONG = "certainly not the password"
MAX_FAILURES = 5
# The benchmark plays many people from a few addresses, far faster than people: the per-source
# limits (docs/security.md) are raised so that they do not measure themselves.
BENCH_LIMITS = {"requests_per_source_per_minute": 100_000, "failed_logins_per_source": 100_000}
SERVICES = ("identity", "lockout", "tenant", "mailer")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Mode:
    name: str
    clients: tuple[int, ...]  # closed-loop levels
    closed_seconds: float
    open_seconds: float
    overload_seconds: float
    locked_seconds: float
    lag_accounts: int
    bursts: int
    registrations: int
    cpu_logins: int


FULL = Mode("full", (2, 4, 8, 16), 10.0, 60.0, 20.0, 5.0, 100, 10, 100, 400)
QUICK = Mode("quick", (2, 4, 16), 3.0, 12.0, 6.0, 2.0, 15, 3, 15, 60)


@dataclass
class Figures:
    calibrations: list[tuple[float, float, float]] = field(default_factory=list)  # (T_hash, its CPU, C), before and after
    rate_07: float = 0.0  # the rate offered as 0.7·C
    cpu_beyond: float = 0.0
    cpu_all: float = 0.0  # the same, idle CPU not subtracted
    cpu_by_service: dict[str, float] = field(default_factory=dict)
    idle_cpu: float = 0.0  # CPU seconds per second, all four services, doing nothing
    closed: dict[int, float] = field(default_factory=dict)
    p95_07: float = 0.0
    ideal_p95_07: float = 0.0
    p95_2c: float = 0.0
    share_503_2c: float = 0.0
    answers_2c: Counter[int] = field(default_factory=Counter)
    locked_rate: float = 0.0
    locked_answers: Counter[int] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    burst_extra: list[int] = field(default_factory=list)
    burst_answers: Counter[int] = field(default_factory=Counter)
    mail: list[float] = field(default_factory=list)

    @property
    def t_hash(self) -> float:
        """One verification, one core: the faster calibration's (see ``calibrate``)."""
        return min(t for t, _, _ in self.calibrations)

    @property
    def hash_cpu(self) -> float:
        """The CPU of that verification."""
        return min(self.calibrations)[1]

    @property
    def capacity(self) -> float:
        """C, verifications/s on every core: the faster calibration's."""
        return max(c for _, _, c in self.calibrations)


# --- the cost of the hash, measured here ---------------------------------------------------------


def calibrate(figures: Figures, seconds: float) -> None:
    """T_hash and C on this machine now. Called before the system starts (the offered rates
    come from it) and again after it stopped: the figures are judged against the faster of the
    two (the lower T_hash, the higher C), so that a slow moment of the machine at the start
    cannot make the system look better than it is."""
    hashed = hash_password(PASSWORD, rounds=ROUNDS)
    walls, cpus = [], []
    for _ in range(7):
        wall, cpu = time.perf_counter(), time.thread_time()
        verify_password(PASSWORD, hashed)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    t_hash, hash_cpu = statistics.median(walls), statistics.median(cpus)
    cores, done, stop = os.cpu_count() or 1, [0], time.perf_counter() + seconds

    def spin() -> None:
        while time.perf_counter() < stop:
            verify_password(PASSWORD, hashed)
            done[0] += 1  # one increment at a time: the GIL is held for it

    started = time.perf_counter()
    threads = [threading.Thread(target=spin) for _ in range(cores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures.calibrations.append((t_hash, hash_cpu, done[0] / (time.perf_counter() - started)))


def ideal_p95(rate: float, service: float, servers: int, customers: int = 200_000) -> float:
    """p95 of the time in system of a FIFO M/D/c queue, by simulation (fixed seed)."""
    rng, free, t, times = random.Random(7), [0.0] * servers, 0.0, []
    for _ in range(customers):
        t += rng.expovariate(rate)
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service)
        times.append(start + service - t)
    return quantile(times, 95)


def quantile(samples: list[float], p: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


# --- process CPU ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def service_cpu(system: System) -> dict[str, float]:
    return {name: cpu_seconds(system.processes[name].process.pid) for name in SERVICES}


class Profiler:
    """py-spy on every service while ``running``; then the profile's top items per service."""

    def __init__(self, system: System, directory: Path | None) -> None:
        self.system, self.directory, self._spies = system, directory, []

    def start(self, seconds: float) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for name in SERVICES:
            out = self.directory / f"{name}.txt"
            self._spies.append((name, out, subprocess.Popen(
                [spy, "record", "--nonblocking", "--rate", "200", "--format", "raw", "--duration", str(int(seconds) + 1),
                 "--output", str(out), "--pid", str(self.system.processes[name].process.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def report(self) -> list[str]:
        lines = []
        for name, out, spy in self._spies:
            spy.wait()
            lines += [f"{name}:", *top_items(out)]
        return lines


def top_items(raw: Path, count: int = 12) -> list[str]:
    """The functions most often on the stack (inclusive) and at its top (self), in % of the samples
    that found the process working (not waiting in select or on a queue)."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, samples = line.rpartition(" ")
        frames = [re.sub(r" \([^()]*?(?:site-packages/|lib/python3\.\d+/)", " (", f).replace(f" ({ROOT}/", " (")
                  for f in stack.split(";") if f.strip()]
        if not frames or frames[-1].startswith(("EpollSelector.select", "Condition.wait", "Queue.get")):
            continue
        n = int(samples)
        total += n
        leaf[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["  (no samples)"]
    skip = ("runpy", "asyncio/", "uvicorn/", "threading.py", "<module>", "main (", "serve (", "run (")
    top = [(f, n) for f, n in inclusive.most_common() if not any(s in f for s in skip)][:count]
    return ([f"  {total} working samples; inclusive:"] + [f"    {n / total:6.1%}  {f}" for f, n in top]
            + ["  self:"] + [f"    {n / total:6.1%}  {f}" for f, n in leaf.most_common(count)])


async def hash_cpu_total(identity: httpx.AsyncClient) -> float | None:
    """The CPU identity spent in bcrypt, from its /metrics (None where it does not count it)."""
    text = (await identity.get("/metrics")).text
    found = re.search(r"^identity_password_cpu_seconds_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


# --- the system -------------------------------------------------------------------------------------


def sources() -> Iterator[str]:
    """A fresh client address for each account or client (198.18.0.0/15, for benchmarks): no
    per-source limit of one address mixes into what is measured."""
    for n in range(1, 1 << 17):
        yield f"198.18.{n >> 8}.{n & 255}"


class Bench:
    def __init__(self, system: System, key: str) -> None:
        self.system, self.key = system, key
        self.host = ""
        self.addresses = sources()
        # Idle connections are dropped before the server (uvicorn: 5 s) would close them under a request.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
        self.client = httpx.AsyncClient(base_url=system.url("identity"), timeout=60, limits=limits)

    def headers(self, source: str) -> dict[str, str]:
        return {"Host": self.host, "X-Forwarded-For": source}

    async def login(self, email: str, password: str, source: str) -> int:
        return (await self.attempt(email, password, source)).status_code

    async def attempt(self, email: str, password: str, source: str) -> httpx.Response:
        return await self.client.post("/auth/login", json={"email": email, "password": password}, headers=self.headers(source))

    async def new_org(self) -> None:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        self.host = f"{slug}.localhost"
        async with httpx.AsyncClient(base_url=self.system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            answer = await admin.post("/admin/tenants", json={"slug": slug, "name": "Bench", "domains": [self.host],
                                                              "settings": {"limits": BENCH_LIMITS}})
            assert answer.status_code == 201, answer.text
        async with httpx.AsyncClient(base_url=self.system.url("lockout"), headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            while (await admin.get(f"/admin/lockouts/{slug}/nobody@example.com")).status_code == 404:
                await asyncio.sleep(0.05)  # until lockout knows the organization
        while (await self.client.get("/auth/session", headers=self.headers("198.18.0.1"))).status_code == 404:
            await asyncio.sleep(0.05)  # and identity

    async def register(self, email: str) -> tuple[int, int]:
        """(request start, its 202) in ns since the epoch; a 503 (hash queue full) is tried again."""
        while True:
            started = time.time_ns()
            answer = await self.client.post("/auth/register", json={"email": email, "password": PASSWORD},
                                            headers=self.headers(next(self.addresses)))
            if answer.status_code != 503:
                assert answer.status_code == 202, answer.text
                return started, time.time_ns()
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))

    async def accounts(self, count: int) -> list[str]:
        """Registered and confirmed with the token identity sent toward the mailer."""
        emails = [f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(count)]
        for email in emails:
            await self.register(email)
        cipher, waiting = MailTokenCipher(self.key), set(emails)
        async with LogReader(self.system.infra.kafka_bootstrap, [IDENTITY_TOPIC]) as log:
            while waiting:
                for envelope in await log.read_to_end():
                    if envelope.type == "UserRegistered" and envelope.data["email"] in waiting:
                        token = cipher.decrypt(envelope.data["token_encrypted"])
                        answer = await self.client.post("/auth/confirm", json={"token": token, "password": PASSWORD},
                                                        headers=self.headers(next(self.addresses)))
                        assert answer.status_code == 200, answer.text
                        waiting.discard(envelope.data["email"])
                await asyncio.sleep(0.05)
        return emails


async def closed_loop(bench: Bench, emails: list[str], clients: int, seconds: float, logins: int | None = None) -> int:
    """``clients`` clients, each on its own account and address, logging in one after another,
    for ``seconds`` (the logins answered within them) or until ``logins`` succeeded. A client
    told 503 waits its ``Retry-After`` before it tries again, as the header asks of every client
    (one that asked again at once would spend the cores the hashes need on being refused)."""
    deadline, done = time.perf_counter() + seconds, [0]

    async def client(email: str, source: str) -> None:
        while time.perf_counter() < deadline and (logins is None or done[0] < logins):
            answer = await bench.attempt(email, PASSWORD, source)
            assert answer.status_code in (200, 503), answer.status_code
            done[0] += answer.status_code == 200 and time.perf_counter() <= deadline  # in the window only
            if answer.status_code == 503:
                await asyncio.sleep(min(float(answer.headers["retry-after"]), max(0.0, deadline - time.perf_counter())))

    await asyncio.gather(*(client(email, next(bench.addresses)) for email in emails[:clients]))
    return done[0]


async def open_loop(bench: Bench, emails: list[str], rate: float, seconds: float) -> tuple[list[float], Counter[int]]:
    """Poisson arrivals at ``rate``/s on accounts not in use; latency counted from each arrival's
    planned time, so a late client does not hide a slow answer."""
    rng, free = random.Random(11), asyncio.Queue[tuple[str, str]]()
    for email in emails:
        free.put_nowait((email, next(bench.addresses)))
    latencies: list[float] = []
    answers: Counter[int] = Counter()

    async def one(planned: float) -> None:
        email, source = await free.get()
        try:
            status = await bench.login(email, PASSWORD, source)
        finally:
            free.put_nowait((email, source))
        assert status in (200, 503), status
        answers[status] += 1
        if status == 200:
            latencies.append(time.perf_counter() - planned)

    tasks, start = [], time.perf_counter()
    planned = start
    while planned < start + seconds:
        await asyncio.sleep(max(0.0, planned - time.perf_counter()))
        tasks.append(asyncio.create_task(one(planned)))
        planned += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    return latencies, answers


async def lock(bench: Bench, email: str, source: str) -> None:
    """Five wrong passwords from ``source``, then wait for the 423."""
    for _ in range(MAX_FAILURES):
        assert await bench.login(email, WRONG, source) == 401
    while await bench.login(email, PASSWORD, source) != 423:
        await asyncio.sleep(0.005)


async def locked_rate(bench: Bench, email: str, seconds: float, connections: int = 16) -> tuple[float, Counter[int]]:
    """The same login, right password, on ``connections`` keep-alive connections for ``seconds``.

    The requests go out over plain sockets, written once and read back by status line and
    Content-Length: httpx costs about a millisecond of the benchmark's own CPU per request, on
    the same two cores, and would measure the client rather than identity."""
    source = next(bench.addresses)
    await lock(bench, email, source)
    url = httpx.URL(bench.system.url("identity"))
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    request = (f"POST /auth/login HTTP/1.1\r\nHost: {bench.host}\r\nX-Forwarded-For: {source}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    answers: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds

    async def hammer() -> None:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                answers[int(head.split(b" ", 2)[1])] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(hammer() for _ in range(connections)))
    return sum(answers.values()) / (time.perf_counter() - started), answers


async def lag_of(bench: Bench) -> float:
    """From the answer to the 5th failure until the first 423 (unknown emails are locked alike)."""
    email, source = f"lag-{uuid.uuid4().hex[:10]}@example.com", next(bench.addresses)
    for _ in range(MAX_FAILURES):
        status = await bench.login(email, WRONG, source)
        assert status == 401, status
    answered = time.perf_counter()
    while (status := await bench.login(email, PASSWORD, source)) != 423:
        assert status in (401, 429), status
        if time.perf_counter() - answered > 30:
            raise SystemExit(f"{email} not locked 30 s after its 5th failure")
        await asyncio.sleep(0.002)
    return time.perf_counter() - answered


async def burst(bench: Bench, concurrency: int = 32) -> Counter[int]:
    email, source = f"burst-{uuid.uuid4().hex[:10]}@example.com", next(bench.addresses)
    return Counter(await asyncio.gather(*(bench.login(email, WRONG, source) for _ in range(concurrency))))


def arrivals(mail_dir: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in message_paths(mail_dir):  # named <arrival ns>-<sequence>.eml by the catcher
        found.setdefault(str(read_message(path)["X-Envelope-To"]), int(path.name.split("-")[0]))
    return found


async def mail_latency(bench: Bench, count: int) -> list[float]:
    """Registrations one after another; seconds from each 202 until the SMTP server stored the mail."""
    mail_dir = bench.system.infra.mail.mail_dir  # type: ignore[union-attr]
    answered = {}
    for n in range(count):
        to = f"mail-{n}-{uuid.uuid4().hex[:6]}@example.com"
        answered[to] = (await bench.register(to))[1]
    deadline = time.monotonic() + 120
    while not answered.keys() <= (found := arrivals(mail_dir)).keys():
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(answered.keys() & found.keys())} of {count} emails arrived")
        await asyncio.sleep(0.05)
    return [(found[to] - done) / 1e9 for to, done in answered.items()]


async def measure(system: System, key: str, mode: Mode, figures: Figures, say: Callable[[str], None],
                  profiler: Profiler) -> None:
    bench = Bench(system, key)
    try:
        await bench.new_org()
        cores = os.cpu_count() or 1
        count = max(max(mode.clients), 24) + 1
        say(f"registering and confirming {count} accounts")
        emails = await bench.accounts(count)
        spare = emails.pop()
        await closed_loop(bench, emails, 2, 1.0)  # warm-up: connections, caches

        identity = httpx.AsyncClient(base_url=system.url("identity"))
        say(f"CPU of {mode.cpu_logins} logins, {2 * cores} clients, against as long idle")
        before, hashed, started = service_cpu(system), await hash_cpu_total(identity), time.perf_counter()
        profiler.start(mode.cpu_logins / figures.capacity)
        logins = await closed_loop(bench, emails, 2 * cores, 3600.0, logins=mode.cpu_logins)
        await asyncio.sleep(1.0)  # the consumers finish the last events
        after, elapsed = service_cpu(system), time.perf_counter() - started
        hashed_after = await hash_cpu_total(identity)
        idle = service_cpu(system)
        await asyncio.sleep(elapsed)  # the same services, as long, doing nothing
        figures.idle_cpu = (sum(service_cpu(system).values()) - sum(idle.values())) / elapsed
        in_bcrypt = hashed_after - hashed if hashed is not None and hashed_after is not None else figures.hash_cpu * logins
        total = sum(after.values()) - sum(before.values()) - figures.idle_cpu * elapsed
        figures.cpu_beyond = (total - in_bcrypt) / logins
        figures.cpu_all = (sum(after.values()) - sum(before.values()) - in_bcrypt) / logins
        figures.cpu_by_service = {name: (after[name] - before[name]) / logins for name in SERVICES}
        await identity.aclose()

        say("closed loops: " + ", ".join(f"{n} clients" for n in mode.clients))
        for clients in mode.clients:
            figures.closed[clients] = await closed_loop(bench, emails, clients, mode.closed_seconds) / mode.closed_seconds

        rate = figures.rate_07 = 0.7 * figures.capacity
        say(f"Poisson arrivals at 0.7*C = {rate:.1f}/s for {mode.open_seconds:.0f} s")
        latencies, _ = await open_loop(bench, emails, rate, mode.open_seconds)
        figures.p95_07 = quantile(latencies, 95)
        say(f"Poisson arrivals at 2*C = {2 * figures.capacity:.1f}/s for {mode.overload_seconds:.0f} s")
        latencies, figures.answers_2c = await open_loop(bench, emails, 2 * figures.capacity, mode.overload_seconds)
        figures.p95_2c = quantile(latencies, 95) if latencies else float("nan")
        figures.share_503_2c = figures.answers_2c[503] / sum(figures.answers_2c.values())

        say("a locked account, 16 connections")
        figures.locked_rate, figures.locked_answers = await locked_rate(bench, spare, mode.locked_seconds)
        say(f"lock lag over {mode.lag_accounts} accounts")
        figures.lag = [await lag_of(bench) for _ in range(mode.lag_accounts)]
        say(f"{mode.bursts} bursts of 32")
        for _ in range(mode.bursts):
            answers = await burst(bench)
            figures.burst_answers += answers
            figures.burst_extra.append(max(0, answers[401] - MAX_FAILURES))
        say(f"{mode.registrations} registrations to SMTP")
        await mail_latency(bench, 1)  # warm-up
        figures.mail = await mail_latency(bench, mode.registrations)
    finally:
        await bench.client.aclose()


# --- the table --------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def table(f: Figures, mode: Mode) -> list[str]:
    peak_clients, peak = max(f.closed.items(), key=lambda item: item[1])
    goal_p95 = 1.15 * f.ideal_p95_07 + 0.010
    locked = ", ".join(f"{n} answered {status}" for status, n in sorted(f.locked_answers.items()))
    answers_2c = ", ".join(f"{n} × {status}" for status, n in sorted(f.answers_2c.items()))
    burst_answers = ", ".join(f"{n} × {status}" for status, n in sorted(f.burst_answers.items()))
    by_service = ", ".join(f"{name} {ms(cpu)}" for name, cpu in f.cpu_by_service.items())
    rows = [
        ("service CPU per login beyond the hash (all four services, summed)", ms(f.cpu_beyond), "≤ 5 ms",
         f.cpu_beyond <= 0.005),
        (f"peak logins/s ÷ C (closed loop, {'/'.join(map(str, f.closed))} clients)",
         f"{peak / f.capacity:.2f} ({peak:.2f}/s at {peak_clients})", "≥ 0.90", peak / f.capacity >= 0.90),
        ("p95 at 0.7·C offered (Poisson)", ms(f.p95_07), f"≤ 1.15 × {ms(f.ideal_p95_07)} (ideal M/D/c) + 10 ms = {ms(goal_p95)}",
         f.p95_07 <= goal_p95),
        ("p95 at 2·C offered (answered 200) and share of 503", f"{ms(f.p95_2c)}, {f.share_503_2c:.0%} 503",
         "bounded; 503 at once beyond the queue", None),
        ("locked-account rejections, right password, 16 connections", f"{f.locked_rate:,.0f}/s ({locked})",
         "≥ 1,000/s, every one 423", f.locked_rate >= 1000 and set(f.locked_answers) == {423}),
        (f"lock enforcement lag (5th failure → 423), p99 of {len(f.lag)}", ms(quantile(f.lag, 99)), "≤ 50 ms",
         quantile(f.lag, 99) <= 0.050),
        (f"burst of 32 concurrent wrong logins: extra 401s (max of {len(f.burst_extra)})", str(max(f.burst_extra)),
         "≤ 1 (and only 401, 423, 429)", max(f.burst_extra) <= 1 and set(f.burst_answers) <= {401, 423, 429}),
        (f"registration → SMTP p95 (from the 202, {len(f.mail)} one after another)", ms(quantile(f.mail, 95)), "≤ 500 ms",
         quantile(f.mail, 95) <= 0.5),
    ]
    head = ["| figure | measured | goal | met |", "|---|---|---|---|"]
    lines = head + [f"| {a} | {b} | {c} | {'—' if ok is None else 'yes' if ok else '**no**'} |" for a, b, c, ok in rows]
    return lines + [
        "",
        f"T_hash {ms(f.t_hash)} (one verify, one core; {ms(f.hash_cpu)} of CPU), C = {f.capacity:.2f} verifies/s "
        f"on {os.cpu_count()} cores; BCRYPT_ROUNDS={ROUNDS}; {mode.name} mode. The better of two calibrations, "
        + " and ".join(f"{ms(t)} and {c:.2f}/s" for t, _, c in f.calibrations)
        + f" (before the run and after it); the Poisson rate offered as 0.7·C was {f.rate_07:.2f}/s.",
        "Closed loops: " + ", ".join(f"{n} clients {rate:.2f}/s" for n, rate in f.closed.items()) + ".",
        f"CPU per login beyond the hash with the services' idle CPU not subtracted: {ms(f.cpu_all)}; "
        f"the four services idle use {ms(f.idle_cpu)} of CPU per second. "
        f"Per service, all of it (hash included): {by_service}.",
        f"At 2·C: {answers_2c}. Burst answers: {burst_answers}. Lock lag p50 {ms(quantile(f.lag, 50))}, max {ms(max(f.lag))}.",
    ]


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + (" with local changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def write(lines: list[str], started_load: tuple[float, ...]) -> None:
    path = ROOT / "docs" / "performance.md"
    text = path.read_text() if path.exists() else f"# Performance\n\n{START}\n{END}\n"
    load = ", ".join(f"{x:.1f}" for x in started_load)
    block = [START, f"Last `make bench`: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
                    f"load average at its start {load}.", "", *lines, END]
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    path.write_text(before + "\n".join(block) + after)
    print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs, under 3 minutes: the CI smoke test")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--profile", type=Path, help="run py-spy on each service while the CPU per login is measured")
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    load = os.getloadavg()

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr)

    figures = Figures()
    say("measuring bcrypt")
    calibrate(figures, 2.0 if args.quick else 5.0)
    key = new_mail_token_key()
    env = {"ADMIN_TOKEN": ADMIN, "MAIL_TOKEN_KEY": key, "BCRYPT_ROUNDS": str(ROUNDS), "TRUSTED_PROXIES": "127.0.0.1",
           "MAIL_FROM": "portal@example.test", "MAILER_RETRY_BASE_SECONDS": "0.5"}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, local_system(Path(tmp), env=env) as system:
        profiler = Profiler(system, args.profile)
        asyncio.run(measure(system, key, mode, figures, say, profiler))
        profile = profiler.report()
    say("measuring bcrypt again")
    calibrate(figures, 2.0 if args.quick else 5.0)
    figures.ideal_p95_07 = ideal_p95(figures.rate_07, figures.t_hash, os.cpu_count() or 1)
    lines = table(figures, mode)
    print("\n".join(lines))
    print("\n".join(profile))
    if not args.no_write:
        write(lines, load)


if __name__ == "__main__":
    main()
