"""Organizations and their portal domains: rules with no framework in them."""

from __future__ import annotations

import re

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidInput(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_slug(slug: str) -> str:
    if len(slug) < 2 or not SLUG.fullmatch(slug):
        raise InvalidInput("slug", "2 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'")
    return slug


def normalize_host(host: str, *, field: str = "domains") -> str:
    """A portal host in lower case; international names in their ASCII (IDNA) form; no port."""
    candidate = host.strip().rstrip(".").lower()
    try:
        ascii_host = candidate.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(field, f"{host!r} is not a valid host name") from exc
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(field, f"{host!r} is not a valid host name")
    return ascii_host
