"""Database engine per service schema, with timeouts that turn an outage into a fast 503."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class DatabaseUnavailable(Exception):
    """The database could not be reached in time; callers answer 503 service_unavailable."""


# One budget for taking a connection, per engine: waiting for the pool and making a new
# connection all fit in it together. Each step has its own timeout
# too, but one after the other they add up.
_checkout_budget: weakref.WeakKeyDictionary[AsyncEngine, float] = weakref.WeakKeyDictionary()


class AsyncpgDialect(PGDialect_asyncpg):
    """SQLAlchemy's asyncpg dialect, but a connection found broken is dropped at once.

    SQLAlchemy closes an invalidated asyncpg connection "gracefully": it asks the server to end
    the session and waits up to 2 s for the answer, shielded from cancellation. A hung database
    never answers, so the request that found it hung would take its statement timeout and then
    2 s more, over the contract's 2 s. Terminating the socket at once is all a dead connection
    needs. It is also what lets the pool work without a ping before every checkout (BEGIN, ";",
    ROLLBACK: three round trips on every transaction of every service): a connection that died
    with the database fails its first statement within the statement timeout, that request is a
    503, and the pool drops every connection made before it."""

    supports_statement_cache = True  # a subclass must say so again, or SQLAlchemy compiles every statement anew

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.driver_connection.terminate()


registry.register("postgresql.portal_asyncpg", __name__, "AsyncpgDialect")


def make_engine(url: str, *, timeout: float = 2.0, pool_size: int = 10) -> AsyncEngine:
    address = sa.make_url(url)
    if address.drivername == "postgresql+asyncpg":
        address = address.set(drivername="postgresql+portal_asyncpg")
    engine = create_async_engine(
        address,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout,
        pool_pre_ping=False,  # see AsyncpgDialect
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )
    _checkout_budget[engine] = timeout
    return engine


@asynccontextmanager
async def transaction(engine: AsyncEngine, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
    """One unit of work: committed when the block ends, rolled back if it raises.

    ``autocommit``: each statement commits on its own, with no BEGIN and COMMIT around it (two
    round trips fewer), for a unit of work that is one statement."""
    try:
        conn = await _checkout(engine)
        try:
            if autocommit:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with conn.begin():
                yield conn
        finally:
            await conn.close()
    except (OSError, TimeoutError, sa.exc.TimeoutError, sa.exc.InterfaceError, sa.exc.OperationalError) as exc:
        # sa.exc.TimeoutError: no pooled connection came free within the timeout; a 503 too
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated or _server_unavailable(exc):
            raise DatabaseUnavailable(str(exc)) from exc
        raise


def _server_unavailable(exc: sa.exc.DBAPIError) -> bool:
    """A refusal that says the server, not the statement, is the trouble: SQLSTATE class 08
    (connection exception) or 57 (operator intervention: "the database system is shutting down",
    starting up, or restarting after a crash)."""
    state = getattr(exc.orig, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("08", "57")


_abandoned: set[asyncio.Future[Any]] = set()


async def _checkout(engine: AsyncEngine) -> AsyncConnection:
    """A connection within the engine's budget, or TimeoutError once it is spent.

    The checkout runs as a task of its own that is abandoned (cancelled, then closed whenever it
    ends) when the budget runs out: a connection still being made to a hung database is left
    to its own connect timeout, away from the request.
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


def lock_key(name: str | sa.ColumnElement[str]) -> sa.ColumnElement[int]:
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
