"""What operators and auditors run: replay, diagnose, unlock, as commands against the system."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, Org, create_org, mail_to, portal

pytestmark = pytest.mark.e2e

PASSWORD = "operator test password"


def portal_auth(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADMIN_TOKEN": ADMIN_TOKEN, "KAFKA_BOOTSTRAP_SERVERS": system.infra.kafka_bootstrap,
           **{f"{name.upper()}_URL": system.url(name) for name in ("identity", "tenant", "lockout", "mailer")}}
    return subprocess.run([sys.executable, "-m", "portal_auth.cli", *args], env=env, capture_output=True, text=True, timeout=60)


async def locked_unconfirmed_account(system: System, org: Org, email: str) -> None:
    async with portal(system, org, source="198.51.100.7") as browser:
        assert (await browser.post("/auth/register", json={"email": email, "password": PASSWORD})).status_code == 202
        await mail_to(system, email)
        for _ in range(5):
            await browser.post("/auth/login", json={"email": email, "password": "not the password at all"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = await browser.post("/auth/login", json={"email": email, "password": PASSWORD})
            if answer.status_code == 423:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{email} was never locked")


async def test_replay_prints_one_accounts_events_as_json_lines_in_order(system: System) -> None:
    org, other = await create_org(system), await create_org(system)
    await locked_unconfirmed_account(system, org, "audit@example.com")
    async with portal(system, other) as browser:
        await browser.post("/auth/register", json={"email": "audit@example.com", "password": PASSWORD})

    result = await asyncio.to_thread(portal_auth, system, "replay", "--tenant", org.slug, "--email", "audit@example.com")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["tenant"] for e in lines} == {org.slug}
    types = [e["type"] for e in lines]
    assert types[0] == "UserRegistered" and types.count("LoginFailed") == 5 and "AccountLocked" in types
    assert [e["occurred_at"] for e in lines] == sorted(e["occurred_at"] for e in lines)


async def test_replay_into_a_reader_that_has_closed_is_not_a_kafka_failure(system: System) -> None:
    """`portal-auth replay | head`: the reader may stop before the last line."""
    org = await create_org(system)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": system.infra.kafka_bootstrap}
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line (TenantCreated) is written
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "portal_auth.cli", "replay", "--tenant", org.slug,
                                                   env=env, stdout=writer, stderr=asyncio.subprocess.PIPE)
    os.close(writer)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert b"error" not in stderr.lower() and b"Traceback" not in stderr


async def test_diagnose_names_each_cause_that_applies(system: System) -> None:
    org = await create_org(system)
    await locked_unconfirmed_account(system, org, "stuck@example.com")

    result = await asyncio.to_thread(portal_auth, system, "diagnose", org.slug, "stuck@example.com")

    assert result.returncode == 0, result.stderr
    causes = {line[:3] for line in result.stdout.splitlines()}
    assert {"[1]", "[2]", "[5]", "[8]"} <= causes, result.stdout
    assert "[3]" not in causes and "[7]" not in causes


async def test_diagnose_names_the_self_service_step_of_each_cause(system: System) -> None:
    first, second = await create_org(system), await create_org(system)
    email = f"selfhelp-{first.slug}@example.com"
    await locked_unconfirmed_account(system, first, email)
    async with portal(system, second) as browser:
        assert (await browser.post("/auth/register", json={"email": email, "password": PASSWORD})).status_code == 202

    result = await asyncio.to_thread(portal_auth, system, "diagnose", first.slug, email)
    assert result.returncode == 0, result.stderr
    lines = {line[:3]: line for line in result.stdout.splitlines()}
    assert "the person can send an unlock link" in lines["[5]"], result.stdout
    assert "Send Confirmation Email" in lines["[1]"]
    assert "find-portal lists 2 organizations for this address" in lines["[8]"]

    lost = await asyncio.to_thread(portal_auth, system, "diagnose", "no-such-org", email)
    assert "[3] Organization not found" in lost.stdout and "find-portal lists 2 organizations" in lost.stdout


async def test_diagnose_says_when_the_organization_does_not_exist(system: System) -> None:
    result = await asyncio.to_thread(portal_auth, system, "diagnose", "no-such-org", "anyone@example.com")
    assert result.returncode == 0, result.stderr
    assert "[3] Organization not found" in result.stdout


async def test_unlock_lifts_the_lock_at_once(system: System) -> None:
    org = await create_org(system)
    await locked_unconfirmed_account(system, org, "freed@example.com")

    result = await asyncio.to_thread(portal_auth, system, "unlock", org.slug, "freed@example.com")
    assert result.returncode == 0, result.stderr

    async with portal(system, org, source="198.51.100.7") as browser:
        deadline, answer = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            answer = await browser.post("/auth/login", json={"email": "freed@example.com", "password": PASSWORD})
            if answer.status_code != 423:
                break
            await asyncio.sleep(0.1)
    assert answer is not None and answer.json()["code"] == "user_not_confirmed"  # the password is checked again


async def test_unlock_of_an_unknown_organization_fails_with_a_clear_line(system: System) -> None:
    result = await asyncio.to_thread(portal_auth, system, "unlock", "no-such-org", "x@example.com")
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and "404" in result.stderr
