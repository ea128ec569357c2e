"""What the event contract says of an account: its key, the normalized email every event
carries, and the password floor no organization may go below."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_CHARS = 254
MIN_PASSWORD_LENGTH = 12  # the contract's floor: no organization may go below it


class InvalidEmail(ValueError):
    pass


def normalize_email(raw: str) -> str:
    """The account's key within an organization: trimmed, domain in IDNA form, case-folded."""
    text = unicodedata.normalize("NFC", (raw or "").strip())
    if not text or len(text) > MAX_EMAIL_CHARS:
        raise InvalidEmail(raw)
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidEmail(raw) from exc
    return f"{result.local_part.lower()}@{result.ascii_domain.lower()}"
