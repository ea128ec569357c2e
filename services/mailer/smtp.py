"""The SMTP adapter: one connection per email, STARTTLS and AUTH when configured, bounded in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.mailer.domain import DeliveryFailure, Email, Undeliverable

# The SMTP policy writes CRLF line ends and refuses any header value holding CR or LF, a
# second guard behind domain.header_text should a line break ever reach a header. Headers are
# folded only beyond RFC 5322's hard limit: at 78 characters Python's folder may move a whole
# subject to a continuation line, which readers then show with a leading space. Bodies are
# 7-bit (quoted-printable where needed), so any relay takes them, 8BITMIME or not.
POLICY = policy.SMTP.clone(max_line_length=998, cte_type="7bit")
UTF8_POLICY = POLICY.clone(utf8=True)  # for addresses beyond ASCII (SMTPUTF8)


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
            await asyncio.wait_for(self._send(email), self.budget)
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
        except ValueError as exc:  # an address or header that cannot be written safely
            raise Undeliverable(f"cannot write this email: {exc}") from None

    async def _send(self, email: Email) -> None:
        # Flattened here: given an EmailMessage, aiosmtplib would use its own policy instead.
        utf8 = not (email.to.isascii() and email.from_address.isascii())
        await aiosmtplib.send(
            to_message(email).as_bytes(policy=UTF8_POLICY if utf8 else POLICY), sender=email.from_address, recipients=[email.to],
            mail_options=["SMTPUTF8"] if utf8 else None,
            hostname=self.host, port=self.port, timeout=self.timeout,
            username=self.username, password=self.password,
            start_tls=self.starttls, validate_certs=self.validate_certs, cert_bundle=self.ca_file,
        )
