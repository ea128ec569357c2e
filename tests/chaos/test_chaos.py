"""`make chaos` (and `make chaos-short` in CI): faults injected under steady traffic, then
nothing lost, nothing doubled, every email sent once, every due lock in place."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portal_auth.devstack import KafkaHandle
from portal_auth.system import SERVICES, Infrastructure, System
from tests.chaos.harness import (
    FULL, RESTART_TIMEOUT, SHORT, Faults, MailIndex, Org, Workload, audit, compare_lockout_with_log, partitions_possible, wait_for_quiet,
)
from tests.conftest import ADMIN_TOKEN, service_env, wait_until_resolves

pytestmark = pytest.mark.chaos

SCALE = FULL if os.environ.get("CHAOS_SCALE", "short") == "full" else SHORT


@pytest.fixture(scope="module")
def failpoints(workdir: Path) -> Path:
    directory = workdir / "failpoints"
    directory.mkdir()
    return directory


@pytest.fixture(scope="module")
def chaos_system(infra: Infrastructure, workdir: Path, failpoints: Path) -> Iterator[System]:
    """The four services with their crash points armable from ``failpoints``."""
    env = {**service_env(infra), "PORTAL_AUTH_FAILPOINTS": str(failpoints), "LOG_LEVEL": "WARNING"}
    running = System(infra=infra, workdir=workdir, env=env)
    try:
        for service in SERVICES:
            running.start(service, timeout=RESTART_TIMEOUT)
        yield running
    finally:
        running.stop_all()


async def organizations(system: System, count: int) -> list[Org]:
    orgs = []
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        for n in range(count):
            slug = f"chaos-{n}-{uuid.uuid4().hex[:6]}"
            answer = await admin.post("/admin/tenants", json={"slug": slug, "name": f"Chaos {n}", "domains": [f"{slug}.localhost"]})
            assert answer.status_code == 201, answer.text
            orgs.append(Org(slug, f"{slug}.localhost"))
    for org in orgs:
        await wait_until_resolves(system, org.host, timeout=60)
    return orgs


async def test_faults_lose_nothing_and_double_nothing(chaos_system: System, failpoints: Path) -> None:
    system = chaos_system
    assert isinstance(system.infra.kafka, KafkaHandle), "the run needs the local Apache Kafka it can stop (no KAFKA_BOOTSTRAP_SERVERS)"
    why_not = partitions_possible()
    assert why_not is None, f"network partitions: {why_not}"
    assert system.infra.mail is not None
    mail = MailIndex(system.infra.mail.mail_dir)
    reading = asyncio.create_task(mail.run())
    workload = Workload(system, await organizations(system, SCALE.organizations), mail, workers=SCALE.workers)
    traffic = asyncio.create_task(workload.run())
    faults = Faults(system, failpoints, workload.ledger)
    try:
        await asyncio.sleep(5)  # traffic first
        # one at a time
        for service in SERVICES:
            await faults.kill9(service)
        await faults.crash_at("identity", "relay-after-publish")
        await faults.crash_at("mailer", "relay-after-publish")
        await faults.crash_at("lockout", "consumer-after-commit")
        await faults.crash_at("mailer", "consumer-after-commit")
        await faults.broker_down(SCALE.broker_outage)
        await faults.database_down(SCALE.database_outage)
        await faults.partition("identity", SCALE.partition)
        await faults.partition("mailer", SCALE.partition)
        # overlapping
        await faults.together(faults.broker_down(SCALE.broker_outage), faults.kill9("lockout"))
        await faults.together(faults.database_down(SCALE.database_outage), faults.partition("lockout", SCALE.partition))
        await faults.together(faults.crash_at("identity", "relay-after-publish"), faults.kill9("mailer"),
                              faults.partition("tenant", SCALE.partition))
        if SCALE.overload:
            await faults.broker_down(60)
            await faults.service_down("mailer", 60)
        await asyncio.sleep(SCALE.traffic_after_faults)
    finally:
        workload.stop.set()
        await asyncio.wait_for(traffic, 300)
    settled = await wait_for_quiet(system)
    result = await audit(system, workload.ledger, mail)
    equal, rebuild_line = await compare_lockout_with_log(system)
    reading.cancel()

    print(f"traffic: {workload.lifecycles} account lifecycles; answers {dict(sorted(workload.ledger.answers.items()))}")
    print(f"quiet {settled:.1f} s after the traffic stopped; {result.copies} records sent again (same event id), "
          f"{result.dead_letters} dead letters, {result.mails} emails, {len(workload.ledger.locks_due())} locks due")
    print(rebuild_line)
    for line in result.lost[:20] + result.doubled[:20] + result.missing_locks[:20]:
        print("  " + line)
    print(result.closing_line(len(faults.records)))

    assert not result.lost and not result.doubled and not result.missing_locks and equal
    server_errors = {answer: n for answer, n in workload.ledger.answers.items()
                     if answer.rsplit(" ", 1)[1].isdigit() and int(answer.rsplit(" ", 1)[1]) >= 500 and not answer.endswith(" 503")}
    assert not server_errors, f"answers other than 503 for a dependency that was away: {server_errors}"
    assert result.events >= SCALE.min_events, f"only {result.events} events, the {SCALE.name} run wants {SCALE.min_events}"
    assert workload.ledger.locks_due(), "no guesser reached the lockout threshold"
    broker_outages = [r for r in faults.records if r.name.startswith("Kafka broker stopped")]
    assert all(not r.note.startswith("0 logins") for r in broker_outages), "logins stopped while the broker was away"
