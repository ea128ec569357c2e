"""Lockout's composition root."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI

from services.lockout import consumers
from services.lockout.expiry import watch_expiry
from services.lockout.http import install_error_handlers, routes
from services.lockout.settings import LockoutServiceSettings
from services.lockout.tables import metadata
from shared.http import install_problem_handlers
from shared.runtime import Runtime


def create_app(settings: LockoutServiceSettings | None = None) -> FastAPI:
    settings = settings or LockoutServiceSettings()
    runtime = Runtime.build(name="lockout", settings=settings, metadata=metadata)
    runtime.consume(topics=consumers.TOPICS, handlers=consumers.subscribers(runtime.outbox))
    watch = functools.partial(watch_expiry, runtime, interval=settings.expiry_interval_seconds)
    app = FastAPI(title="portal-auth lockout", lifespan=lifespan(runtime, beside=watch))
    app.state.runtime, app.state.settings = runtime, settings
    install_problem_handlers(app)
    install_error_handlers(app)
    app.include_router(runtime.health())
    app.include_router(routes(runtime))
    return app


def lifespan(runtime: Runtime, *, beside: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[FastAPI], Any]:
    """The runtime's lifespan, with ``beside`` running as a task for as long as it does."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            task = asyncio.create_task(beside())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return run
