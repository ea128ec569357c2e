"""Tenant's HTTP entrypoints: translate, call a handler, answer.

(No `from __future__ import annotations` here: FastAPI and pydantic read the annotations at runtime.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.tenant import handlers
from services.tenant.domain import MAX_HOST, SLUG, InvalidInput, Taken
from services.tenant.repository import TenantRepository
from shared.db import transaction
from shared.events import Actor
from shared.http import Problem, admin_actor, admin_guard, problem_response, problem_responses
from shared.messaging import Announcer
from shared.runtime import Runtime
from shared.text import PlainText

# Everything tenant serves but health is the admin API, /resolve included (CONTRACT.md, "Admin").
ADMIN_PATHS = ("/admin", "/resolve")

Name = Annotated[PlainText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# What the OpenAPI says of slugs and domains, checked by the domain rules (422 otherwise). Hosts
# are declared in their canonical form; upper case and international names are accepted too and
# stored in it.
_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
A_SLUG: dict[str, Any] = {"pattern": f"^{SLUG.pattern}$"}
HOSTS: dict[str, Any] = {"items": {"type": "string", "maxLength": MAX_HOST, "pattern": rf"^{_LABEL}(\.{_LABEL})*$"}}


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(json_schema_extra=A_SLUG)
    name: Name
    domains: list[str] = Field(default_factory=list, max_length=100, json_schema_extra=HOSTS)
    settings: dict[str, Any] | None = None


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    settings: dict[str, Any] | None = None


# What a client does next with an organization it created or changed (OpenAPI links).
_SLUG = {"slug": "$response.body#/slug"}
_NEXT = {"links": {
    "showTenant": {"operationId": "showTenant", "parameters": _SLUG},
    "updateTenant": {"operationId": "updateTenant", "parameters": _SLUG},
    "addDomain": {"operationId": "addDomain", "parameters": _SLUG},
    "removeDomain": {"operationId": "removeDomain", "parameters": {**_SLUG, "host": "$response.body#/domains/0"}},
    "resolveHost": {"operationId": "resolveHost", "parameters": {"host": "$response.body#/domains/0"}},
}}


def public(tenant: dict[str, Any]) -> dict[str, Any]:
    return {"slug": tenant["slug"], "name": tenant["name"], "domains": tenant["domains"], "settings": tenant["settings"]}


def routes(runtime: Runtime) -> APIRouter:
    engine, outbox = runtime.engine, runtime.outbox
    router = APIRouter()

    async def read(handler: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        async with transaction(engine) as conn:
            return await handler(TenantRepository(conn), **kwargs)

    By = Annotated[Actor, Depends(admin_actor)]

    async def change(handler: Callable[..., Awaitable[dict[str, Any]]], *, actor: Actor, **kwargs: Any) -> dict[str, Any]:
        """A handler that writes its event through the outbox, with the request's id to follow it by."""
        async with transaction(engine) as conn:
            tenant = await handler(TenantRepository(conn), Announcer(conn, outbox, correlation_id=actor.request_id),
                                   actor=actor, **kwargs)
        runtime.relay.wake()  # the copies in the other services learn of it now, not at the next poll
        return public(tenant)

    @router.post("/admin/tenants", status_code=201, operation_id="createTenant",
                 responses={**problem_responses("unauthorized", "malformed_request", "validation_error", "conflict"), 201: _NEXT})
    async def create(body: TenantIn, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.create_tenant, actor=actor, **body.model_dump())

    @router.get("/admin/tenants", operation_id="listTenants", responses=problem_responses("unauthorized"))
    async def list_all() -> dict[str, Any]:
        return {"tenants": [public(t) for t in await read(handlers.list_tenants)]}

    @router.get("/admin/tenants/{slug}", operation_id="showTenant", responses=problem_responses("unauthorized", "not_found", "validation_error"))
    async def show(slug: PlainText) -> dict[str, Any]:
        return public(await read(handlers.show_tenant, slug=slug))

    @router.patch("/admin/tenants/{slug}", operation_id="updateTenant",
                  responses={**problem_responses("unauthorized", "not_found", "malformed_request", "validation_error"), 200: _NEXT})
    async def update(slug: PlainText, body: TenantPatch, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.update_tenant, slug=slug, actor=actor, **body.model_dump())

    @router.put("/admin/tenants/{slug}/domains/{host}", operation_id="addDomain",
                responses={**problem_responses("unauthorized", "not_found", "validation_error", "conflict"), 200: _NEXT})
    async def add_domain(slug: PlainText, host: PlainText, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.add_domain, slug=slug, host=host, actor=actor)

    @router.delete("/admin/tenants/{slug}/domains/{host}", operation_id="removeDomain",
                   responses={**problem_responses("unauthorized", "not_found", "validation_error"), 200: _NEXT})
    async def remove_domain(slug: PlainText, host: PlainText, actor: By, response: Response) -> dict[str, Any]:
        response.headers["X-Request-ID"] = actor.request_id
        return await change(handlers.remove_domain, slug=slug, host=host, actor=actor)

    @router.get("/resolve", operation_id="resolveHost",
                responses=problem_responses("unauthorized", "organization_not_found", "validation_error"))
    async def resolve(host: PlainText) -> dict[str, Any]:
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
