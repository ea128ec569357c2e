"""The audit export: one organization's events over a time range, as JSON lines and as CSV, with
who did each admin change, and never an encrypted token."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime

import httpx
import pytest

from portal_auth.replay import CSV_COLUMNS
from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN, create_org, mail_to, portal
from tests.e2e.test_rebuild_copies import _run as portal_auth  # the whole log may take minutes on a busy machine

pytestmark = pytest.mark.e2e


async def test_one_organizations_time_range_as_csv_and_json_lines_without_tokens(system: System) -> None:
    org, other = await create_org(system), await create_org(system)
    started = datetime.now(UTC)
    async with portal(system, org) as browser:
        assert (await browser.post("/auth/register", json={"email": "audited@example.com", "password": "audit export pass"})).status_code == 202
    async with portal(system, other) as browser:
        assert (await browser.post("/auth/register", json={"email": "elsewhere@example.com", "password": "audit export pass"})).status_code == 202
    await mail_to(system, "audited@example.com")
    await mail_to(system, "elsewhere@example.com")
    middle = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        assert (await admin.patch(f"/admin/tenants/{org.slug}", json={"name": "Renamed For Audit"})).status_code == 200
    window = ("--tenant", org.slug, "--since", started.isoformat())

    everything = await _until_type(system, "TenantUpdated", *window, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(everything)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert {row["tenant"] for row in rows} == {org.slug}
    assert {"UserRegistered", "EmailSent", "TenantUpdated"} <= {row["type"] for row in rows}
    [registered] = [row for row in rows if row["type"] == "UserRegistered"]
    assert registered["email"] == "audited@example.com"
    assert "host" in json.loads(registered["data"])
    [renamed] = [row for row in rows if row["type"] == "TenantUpdated"]
    assert "Renamed For Audit" in renamed["data"]
    assert json.loads(renamed["actor"])["address"]  # who made the admin change
    assert "token_encrypted" not in everything and "_encrypted" not in everything

    before_change = portal_auth(system, "replay", *window, "--until", middle.isoformat())
    assert before_change.returncode == 0, before_change.stderr
    lines = [json.loads(line) for line in before_change.stdout.splitlines()]
    assert {e["type"] for e in lines} >= {"UserRegistered"} and "TenantUpdated" not in {e["type"] for e in lines}
    assert all(not name.endswith("_encrypted") for e in lines for name in e["data"])
    assert all(started <= datetime.fromisoformat(e["occurred_at"]) < middle for e in lines)


async def _until_type(system: System, event_type: str, *args: str, attempts: int = 50) -> str:
    """The export once it holds an event of ``event_type`` (the relay sends within moments)."""
    for _ in range(attempts):
        result = await asyncio.to_thread(portal_auth, system, "replay", *args)
        assert result.returncode == 0, result.stderr
        if f",{event_type}," in result.stdout:
            return result.stdout
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event_type} in the export:\n{result.stdout}")
