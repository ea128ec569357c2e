"""Tokens and cookie values: random, stored only as hashes, carried to the mailer encrypted."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken


def new_token() -> str:
    """A URL-safe random value with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored in place of a token: SHA-256 is enough for 256-bit random values."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_mail_token_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class TokenMismatch(ValueError):
    """A sealed token was taken out of the event it was sealed for (a forged or altered event)."""


@dataclass(frozen=True)
class TokenBinding:
    """What a mailed token is for. It is sealed together with the token, so the token opens only
    for the event it was issued with: a copy pasted into another event (another address,
    organization, purpose or expiry) opens to nothing."""

    tenant: str
    email: str
    purpose: str
    expires_at: datetime

    def fields(self) -> dict[str, str]:
        return {"tenant": self.tenant, "email": self.email, "purpose": self.purpose,
                "expires_at": self.expires_at.isoformat()}


class MailTokenCipher:
    """Seals a token for the mailer with MAIL_TOKEN_KEY (AES-128-CBC + HMAC, i.e. Fernet), so the
    event log holds nothing that opens an account, bound to the event that carries it."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def seal(self, token: str, binding: TokenBinding) -> str:
        return self._fernet.encrypt(json.dumps({"token": token, **binding.fields()}).encode()).decode()

    def open(self, sealed: str, binding: TokenBinding) -> str:
        """The token, if ``sealed`` was made by ``seal`` with this key for exactly ``binding``."""
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise ValueError("token was not sealed with this MAIL_TOKEN_KEY") from exc
        except ValueError as exc:  # sealed before tokens were bound to their event
            raise TokenMismatch("token is not bound to its event") from exc
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise TokenMismatch("token is not bound to its event")
        expected = binding.fields()
        sealed_for = {name: data.get(name) for name in expected}
        try:
            sealed_for["expires_at"] = datetime.fromisoformat(str(sealed_for["expires_at"])).isoformat()
        except ValueError:
            pass
        if sealed_for != expected:
            raise TokenMismatch("token was sealed for another event")
        return str(data["token"])

    def decrypt(self, sealed: str) -> str:
        """The token without checking what it was sealed for: for tests and tools that hold the
        key and read the event log. The mailer opens tokens with ``open`` only."""
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise ValueError("token was not sealed with this MAIL_TOKEN_KEY") from exc
        return str(data["token"])
