"""Identity's HTTP edge: what the JSON API and the portal pages share (the organization of a
request, running a use case, the session cookie, security headers), and the JSON API itself.

(No `from __future__ import annotations` here: FastAPI reads the local dependency annotations at runtime.)
"""

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from pydantic import BaseModel, Field

from services.identity import domain, handlers
from services.identity.domain import Refused
from services.identity.handlers import Deps, Org, SignedIn
from services.identity.repository import IdentityRepository
from services.identity.settings import IdentitySettings
from services.identity.throttle import SourceLimits
from shared.accounts import InvalidEmail, normalize_email
from shared.db import transaction
from shared.http import Metric, Problem, problem_response, problem_responses
from shared.http import metrics_router as shared_metrics_router
from shared.messaging import Announcer
from shared.runtime import Runtime
from shared.text import PlainText

MAX_FIELD = 4096  # requests are bounded; the domain gives the precise errors below this size
# Passwords get a far higher bound, so any password a person could mean is answered with the
# contract's password_too_long (over 1024 characters) rather than a generic 422.
MAX_PASSWORD_FIELD = 65536

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # links carry tokens: never hand a URL to another site
    "X-Frame-Options": "DENY",
}


# What the OpenAPI says of the fields beyond what is checked here: an address (invalid_email
# otherwise), and a new password of at least 12 characters (password_too_short otherwise).
AN_EMAIL: dict[str, Any] = {"format": "email"}
A_NEW_PASSWORD: dict[str, Any] = {"minLength": 12}


class Credentials(BaseModel):
    email: str = Field(max_length=MAX_FIELD, json_schema_extra=AN_EMAIL)
    password: str = Field(max_length=MAX_PASSWORD_FIELD)


class Registration(Credentials):
    password: str = Field(max_length=MAX_PASSWORD_FIELD, json_schema_extra=A_NEW_PASSWORD)
    display_name: PlainText | None = Field(None, max_length=200)


class Login(Credentials):
    remember_me: bool = False


class EmailOnly(BaseModel):
    email: str = Field(max_length=MAX_FIELD, json_schema_extra=AN_EMAIL)


class TokenOnly(BaseModel):
    token: str = Field(max_length=MAX_FIELD)


class TokenAndPassword(TokenOnly):
    password: str = Field(max_length=MAX_PASSWORD_FIELD, json_schema_extra=A_NEW_PASSWORD)


def request_host(request: Request, settings: IdentitySettings) -> str:
    """The portal host: X-Forwarded-Host from a trusted proxy, else Host; lower case, no port."""
    forwarded = request.headers.get("x-forwarded-host") if settings.is_trusted_proxy(_peer(request)) else None
    return bare_host(forwarded or request.headers.get("host") or "")


def bare_host(value: str) -> str:
    """``Host``-style text without port, in lower case (first entry of a forwarded list)."""
    host = value.split(",")[0].strip().lower()
    return host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]


def client_address(request: Request, settings: IdentitySettings) -> str:
    """The source the attempt came from (see domain.source_key): the rightmost X-Forwarded-For
    hop that is not a trusted proxy, when the peer is one. Hops are read from the right, each as
    an address; reading stops at the first that is not one, since everything left of it was
    written by someone no trusted proxy vouches for. When every hop read is trusted, the
    rightmost stands: it is what the nearest proxy saw, and no client can choose it."""
    peer = domain.parse_address(_peer(request))
    if peer is None:
        return "unknown"
    if not settings.is_trusted_proxy(str(peer)):
        return domain.source_key(peer)
    hops = []
    for text in reversed(",".join(request.headers.getlist("x-forwarded-for")).split(",")):
        hop = domain.parse_address(text)
        if hop is None:
            break
        if not settings.is_trusted_proxy(str(hop)):
            return domain.source_key(hop)
        hops.append(hop)
    return domain.source_key(hops[0] if hops else peer)


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


