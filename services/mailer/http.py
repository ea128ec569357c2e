"""The mailer's HTTP side: health and readiness, and the queue for operators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.mailer.domain import Status
from services.mailer.repository import MailerRepository
from shared.db import transaction
from shared.http import admin_guard
from shared.runtime import Runtime


def routes(runtime: Runtime) -> APIRouter:
    admin = APIRouter(prefix="/admin/emails", dependencies=[Depends(admin_guard(runtime.settings.admin_token))])

    @admin.get("")
    async def listing(tenant: str | None = None, to: str | None = None, status: Status | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """The newest emails first, without their context: operators see what happened, never a token."""
        async with transaction(runtime.engine) as conn:
            rows = await MailerRepository(conn).listing(tenant=tenant, to=to, status=status.value if status else None,
                                                        limit=limit)
        return {"emails": rows}

    return admin
