"""What the event contract says of an account: its key, the normalized email every event
carries, and the password floor no organization may go below."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_CHARS = 254
MIN_PASSWORD_LENGTH = 12  # the contract's floor: no organization may go below it


class InvalidEmail(ValueError):
    pass


@lru_cache(maxsize=16_384)
def normalize_email(raw: str) -> str:
    """The account's key within an organization: trimmed, domain in IDNA form, case-folded.

    Remembered for the most recent addresses: a login normalizes its address twice (the locked
    check before routing, then the use case), and email_validator's parse took about 5% of
    identity's request CPU each time. A refused address raises every time (nothing is cached)."""
    text = unicodedata.normalize("NFC", (raw or "").strip())
    if not text or len(text) > MAX_EMAIL_CHARS:
        raise InvalidEmail(raw)
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidEmail(raw) from exc
    return f"{result.local_part.lower()}@{result.ascii_domain.lower()}"
