"""The mailer's rules, without infrastructure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs, urlsplit

import pytest

from services.mailer import domain
from services.mailer.domain import (
    DeliveryFailure, GiveUp, Kind, Organization, Rendered, Retry, RetryPolicy, Status, Undeliverable,
)
from services.mailer.rendering import JinjaRenderer
from services.mailer.smtp import to_message

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ACME = Organization(slug="acme", name="Acme Corp", display_name=None, support_email="help@acme.test",
                    domains=("portal.acme.test", "acme.localhost"))


def test_dedup_key_is_the_same_for_a_redelivered_event() -> None:
    event_id = uuid.uuid4()
    assert domain.dedup_key(event_id, Kind.CONFIRMATION) == domain.dedup_key(uuid.UUID(str(event_id)), Kind.CONFIRMATION)


def test_dedup_key_differs_per_event_and_per_kind() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    keys = {domain.dedup_key(first, Kind.CONFIRMATION), domain.dedup_key(second, Kind.CONFIRMATION),
            domain.dedup_key(first, Kind.RESET)}
    assert len(keys) == 3


def test_message_id_carries_the_dedup_key_on_the_sender_domain() -> None:
    key = domain.dedup_key(uuid.UUID(int=7), Kind.RESET)
    assert domain.message_id(key, "portal@mail.acme.test") == f"<{key}@mail.acme.test>"


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(seconds=60), max_attempts=10)
    assert [policy.delay(n).total_seconds() for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_temporary_failure_is_retried_after_the_backoff() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(hours=1), max_attempts=5)
    assert policy.after(DeliveryFailure("try later", code=451), attempts=2, now=NOW) == Retry(NOW + timedelta(seconds=10))
    assert policy.after(DeliveryFailure("connection refused"), attempts=1, now=NOW) == Retry(NOW + timedelta(seconds=5))


def test_permanent_failure_gives_up_at_once_with_the_server_reply() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(hours=1), max_attempts=5)
    assert policy.after(DeliveryFailure("5.1.1 no such user", code=550), attempts=1, now=NOW) == GiveUp("550 5.1.1 no such user")


def test_temporary_failure_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(hours=1), max_attempts=3)
    decision = policy.after(DeliveryFailure("busy", code=421), attempts=3, now=NOW)
    assert isinstance(decision, GiveUp) and decision.reason == "gave up after 3 attempts: 421 busy"


def test_throttle_admits_up_to_the_limit_and_records_the_rest() -> None:
    assert [domain.admit(Kind.RESET, n, limit=5) for n in (0, 4, 5, 9)] == [Status.QUEUED, Status.QUEUED, Status.THROTTLED,
                                                                            Status.THROTTLED]
    assert domain.admit(Kind.PASSWORD_CHANGED, 9, limit=5) is Status.QUEUED


def test_secrets_are_dropped_from_a_context_that_will_not_be_sent() -> None:
    assert domain.without_secrets({"host": "h", "token_encrypted": "sealed"}) == {"host": "h"}


@pytest.mark.parametrize("raw", ["Acme\r\nBcc: victim@evil.test", "Acme\nBcc: victim@evil.test",
                                 "Acme\rBcc: victim@evil.test", "Acme\u2028Bcc: victim@evil.test",
                                 "Acme\x00\tBcc: victim@evil.test"])
def test_header_text_turns_line_breaks_into_spaces(raw: str) -> None:
    assert domain.header_text(raw) == "Acme Bcc: victim@evil.test"


def test_header_text_is_bounded() -> None:
    assert len(domain.header_text("x" * 1000)) == domain.MAX_HEADER_CHARS


def test_confirmation_link_is_on_the_host_the_person_used_with_the_token() -> None:
    host = ACME.portal_host("acme.localhost")
    link = domain.links(Kind.CONFIRMATION, template="https://{host}", host=host, token="a+b/c=")["action_link"]
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "acme.localhost", "/confirm")
    assert parse_qs(parts.query) == {"token": ["a+b/c="]}


def test_link_falls_back_to_the_first_domain_when_the_host_was_removed() -> None:
    assert ACME.portal_host("old.acme.test") == "portal.acme.test"


def test_organization_without_domains_is_undeliverable() -> None:
    with pytest.raises(Undeliverable):
        Organization(slug="x", name="X", display_name=None, support_email=None, domains=()).portal_host("x.test")


def test_reset_link_and_registration_notice_links() -> None:
    template = "http://{host}:8080"
    reset = domain.links(Kind.RESET, template=template, host="acme.localhost", token="t0k")
    notice = domain.links(Kind.REGISTRATION_NOTICE, template=template, host="acme.localhost", token=None)
    assert reset == {"action_link": "http://acme.localhost:8080/reset-password?token=t0k"}
    assert notice == {"login_link": "http://acme.localhost:8080/login",
                      "forgot_link": "http://acme.localhost:8080/forgot-password"}


def test_link_expired_at_its_expiry_time() -> None:
    context = {"expires_at": "2025-03-01T12:30:00+00:00"}
    assert [domain.link_expired(context, now=NOW + timedelta(minutes=m)) for m in (29, 30)] == [False, True]
    assert not domain.link_expired({}, now=NOW)


def test_a_link_email_without_token_is_undeliverable() -> None:
    with pytest.raises(Undeliverable):
        domain.links(Kind.RESET, template="http://{host}", host="h", token=None)


def test_email_speaks_for_the_organization_with_its_display_name() -> None:
    org = Organization(slug="acme", name="Acme Corp", display_name="Acme\r\nBcc: x@evil.test", support_email=None,
                       domains=("a.test",))
    email = domain.compose(to="ann@example.test", org=org, rendered=Rendered("Hi\nthere", "t", "<p>h</p>"),
                           mail_from="portal@example.test", key="reset.k")
    assert (email.from_name, email.subject, email.reply_to) == ("Acme Bcc: x@evil.test", "Hi there", None)


def test_rendered_message_has_one_header_per_field_and_both_alternatives() -> None:
    context = {"display_name": "Visit evil.example", "expires_at": "2025-03-02T12:00:00+00:00"}
    values = domain.template_values(Kind.CONFIRMATION, org=ACME, context=context,
                                    links={"action_link": "http://acme.localhost/confirm?token=x&y=1"})
    rendered = JinjaRenderer().render(Kind.CONFIRMATION, values)
    email = domain.compose(to="ann@example.test", org=ACME, rendered=rendered, mail_from="portal@example.test",
                           key="confirmation.k")
    message = to_message(email)
    assert message["From"] == "Acme Corp <portal@example.test>"
    assert message["Subject"] == "Confirm your email address for Acme Corp"
    assert message["Reply-To"] == "help@acme.test"
    assert message["Message-ID"] == "<confirmation.k@example.test>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "http://acme.localhost/confirm?token=x&y=1" in text and "2025-03-02 12:00 UTC" in text
    assert 'href="http://acme.localhost/confirm?token=x&amp;y=1"' in html
    assert "evil.example" not in text + html  # a stranger's words never reach the inbox
    assert "help@acme.test" in text and "help@acme.test" in html


def test_a_long_subject_reads_back_exactly() -> None:
    subject = "Confirm your email address for Evil Bcc: victim@evil.test X-Injected: yes and a long tail"
    email = domain.compose(to="ann@example.test", org=ACME, rendered=Rendered(subject, "t", "h"),
                           mail_from="portal@example.test", key="k")
    assert BytesParser(policy=policy.default).parsebytes(to_message(email).as_bytes())["Subject"] == subject
