"""The event contract in code: envelope members, keys, versions, and the published schema."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared import events
from shared.asyncapi import render
from shared.events import Envelope, UnknownEvent

ROOT = Path(__file__).resolve().parents[2]


def login_failed() -> events.LoginFailed:
    return events.LoginFailed(email="ann@example.com", source="203.0.113.9")


def test_envelope_carries_every_member_the_contract_lists() -> None:
    body = json.loads(Envelope.wrap(login_failed(), tenant="acme", producer="identity").to_bytes())
    assert set(body) == {"event_id", "type", "version", "occurred_at", "tenant", "producer", "correlation_id", "data"}
    assert body["type"] == "LoginFailed" and body["version"] == 1 and body["tenant"] == "acme"
    assert uuid.UUID(body["event_id"])
    assert datetime.fromisoformat(body["occurred_at"]).utcoffset() == UTC.utcoffset(None)


def test_account_events_are_keyed_by_tenant_and_email_and_tenant_events_by_tenant() -> None:
    assert login_failed().key("acme") == "acme:ann@example.com"
    assert events.DomainAdded(slug="acme", host="acme.localhost", actor=None).key("acme") == "acme"


def test_envelope_round_trips_to_the_typed_event() -> None:
    envelope = Envelope.wrap(login_failed(), tenant="acme", producer="identity")
    assert Envelope.from_bytes(envelope.to_bytes()).event() == login_failed()


def test_unknown_type_and_malformed_data_are_refused_for_the_dead_letter_topic() -> None:
    envelope = Envelope.wrap(login_failed(), tenant="acme", producer="identity")
    with pytest.raises(UnknownEvent):
        envelope.model_copy(update={"type": "SomethingElse"}).event()
    with pytest.raises(ValidationError):
        envelope.model_copy(update={"data": {"email": "ann@example.com"}}).event()


def test_an_old_version_is_upcast_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A published schema never changes in place: version 2 reads version 1 through an upcaster."""
    monkeypatch.setattr(events.LoginFailed, "VERSION", 2)
    monkeypatch.setitem(events.UPCASTERS, ("LoginFailed", 1), lambda d: {"email": d["email"], "source": d["ip"]})
    old = Envelope(type="LoginFailed", version=1, tenant="acme", producer="identity", correlation_id="c",
                   data={"email": "ann@example.com", "ip": "203.0.113.9"})
    assert old.event() == login_failed()


def test_every_event_type_of_the_contract_exists_on_its_topic() -> None:
    contract = {
        "identity.events": {"UserRegistered", "ConfirmationRequested", "EmailConfirmed", "LoginSucceeded", "LoginFailed",
                            "ResetRequested", "PasswordChanged", "SessionRevoked"},
        "lockout.events": {"AccountLocked", "AccountUnlocked"},
        "tenant.events": {"TenantCreated", "TenantUpdated", "DomainAdded", "DomainRemoved"},
        "mailer.events": {"EmailSent", "EmailFailed"},
    }
    for topic, types in contract.items():
        assert types <= {name for name, cls in events.EVENT_TYPES.items() if cls.TOPIC == topic}


def test_the_committed_asyncapi_document_is_current() -> None:
    """`portal-auth asyncapi` rewrites docs/asyncapi.json; this fails when someone forgot."""
    assert (ROOT / "docs" / "asyncapi.json").read_text() == render()
