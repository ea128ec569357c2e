"""Database engine per service schema, with timeouts that turn an outage into a fast 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class DatabaseUnavailable(Exception):
    """The database could not be reached in time; callers answer 503 service_unavailable."""


def make_engine(url: str, *, timeout: float = 2.0, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        # No ping before each checkout: with asyncpg it is three round trips (BEGIN, ";",
        # ROLLBACK) on every transaction. A connection that died with the database fails its
        # first statement instead; that request is a 503 (below), and SQLAlchemy then discards
        # every pooled connection made before it, so the next requests connect afresh.
        pool_pre_ping=False,
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    try:
        async with engine.begin() as conn:
            yield conn
    except (OSError, TimeoutError, sa.exc.TimeoutError, sa.exc.InterfaceError, sa.exc.OperationalError) as exc:
        # sa.exc.TimeoutError: no pooled connection came free within the timeout; a 503 too
        raise DatabaseUnavailable(str(exc)) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(str(exc)) from exc
        raise


R = TypeVar("R")


@overload
def record(kind: type[R], row: sa.Row[Any]) -> R: ...
@overload
def record(kind: type[R], row: sa.Row[Any] | None) -> R | None: ...
def record(kind: type[R], row: sa.Row[Any] | None) -> R | None:
    """A result row as a repository's typed record: a dataclass naming the columns it reads."""
    if row is None:
        return None
    fields = row._mapping
    return kind(**{name: fields[name] for name in getattr(kind, "__dataclass_fields__")})  # noqa: B009


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with transaction(engine) as conn:
            await conn.execute(sa.text("select 1"))
        return True
    except DatabaseUnavailable:
        return False
