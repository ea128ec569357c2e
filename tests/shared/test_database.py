"""A database that refuses new sessions because it is shutting down is a dependency that is down
(503 service_unavailable at the edge), not a server error: the fault run once got a 500 from a
login whose connection was refused with "the database system is shutting down"."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from portal_auth.devstack import free_port, start_postgres
from shared.db import DatabaseUnavailable, make_engine, transaction


async def test_a_database_shutting_down_is_unavailable_not_an_error(tmp_path: Path) -> None:
    database = start_postgres(tmp_path / "postgres", port=free_port())
    engine = make_engine(database.url)
    try:
        session = await asyncpg.connect(database.dsn)  # keeps a smart shutdown waiting, refusing new sessions
        postmaster = int((database.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGTERM)  # PostgreSQL's smart shutdown
        refused = None
        for _ in range(100):
            try:
                async with transaction(engine) as conn:
                    await conn.execute(sa.text("select 1"))
                await engine.dispose()  # the next try connects afresh
            except DatabaseUnavailable as exc:  # anything else fails the test
                refused = exc
                break
            await asyncio.sleep(0.05)
        assert refused is not None and "shutting down" in str(refused)
        await session.close()
    finally:
        await engine.dispose()
        database.stop()