def refusal(refused: Refused) -> Problem:
    extra = dict(refused.extra)
    headers = {"Retry-After": str(max(1, refused.retry_after))} if refused.retry_after is not None else None
    return Problem(refused.code, title=extra.pop("title", None), headers=headers, **extra)  # type: ignore[arg-type]


Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Portal:
    """What both entrypoints, the JSON API and the pages, do the same way: find the request's
    organization, run a use case in one transaction, read and set the session cookie."""

    runtime: Runtime
    settings: IdentitySettings
    deps: Deps
    limits: SourceLimits = field(default_factory=SourceLimits)

    @cached_property
    def per_source_limit(self) -> Any:
        """The dependency every unauthenticated POST carries (``dependencies=[portal.per_source_limit]``):
        beyond the organization's ``limits.requests_per_source_per_minute``, 429 too_many_requests."""
        async def limit(request: Request, org: Annotated[Org, Depends(self.organization)]) -> None:
            self.limits.request(org, self.source(request))
        return Depends(limit)

    @cached_property
    def per_source_limit_any_host(self) -> Any:
        """The same for a POST that works on any host (find-portal): the default limit, counted
        across every host, so that no unknown host opens a fresh allowance."""
        async def limit(request: Request) -> None:
            self.limits.request(None, self.source(request))
        return Depends(limit)

    def known_organization(self, request: Request) -> Org | None:
        """The request's organization from the replica's memory of tenant.events alone."""
        host = request_host(request, self.settings)
        memory = self.deps.memory
        known = memory.organizations.for_host(host) if memory is not None and memory.ready else None
        return Org(slug=known.slug, name=known.name, settings=known.settings, host=host) if known is not None else None

    async def organization(self, request: Request) -> Org:
        """From the replica's memory of tenant.events; the table answers while it catches up, and
        for hosts it does not know (so a 404 is said by the table)."""
        known = self.known_organization(request)
        if known is not None:
            return known
        host = request_host(request, self.settings)
        async with transaction(self.runtime.engine) as conn:
            return await handlers.organization(IdentityRepository(conn), host=host)

    async def run(self, use_case: Callable[..., Awaitable[Outcome | Refused]], org: Org | None, **kwargs: Any) -> Outcome:
        """The use case's outcome, given the repository and the announcer of one transaction; a
        refusal is raised, also one the use case returned so that its events were committed first."""
        async with transaction(self.runtime.engine) as conn:
            announce = Announcer(conn, self.runtime.outbox)
            outcome = await use_case(IdentityRepository(conn), announce, self.deps, org, **kwargs)
        self.runtime.relay.after(announce)
        if isinstance(outcome, Refused):
            raise outcome
        return outcome

    async def login(self, org: Org, request: Request, *, email: str, password: str, remember: bool) -> SignedIn:
        """A lock known in memory, or an attempt in flight, is refused before the transaction."""
        source = self.source(request)
        with handlers.admitted(self.deps, org, email=email, source=source):
            signed_in: SignedIn = await self.attempt(handlers.login, org, source, email=email, password=password,
                                                     remember=remember)
        return signed_in

    def locked_answer(self, request: Request, body: bytes) -> Response | None:
        """The answer to a login of an account the replica knows locked, from the request alone
        (see LocksFirst); None for any other request, which then takes the usual way."""
        if not _declares_json(request):
            return None
        try:
            email = json.loads(body).get("email")
            org = self.known_organization(request)
            address = normalize_email(email) if isinstance(email, str) and org is not None else None
        except (ValueError, AttributeError, InvalidEmail):
            return None
        if org is None or address is None:
            return None
        source = self.source(request)
        refused = handlers.locked_in_memory(self.deps, org, address=address, source=source, now=self.deps.clock())
        if refused is None:
            return None
        try:
            self.limits.request(org, source)  # the only refusal that may come before a lock's
        except Refused as over_limit:
            refused = over_limit
        return problem_response(refusal(refused))

    async def attempt(self, use_case: Callable[..., Awaitable[Any]], org: Org, source: str, **kwargs: Any) -> Any:
        """A use case that checks a password (login, confirm), run with the request's source: a
        source whose failures across the organization's accounts reached the bound is refused
        before any work, and each wrong password counts toward it."""
        self.limits.check_failures(org, source)
        try:
            return await self.run(use_case, org, source=source, **kwargs)
        except Refused as refused:
            if refused.code == "invalid_credentials":
                self.limits.failed(org, source)
            raise

    def source(self, request: Request) -> str:
        return client_address(request, self.settings)

    def session_cookie(self, request: Request) -> str | None:
        return request.cookies.get(self.settings.cookie_name)

    def sign_in(self, response: Response, signed_in: SignedIn) -> None:
        set_session_cookie(response, self.settings, signed_in.cookie_value, max_age=signed_in.max_age)

    def sign_out(self, response: Response) -> None:
        clear_session_cookie(response, self.settings)


