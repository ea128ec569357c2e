"""What operator commands share: where the services are and the admin token."""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx

from portal_auth import DEFAULT_PORTS, admin_token_file, read_service_urls


def service_url(service: str) -> str:
    """``<SERVICE>_URL``, else where `portal-auth up` started it, else the contract's local port."""
    return (os.environ.get(f"{service.upper()}_URL") or read_service_urls().get(service)
            or f"http://127.0.0.1:{DEFAULT_PORTS[service]}")


def admin_token() -> str:
    """ADMIN_TOKEN, else the one `portal-auth up` keeps in its file."""
    token = os.environ.get("ADMIN_TOKEN")
    if token:
        return token
    try:
        return admin_token_file().read_text().strip()
    except FileNotFoundError:
        raise SystemExit("error: set ADMIN_TOKEN (or run `portal-auth up`, which keeps one in "
                         f"{admin_token_file()})") from None


def admin_client(service: str) -> httpx.Client:
    return httpx.Client(base_url=service_url(service), timeout=10.0,
                        headers={"Authorization": f"Bearer {admin_token()}"})


def account_path(org: str, email: str) -> str:
    """The lockout admin path of one account, with the address escaped (it may hold '#', '?', '/')."""
    return f"/admin/lockouts/{quote(org, safe='')}/{quote(email, safe='@')}"


def fail(answer: httpx.Response) -> SystemExit:
    """A one-line error from a problem+json answer."""
    try:
        body = answer.json()
        detail = body.get("detail") or body.get("title")
    except ValueError:
        detail = answer.text[:200]
    return SystemExit(f"error: {detail} ({answer.status_code})")
