"""`portal-auth up`: the whole system on this machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import os
import secrets
import signal
import threading

import httpx

from portal_auth import DEFAULT_PORTS, SERVICES, admin_token_file, home, service_urls_file, write_service_urls
from portal_auth.devstack._net import preferred_port
from portal_auth.gateway import nginx_binary, start_gateway
from portal_auth.system import System, start_infrastructure
from shared.secrets import new_mail_token_key

GATEWAY_PORT = 8080
DEMO = {"slug": "demo", "name": "Demo Organization", "domains": ["demo.localhost"],
        "settings": {"display_name": "Demo Portal", "support_email": "support@example.com"}}


def _new_admin_token() -> str:
    """A fresh token each run, kept in a file only its owner reads, never printed."""
    token, path = secrets.token_urlsafe(24), admin_token_file()
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token)
    return token


def say(line: str) -> None:
    print(f"portal-auth: {line}", flush=True)


def up() -> int:
    workdir = home() / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    infra = start_infrastructure(workdir, fixed_ports=True, say=say)
    env = {
        "ENVIRONMENT": os.environ.get("ENVIRONMENT", "local"),  # this machine, over plain HTTP
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN") or _new_admin_token(),
        "MAIL_TOKEN_KEY": os.environ.get("MAIL_TOKEN_KEY") or new_mail_token_key(),
        "COOKIE_SECURE": os.environ.get("COOKIE_SECURE", "false"),  # plain HTTP on this machine
        "TRUSTED_PROXIES": os.environ.get("TRUSTED_PROXIES", "127.0.0.1"),
    }
    ports = {service: preferred_port(DEFAULT_PORTS[service]) for service in SERVICES}
    gateway_port = preferred_port(GATEWAY_PORT) if nginx_binary() else None
    # Links in emails must reach this machine's portal, wherever it ended up listening.
    env.setdefault("PORTAL_URL_TEMPLATE", os.environ.get("PORTAL_URL_TEMPLATE")
                   or f"http://{{host}}:{gateway_port or ports['identity']}")
    system = System(infra=infra, workdir=workdir, env=env)
    gateway = None
    try:
        for service in SERVICES:
            say(f"starting {service} ...")
            system.start(service, port=ports[service])
        _create_demo(system, env["ADMIN_TOKEN"])
        if gateway_port is not None:
            gateway = start_gateway(workdir / "gateway", port=gateway_port, identity_port=ports["identity"])
        write_service_urls({name: process.url for name, process in system.processes.items()})
        _print_where(system, env, gateway_port)
        _wait_for_ctrl_c()
    finally:
        say("stopping ...")
        if gateway is not None:
            gateway.stop()
        system.stop_all()
        infra.stop()
        service_urls_file().unlink(missing_ok=True)
        say("stopped")
    return 0


def _create_demo(system: System, admin_token: str) -> None:
    answer = httpx.post(f"{system.url('tenant')}/admin/tenants", json=DEMO,
                        headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    if answer.status_code not in (201, 409):  # 409: it is there from an earlier run
        raise SystemExit(f"portal-auth: could not create the demo organization: {answer.status_code} {answer.text}")


def _print_where(system: System, env: dict[str, str], gateway_port: int | None) -> None:
    portal = f"http://demo.localhost:{gateway_port or system.processes['identity'].port}"
    lines = [
        "", "portal auth is running.",
        f"  portal (demo organization):  {portal}/login",
        *([] if gateway_port else ["  (nginx is not installed: the portal is served by identity directly, no gateway)"]),
        "  services: " + ", ".join(f"{p.name} {p.url}" for p in system.processes.values()),
        f"  mail inbox:  {system.infra.mail.inbox_url if system.infra.mail else f'your SMTP server {system.infra.smtp_host}'}",
        f"  admin token: in {admin_token_file()} (read by `portal-auth tenant` and `portal-auth unlock`)",
        f"  logs:        {system.workdir / 'logs'}",
        "Press Ctrl-C to stop everything.", "",
    ]
    print("\n".join(lines), flush=True)


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
