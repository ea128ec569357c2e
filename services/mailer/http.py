"""The mailer's HTTP side: health and readiness, the queue for operators, and metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.mailer import handlers
from services.mailer.domain import Status
from services.mailer.repository import MailerRepository
from shared.db import transaction
from shared.http import Metric, admin_guard, metrics_router, problem_responses
from shared.runtime import Runtime
from shared.text import PlainText


def routes(runtime: Runtime) -> APIRouter:
    admin = APIRouter(prefix="/admin/emails", dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
                      responses=problem_responses("unauthorized", "validation_error"))

    @admin.get("")
    async def listing(tenant: PlainText | None = None, to: PlainText | None = None, status: Status | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        async with transaction(runtime.engine) as conn:
            rows = await handlers.listing(MailerRepository(conn), tenant=tenant, to=to, status=status, limit=limit)
        return {"emails": rows}

    return admin


def metrics(runtime: Runtime) -> APIRouter:
    """GET /metrics (Prometheus text): the queue by status and the outbox backlog, counted in
    the database at each scrape, so every mailer process answers for the whole queue."""
    async def collect() -> list[Metric]:
        async with transaction(runtime.engine) as conn:
            by_status, unsent = await handlers.queue_counts(MailerRepository(conn), runtime.outbox)
        return [
            Metric("portal_mailer_emails", "Emails in the mailer's queue by status (all processes)", "gauge",
                   [({"status": status.value}, count) for status, count in by_status.items()]),
            Metric.single("portal_mailer_outbox_unsent", "EmailSent/EmailFailed events not yet published to Kafka",
                          "gauge", unsent),
        ]

    return metrics_router(collect)
