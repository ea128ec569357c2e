"""Identity's JSON API for the portal: resolve the organization from the host, translate, call a handler.

(No `from __future__ import annotations` here: FastAPI reads the local dependency annotations at runtime.)
"""


from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.identity import handlers
from services.identity.domain import Refused
from services.identity.handlers import Deps, Org
from services.identity.repository import IdentityRepository
from services.identity.settings import IdentitySettings
from shared.db import transaction
from shared.http import Problem
from shared.runtime import Runtime
from shared.tenancy import TenantSettings

MAX_FIELD = 4096  # requests are bounded; the domain gives the precise errors below this size

class Credentials(BaseModel):
    email: str = Field(max_length=MAX_FIELD)
    password: str = Field(max_length=MAX_FIELD)

class Registration(Credentials):
    display_name: str | None = Field(None, max_length=200)

class Login(Credentials):
    remember_me: bool = False

class EmailOnly(BaseModel):
    email: str = Field(max_length=MAX_FIELD)

class TokenOnly(BaseModel):
    token: str = Field(max_length=MAX_FIELD)

class NewPassword(TokenOnly):
    password: str = Field(max_length=MAX_FIELD)

def request_host(request: Request, settings: IdentitySettings) -> str:
    """The portal host: X-Forwarded-Host from a trusted proxy, else Host; lower case, no port."""
    forwarded = request.headers.get("x-forwarded-host") if settings.is_trusted_proxy(_peer(request)) else None
    host = (forwarded or request.headers.get("host") or "").split(",")[0].strip().lower()
    return host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]

def client_address(request: Request, settings: IdentitySettings) -> str:
    """The address the attempt came from: the nearest X-Forwarded-For hop that is not a trusted proxy."""
    address = _peer(request) or "unknown"
    if settings.is_trusted_proxy(address):
        for hop in reversed([h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]):
            address = hop
            if not settings.is_trusted_proxy(hop):
                break
    return address

def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None

def refusal(refused: Refused) -> Problem:
    extra = dict(refused.extra)
    headers = {"Retry-After": str(max(1, refused.retry_after))} if refused.retry_after is not None else None
    return Problem(refused.code, title=extra.pop("title", None), headers=headers, **extra)  # type: ignore[arg-type]

def organization_resolver(runtime: Runtime, settings: IdentitySettings) -> Callable[[Request], Awaitable[Org]]:
    async def resolve(request: Request) -> Org:
        host = request_host(request, settings)
        async with transaction(runtime.engine) as conn:
            row = await IdentityRepository(conn).tenant_for_host(host)
        if row is None:
            raise Problem("organization_not_found", host=host)
        return Org(slug=row.slug, name=row.name, settings=TenantSettings.model_validate(row.settings), host=host)
    return resolve

def routes(runtime: Runtime, settings: IdentitySettings, deps: Deps) -> APIRouter:
    router = APIRouter(prefix="/auth")
    Organization = Annotated[Org, Depends(organization_resolver(runtime, settings))]

    async def run(use_case: Callable[..., Awaitable[Any]], org: Org, **kwargs: Any) -> Any:
        try:
            async with transaction(runtime.engine) as conn:
                outcome = await use_case(conn, deps, org, **kwargs)
        except Refused as refused:
            raise refusal(refused) from None
        runtime.relay.wake()
        if isinstance(outcome, Refused):
            raise refusal(outcome)
        return outcome

    @router.post("/register", status_code=202)
    async def register(body: Registration, org: Organization) -> dict[str, str]:
        await run(handlers.register, org, email=body.email, password=body.password, display_name=body.display_name)
        return {"status": "confirmation_sent"}

    @router.post("/confirmation/resend", status_code=202)
    async def resend(body: EmailOnly, org: Organization) -> dict[str, str]:
        await run(handlers.resend_confirmation, org, email=body.email)
        return {"status": "confirmation_sent"}

    @router.post("/confirm")
    async def confirm(body: TokenOnly, org: Organization) -> dict[str, str]:
        await run(handlers.confirm, org, token=body.token)
        return {"status": "confirmed"}

    @router.post("/login")
    async def login(body: Login, org: Organization, request: Request, response: Response) -> dict[str, Any]:
        signed_in = await run(handlers.login, org, email=body.email, password=body.password,
                              remember=body.remember_me, source=client_address(request, settings))
        set_session_cookie(response, settings, signed_in.cookie_value, max_age=signed_in.max_age)
        return {"user": signed_in.user, "organization": signed_in.organization}

    @router.get("/session")
    async def session(org: Organization, request: Request) -> dict[str, Any]:
        return await run(handlers.current_session, org, cookie_value=request.cookies.get(settings.cookie_name))

    @router.post("/logout", status_code=204)
    async def logout(org: Organization, request: Request, response: Response) -> None:
        await run(handlers.logout, org, cookie_value=request.cookies.get(settings.cookie_name))
        clear_session_cookie(response, settings)

    @router.post("/password/forgot", status_code=202)
    async def forgot(body: EmailOnly, org: Organization) -> dict[str, str]:
        await run(handlers.forgot_password, org, email=body.email)
        return {"status": "reset_sent"}

    @router.post("/password/reset")
    async def reset(body: NewPassword, org: Organization) -> dict[str, str]:
        await run(handlers.reset_password, org, token=body.token, password=body.password)
        return {"status": "password_changed"}

    return router

def set_session_cookie(response: Response, settings: IdentitySettings, value: str, *, max_age: int | None) -> None:
    """Host-only (no Domain), Path=/, HttpOnly, SameSite=Lax, Secure unless COOKIE_SECURE=false."""
    response.set_cookie(settings.cookie_name, value, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=settings.cookie_secure)

def clear_session_cookie(response: Response, settings: IdentitySettings) -> None:
    response.delete_cookie(settings.cookie_name, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure)
