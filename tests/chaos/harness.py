"""The fault-injection run: a steady stream of portal traffic over many organizations and
accounts while faults are injected, then, once the system is quiet, the books are balanced from
Kafka, the databases and the SMTP catcher.

* ``Workload`` plays people: register, confirm from the mailed link, log in right and wrong,
  ask for a reset; some accounts are guessed at until lockout must lock them. It writes down
  what each answer promised (``Ledger``).
* ``Faults`` injects one fault at a time, then several at once: kill -9 of each service, of an
  outbox relay between sending a batch and marking it sent, of a consumer between committing an
  event's effect and committing its offset (``shared.failpoints``); the broker stopped;
  PostgreSQL stopped; a service cut off from Kafka (a cgroup of its own and an iptables rule on
  loopback: nothing outside this machine is touched).
* ``audit`` reads every topic, every service's outbox and applied events, the lockout state
  rebuilt from the log, and the caught mail, and counts what was lost and what was doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from portal_auth.devstack import KafkaHandle
from portal_auth.devstack._mailfiles import message_paths, read_message
from portal_auth.system import System
from shared.eventlog import partitions_of
from shared.events import TOPICS, Envelope
from tests.conftest import ADMIN_TOKEN, records_on, text_of

SERVICES = ("identity", "lockout", "tenant", "mailer")
MAX_FAILURES = 5  # the organizations' default lockout.max_failures
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")
RETURNING = 2  # workers signing in again to confirmed accounts, beside the lifecycles
RESTART_TIMEOUT = 240.0  # seconds until a restarted service must be ready: a minute is not enough on a busy machine


@dataclass(frozen=True)
class Scale:
    name: str
    organizations: int
    workers: int
    broker_outage: float
    database_outage: float
    partition: float
    overload: bool  # broker down 60 s and mailer down 60 s, with their checks
    min_events: int
    traffic_after_faults: float  # seconds of plain traffic once the faults are done


SHORT = Scale("short", organizations=3, workers=8, broker_outage=10, database_outage=10, partition=10,
              overload=False, min_events=500, traffic_after_faults=5)
FULL = Scale("full", organizations=8, workers=16, broker_outage=30, database_outage=10, partition=20,
             overload=True, min_events=5000, traffic_after_faults=60)


# --- what the answers promised ------------------------------------------------------------------


@dataclass
class Ledger:
    registered: set[tuple[str, str]] = field(default_factory=set)  # 202 to a registration
    confirmed: set[tuple[str, str]] = field(default_factory=set)
    logins: Counter[tuple[str, str]] = field(default_factory=Counter)  # 200
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # 401, by source
    resets: set[tuple[str, str]] = field(default_factory=set)  # 202 to forgot, for a confirmed account
    answers: Counter[str] = field(default_factory=Counter)
    logins_during: dict[str, int] = field(default_factory=dict)  # logins answered 200 while a fault lasted

    def locks_due(self) -> set[tuple[str, str, str]]:
        return {key for key, count in self.failures.items() if count >= MAX_FAILURES}


class MailIndex:
    """The caught messages by envelope recipient, read incrementally from the catcher's directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_recipient: dict[str, list[EmailMessage]] = defaultdict(list)
        self._seen: set[str] = set()

    def refresh(self) -> None:
        for path in message_paths(self.directory):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            message = read_message(path)
            for recipient in message.get("X-Envelope-To", "").split(","):
                self.by_recipient[recipient.strip()].append(message)

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(0.3)

    async def token(self, address: str, path: str, *, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.by_recipient.get(address, []):
                link = _link(message, path)
                if link:
                    return link
            await asyncio.sleep(0.3)
        return None


def _link(message: EmailMessage, path: str) -> str | None:
    for word in text_of(message).split():
        if f"{path}?token=" in word:
            return parse_qs(urlsplit(word.strip("<>\"'")).query)["token"][0]
    return None


# --- the traffic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    slug: str
    host: str


class Workload:
    def __init__(self, system: System, orgs: list[Org], mail: MailIndex, *, workers: int) -> None:
        self.system, self.orgs, self.mail, self.workers = system, orgs, mail, workers
        self.ledger = Ledger()
        self.stop = asyncio.Event()
        self.lifecycles = 0
        # confirmed accounts whose owners come back to sign in: most of a portal's traffic, and
        # the logins that must go on while Kafka (and with it every mail) is away
        self.returning: list[tuple[Org, str, str]] = []
        self._client = httpx.AsyncClient(base_url=system.url("identity"), timeout=10.0,
                                         limits=httpx.Limits(max_connections=workers * 2))
        self._admin = httpx.AsyncClient(base_url=system.url("tenant"), timeout=10.0,
                                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._worker(n) for n in range(self.workers)),
                                 *(self._returning(n) for n in range(RETURNING)), self._operator())
        finally:
            await self._client.aclose()
            await self._admin.aclose()

    async def _worker(self, n: int) -> None:
        rng = random.Random(n)
        while not self.stop.is_set():
            await self._lifecycle(rng, lock_target=rng.random() < 0.1)
            self.lifecycles += 1

    async def _returning(self, n: int) -> None:
        """Someone signing in again to an account confirmed earlier: needs no mail, so it goes on
        whatever happens to Kafka and the mailer."""
        rng = random.Random(-2 - n)
        while not self.stop.is_set():
            if not self.returning:
                await asyncio.sleep(0.5)
                continue
            org, email, password = rng.choice(self.returning)
            # from wherever they are today: a new address each time, so no per-source limit is met
            if await self._post(org, _address(rng), "/auth/login", {"email": email, "password": password}) == 200:
                self.ledger.logins[(org.slug, email)] += 1
            await asyncio.sleep(0.2)

    async def _operator(self) -> None:
        """An administrator who keeps changing organizations' display names: tenant events."""
        rng = random.Random(-1)
        while not self.stop.is_set():
            org = rng.choice(self.orgs)
            with contextlib.suppress(httpx.HTTPError):
                answer = await self._admin.patch(f"/admin/tenants/{org.slug}",
                                                 json={"settings": {"display_name": f"Org {rng.randrange(10**6)}"}})
                self.ledger.answers[f"admin {answer.status_code}"] += 1
            await asyncio.sleep(5.0)

    async def _lifecycle(self, rng: random.Random, *, lock_target: bool) -> None:
        org = rng.choice(self.orgs)
        email = f"c-{uuid.uuid4().hex[:12]}@example.com"
        password = f"chaos passphrase {uuid.uuid4().hex[:8]}"
        source = _address(rng)
        key = (org.slug, email)
        if await self._post(org, source, "/auth/register", {"email": email, "password": password}) != 202:
            return
        self.ledger.registered.add(key)
        token = await self.mail.token(email, "/confirm", timeout=120)
        if token is None or (self.stop.is_set() and rng.random() < 0.5):
            return
        if await self._post(org, source, "/auth/confirm", {"token": token, "password": password}) != 200:
            return
        self.ledger.confirmed.add(key)
        if not lock_target:
            self.returning.append((org, email, password))
        for _ in range(2):
            if await self._post(org, source, "/auth/login", {"email": email, "password": password}) == 200:
                self.ledger.logins[key] += 1
        for _ in range(2):
            if await self._post(org, source, "/auth/login", {"email": email, "password": "wrong " + password}) == 401:
                self.ledger.failures[(*key, source)] += 1
        if lock_target:  # a guesser from one address, until lockout must lock it out
            guesser = _address(rng)
            for _ in range(MAX_FAILURES + 1):
                if await self._post(org, guesser, "/auth/login", {"email": email, "password": "guess " + password}) == 401:
                    self.ledger.failures[(*key, guesser)] += 1
        if await self._post(org, source, "/auth/password/forgot", {"email": email}) == 202:
            self.ledger.resets.add(key)

    async def _post(self, org: Org, source: str, path: str, body: dict[str, Any]) -> int | None:
        """The answer's status; a server error or no answer is retried (for up to 2 minutes), as a
        person would, so that a fault delays the stream rather than ending it."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                answer = await self._client.post(path, json=body, headers={"Host": org.host, "X-Forwarded-For": source})
            except httpx.HTTPError as exc:
                self.ledger.answers[f"{path} {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.ledger.answers[f"{path} {answer.status_code}"] += 1
            if answer.status_code < 500:
                if path == "/auth/login" and answer.status_code == 200:
                    for fault in self.ledger.logins_during:
                        self.ledger.logins_during[fault] += 1
                return answer.status_code
            await asyncio.sleep(0.5)
        return None


def _address(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# --- the faults ----------------------------------------------------------------------------------


@dataclass
class FaultRecord:
    name: str
    seconds: float
    note: str = ""

    def line(self) -> str:
        return f"fault {self.name}: {self.seconds:.1f} s{', ' + self.note if self.note else ''}"


class Faults:
    def __init__(self, system: System, failpoints: Path, ledger: Ledger) -> None:
        self.system, self.failpoints, self.ledger = system, failpoints, ledger
        self.records: list[FaultRecord] = []

    async def _timed(self, name: str, action: Callable[[], Awaitable[str | None]]) -> None:
        started = time.monotonic()
        note = await action()
        record = FaultRecord(name, time.monotonic() - started, note or "")
        self.records.append(record)
        print(record.line(), flush=True)

    # each fault, on its own

    async def kill9(self, service: str) -> None:
        async def action() -> str:
            process = self.system.processes[service].process
            assert process.pid is not None
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            started = time.monotonic()
            await asyncio.to_thread(self.system.restart, service, timeout=RESTART_TIMEOUT)
            return f"restarted, ready after {time.monotonic() - started:.1f} s"
        await self._timed(f"kill -9 {service}", action)

    async def crash_at(self, service: str, point: str, *, timeout: float = 90.0) -> None:
        """Arm a crash point of ``service`` and wait for the process to take it, then restart it."""
        async def action() -> str:
            process = self.system.processes[service].process
            armed = self.failpoints / f"{service}.{point}"
            armed.touch()
            deadline = time.monotonic() + timeout
            while process.is_running() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if process.is_running():
                armed.unlink(missing_ok=True)
                raise AssertionError(f"{service} never reached {point} within {timeout:.0f} s")
            await asyncio.to_thread(self.system.restart, service, timeout=RESTART_TIMEOUT)
            return f"crashed there (SIGKILL, exit {process.returncode()}), restarted"
        await self._timed(f"kill -9 {service} at {point}", action)

    async def broker_down(self, seconds: float) -> None:
        kafka = self.system.infra.kafka
        assert isinstance(kafka, KafkaHandle), "the run stops and restarts the local Apache Kafka"

        async def action() -> str:
            name = f"broker down {seconds:.0f} s"
            self.ledger.logins_during[name] = 0
            await asyncio.to_thread(kafka.pause)
            await asyncio.sleep(seconds)
            logins = self.ledger.logins_during.pop(name)
            await asyncio.to_thread(kafka.resume)
            return f"{logins} logins answered 200 meanwhile"
        await self._timed(f"Kafka broker stopped {seconds:.0f} s", action)

    async def database_down(self, seconds: float) -> None:
        postgres = self.system.infra.postgres
        assert postgres is not None, "the run stops and restarts the local PostgreSQL"

        async def action() -> None:
            await asyncio.to_thread(postgres.pause)
            await asyncio.sleep(seconds)
            await asyncio.to_thread(postgres.resume)
        await self._timed(f"PostgreSQL stopped {seconds:.0f} s", action)

    async def service_down(self, service: str, seconds: float) -> None:
        async def action() -> None:
            process = self.system.processes[service].process
            await asyncio.to_thread(process.stop)
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.system.restart, service, timeout=RESTART_TIMEOUT)
        await self._timed(f"{service} down {seconds:.0f} s", action)

    async def partition(self, service: str, seconds: float) -> None:
        """Drop every packet ``service`` sends to the broker: its process alone goes into a cgroup
        that one iptables rule on loopback matches."""
        kafka = self.system.infra.kafka
        assert kafka is not None

        async def action() -> str:
            process = self.system.processes[service].process
            assert process.pid is not None
            with cut_off(process.pid, kafka.port):
                await asyncio.sleep(seconds)
            return f"pid {process.pid} cut off from 127.0.0.1:{kafka.port}"
        await self._timed(f"partition {service} | Kafka {seconds:.0f} s", action)

    async def together(self, *faults: Awaitable[None]) -> None:
        await asyncio.gather(*faults)


@contextlib.contextmanager
def cut_off(pid: int, port: int):  # type: ignore[no-untyped-def]
    group = f"portal-auth-chaos-{uuid.uuid4().hex[:8]}"
    directory = CGROUP_ROOT / group
    directory.mkdir()
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port), "-m", "cgroup", "--path", group, "-j", "DROP"]
    try:
        (directory / "cgroup.procs").write_text(str(pid))
        subprocess.run(["iptables", "-I", *rule], check=True)
        try:
            yield
        finally:
            subprocess.run(["iptables", "-D", *rule], check=True)
    finally:
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            directory.rmdir()


def partitions_possible() -> str | None:
    """Why a partition cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (iptables, cgroups)"
    if not (CGROUP_ROOT / "cgroup.procs").is_file():
        return f"needs cgroup v2 at {CGROUP_ROOT}"
    if shutil.which("iptables") is None:
        return "iptables is not installed (scripts/system-packages test installs it)"
    if subprocess.run(["iptables", "-L", "OUTPUT", "-n"], capture_output=True).returncode != 0:
        return "iptables does not work here"
    return None


