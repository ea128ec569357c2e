"""The events: the contract between the four services and with the auditors who replay the log.

Every event is an :class:`Envelope` around the ``data`` of one typed model below. A published
schema is never changed in place: a new version gets a new model field set and an upcaster in
:data:`UPCASTERS` that turns the old ``data`` into the new one when it is read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

IDENTITY_TOPIC = "identity.events"
LOCKOUT_TOPIC = "lockout.events"
TENANT_TOPIC = "tenant.events"
MAILER_TOPIC = "mailer.events"
TOPICS = (IDENTITY_TOPIC, LOCKOUT_TOPIC, TENANT_TOPIC, MAILER_TOPIC)
PARTITIONS = 6


# The ``tenant`` of the one event that belongs to no organization (PortalsRequested).
NO_TENANT = ""


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def account_key(tenant: str, email: str) -> str:
    """Kafka key of account events: keeps one account's events in order on one partition."""
    return f"{tenant}:{email}"


class Event(BaseModel):
    """The ``data`` of one event type. Subclasses name their type, version, topic and key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[str]
    # Nobody waits for it: the outbox relay may hold it back a moment to send it with others
    # (OutboxRelay.after), where every other event is sent as soon as it is committed.
    UNHURRIED: ClassVar[bool] = False

    def key(self, tenant: str) -> str:
        return tenant


class AccountEvent(Event):
    """An event about one (organization, normalized email): keyed so that its events stay in order."""

    email: str

    def key(self, tenant: str) -> str:
        return account_key(tenant, self.email)


class Actor(BaseModel):
    """Who made an administrative change, for the audit: the address the request came from, the
    request's id (``X-Request-ID`` when the caller sent one, echoed in the answer), and the
    admin token's name where tokens are named (None while there is one unnamed ADMIN_TOKEN)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    request_id: str
    name: str | None = None


# --- identity.events -------------------------------------------------------------------------


class _MailToken(AccountEvent):
    """Events that ask the mailer for a link. The token travels sealed with the organization,
    address, PURPOSE and expiry of its event (shared.secrets.TokenBinding): the mailer opens it
    only for the event it was sealed for."""

    PURPOSE: ClassVar[str]

    user_id: uuid.UUID
    host: str
    token_encrypted: str
    expires_at: datetime


class UserRegistered(_MailToken):
    TYPE = "UserRegistered"
    TOPIC = IDENTITY_TOPIC
    PURPOSE = "confirm"
    display_name: str | None = None


class RegistrationRepeated(AccountEvent):
    """Someone registered an address that already has an account: the owner gets a notice."""

    TYPE = "RegistrationRepeated"
    TOPIC = IDENTITY_TOPIC
    user_id: uuid.UUID
    host: str


class ConfirmationRequested(_MailToken):
    TYPE = "ConfirmationRequested"
    TOPIC = IDENTITY_TOPIC
    PURPOSE = "confirm"


class EmailConfirmed(AccountEvent):
    TYPE = "EmailConfirmed"
    TOPIC = IDENTITY_TOPIC
    user_id: uuid.UUID


class LoginSucceeded(AccountEvent):
    """``failures_from_source``: the failed logins from ``source`` that identity had counted on
    the account within the lockout window when this one succeeded. 0 tells lockout that the
    success has no failure to forget, so it passes the event over without a database round trip;
    None (events written before the field) means unknown."""

    TYPE = "LoginSucceeded"
    TOPIC = IDENTITY_TOPIC
    UNHURRIED = True
    user_id: uuid.UUID
    source: str
    failures_from_source: int | None = None


class LoginFailed(AccountEvent):
    """Emitted for unknown emails too, so lockout treats them alike."""

    TYPE = "LoginFailed"
    TOPIC = IDENTITY_TOPIC
    source: str
    reason: Literal["invalid_credentials"] = "invalid_credentials"


class ResetRequested(_MailToken):
    TYPE = "ResetRequested"
    TOPIC = IDENTITY_TOPIC
    PURPOSE = "reset"


class PasswordChanged(AccountEvent):
    """Version 2 adds the portal ``host`` the change was made on: the mailer tells the person
    there. An empty host (every version 1) means the organization's first domain."""

    TYPE = "PasswordChanged"
    VERSION = 2
    TOPIC = IDENTITY_TOPIC
    user_id: uuid.UUID
    host: str


class UnlockRequested(_MailToken):
    """A locked account's owner asked for an unlock link: the mailer sends it."""

    TYPE = "UnlockRequested"
    TOPIC = IDENTITY_TOPIC
    PURPOSE = "unlock"


class UnlockLinkUsed(AccountEvent):
    """The owner opened an unlock link (proving the mailbox): lockout lifts every lock."""

    TYPE = "UnlockLinkUsed"
    TOPIC = IDENTITY_TOPIC
    user_id: uuid.UUID


