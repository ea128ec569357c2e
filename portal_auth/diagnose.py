"""`portal-auth diagnose ORG EMAIL`: why this person cannot log in, one line for each of the
support article's eight causes that applies, from the services' own state and events."""

from __future__ import annotations

import asyncio
from urllib.parse import quote
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka.errors import KafkaError

from portal_auth.operator import account_path, admin_client, service_url
from portal_auth.replay import Filter
from portal_auth.replay import history as read_history
from shared.accounts import InvalidEmail, normalize_email
from shared.events import Envelope

CAUSES = {
    1: "Email not confirmed", 2: "Incorrect email or password", 3: "Organization not found",
    4: "Password reset", 5: "Account locked", 6: "Session not kept", 7: "Network / service down",
    8: "Portal domain",
}
RECENT = timedelta(minutes=15)


def diagnose(org: str, email: str, *, bootstrap: str) -> list[str]:
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return [_line(2, f"{email!r} is not a valid email address")]
    lines = _services_down()
    try:
        tenant = _tenant(org)
        everywhere = _history(bootstrap, address)
        if tenant is None:
            return [*lines, _line(3, f"no organization {org!r}: its portal answers \"Organization not found\"; "
                                     f"{_find_portal(everywhere)}")]
        history = [e for e in everywhere if e.tenant == org]
        for check in CHECKS:
            lines.extend(check(history, tenant, org, address))
        lines.append(_domains(tenant, org, everywhere))
    except Unreachable as exc:
        return [*lines, _line(7, str(exc))]
    if all(line.startswith("[8]") for line in lines):  # the domain line is context, not a cause
        lines.insert(0, f"no known cause applies to {address} in {org}: it should be able to log in")
    return lines


def _line(cause: int, text: str) -> str:
    return f"[{cause}] {CAUSES[cause]}: {text}"


def _services_down() -> list[str]:
    down = []
    for service in ("identity", "tenant", "lockout", "mailer"):
        try:
            ready = httpx.get(f"{service_url(service)}/readyz", timeout=2.0)
            if ready.status_code != 200:
                down.append(_line(7, f"{service} is not ready: {ready.text[:120]}{_retry(service)}"))
        except httpx.HTTPError as exc:
            down.append(_line(7, f"{service} does not answer at {service_url(service)} ({type(exc).__name__}){_retry(service)}"))
    return down


def _retry(service: str) -> str:
    if service == "identity":
        return "; the gateway shows \"Service temporarily unavailable\" and the person can retry in a few seconds"
    return ""


class Unreachable(Exception):
    """A part of the system needed for the diagnosis did not answer: that is the diagnosis."""


def _admin_get(service: str, path: str) -> httpx.Response:
    try:
        with admin_client(service) as client:
            answer = client.get(path)
    except httpx.HTTPError as exc:
        raise Unreachable(f"{service} does not answer ({type(exc).__name__}); nothing more can be checked") from exc
    if answer.status_code == 401:
        raise SystemExit(f"error: {service} refused the admin token (401)")
    if answer.status_code >= 500:
        raise Unreachable(f"{service} answers {answer.status_code}; nothing more can be checked")
    return answer


def _history(bootstrap: str, address: str) -> list[Envelope]:
    """The address's events in every organization: find-portal's answer spans them all."""
    try:
        return asyncio.run(asyncio.wait_for(read_history(bootstrap, only=Filter(email=address)), 60))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise Unreachable(f"Kafka at {bootstrap} does not answer ({type(exc).__name__}): the event log cannot be read") from exc


def _tenant(org: str) -> dict[str, Any] | None:
    answer = _admin_get("tenant", f"/admin/tenants/{quote(org, safe='')}")
    return answer.json() if answer.status_code == 200 else None


def _find_portal(everywhere: list[Envelope]) -> str:
    """What "Find your portal" would mail this address: its organizations, from the log."""
    orgs = sorted({e.tenant for e in everywhere if e.type == "UserRegistered"})
    if not orgs:
        return "find-portal lists no organization for this address (it has no account anywhere)"
    plural = "organization" if len(orgs) == 1 else "organizations"
    return f"find-portal lists {len(orgs)} {plural} for this address ({', '.join(orgs)})"


