"""The production shape, started for real: `docker compose up` of docker-compose.yml with every
image built here (portal_auth.devstack.containers), scaled as in production. Marker `compose`;
run with `make compose-test`. The stack is started once for the module and taken down at the end."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from portal_auth.devstack import free_port
from portal_auth.devstack.containers import Compose, new_secrets, prepare

PROJECT = "portal-auth-compose-test"
SCALE = ("--scale", "identity=2", "--scale", "lockout=2", "--scale", "mailer=2")
HEALTH_TIMEOUT = 600.0


@dataclass
class Stack:
    compose: Compose
    https_port: int
    http_port: int
    inbox_port: int
    tls_dir: Path
    started_in: float = 0.0

    def up(self, *args: str) -> float:
        """`docker compose up --wait`: returns once every service is healthy (or fails)."""
        started = time.monotonic()
        self.compose.run("up", "--detach", "--wait", "--wait-timeout", str(int(HEALTH_TIMEOUT)), "--pull", "never",
                         "--no-build", *args, timeout=HEALTH_TIMEOUT + 60)
        return time.monotonic() - started

    def down(self, *args: str) -> None:
        self.compose.run("down", *args, timeout=300)

    def containers(self, service: str) -> list[dict[str, Any]]:
        out = self.compose.run("ps", "--format", "json", service).stdout.decode()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def exec(self, service: str, *argv: str, check: bool = True, input: bytes | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        variables = [arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")]
        return self.compose.run("exec", "-T", *variables, service, *argv, check=check, input=input)

    def python(self, service: str, script: str, *, env: dict[str, str] | None = None) -> str:
        """Runs ``script`` in one of ``service``'s containers (its network, its credentials, and ``env``)."""
        result = self.exec(service, "python3", "-c", script, env=env)
        return result.stdout.decode() + result.stderr.decode(errors="replace")

    def logs(self, service: str) -> str:
        result = self.compose.run("logs", "--no-color", service)
        return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")

    def client(self, host: str) -> httpx.Client:
        """HTTPS to the gateway as a browser on ``host`` would reach it: SNI and Host are the
        portal's name and the certificate is checked against the stack's own CA."""
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        return _HostClient(host, base_url=f"https://127.0.0.1:{self.https_port}", verify=context, timeout=30.0,
                           headers={"Host": host})


class _HostClient(httpx.Client):
    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sni = host

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        kwargs["extensions"] = {**(kwargs.get("extensions") or {}), "sni_hostname": self._sni}
        return super().request(method, url, **kwargs)


@pytest.fixture(scope="session")
def images() -> Compose:
    """The engine running and every image built (unchanged layers from the cache), once."""
    ports = {"GATEWAY_HTTPS_PORT": free_port(), "GATEWAY_HTTP_PORT": free_port(), "INBOX_PORT": free_port()}
    started = time.monotonic()
    compose = prepare(PROJECT, {**new_secrets(), **{name: str(port) for name, port in ports.items()}})
    print(f"\nengine, base image and images ready in {time.monotonic() - started:.0f} s")
    return compose


@pytest.fixture(scope="module")
def stack(images: Compose, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    compose = images
    ports = {name: int(compose.env[name]) for name in ("GATEWAY_HTTPS_PORT", "GATEWAY_HTTP_PORT", "INBOX_PORT")}
    stack = Stack(compose, ports["GATEWAY_HTTPS_PORT"], ports["GATEWAY_HTTP_PORT"], ports["INBOX_PORT"],
                  tmp_path_factory.mktemp("tls"))
    compose.run("down", "--volumes", "--remove-orphans", timeout=300)  # whatever an interrupted run left
    try:
        stack.started_in = stack.up(*SCALE)
        print(f"\ncompose stack healthy in {stack.started_in:.0f} s (identity=2, lockout=2, mailer=2)")
        compose.run("cp", "gateway:/etc/nginx/tls/ca.crt", str(stack.tls_dir / "ca.crt"))
        yield stack
    except BaseException:
        print(compose.run("logs", "--no-color", "--tail", "60", check=False).stdout.decode(errors="replace")[-20000:])
        raise
    finally:
        compose.run("down", "--volumes", "--remove-orphans", check=False, timeout=300)


def wait_for(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout:.0f} s")
        time.sleep(0.5)


class Inbox:
    """The mail catcher's web inbox, as an operator on the host reads it (127.0.0.1 only)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def messages(self) -> list[EmailMessage]:
        index = httpx.get(self.url + "/", timeout=10).text
        names = re.findall(r'href="/messages/([^"/]+)"', index)
        return [message_from_bytes(httpx.get(f"{self.url}/messages/{name}.raw", timeout=10).content,
                                   policy=policy.default) for name in names]  # type: ignore[misc]

    def wait_for_link(self, to: str, path: str, *, seen: set[str], timeout: float = 90.0) -> str:
        """The token of the first link to ``path`` in a message to ``to`` not seen before."""
        def find() -> str | None:
            for message in self.messages():
                if to not in str(message.get("To", "")):
                    continue
                body = message.get_body(preferencelist=("plain",))
                text = body.get_content() if body is not None else ""
                for url in re.findall(r"https?://\S+", text):
                    parts = urlsplit(url)
                    token = parse_qs(parts.query).get("token", [None])[0]
                    if parts.path == path and token and token not in seen:
                        seen.add(token)
                        return url
            return None
        return str(wait_for(find, timeout=timeout, what=f"a {path} link to {to}"))
