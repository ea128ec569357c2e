"""Lockout's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from services.lockout import consumers
from services.lockout.expiry import expiry_watch
from services.lockout.http import install_error_handlers, routes
from services.lockout.settings import LockoutServiceSettings
from services.lockout.tables import metadata
from shared.http import declare_admin_token, install_problem_handlers
from shared.runtime import Runtime


def create_app(settings: LockoutServiceSettings | None = None) -> FastAPI:
    settings = settings or LockoutServiceSettings()
    runtime = Runtime.build(name="lockout", settings=settings, metadata=metadata)
    runtime.consume(topics=consumers.TOPICS, subscribers=consumers.subscribers(runtime.outbox))
    runtime.loop(expiry_watch(runtime, interval=settings.expiry_interval_seconds))
    app = FastAPI(title="portal-auth lockout", lifespan=runtime.lifespan)
    app.state.runtime, app.state.settings = runtime, settings
    install_problem_handlers(app)
    install_error_handlers(app)
    declare_admin_token(app)
    app.include_router(runtime.health())
    app.include_router(routes(runtime))
    return app