class Portal(BaseModel):
    """One organization where an address has an account, and the host of its login page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    host: str


class PortalsRequested(AccountEvent):
    """Someone asked, on any host, where an address has accounts: the mailer sends the list to
    that address. It belongs to no single organization: its ``tenant`` is empty (see
    ``NO_TENANT``) and its key ``:<email>``."""

    TYPE = "PortalsRequested"
    TOPIC = IDENTITY_TOPIC
    portals: list[Portal]


RevokeReason = Literal["logout", "logout_all", "password_changed", "expired"]


class SessionRevoked(AccountEvent):
    """Version 2: the reason may be ``logout_all`` (the person ended every session)."""

    TYPE = "SessionRevoked"
    VERSION = 2
    TOPIC = IDENTITY_TOPIC
    user_id: uuid.UUID
    session_id: uuid.UUID
    reason: RevokeReason


# --- lockout.events --------------------------------------------------------------------------


class AccountLocked(AccountEvent):
    """``source`` is the client address the lock holds for, or None for every address."""

    TYPE = "AccountLocked"
    TOPIC = LOCKOUT_TOPIC
    source: str | None
    locked_until: datetime
    failures: int


class AccountUnlocked(AccountEvent):
    """Version 2 adds the reason ``email_link`` (the owner used an emailed unlock link); version 3
    the ``actor`` of an operator's unlock (None for every other reason)."""

    TYPE = "AccountUnlocked"
    VERSION = 3
    TOPIC = LOCKOUT_TOPIC
    source: str | None
    reason: Literal["expired", "admin", "password_changed", "email_link"]
    actor: Actor | None = None


# --- tenant.events ---------------------------------------------------------------------------


class _AdminChange(Event):
    """Version 2 of every tenant event adds the ``actor``; version 1 events read with None."""

    VERSION = 2
    actor: Actor | None


class TenantCreated(_AdminChange):
    TYPE = "TenantCreated"
    TOPIC = TENANT_TOPIC
    slug: str
    name: str
    domains: list[str]
    settings: dict[str, Any]


class TenantUpdated(_AdminChange):
    TYPE = "TenantUpdated"
    TOPIC = TENANT_TOPIC
    slug: str
    name: str
    settings: dict[str, Any]


class DomainAdded(_AdminChange):
    TYPE = "DomainAdded"
    TOPIC = TENANT_TOPIC
    slug: str
    host: str


class DomainRemoved(_AdminChange):
    TYPE = "DomainRemoved"
    TOPIC = TENANT_TOPIC
    slug: str
    host: str


# --- mailer.events ---------------------------------------------------------------------------


class EmailSent(AccountEvent):
    TYPE = "EmailSent"
    TOPIC = MAILER_TOPIC
    kind: str
    dedup_key: str


class EmailFailed(AccountEvent):
    TYPE = "EmailFailed"
    TOPIC = MAILER_TOPIC
    kind: str
    dedup_key: str
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        UserRegistered, RegistrationRepeated, ConfirmationRequested, EmailConfirmed,
        LoginSucceeded, LoginFailed, ResetRequested, PasswordChanged, SessionRevoked,
        UnlockRequested, UnlockLinkUsed, PortalsRequested,
        AccountLocked, AccountUnlocked,
        TenantCreated, TenantUpdated, DomainAdded, DomainRemoved,
        EmailSent, EmailFailed,
    )
}

# (type, version) -> function turning that version's data into the next version's.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    # Every version 1 reason is still a version 2 reason: the data stays as it is.
    ("AccountUnlocked", 1): dict,
    ("SessionRevoked", 1): dict,  # version 2 only adds a reason: every version 1 reads as it was
    ("PasswordChanged", 1): lambda data: {**data, "host": ""},
    ("AccountUnlocked", 2): lambda data: {**data, "actor": None},
    **{(kind, 1): (lambda data: {**data, "actor": None}) for kind in ("TenantCreated", "TenantUpdated", "DomainAdded",
                                                                        "DomainRemoved")},
}


class Envelope(BaseModel):
    """One message on a topic, exactly as the contract lists its members."""

    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tenant: str
    producer: str
    correlation_id: str
    data: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event, *, tenant: str, producer: str, correlation_id: str | None = None) -> Envelope:
        return cls(
            type=event.TYPE,
            version=event.VERSION,
            tenant=tenant,
            producer=producer,
            correlation_id=correlation_id or str(uuid.uuid4()),
            data=event.model_dump(mode="json"),
        )

    def event(self) -> Event:
        """The typed event, upcast to the version this code knows. Raises UnknownEvent or a
        pydantic ValidationError for a message no handler can take."""
        cls = EVENT_TYPES.get(self.type)
        if cls is None:
            raise UnknownEvent(self.type)
        data, version = dict(self.data), self.version
        while version < cls.VERSION:
            data, version = UPCASTERS[(self.type, version)](data), version + 1
        return cls.model_validate(data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate(json.loads(raw))


class UnknownEvent(ValueError):
    """A type this code does not know: the message goes to the dead-letter topic."""
