"""Every service says it is alive and whether its database and Kafka are reachable (cause 7)."""

from __future__ import annotations

import httpx
import pytest

from portal_auth.system import SERVICES, System

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", SERVICES)
async def test_service_is_live_and_ready_with_database_and_kafka_up(system: System, service: str) -> None:
    async with httpx.AsyncClient(base_url=system.url(service)) as client:
        live, ready = await client.get("/healthz"), await client.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "up", "kafka": "up"}
