"""Identity's composition root."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.identity import consumers, pages
from services.identity.domain import SessionPolicy
from services.identity.handlers import Deps, PasswordHasher
from services.identity.memory import LiveCopies
from services.identity.http import LocksFirst, Portal, install_security_headers, metrics_router, routes
from services.identity.settings import IdentitySettings
from services.identity.tables import metadata
from shared.http import install_problem_handlers
from shared.runtime import Runtime
from shared.secrets import MailTokenCipher


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or IdentitySettings()
    runtime = Runtime.build(name="identity", settings=settings, metadata=metadata)
    runtime.consume(topics=consumers.TOPICS, subscribers=consumers.subscribers())
    memory = LiveCopies(engine=runtime.engine, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=runtime.name,
                        client_options=settings.kafka_client_options())
    runtime.beside(memory.run)
    deps = Deps(
        cipher=MailTokenCipher(settings.mail_token_key),
        hasher=PasswordHasher(settings.bcrypt_rounds, workers=settings.hash_workers or None,
                              max_wait=settings.hash_queue_max_wait_seconds),
        sessions=SessionPolicy(
            idle=timedelta(seconds=settings.session_idle_seconds),
            absolute=timedelta(seconds=settings.session_absolute_seconds),
            remember_idle=timedelta(seconds=settings.remember_idle_seconds),
            remember_absolute=timedelta(seconds=settings.remember_absolute_seconds),
        ),
        memory=memory,
    )
    app = FastAPI(title="portal-auth identity", lifespan=runtime.lifespan)
    app.state.runtime, app.state.deps, app.state.settings = runtime, deps, settings
    install_problem_handlers(app)
    portal = Portal(runtime, settings, deps)
    app.add_middleware(LocksFirst, portal=portal)  # outside FastAPI's routing, inside the security headers:
    install_security_headers(app)  # the middleware added last runs first
    app.include_router(runtime.health())
    app.include_router(metrics_router(deps))
    app.include_router(routes(portal))
    app.include_router(pages.router(portal))
    return app
