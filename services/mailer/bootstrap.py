"""The mailer's composition root."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from fastapi import FastAPI

from services.mailer import consumers
from services.mailer.domain import RetryPolicy
from services.mailer.handlers import Deps
from services.mailer.http import metrics, routes
from services.mailer.rendering import JinjaRenderer
from services.mailer.sender import Sender
from services.mailer.settings import MailerSettings
from services.mailer.smtp import SmtpTransport
from services.mailer.tables import metadata
from shared.http import declare_admin_token, install_problem_handlers
from shared.runtime import Runtime
from shared.secrets import MailTokenCipher


def transport(settings: MailerSettings) -> SmtpTransport:
    return SmtpTransport(
        host=settings.smtp_host, port=settings.smtp_port, timeout=settings.smtp_timeout_seconds,
        budget=settings.send_budget_seconds, username=settings.smtp_username or None,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls, validate_certs=settings.smtp_validate_certs, ca_file=settings.smtp_ca_file,
    )


def deps(settings: MailerSettings, runtime: Runtime) -> Deps:
    return Deps(
        outbox=runtime.outbox,
        cipher=MailTokenCipher(settings.mail_token_key),
        transport=transport(settings),
        renderer=JinjaRenderer(),
        retry=RetryPolicy(base=timedelta(seconds=settings.mailer_retry_base_seconds),
                          cap=timedelta(seconds=settings.mailer_retry_max_seconds), max_attempts=settings.mailer_max_attempts),
        mail_from=settings.mail_from,
        portal_url_template=settings.portal_url_template,
        throttle_per_hour=settings.mailer_throttle_per_hour,
        lease=timedelta(seconds=settings.mailer_lease_seconds),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def create_app(settings: MailerSettings | None = None) -> FastAPI:
    settings = settings or MailerSettings()
    runtime = Runtime.build(name="mailer", settings=settings, metadata=metadata)
    mailer = deps(settings, runtime)
    sender = Sender(engine=runtime.engine, deps=mailer, batch=settings.mailer_batch,
                    poll_seconds=settings.mailer_poll_seconds, after_record=runtime.relay.wake)
    runtime.consume(topics=consumers.TOPICS, subscribers=consumers.subscribers(mailer), after_commit=sender.wake)
    # On shutdown the sender claims nothing more, and the sends in flight are recorded.
    runtime.loop(sender.loop, drain_seconds=settings.send_budget_seconds)
    app = FastAPI(title="portal-auth mailer", lifespan=runtime.lifespan)
    app.state.runtime, app.state.deps, app.state.settings = runtime, mailer, settings
    install_problem_handlers(app)
    declare_admin_token(app)
    app.include_router(runtime.health())
    app.include_router(routes(runtime))
    app.include_router(metrics(runtime))
    return app
