"""HTTP pieces every service shares: RFC 9457 problem details, health and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.db import DatabaseUnavailable

PROBLEM_JSON = "application/problem+json"

# code -> (status, title): the contract's table, word for word.
PROBLEMS: dict[str, tuple[int, str]] = {
    "organization_not_found": (404, "Organization not found"),
    "invalid_credentials": (401, "Incorrect email or password"),
    "user_not_confirmed": (403, "User not confirmed"),
    "account_locked": (423, "Account temporarily locked"),
    "password_too_short": (422, "Password must be at least 12 characters"),
    "password_too_long": (422, "Password is too long"),
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


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return problem_response(Problem("service_unavailable", headers={"Retry-After": "5"}))

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


def admin_guard(admin_token: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: the admin APIs answer 401 without ``Authorization: Bearer ADMIN_TOKEN``."""
    import hmac

    async def guard(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise Problem("unauthorized", headers={"WWW-Authenticate": "Bearer"})

    return guard