def _last(history: list[Envelope], *types: str) -> Envelope | None:
    return next((e for e in reversed(history) if e.type in types), None)


def _unconfirmed(history: list[Envelope], tenant: dict[str, Any], org: str, address: str) -> list[str]:
    if _last(history, "UserRegistered") is None:
        return [_line(2, f"no account for {address} in {org}: every login answers \"Incorrect email or password\"; "
                         "the person can use \"Find your portal\" to learn where the address has one")]
    if _last(history, "EmailConfirmed", "PasswordChanged") is None:
        sent = _last(history, "EmailSent")
        when = f"last email sent {sent.occurred_at:%Y-%m-%d %H:%M} UTC" if sent else "no email sent yet"
        return [_line(1, f"registered but never confirmed ({when}); the person can click \"Send Confirmation Email\", "
                         "or the button on an expired link's page, for a new link")]
    return []


def _failures(history: list[Envelope], tenant: dict[str, Any], org: str, address: str) -> list[str]:
    since = datetime.now(UTC) - RECENT
    failed = [e for e in history if e.type == "LoginFailed" and e.occurred_at > since]
    if not failed:
        return []
    return [_line(2, f"{len(failed)} failed logins in the last 15 minutes, the last at {failed[-1].occurred_at:%H:%M:%S} UTC "
                     f"from {failed[-1].data.get('source')}")]


def _reset(history: list[Envelope], tenant: dict[str, Any], org: str, address: str) -> list[str]:
    asked, latest = _last(history, "ResetRequested"), _last(history, "ResetRequested", "PasswordChanged")
    if asked is None or latest is None or latest.type == "PasswordChanged":
        return []
    expires = datetime.fromisoformat(asked.data["expires_at"])
    failed = [e for e in history if e.type == "EmailFailed" and e.occurred_at >= asked.occurred_at]
    state = "expired" if expires < datetime.now(UTC) else "still valid"
    mail = f"; the email failed: {failed[-1].data.get('reason')}" if failed else ""
    return [_line(4, f"reset requested {asked.occurred_at:%Y-%m-%d %H:%M} UTC, link {state} (until {expires:%H:%M} UTC), "
                     f"not used{mail}; the person can request a new link in one click on the old link's page")]


def _locked(history: list[Envelope], tenant: dict[str, Any], org: str, address: str) -> list[str]:
    answer = _admin_get("lockout", account_path(org, address))
    if answer.status_code != 200 or not answer.json().get("locked"):
        return []
    state = answer.json()
    sources = ", ".join(state.get("locked_sources") or []) or "every address"
    return [_line(5, f"locked until {state['locked_until']} for {sources}; the person can send an unlock link "
                     f"(\"Send unlock link\") or reset the password; an operator: `portal-auth unlock {org} {address}`")]


def _sessions(history: list[Envelope], tenant: dict[str, Any], org: str, address: str) -> list[str]:
    revoked = _last(history, "SessionRevoked")
    signed_in = _last(history, "LoginSucceeded")
    if revoked is None or (signed_in and signed_in.occurred_at > revoked.occurred_at):
        return []
    return [_line(6, f"sessions revoked {revoked.occurred_at:%Y-%m-%d %H:%M} UTC ({revoked.data.get('reason')}); "
                     "the person must sign in again (a browser that refuses cookies is told so on the page)")]


def _domains(tenant: dict[str, Any], org: str, everywhere: list[Envelope]) -> str:
    domains = tenant.get("domains") or []
    if not domains:
        return _line(8, f"{org} has no portal domain: no host reaches its portal; {_find_portal(everywhere)}")
    return _line(8, f"{org}'s portal is only at {', '.join(domains)}; any other host is another organization or none; "
                    f"{_find_portal(everywhere)}")


CHECKS: list[Callable[[list[Envelope], dict[str, Any], str, str], list[str]]] = [
    _unconfirmed, _failures, _reset, _locked, _sessions,
]
