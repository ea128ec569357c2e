"""The SMTP adapter: one connection per email, STARTTLS and AUTH when configured, bounded in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.mailer.domain import DeliveryFailure, Email

# The SMTP policy writes CRLF line ends and refuses any header value holding CR or LF, a
# second guard behind domain.header_text should a line break ever reach a header.
POLICY = policy.SMTP


def to_message(email: Email) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = Address(display_name=email.from_name, addr_spec=email.from_address)
    message["To"] = email.to
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = email.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to these
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


@dataclass(frozen=True)
class SmtpTransport:
    host: str
    port: int
    timeout: float  # for each step of the conversation
    budget: float  # for the whole conversation; below the lease (see settings)
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    validate_certs: bool = True
    ca_file: str | None = None

    async def send(self, email: Email) -> None:
        try:
            await asyncio.wait_for(self._send(to_message(email), email), self.budget)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise DeliveryFailure(refused.message, code=refused.code) from None
        except (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPNotSupported) as exc:
            # The relay refuses our configuration, not this email: it waits until that is fixed.
            raise DeliveryFailure(f"SMTP configuration refused: {exc}", permanent=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailure(exc.message, code=exc.code) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailure(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from None

    async def _send(self, message: EmailMessage, email: Email) -> None:
        await aiosmtplib.send(
            message, sender=email.from_address, recipients=[email.to],
            hostname=self.host, port=self.port, timeout=self.timeout,
            username=self.username, password=self.password,
            start_tls=self.starttls, validate_certs=self.validate_certs, cert_bundle=self.ca_file,
        )