class JsonRoute(APIRoute):
    """A JSON endpoint: a refusal becomes problem+json, and a request body that is not declared
    JSON is refused with 415. That is the API's CSRF defence: a cross-site form can only send
    form or text bodies, and a cross-site script cannot send application/json without a CORS
    preflight, which identity never grants."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.method not in ("GET", "HEAD") and _has_body(request) and not _declares_json(request):
                return unsupported_media_type()
            try:
                return await handle(request)
            except Refused as refused:
                return problem_response(refusal(refused))

        return route


def _has_body(request: Request) -> bool:
    """An empty POST (logout) carries nothing to forge; the SameSite=Lax cookie is not sent
    cross-site on a POST anyway."""
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


def _declares_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def unsupported_media_type() -> JSONResponse:
    return problem_response(Problem("unsupported_media_type", headers={"Accept": "application/json"}))


# The problems of the portal API, as its OpenAPI declares them (problem_responses adds 503).
_POST = ("organization_not_found", "unsupported_media_type")  # every POST on a portal host
_LIMITED = (*_POST, "too_many_requests", "malformed_request", "validation_error")  # with a body and the per-source limit
_PASSWORD = ("password_too_short", "password_too_long", "password_too_common")
_LINK = ("token_invalid", "token_expired")


def _follows(status: int, **targets: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a route's ``status`` answer: what a client does next with what it sent."""
    return {status: {"links": {name: {"operationId": name, "requestBody": body} for name, body in targets.items()}}}


_EMAIL = {"email": "$request.body#/email"}
_ACCOUNT = {**_EMAIL, "password": "$request.body#/password"}


def routes(portal: Portal) -> APIRouter:
    router = APIRouter(prefix="/auth", route_class=JsonRoute)
    Organization = Annotated[Org, Depends(portal.organization)]
    limited = [portal.per_source_limit]

    @router.post("/register", status_code=202, dependencies=limited, operation_id="register",
                 responses={**problem_responses(*_LIMITED, "invalid_email", *_PASSWORD), **_follows(
                     202, login=_ACCOUNT, resend=_EMAIL, confirm={"token": "", "password": "$request.body#/password"},
                     forgot=_EMAIL, unlockRequest=_EMAIL, findPortal=_EMAIL)})
    async def register(body: Registration, org: Organization) -> dict[str, str]:
        await portal.run(handlers.register, org, email=body.email, password=body.password, display_name=body.display_name)
        return {"status": "confirmation_sent"}

    @router.post("/confirmation/resend", status_code=202, operation_id="resend", dependencies=limited,
                 responses=problem_responses(*_LIMITED, "invalid_email"))
    async def resend(body: EmailOnly, org: Organization) -> dict[str, str]:
        await portal.run(handlers.resend_confirmation, org, email=body.email)
        return {"status": "confirmation_sent"}

    @router.post("/confirm", dependencies=limited, operation_id="confirm",
                 responses=problem_responses(*_LIMITED, *_LINK, "invalid_credentials", "account_locked"))
    async def confirm(body: TokenAndPassword, org: Organization, request: Request) -> dict[str, str]:
        await portal.attempt(handlers.confirm, org, portal.source(request), token=body.token, password=body.password)
        return {"status": "confirmed"}

    @router.post("/login", dependencies=limited, operation_id="login", responses={**problem_responses(
        *_LIMITED, "invalid_email", "invalid_credentials", "user_not_confirmed", "account_locked"),
        **_follows(200, session={}, logout={}, logoutAll={}, unlockRequest=_EMAIL)})
    async def login(body: Login, org: Organization, request: Request, response: Response) -> dict[str, Any]:
        signed_in = await portal.login(org, request, email=body.email, password=body.password, remember=body.remember_me)
        portal.sign_in(response, signed_in)
        return {"user": signed_in.user, "organization": signed_in.organization}

    @router.get("/session", operation_id="session", responses=problem_responses("organization_not_found", "not_authenticated"))
    async def session(org: Organization, request: Request) -> dict[str, Any]:
        return await portal.run(handlers.current_session, org, cookie_value=portal.session_cookie(request))

    @router.post("/logout", status_code=204, operation_id="logout", responses=problem_responses(*_POST))
    async def logout(org: Organization, request: Request, response: Response) -> None:
        await portal.run(handlers.logout, org, cookie_value=portal.session_cookie(request))
        portal.sign_out(response)

    @router.post("/logout-all", status_code=204, operation_id="logoutAll", responses=problem_responses(*_POST, "not_authenticated"))
    async def logout_all(org: Organization, request: Request, response: Response) -> None:
        await portal.run(handlers.logout_all, org, cookie_value=portal.session_cookie(request))
        portal.sign_out(response)

    @router.post("/password/forgot", status_code=202, operation_id="forgot", dependencies=limited,
                 responses=problem_responses(*_LIMITED, "invalid_email"))
    async def forgot(body: EmailOnly, org: Organization) -> dict[str, str]:
        await portal.run(handlers.forgot_password, org, email=body.email)
        return {"status": "reset_sent"}

    @router.post("/password/reset", dependencies=limited, operation_id="reset", responses=problem_responses(*_LIMITED, *_LINK, *_PASSWORD))
    async def reset(body: TokenAndPassword, org: Organization) -> dict[str, str]:
        await portal.run(handlers.reset_password, org, token=body.token, password=body.password)
        return {"status": "password_changed"}

    @router.post("/unlock/request", status_code=202, operation_id="unlockRequest", dependencies=limited,
                 responses=problem_responses(*_LIMITED, "invalid_email"))
    async def unlock_request(body: EmailOnly, org: Organization) -> dict[str, str]:
        await portal.run(handlers.request_unlock, org, email=body.email)
        return {"status": "unlock_sent"}

    @router.post("/unlock", dependencies=limited, operation_id="unlock", responses=problem_responses(*_LIMITED, *_LINK))
    async def unlock(body: TokenOnly, org: Organization) -> dict[str, str]:
        await portal.run(handlers.unlock, org, token=body.token)
        return {"status": "unlocked"}

    @router.post("/find-portal", status_code=202, operation_id="findPortal", dependencies=[portal.per_source_limit_any_host],
                 responses=problem_responses("malformed_request", "validation_error", "unsupported_media_type", "too_many_requests",
                                             "invalid_email"))
    async def find_portal(body: EmailOnly) -> dict[str, str]:
        """On any host: it is for the person who does not know their portal's."""
        await portal.run(handlers.find_portals, None, email=body.email)
        return {"status": "sent_if_known"}

    return router


