"""The mailer's rules, with no framework in them: which email, its identity, its links and
headers, when to try again and when to stop."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlencode


class Kind(StrEnum):
    CONFIRMATION = "confirmation"
    RESET = "reset"
    REGISTRATION_NOTICE = "registration_notice"
    UNLOCK = "unlock"
    PORTALS = "portals"
    PASSWORD_CHANGED = "password_changed"


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    THROTTLED = "throttled"


# Every kind is sent because someone, maybe a stranger, typed an address into a form: all of
# them count toward one limit per address, so the forms cannot be used to flood a mailbox.
THROTTLE_WINDOW = timedelta(hours=1)
SECRET_CONTEXT = ("token_encrypted",)
# The purpose the event asked a link for: its sealed token must have been sealed for it.
TOKEN_PURPOSE = "token_purpose"
MAX_HEADER_CHARS = 200
MAX_ERROR_CHARS = 500


def dedup_key(event_id: uuid.UUID, kind: Kind) -> str:
    """The one place an email's identity is made: one event asks for one email of one kind."""
    return f"{kind.value}.{event_id}"


def message_id(key: str, mail_from: str) -> str:
    """The dedup key as Message-ID, so a receiving side can drop a copy sent twice."""
    return f"<{key}@{mail_from.rpartition('@')[2]}>"


# ...except the notice that a password was changed: only a password change, which needs a link
# from the mailbox or the password itself, sends it, and it must reach the owner even when
# strangers' requests have used up the address's limit.
NEVER_THROTTLED = frozenset({Kind.PASSWORD_CHANGED})


def admit(kind: Kind, recent: int, *, limit: int) -> Status:
    """Queued while the address has had fewer than ``limit`` emails in the window."""
    return Status.QUEUED if kind in NEVER_THROTTLED or recent < limit else Status.THROTTLED


def without_secrets(context: dict[str, object]) -> dict[str, object]:
    """What may stay stored once an email will never be sent (again)."""
    return {name: value for name, value in context.items() if name not in SECRET_CONTEXT}


_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(value: str, *, limit: int = MAX_HEADER_CHARS) -> str:
    """One line of text safe to put in a header: controls and line breaks become spaces."""
    return " ".join(_LINE_BREAKS_AND_CONTROLS.sub(" ", value).split())[:limit]


@dataclass(frozen=True)
class Organization:
    slug: str
    name: str
    display_name: str | None
    support_email: str | None
    domains: tuple[str, ...]

    @property
    def shown_name(self) -> str:
        return header_text(self.display_name or self.name) or self.slug

    def portal_host(self, requested: str) -> str:
        """The host the person used while it is still ours, else our first domain."""
        if requested in self.domains:
            return requested
        if not self.domains:
            raise Undeliverable(f"organization {self.slug!r} has no portal domain to link to")
        return self.domains[0]


def portal_link(template: str, host: str, path: str, **query: str) -> str:
    base = template.format(host=host).rstrip("/")
    return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"


def links(kind: Kind, *, template: str, host: str, token: str | None) -> dict[str, str]:
    """The links each kind of email carries, on the organization's own domain."""
    if kind is Kind.CONFIRMATION:
        return {"action_link": portal_link(template, host, "/confirm", token=_required(token))}
    if kind is Kind.RESET:
        return {"action_link": portal_link(template, host, "/reset-password", token=_required(token))}
    if kind is Kind.UNLOCK:
        return {"action_link": portal_link(template, host, "/unlock", token=_required(token))}
    return {"login_link": portal_link(template, host, "/login"),
            "forgot_link": portal_link(template, host, "/forgot-password")}


# The sender of the list of portals, which speaks for no single organization.
DIRECTORY = Organization(slug="", name="Customer portal", display_name=None, support_email=None, domains=())


def portal_list(context: dict[str, object], *, template: str) -> dict[str, object]:
    """The template values of the list of portals: each organization's name and login page."""
    portals = context.get("portals")
    if not isinstance(portals, list) or not portals:
        raise Undeliverable("the event lists no portal")
    listed = [{"name": header_text(str(p["name"])), "login_link": portal_link(template, str(p["host"]), "/login")}
              for p in portals]
    return {"kind": Kind.PORTALS.value, "organization": DIRECTORY.shown_name, "support_email": None, "portals": listed}


def _required(token: str | None) -> str:
    if not token:
        raise Undeliverable("the event carries no token for the link")
    return token


# --- outcomes of a send -------------------------------------------------------------------------


class DeliveryFailure(Exception):
    """A send that did not happen. ``code`` is the SMTP reply code, None when no server answered."""

    def __init__(self, detail: str, *, code: int | None = None, permanent: bool | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = " ".join(detail.split())[:MAX_ERROR_CHARS]
        self.permanent = permanent if permanent is not None else code is not None and 500 <= code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.detail}" if self.code is not None else self.detail


class Undeliverable(DeliveryFailure):
    """Nothing any retry could change: no domain to link to, a token this key cannot open."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, permanent=True)


@dataclass(frozen=True)
class Retry:
    at: datetime


@dataclass(frozen=True)
class GiveUp:
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from ``base``, capped, for at most ``max_attempts`` sends."""

    base: timedelta
    cap: timedelta
    max_attempts: int

    def delay(self, attempts: int) -> timedelta:
        factor: int = 2 ** max(0, attempts - 1)
        return min(self.cap, self.base * factor)

    def after(self, failure: DeliveryFailure, *, attempts: int, now: datetime) -> Retry | GiveUp:
        if failure.permanent:
            return GiveUp(str(failure))
        if attempts >= self.max_attempts:
            return GiveUp(f"gave up after {attempts} attempts: {failure}"[:MAX_ERROR_CHARS])
        return Retry(now + self.delay(attempts))


# --- the message itself -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Email:
    """One message, its headers already single lines."""

    to: str
    from_name: str
    from_address: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    message_id: str


def compose(*, to: str, org: Organization, rendered: Rendered, mail_from: str, key: str) -> Email:
    if _LINE_BREAKS_AND_CONTROLS.search(to):
        raise Undeliverable("the recipient address contains control characters")
    return Email(to=to, from_name=org.shown_name, from_address=mail_from, reply_to=org.support_email or None,
                 subject=header_text(rendered.subject), text=rendered.text, html=rendered.html,
                 message_id=message_id(key, mail_from))


def template_values(kind: Kind, *, org: Organization, context: dict[str, object], links: dict[str, str]) -> dict[str, object]:
    """What a template may show: chosen fields, never the raw event or the sealed token. Not the
    name given at registration either: anyone can register anyone's address, and a name such as
    "visit evil.example" would reach that inbox in the organization's own words."""
    return {"kind": kind.value, "organization": org.shown_name, "support_email": org.support_email,
            "expires_at": readable_time(context.get("expires_at")), **links}


def link_expired(context: dict[str, object], *, now: datetime) -> bool:
    """A link that no longer works is not worth sending: the person asks again and gets a new one."""
    expires_at = context.get("expires_at")
    return isinstance(expires_at, str) and datetime.fromisoformat(expires_at) <= now


def readable_time(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
