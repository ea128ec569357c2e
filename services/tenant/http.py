"""Tenant's HTTP entrypoints: translate, call a handler, answer.

(No `from __future__ import annotations` here: FastAPI and pydantic read the annotations at runtime.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.tenant import handlers
from services.tenant.domain import InvalidInput, Taken
from services.tenant.repository import TenantRepository
from shared.db import transaction
from shared.events import Actor
from shared.http import Problem, admin_actor, admin_guard, problem_response
from shared.runtime import Runtime
from shared.text import PlainText

# Everything tenant serves but health is the admin API, /resolve included (CONTRACT.md, "Admin").
ADMIN_PATHS = ("/admin", "/resolve")

Name = Annotated[PlainText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str
    name: Name
    domains: list[str] = Field(default_factory=list, max_length=100)
    settings: dict[str, Any] | None = None


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    settings: dict[str, Any] | None = None


def public(tenant: dict[str, Any]) -> dict[str, Any]:
    return {"slug": tenant["slug"], "name": tenant["name"], "domains": tenant["domains"], "settings": tenant["settings"]}


def routes(runtime: Runtime) -> APIRouter:
    engine, outbox = runtime.engine, runtime.outbox
    router = APIRouter()

    async def read(handler: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        async with transaction(engine) as conn:
            return await handler(TenantRepository(conn), **kwargs)

    By = Annotated[Actor, Depends(admin_actor)]

    async def change(handler: Callable[..., Awaitable[dict[str, Any]]], **kwargs: Any) -> dict[str, Any]:
        tenant = await read(handler, outbox=outbox, **kwargs)
        runtime.relay.wake()  # the copies in the other services learn of it now, not at the next poll
        return public(tenant)

    @router.post("/admin/tenants", status_code=201)
    async def create(body: TenantIn, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.create_tenant, actor=actor, **body.model_dump())

    @router.get("/admin/tenants")
    async def list_all() -> dict[str, Any]:
        return {"tenants": [public(t) for t in await read(handlers.list_tenants)]}

    @router.get("/admin/tenants/{slug}")
    async def show(slug: str) -> dict[str, Any]:
        return public(await read(handlers.show_tenant, slug=slug))

    @router.patch("/admin/tenants/{slug}")
    async def update(slug: str, body: TenantPatch, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.update_tenant, slug=slug, actor=actor, **body.model_dump())

    @router.put("/admin/tenants/{slug}/domains/{host}")
    async def add_domain(slug: str, host: str, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.add_domain, slug=slug, host=host, actor=actor)

    @router.delete("/admin/tenants/{slug}/domains/{host}")
    async def remove_domain(slug: str, host: str, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.remove_domain, slug=slug, host=host, actor=actor)

    @router.get("/resolve")
    async def resolve(host: str) -> dict[str, Any]:
        tenant = await read(handlers.resolve_host, host=host)
        if tenant is None:
            raise Problem("organization_not_found", host=host)
        return public(tenant)

    return router


def require_admin_token(app: FastAPI, admin_token: str) -> None:
    """Checked before routing and body parsing, so that without the token every admin path,
    even a malformed request or an unknown one, answers 401 and tells nothing else."""
    guard = admin_guard(admin_token)

    @app.middleware("http")
    async def _admin_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.startswith(ADMIN_PATHS):
            try:
                await guard(request)
            except Problem as problem:
                return problem_response(problem)
        return await call_next(request)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
        return problem_response(Problem("validation_error", detail=str(exc), errors=errors))

    @app.exception_handler(Taken)
    async def _taken(request: Request, exc: Taken) -> Response:
        return problem_response(Problem("conflict", title=f"That {exc.what} is taken", detail=str(exc), field=exc.what))

    @app.exception_handler(handlers.NotFound)
    async def _missing(request: Request, exc: handlers.NotFound) -> Response:
        return problem_response(Problem("not_found", detail=str(exc)))
