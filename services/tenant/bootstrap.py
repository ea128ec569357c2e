"""Tenant's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from services.tenant.http import install_error_handlers, require_admin_token, routes
from services.tenant.settings import TenantServiceSettings
from services.tenant.tables import metadata
from shared.http import declare_admin_token, install_problem_handlers
from shared.runtime import Runtime


def create_app(settings: TenantServiceSettings | None = None) -> FastAPI:
    runtime = Runtime.build(name="tenant", settings=settings or TenantServiceSettings(), metadata=metadata)
    app = FastAPI(title="portal-auth tenant", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    install_error_handlers(app)
    require_admin_token(app, runtime.settings.admin_token)
    declare_admin_token(app)
    app.include_router(runtime.health())
    app.include_router(routes(runtime))
    return app
