"""Tenant's HTTP entrypoints: translate, call a handler, answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from services.tenant import handlers
from services.tenant.domain import InvalidInput, normalize_host
from services.tenant.repository import Taken, TenantRepository
from shared.db import transaction
from shared.http import Problem, admin_guard, problem_response
from shared.runtime import Runtime


class TenantIn(BaseModel):
    slug: str
    name: str = Field(min_length=1, max_length=200)
    domains: list[str] = Field(default_factory=list, max_length=100)
    settings: dict[str, Any] | None = None


class TenantPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None


def public(tenant: dict[str, Any]) -> dict[str, Any]:
    return {"slug": tenant["slug"], "name": tenant["name"], "domains": tenant["domains"], "settings": tenant["settings"]}


def routes(runtime: Runtime) -> APIRouter:
    admin = APIRouter(prefix="/admin/tenants", dependencies=[Depends(admin_guard(runtime.settings.admin_token))])
    engine, outbox = runtime.engine, runtime.outbox

    async def change(handler: Any, **kwargs: Any) -> dict[str, Any]:
        async with transaction(engine) as conn:
            tenant = await handler(conn, outbox, **kwargs)
        runtime.relay.wake()
        return public(tenant)

    @admin.post("", status_code=201)
    async def create(body: TenantIn) -> dict[str, Any]:
        return await change(handlers.create_tenant, **body.model_dump())

    @admin.get("")
    async def list_all() -> dict[str, Any]:
        async with transaction(engine) as conn:
            return {"tenants": [public(t) for t in await TenantRepository(conn).list()]}

    @admin.get("/{slug}")
    async def show(slug: str) -> dict[str, Any]:
        async with transaction(engine) as conn:
            tenant = await TenantRepository(conn).get(slug)
        if tenant is None:
            raise Problem("not_found", detail=f"no organization {slug!r}")
        return public(tenant)

    @admin.patch("/{slug}")
    async def update(slug: str, body: TenantPatch) -> dict[str, Any]:
        return await change(handlers.update_tenant, slug=slug, **body.model_dump())

    @admin.put("/{slug}/domains/{host}")
    async def add_domain(slug: str, host: str) -> dict[str, Any]:
        return await change(handlers.add_domain, slug=slug, host=host)

    @admin.delete("/{slug}/domains/{host}")
    async def remove_domain(slug: str, host: str) -> dict[str, Any]:
        return await change(handlers.remove_domain, slug=slug, host=host)

    router = APIRouter()
    router.include_router(admin)

    @router.get("/resolve")
    async def resolve(host: str) -> dict[str, Any]:
        try:
            name = normalize_host(host.rsplit(":", 1)[0] if host.count(":") == 1 else host, field="host")
        except InvalidInput:
            raise Problem("organization_not_found") from None
        async with transaction(engine) as conn:
            tenant = await TenantRepository(conn).resolve(name)
        if tenant is None:
            raise Problem("organization_not_found")
        return public(tenant)

    return router


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        return problem_response(Problem("validation_error", detail=str(exc), errors=[{"field": exc.field, "message": exc.message}]))

    @app.exception_handler(ValidationError)
    async def _bad_settings(request: Request, exc: ValidationError) -> Response:
        errors = [{"field": "settings." + ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return problem_response(Problem("validation_error", detail="; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors))

    @app.exception_handler(Taken)
    async def _taken(request: Request, exc: Taken) -> JSONResponse:
        return problem_response(Problem("conflict", title=f"That {exc.what} is taken", field=exc.what))

    @app.exception_handler(handlers.NotFound)
    async def _missing(request: Request, exc: handlers.NotFound) -> JSONResponse:
        return problem_response(Problem("not_found", detail=str(exc)))
