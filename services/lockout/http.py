"""Lockout's admin API: translate, call a handler, answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from shared.accounts import InvalidEmail, normalize_email
from services.lockout import handlers
from services.lockout.domain import Standing
from services.lockout.repository import LockoutRepository
from shared.clock import utcnow
from shared.db import transaction
from shared.events import Actor
from shared.http import Problem, admin_actor, admin_guard, problem_response, problem_responses
from shared.messaging import Announcer
from shared.runtime import Runtime
from shared.text import PlainText


# An address (invalid_email otherwise), as the OpenAPI says.
Email = Annotated[PlainText, Path(json_schema_extra={"format": "email"})]


def public(standing: Standing) -> dict[str, Any]:
    return {
        "locked": standing.locked,
        "locked_until": standing.locked_until.isoformat() if standing.locked_until else None,
        "failures_in_window": standing.failures_in_window,
        "locked_sources": standing.locked_sources,
        "every_source_locked": standing.every_source_locked,
    }


def routes(runtime: Runtime, *, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    router = APIRouter(prefix="/admin/lockouts", dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
                       responses=problem_responses("unauthorized", "organization_not_found", "invalid_email", "validation_error"))

    @router.get("/{slug}/{email}")
    async def show(slug: PlainText, email: Email) -> dict[str, Any]:
        async with transaction(runtime.engine) as conn:
            standing = await handlers.standing(LockoutRepository(conn), tenant=slug, email=_address(email), now=clock())
        return public(standing)

    @router.delete("/{slug}/{email}", status_code=204)
    async def unlock(slug: PlainText, email: Email, actor: Actor = Depends(admin_actor)) -> Response:  # noqa: B008
        async with transaction(runtime.engine) as conn:
            await handlers.unlock(LockoutRepository(conn), Announcer(conn, runtime.outbox, correlation_id=actor.request_id),
                                  tenant=slug, email=_address(email), actor=actor)
        runtime.relay.wake()
        return Response(status_code=204, headers={"X-Request-ID": actor.request_id})

    return router


def _address(email: str) -> str:
    """The account's key, normalized exactly as identity does when it counts a login."""
    try:
        return normalize_email(email)
    except InvalidEmail:
        raise Problem("invalid_email") from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(handlers.UnknownOrganization)
    async def _unknown(request: Request, exc: handlers.UnknownOrganization) -> JSONResponse:
        return problem_response(Problem("organization_not_found", slug=str(exc)))
