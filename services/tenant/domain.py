"""Organizations and their portal domains: rules with no framework in them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import idna
from pydantic import ValidationError

from shared.tenancy import TenantSettings

# Letters, digits and inner hyphens: safe in URLs, Kafka keys ("<slug>:<email>") and shells
# (a leading '-' would read as an option to `portal-auth tenant show`).
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,61}[a-z0-9]")
LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_HOST = 253
SLUG_RULE = "2 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
MESSAGES = {"extra_forbidden": "unknown setting"}  # pydantic's words where they would puzzle an admin


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidInput(ValueError):
    """Input that breaks a rule: answered 422 with every offending field named."""

    def __init__(self, *errors: FieldError) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class Taken(Exception):
    """A slug or a domain that already belongs to an organization (a domain maps to only one)."""

    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"{what} {value!r} is taken")
        self.what, self.value = what, value


def invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(FieldError(field, message))


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise invalid("slug", SLUG_RULE)
    return slug


def normalize_host(host: str, *, field: str = "domains") -> str:
    """A portal host as browsers send it: lower case, international names in their ASCII (IDNA
    2008 with UTS 46 mapping) form, no trailing dot. IP addresses are not portal domains."""
    candidate = host.strip().removesuffix(".")
    try:
        ascii_host = idna.encode(candidate, uts46=True).decode("ascii") if len(candidate) <= MAX_HOST else ""
    except idna.IDNAError:  # also InvalidCodepoint and friends
        ascii_host = ""
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > MAX_HOST or not all(LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        raise invalid(field, f"{host!r} is not a valid host name")
    return ascii_host


def normalize_hosts(hosts: Iterable[str]) -> list[str]:
    """Each host once, in one order, so concurrent creates claim domains without deadlocking."""
    return sorted({normalize_host(host) for host in hosts})


def without_port(authority: str) -> str:
    """'portal.example:8080' -> 'portal.example', as a Host header carries it."""
    name, colon, port = authority.rpartition(":")
    return name if colon and port.isdigit() else authority


def check_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Complete settings, defaults filled in, as every service's copy stores them."""
    try:
        return TenantSettings.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInput(*(FieldError(".".join(["settings", *map(str, e["loc"])]), MESSAGES.get(e["type"], e["msg"]))
                             for e in exc.errors())) from None


def merge_settings(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH semantics for nested settings: only the given keys change."""
    merged = dict(base)
    for key, value in change.items():
        nested = isinstance(value, Mapping) and isinstance(base.get(key), Mapping)
        merged[key] = merge_settings(base[key], value) if nested else value
    return merged


def check_all(*checks: Callable[[], Any]) -> list[Any]:
    """Run every check, so that one answer names every bad field, not only the first."""
    results: list[Any] = []
    errors: list[FieldError] = []
    for check in checks:
        try:
            results.append(check())
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput(*errors)
    return results