def metrics_router(deps: Deps) -> APIRouter:
    """The bcrypt counters, at GET /metrics (Prometheus text, see shared.http.metrics_router)."""
    async def collect() -> list[Metric]:
        return [
            Metric.single("identity_password_verifications_total",
                          "Password checks run with bcrypt (logins, also against the dummy hash)",
                          "counter", deps.hasher.verifications),
            Metric.single("identity_password_hashes_total", "Passwords hashed with bcrypt (registrations, resets, upgrades)",
                          "counter", deps.hasher.hashes),
            Metric.single("identity_password_cpu_seconds_total", "CPU time bcrypt took, hashes and verifications",
                          "counter", deps.hasher.cpu_seconds),
            Metric.single("identity_password_refused_total",
                          "Hashes refused with 503 because the queue's expected wait was over its bound",
                          "counter", deps.hasher.refused),
            Metric.single("identity_memory_ready",
                          "1 once this replica's in-memory copies of organizations and locks have caught up with the log",
                          "gauge", int(deps.memory is not None and deps.memory.ready)),
        ]

    return shared_metrics_router(collect)


def install_security_headers(app: FastAPI) -> None:
    """On every response; no-store unless a route chose otherwise (the stylesheet), since every
    other answer is about a person's account or carries a form token. A plain ASGI middleware:
    it only touches the response's start message."""
    app.add_middleware(SecurityHeaders)


LOGIN_PATH = "/auth/login"
MAX_INSPECTED_BODY = 2 * MAX_FIELD + MAX_PASSWORD_FIELD  # a larger login goes on unread (FastAPI refuses it)


class LocksFirst:
    """A login of an account that the replica knows locked is answered 423 here, before FastAPI
    routes, validates or injects anything. That is the answer someone hammering a locked account
    gets, over and over, so it should cost as little as a request can: about a third of the
    CPU of the same answer through the route (docs/performance.md). The route still checks the
    same lock (``handlers.admitted``); any request this cannot read as a plain JSON login goes
    on unchanged, its body replayed."""

    def __init__(self, app: ASGIApp, portal: "Portal") -> None:
        self.app, self.portal = app, portal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size, more = 0, True
        while more and size <= MAX_INSPECTED_BODY:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if not more and chunks and chunks[-1]["type"] == "http.request":
            answer = self.portal.locked_answer(Request(scope), b"".join(m.get("body", b"") for m in chunks))
            if answer is not None:
                await answer(scope, receive, send)
                return

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()
        await self.app(scope, replay, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def set_session_cookie(response: Response, settings: IdentitySettings, value: str, *, max_age: int | None) -> None:
    """Host-only (no Domain), Path=/, HttpOnly, SameSite=Lax, Secure unless COOKIE_SECURE=false."""
    response.set_cookie(settings.cookie_name, value, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=settings.cookie_secure)


def clear_session_cookie(response: Response, settings: IdentitySettings) -> None:
    response.delete_cookie(settings.cookie_name, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure)