# --- quiet, then the books ------------------------------------------------------------------------


async def wait_for_quiet(system: System, *, timeout: float = 300.0) -> float:
    """Wait until every outbox is sent, every consumer group is at the end of its topics and the
    mailer's queue is empty, twice in a row; returns the seconds it took."""
    started = time.monotonic()
    calm = 0
    while calm < 2:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the system did not settle within {timeout:.0f} s: {await _busy(system)}")
        calm = calm + 1 if not await _busy(system) else 0
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def _busy(system: System) -> list[str]:
    busy: list[str] = []
    conn = await asyncpg.connect(system.infra.database_url.replace("+asyncpg", ""))
    try:
        for service in SERVICES:
            unsent = await conn.fetchval(f"select count(*) from {service}.outbox where sent_at is null")
            if unsent:
                busy.append(f"{service} outbox {unsent}")
        queued = await conn.fetchval("select count(*) from mailer.emails where status in ('queued', 'sending')")
        if queued:
            busy.append(f"mailer queue {queued}")
    finally:
        await conn.close()
    busy.extend(await _lag(system.infra.kafka_bootstrap))
    return busy


async def _lag(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, list(TOPICS))
        ends = await consumer.end_offsets(partitions)
        lag = []
        for group in ("identity", "lockout", "mailer"):
            committed = await admin.list_consumer_group_offsets(group)
            topics = {tp.topic for tp in committed}
            behind = sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                         for tp in partitions if tp.topic in topics)
            if behind:
                lag.append(f"{group} {behind} behind")
        return lag
    finally:
        await consumer.stop()
        await admin.close()


