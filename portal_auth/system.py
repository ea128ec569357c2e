"""The whole system on one machine: infrastructure where none is configured, then the four
services as separate processes. Used by `portal-auth up` and by the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from portal_auth import DEFAULT_PORTS, SERVICES  # noqa: F401 - re-exported for callers
from portal_auth.devstack import (
    DevstackError,
    KafkaHandle,
    MailCatcherHandle,
    PostgresHandle,
    free_port,
    start_kafka,
    start_mail_catcher,
    start_postgres,
)
from portal_auth.devstack._net import preferred_port
from portal_auth.devstack._proc import ManagedProcess
from shared.kafka import ensure_topics


@dataclass
class Infrastructure:
    database_url: str
    kafka_bootstrap: str
    smtp_host: str
    smtp_port: int
    kafka: KafkaHandle | None = None
    postgres: PostgresHandle | None = None
    mail: MailCatcherHandle | None = None

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
                "SMTP_HOST": self.smtp_host, "SMTP_PORT": str(self.smtp_port),
}

    def stop(self) -> None:
        for handle in (self.mail, self.kafka, self.postgres):
            if handle is not None:
                handle.stop()


def start_infrastructure(workdir: Path, *, env: Mapping[str, str] = os.environ, fixed_ports: bool = False,
                         say: Callable[[str], None] = print) -> Infrastructure:
    """Use DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS and SMTP_HOST when given; start local ones otherwise."""
    port = preferred_port if fixed_ports else (lambda default: free_port())
    infra = Infrastructure(env.get("DATABASE_URL", ""), env.get("KAFKA_BOOTSTRAP_SERVERS", ""),
                           env.get("SMTP_HOST", ""), int(env.get("SMTP_PORT", "25")))
    try:
        if not infra.database_url:
            say("starting PostgreSQL (embedded) ...")
            infra.postgres = start_postgres(workdir / "postgres", port=port(5432))
            infra.database_url = infra.postgres.url
        if not infra.kafka_bootstrap:
            say("starting Kafka ...")
            started = time.monotonic()
            if env.get("PORTAL_AUTH_KAFKA", "apache") not in ("apache", "auto"):  # CI still says apache
                raise DevstackError("PORTAL_AUTH_KAFKA: Apache Kafka is the only local broker; use KAFKA_BOOTSTRAP_SERVERS for another")
            infra.kafka = start_kafka(workdir / "kafka", port=port(9092))
            infra.kafka_bootstrap = infra.kafka.bootstrap
            say(f"Kafka ready in {time.monotonic() - started:.1f} s")
        if not infra.smtp_host:
            infra.mail = start_mail_catcher(workdir / "mail", smtp_port=port(1025), web_port=port(8025))
            infra.smtp_host, infra.smtp_port = infra.mail.smtp_host, infra.mail.smtp_port
        asyncio.run(ensure_topics(infra.kafka_bootstrap))
    except BaseException:
        infra.stop()
        raise
    return infra


@dataclass
class ServiceProcess:
    name: str
    service: str
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    """Service processes over one infrastructure; more replicas can be started by name."""

    infra: Infrastructure
    workdir: Path
    env: dict[str, str]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, service: str, *, name: str | None = None, port: int | None = None,
              env: Mapping[str, str] | None = None, timeout: float = 60.0,
              args: Sequence[str] = (), probe: str = "/readyz") -> ServiceProcess:
        """``args`` go to `portal-auth serve` (e.g. --no-migrate); ``probe`` is the path that must
        answer 200 before the service counts as started (/healthz for one started without its database)."""
        name = name or service
        port = port or free_port()
        argv = [sys.executable, "-m", "portal_auth.cli", "serve", service, "--port", str(port), *args]
        process = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log",
                                 env={**os.environ, **self.infra.env(), **self.env, **(env or {})})
        process.start()
        running = ServiceProcess(name, service, port, process)
        self.processes[name] = running
        _wait_healthy(running, timeout, probe)
        return running

    def url(self, name: str) -> str:
        return self.processes[name].url

    def stop(self, name: str) -> None:
        self.processes.pop(name).process.stop()

    def restart(self, name: str, *, timeout: float = 60.0) -> ServiceProcess:
        old = self.processes[name]
        old.process.stop()
        process = ManagedProcess(name, old.process.argv, old.process.log_path, env=old.process.env)
        process.start()
        self.processes[name] = ServiceProcess(name, old.service, old.port, process)
        _wait_healthy(self.processes[name], timeout)
        return self.processes[name]

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def _wait_healthy(service: ServiceProcess, timeout: float, probe: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.process.is_running():
            raise DevstackError(service.process.describe_failure(f"{service.name} did not start"))
        try:
            if httpx.get(f"{service.url}{probe}", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise DevstackError(service.process.describe_failure(f"{service.name} not ready after {timeout:.0f} s"))


@contextlib.contextmanager
def local_system(workdir: Path, *, env: Mapping[str, str], services: tuple[str, ...] = SERVICES) -> Iterator[System]:
    """Fresh local infrastructure and ``services`` over it, all stopped on leaving; for benchmarks.
    Local means local: DATABASE_URL and friends in this process's environment are not used."""
    infra = start_infrastructure(workdir, env={}, say=lambda line: print(line, file=sys.stderr))
    system = System(infra=infra, workdir=workdir, env={"ENVIRONMENT": "local", "COOKIE_SECURE": "false", "LOG_LEVEL": "WARNING", **env})
    try:
        for service in services:
            system.start(service)
        yield system
    finally:
        system.stop_all()
        infra.stop()
