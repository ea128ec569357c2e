"""HTTP pieces every service shares: RFC 9457 problem details, health and readiness, metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db import DatabaseUnavailable
from shared.events import Actor

PROBLEM_JSON = "application/problem+json"

# code -> (status, title): the contract's table, word for word.
PROBLEMS: dict[str, tuple[int, str]] = {
    "organization_not_found": (404, "Organization not found"),
    "invalid_credentials": (401, "Incorrect email or password"),
    "user_not_confirmed": (403, "User not confirmed"),
    "account_locked": (423, "Account temporarily locked"),
    "password_too_short": (422, "Password must be at least 12 characters"),
    "password_too_long": (422, "Password is too long"),
    "password_too_common": (422, "Password is too common"),
    "invalid_email": (422, "Invalid email address"),
    "token_expired": (410, "Link expired"),
    "token_invalid": (400, "Link invalid or already used"),
    "not_authenticated": (401, "Not signed in"),
    "too_many_requests": (429, "Too many attempts, try again shortly"),
    "service_unavailable": (503, "Service temporarily unavailable"),
    # Beyond the contract's table, for the admin API and input checks.
    "unauthorized": (401, "Admin token missing or wrong"),
    "not_found": (404, "Not found"),
    "conflict": (409, "Already taken"),
    "validation_error": (422, "Invalid request"),
    "unsupported_media_type": (415, "Content-Type must be application/json"),
    "malformed_request": (400, "Request body could not be read"),
    "method_not_allowed": (405, "Method not allowed"),
}
# The framework's own refusals (a body that is not JSON text, an unknown path or method), as problems.
_HTTP_ERRORS = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}

# The headers that come with a problem, as the OpenAPI declares them.
_RETRY_AFTER = {"description": "Seconds to wait before trying again", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
PROBLEM_HEADERS: dict[str, dict[str, dict[str, Any]]] = {
    "account_locked": {"Retry-After": _RETRY_AFTER},
    "too_many_requests": {"Retry-After": _RETRY_AFTER},
    "service_unavailable": {"Retry-After": _RETRY_AFTER},
    "unauthorized": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    "unsupported_media_type": {"Accept": {"description": "application/json", "schema": {"type": "string"}}},
}


class Problem(Exception):
    """An error the caller should see, answered as problem+json with the contract's title."""

    def __init__(self, code: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> None:
        status, default_title = PROBLEMS[code]
        super().__init__(code)
        self.code, self.status, self.title = code, status, title or default_title
        self.headers, self.extra = headers or {}, extra

    def body(self) -> dict[str, Any]:
        return {"type": "about:blank", "status": self.status, "title": self.title, "code": self.code, **self.extra}


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI declaration of the problems a route answers with (for ``responses=``): by status,
    application/problem+json whose ``code`` is one of the route's codes, and the headers they carry
    (required where every code of that status carries it). Every route may be 503 service_unavailable:
    each needs the database."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*codes, "service_unavailable")):
        by_status.setdefault(PROBLEMS[code][0], []).append(code)
    return {status: _problem_declaration(status, codes_here) for status, codes_here in sorted(by_status.items())}


def _problem_declaration(status: int, codes: list[str]) -> dict[str, Any]:
    body = {"type": "object", "required": ["type", "status", "title", "code"], "properties": {
        "type": {"type": "string"}, "status": {"type": "integer", "enum": [status]}, "title": {"type": "string"},
        "code": {"type": "string", "enum": codes}, "detail": {"type": "string"}}}
    headers: dict[str, dict[str, Any]] = {}
    for code in codes:
        for name, header in PROBLEM_HEADERS.get(code, {}).items():
            headers[name] = {**header, "required": all(name in PROBLEM_HEADERS.get(c, {}) for c in codes)}
    declaration = {"description": ", ".join(codes), "content": {PROBLEM_JSON: {"schema": body}}}
    return {**declaration, "headers": headers} if headers else declaration


def declare_admin_token(app: FastAPI) -> None:
    """Every operation of ``app``'s OpenAPI is an admin one: it says so with a bearer scheme."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"adminToken": []}]
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return problem_response(Problem("service_unavailable", headers={"Retry-After": "5"}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_ERRORS.get(exc.status_code)
        if code is None:
            return await http_exception_handler(request, exc)
        return problem_response(Problem(code, headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(Problem("validation_error", detail=detail, errors=errors))


Check = Callable[[], Awaitable[bool]]


def health_router(*, database: Check, kafka: Check) -> APIRouter:
    """/healthz says the process runs. /readyz is 503 when the database is down (nothing can be
    served) and reports Kafka as well; Kafka away is 200 "degraded", since events wait in the
    outbox and the service keeps its promises."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        db_ok, kafka_ok = await asyncio.gather(_within(database), _within(kafka))
        body = {"status": "ok" if db_ok and kafka_ok else "degraded" if db_ok else "unavailable",
                "database": "up" if db_ok else "down", "kafka": "up" if kafka_ok else "down"}
        return JSONResponse(body, status_code=200 if db_ok else 503)

    return router


async def _within(check: Check, seconds: float = 2.0) -> bool:
    try:
        return await asyncio.wait_for(check(), seconds)
    except (TimeoutError, OSError):
        return False


@dataclass(frozen=True)
class Metric:
    """One metric family for GET /metrics: its samples by label set (``{}`` for an unlabelled one)."""

    name: str
    help: str
    type: Literal["counter", "gauge"]
    samples: Sequence[tuple[Mapping[str, str], float]] = field(default_factory=tuple)

    @classmethod
    def single(cls, name: str, help: str, type: Literal["counter", "gauge"], value: float) -> Metric:
        return cls(name, help, type, (({}, value),))

    def lines(self) -> list[str]:
        head = [f"# HELP {self.name} {_escaped(self.help, quote=False)}", f"# TYPE {self.name} {self.type}"]
        return head + [f"{self.name}{_labels(labels)} {value}" for labels, value in self.samples]


def prometheus_text(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition format, version 0.0.4."""
    return "\n".join(line for metric in metrics for line in metric.lines()) + "\n"


def metrics_router(collect: Callable[[], Awaitable[Iterable[Metric]]]) -> APIRouter:
    """GET /metrics in Prometheus text format, for operators and for tests that must see work
    done or not done; ``collect`` gathers the service's metrics at each scrape."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(await collect()), media_type="text/plain; version=0.0.4")

    return router


def _labels(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{key}="{_escaped(value, quote=True)}"' for key, value in labels.items())
    return f"{{{inner}}}" if inner else ""


def _escaped(text: str, *, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def admin_actor(request: Request) -> Actor:
    """A FastAPI dependency for admin changes: who asked, for the change's event. The request id
    is the caller's ``X-Request-ID`` when it is a plain short value, else a new one."""
    given = request.headers.get("x-request-id", "")
    request_id = given if given.isascii() and given.isprintable() and 0 < len(given) <= 128 else str(uuid.uuid4())
    return Actor(address=request.client.host if request.client else "unknown", request_id=request_id)


def admin_guard(admin_token: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: the admin APIs answer 401 without ``Authorization: Bearer ADMIN_TOKEN``."""
    import hmac

    async def guard(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        matches = bool(given) and bool(admin_token) and hmac.compare_digest(given.encode(), admin_token.encode())
        if scheme.lower() != "bearer" or not matches:  # an empty token never matches, even an empty setting
            raise Problem("unauthorized", headers={"WWW-Authenticate": "Bearer"})

    return guard
