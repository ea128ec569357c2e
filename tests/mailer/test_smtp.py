"""The SMTP adapter against a real aiosmtpd server: STARTTLS, AUTH, and how refusals are reported."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal_auth.devstack import free_port
from services.mailer.domain import DeliveryFailure, Email
from services.mailer.smtp import SmtpTransport

EMAIL = Email(to="ann@example.test", from_name="Acme Corp", from_address="portal@example.test", reply_to=None,
              subject="Confirm your email address for Acme Corp", text="text body\n", html="<p>html body</p>\n",
              message_id="<confirmation.k@example.test>")


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it received and the credentials it was given."""

    fail_with: int | None = None
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_with is not None:
            return f"{self.fail_with} failure for the test"
        self.messages.append((envelope, BytesParser(policy=policy.default).parsebytes(envelope.original_content)))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode(), session.ssl is not None))
        return AuthResult(success=data.password == b"s3cret", handled=False)  # not handled: aiosmtpd answers 535


@dataclass
class Server:
    port: int
    recorder: Recorder
    ca_file: str | None = None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _serve(recorder: Recorder, **smtp: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **smtp)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def plain_server() -> Iterator[Server]:
    recorder = Recorder()
    for port in _serve(recorder, authenticator=recorder.authenticate, auth_require_tls=False):
        yield Server(port, recorder)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Server]:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    for port in _serve(recorder, tls_context=context, require_starttls=True, authenticator=recorder.authenticate):
        yield Server(port, recorder, ca_file=str(cert))


def transport(server: Server, **options: Any) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=server.port, timeout=5, budget=10, **options)


async def test_email_arrives_with_its_envelope_and_both_alternatives(plain_server: Server) -> None:
    await transport(plain_server).send(EMAIL)
    [(envelope, message)] = plain_server.recorder.messages
    assert (envelope.mail_from, envelope.rcpt_tos) == ("portal@example.test", ["ann@example.test"])
    assert message["To"] == "ann@example.test" and message["Message-ID"] == "<confirmation.k@example.test>"
    assert message.get_body(("plain",)).get_content().splitlines() == ["text body"]
    assert message.get_body(("html",)).get_content().splitlines() == ["<p>html body</p>"]


async def test_starttls_and_auth_when_configured(tls_server: Server) -> None:
    await transport(tls_server, starttls=True, ca_file=tls_server.ca_file, username="mailer", password="s3cret").send(EMAIL)
    assert tls_server.recorder.logins == [("mailer", "s3cret", True)]  # credentials only ever inside TLS
    assert len(tls_server.recorder.messages) == 1


async def test_starttls_refuses_a_certificate_it_cannot_verify(tls_server: Server) -> None:
    with pytest.raises(DeliveryFailure) as failure:
        await transport(tls_server, starttls=True, username="mailer", password="s3cret").send(EMAIL)
    assert not failure.value.permanent and tls_server.recorder.logins == [] and tls_server.recorder.messages == []


async def test_wrong_credentials_wait_for_the_configuration_to_be_fixed(plain_server: Server) -> None:
    with pytest.raises(DeliveryFailure) as failure:
        await transport(plain_server, username="mailer", password="wrong").send(EMAIL)
    assert not failure.value.permanent and plain_server.recorder.messages == []
    assert "configuration refused" in str(failure.value) and "535" in str(failure.value)


@pytest.mark.parametrize(("code", "permanent"), [(451, False), (421, False), (550, True), (554, True)])
async def test_server_refusal_is_reported_with_its_code(plain_server: Server, code: int, permanent: bool) -> None:
    plain_server.recorder.fail_with = code
    with pytest.raises(DeliveryFailure) as failure:
        await transport(plain_server).send(EMAIL)
    assert (failure.value.code, failure.value.permanent) == (code, permanent)


async def test_closed_port_is_a_temporary_failure() -> None:
    with pytest.raises(DeliveryFailure) as failure:
        await SmtpTransport(host="127.0.0.1", port=free_port(), timeout=2, budget=4).send(EMAIL)
    assert failure.value.code is None and not failure.value.permanent


async def test_a_server_that_never_answers_is_cut_off_in_time() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(DeliveryFailure) as failure:
            await SmtpTransport(host="127.0.0.1", port=port, timeout=0.5, budget=2).send(EMAIL)
    finally:
        server.close()
    assert not failure.value.permanent and asyncio.get_running_loop().time() - started < 3
