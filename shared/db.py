"""Database engine per service schema, with timeouts that turn an outage into a fast 503."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class DatabaseUnavailable(Exception):
    """The database could not be reached in time; callers answer 503 service_unavailable."""


# One budget for taking a connection, per engine: waiting for the pool and making a new
# connection (and a pre-ping, were it on) all fit in it together. Each step has its own timeout
# too, but one after the other they add up (with pre-ping, a hung database cost the first
# request ping + connect, twice the budget).
_checkout_budget: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()


def make_engine(url: str, *, timeout: float = 2.0, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        # A ping before each checkout (BEGIN, ";", ROLLBACK) costs round trips, but without it a
        # connection to a hung database fails its first statement, and SQLAlchemy then closes it
        # "gracefully", shielded from cancellation, for up to 2 s more: over the contract's 2 s.
        # With it, that happens inside the checkout, which has its budget (below) and is
        # abandoned when the budget is spent (tests/identity/test_database_hang.py).
        pool_pre_ping=True,
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )
    _checkout_budget[engine] = timeout
    return engine


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    try:
        conn = await _checkout(engine)
        try:
            async with conn.begin():
                yield conn
        finally:
            await conn.close()
    except (OSError, TimeoutError, sa.exc.TimeoutError, sa.exc.InterfaceError, sa.exc.OperationalError) as exc:
        # sa.exc.TimeoutError: no pooled connection came free within the timeout; a 503 too
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(str(exc)) from exc
        raise


_abandoned: set[asyncio.Future[Any]] = set()


async def _checkout(engine: AsyncEngine) -> AsyncConnection:
    """A connection within the engine's budget, or TimeoutError once it is spent.

    The checkout runs as a task of its own that is abandoned (cancelled, then closed whenever it
    ends) when the budget runs out: cancelling it in place is not enough, because a connection
    whose pre-ping failed is closed "gracefully", shielded from cancellation, for up to 2 s more.
    """
    conn = engine.connect()
    starting = asyncio.ensure_future(conn.start())
    try:
        done, _ = await asyncio.wait({starting}, timeout=_checkout_budget.get(engine))
    except BaseException:
        _abandon(starting, conn)
        raise
    if not done:
        _abandon(starting, conn)
        raise TimeoutError("no database connection within the budget")
    return starting.result()


def _abandon(starting: asyncio.Task[AsyncConnection], conn: AsyncConnection) -> None:
    def close(task: asyncio.Task[AsyncConnection]) -> None:
        _abandoned.discard(task)
        if not task.cancelled() and task.exception() is None:
            closing = asyncio.ensure_future(conn.close())
            _abandoned.add(closing)
            closing.add_done_callback(_abandoned.discard)
    _abandoned.add(starting)
    starting.add_done_callback(close)
    starting.cancel()


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


def lock_key(name: str) -> sa.ColumnElement[int]:
    """The 64-bit advisory-lock key of ``name`` (PostgreSQL's own hash of it)."""
    return sa.func.hashtextextended(name, 0)


async def hold(conn: AsyncConnection, name: str) -> None:
    """Take the transaction-scoped advisory lock ``name``, waiting for whoever holds it: writers
    of one thing (an account, a recipient) go one transaction at a time, released at its end."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(name))))


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with transaction(engine) as conn:
            await conn.execute(sa.text("select 1"))
        return True
    except DatabaseUnavailable:
        return False
