"""`portal-auth replay --rebuild identity|mailer`: the copies each keeps of organizations and
locks, rebuilt from the log, equal to the live ones; a lost row is reported and put back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import asyncpg
import httpx
import pytest

from portal_auth.rebuild import rebuild_copies
from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, create_org
from tests.e2e.test_operator_commands import locked_unconfirmed_account

pytestmark = pytest.mark.e2e


async def _sql(system: System, statement: str) -> None:
    conn = await asyncpg.connect(system.infra.database_url.replace("+asyncpg", ""))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize("service", ["identity", "mailer"])
async def test_the_copies_rebuilt_from_the_log_equal_the_live_ones(system: System, service: str) -> None:
    org = await create_org(system, name="Copied Ltd")
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        assert (await admin.put(f"/admin/tenants/{org.slug}/domains/second-{org.host}")).status_code in (200, 201, 204)
    await locked_unconfirmed_account(system, org, f"copied-{service}@example.com")

    summary = await rebuild_copies(service, system.infra.database_url, system.infra.kafka_bootstrap, settle_seconds=120)

    # (rows of other tests' organizations may still be on their way to the live consumer)
    assert not [line for line in summary.differences if org.slug in line], summary.differences
    assert all(count > 0 for count in summary.rows.values()), summary.rows


async def test_a_lost_copy_is_reported_then_replaced_from_the_log(system: System) -> None:
    org = await create_org(system, name="Forgetful Ltd")
    await _sql(system, f"delete from identity.domains where host = '{org.host}'")

    compared = await asyncio.to_thread(_run, system, "replay", "--rebuild", "identity")
    assert compared.returncode == 1, compared.stderr
    report = json.loads(compared.stdout)
    assert not report["equal"] and any(org.host in line and "rebuilt only" in line for line in report["differences"])

    replaced = await rebuild_copies("identity", system.infra.database_url, system.infra.kafka_bootstrap, replace=True,
                                    settle_seconds=120)
    assert replaced.replaced
    async with httpx.AsyncClient(base_url=system.url("identity"), headers={"Host": org.host}) as portal:
        assert (await portal.get("/auth/session")).status_code != 404  # identity knows the host again
    again = await rebuild_copies("identity", system.infra.database_url, system.infra.kafka_bootstrap, settle_seconds=120)
    assert not [line for line in again.differences if org.slug in line], again.differences


def _run(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": system.infra.database_url, "KAFKA_BOOTSTRAP_SERVERS": system.infra.kafka_bootstrap}
    return subprocess.run([sys.executable, "-m", "portal_auth.cli", *args], env=env, capture_output=True, text=True, timeout=600)