# The events each consumer applies and records in its applied_events: a missing one is lost on
# the way in. Lockout's LoginSucceeded is applied without a record (replay_safe); a missed one
# would leave failures that the state rebuilt from the log has not (compare_lockout_with_log).
APPLIES = {
    "lockout": {"LoginFailed"},
    "mailer": {"UserRegistered", "ResetRequested", "RegistrationRepeated"},
    "identity": {"AccountLocked"},
}


@dataclass
class Audit:
    events: int = 0
    copies: int = 0  # a record whose event_id was already on the topic: sent again, harmless
    dead_letters: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    missing_locks: list[str] = field(default_factory=list)
    mails: int = 0
    duplicate_mails: int = 0
    lockout_rebuild: str = ""

    def closing_line(self, faults: int) -> str:
        return (f"faults {faults}, events {self.events}, lost {len(self.lost)}, doubled {len(self.doubled)}, "
                f"duplicate mails {self.duplicate_mails}")


async def audit(system: System, ledger: Ledger, mail: MailIndex) -> Audit:
    result = Audit()
    records = await records_on(system.infra.kafka_bootstrap)
    envelopes: dict[uuid.UUID, Envelope] = {}
    for record in records:
        if record.topic.endswith(".dlq"):
            result.dead_letters += 1
            continue
        envelope = Envelope.from_bytes(record.value)
        if envelope.event_id in envelopes:
            result.copies += 1
        envelopes[envelope.event_id] = envelope
    result.events = len(envelopes)
    by_type: dict[str, list[Envelope]] = defaultdict(list)
    for envelope in envelopes.values():
        by_type[envelope.type].append(envelope)

    def account(envelope: Envelope) -> tuple[str, str]:
        return envelope.tenant, envelope.data["email"]

    conn = await asyncpg.connect(system.infra.database_url.replace("+asyncpg", ""))
    try:
        # Lost on the way out: a committed outbox row whose event is not on its topic.
        for service in SERVICES:
            for row in await conn.fetch(f"select event_id, payload->>'type' as type, sent_at from {service}.outbox"):
                if row["event_id"] not in envelopes:
                    result.lost.append(f"{service} committed {row['type']} {row['event_id']} (sent_at {row['sent_at']}), not on Kafka")
        # Lost on the way in: an event its consumer never applied.
        for service, types in APPLIES.items():
            applied = {r["event_id"] for r in await conn.fetch(f"select event_id from {service}.applied_events")}
            for kind in types:
                for envelope in by_type[kind]:
                    if envelope.tenant in _orgs(ledger) and envelope.event_id not in applied:
                        result.lost.append(f"{service} never applied {kind} {envelope.event_id}")
        # Doubled: one decision or one email announced twice (with two event ids).
        for kind, fields in (("AccountLocked", ("source", "locked_until")), ("EmailSent", ("dedup_key",))):
            seen = Counter((e.tenant, e.data.get("email"), *(e.data.get(f) for f in fields)) for e in by_type[kind])
            result.doubled.extend(f"{kind} {key} {n} times" for key, n in seen.items() if n > 1)
        mail_rows = await conn.fetch("select dedup_key, count(*) from mailer.emails group by dedup_key having count(*) > 1")
        result.doubled.extend(f"mailer queued {r['dedup_key']} {r['count']} times" for r in mail_rows)
    finally:
        await conn.close()

    # What the answers promised is in the log.
    registered = Counter(account(e) for kind in ("UserRegistered", "RegistrationRepeated") for e in by_type[kind])
    confirmed = {account(e) for e in by_type["EmailConfirmed"]}
    logins = Counter(account(e) for e in by_type["LoginSucceeded"])
    failures = Counter((*account(e), e.data["source"]) for e in by_type["LoginFailed"])
    resets = {account(e) for e in by_type["ResetRequested"]}
    result.lost.extend(f"registration of {k} answered 202, no event" for k in ledger.registered if not registered[k])
    result.lost.extend(f"confirmation of {k} answered 200, no event" for k in ledger.confirmed if k not in confirmed)
    result.lost.extend(f"{n} logins of {k} answered 200, {logins[k]} events" for k, n in ledger.logins.items() if logins[k] < n)
    result.lost.extend(f"{n} failures of {k} answered 401, {failures[k]} events" for k, n in ledger.failures.items() if failures[k] < n)
    result.lost.extend(f"reset of {k} answered 202, no event" for k in ledger.resets if k not in resets)

    # Every lock that should exist exists.
    locked = {(*account(e), e.data["source"]) for e in by_type["AccountLocked"]}
    result.missing_locks = [f"{k}: {ledger.failures[k]} failures, no AccountLocked" for k in sorted(ledger.locks_due() - locked)]

    # Every registration and reset got exactly one email; a copy with the same Message-ID is counted.
    await asyncio.to_thread(mail.refresh)
    wanted: Counter[str] = Counter()
    for kind in ("UserRegistered", "RegistrationRepeated", "ResetRequested"):
        for envelope in by_type[kind]:
            if envelope.tenant in _orgs(ledger):
                wanted[envelope.data["email"]] += 1
    for address, expected in wanted.items():
        messages = mail.by_recipient.get(address, [])
        ids = Counter(m["Message-ID"] for m in messages)
        result.mails += len(ids)
        result.duplicate_mails += sum(n - 1 for n in ids.values())
        if len(ids) < expected:
            result.lost.append(f"{address}: {expected} emails due, {len(ids)} arrived")
        elif len(ids) > expected:
            result.doubled.append(f"{address}: {expected} emails due, {len(ids)} different ones arrived")
    return result


def _orgs(ledger: Ledger) -> set[str]:
    return {slug for slug, _ in ledger.registered}


async def compare_lockout_with_log(system: System) -> tuple[bool, str]:
    """Lockout's live state against the one rebuilt from the log: an event applied twice (a
    failure counted twice) or not at all would show as a difference."""
    from services.lockout.rebuild import rebuild

    summary = await rebuild(system.infra.database_url, system.infra.kafka_bootstrap, settle_seconds=60)
    if summary.equal:
        return True, f"lockout rebuilt from {summary.events_read} events: equal to the live state ({summary.rows})"
    return False, "lockout rebuilt from the log differs: " + "; ".join(summary.differences)

