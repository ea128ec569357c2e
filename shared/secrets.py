"""Tokens and cookie values: random, stored only as hashes, carried to the mailer encrypted."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken


def new_token() -> str:
    """A URL-safe random value with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored in place of a token: SHA-256 is enough for 256-bit random values."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_mail_token_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class MailTokenCipher:
    """Encrypts a token for the mailer with MAIL_TOKEN_KEY (AES-128-CBC + HMAC, i.e. Fernet),
    so the event log holds nothing that opens an account."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("token was not sealed with this MAIL_TOKEN_KEY") from exc
