"""The account's key every event carries, and the password floor, as the contract states them."""

from __future__ import annotations

import pytest

from services.identity import domain
from shared.accounts import MIN_PASSWORD_LENGTH, InvalidEmail, normalize_email
from shared.tenancy import PasswordSettings


@pytest.mark.parametrize(("raw", "normalized"), [
    ("  Ada@Example.COM ", "ada@example.com"),
    ("ada@BÜCHER.example", "ada@xn--bcher-kva.example"),
    ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
])
def test_email_is_trimmed_idna_encoded_and_case_folded(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize("raw", ["", "   ", "no-at-sign", "a@b", "a@" + "x" * 250 + ".com", "a@localhost"])
def test_bad_email_is_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(raw)


def test_no_organization_goes_below_the_password_floor() -> None:
    assert PasswordSettings().min_length == MIN_PASSWORD_LENGTH == 12
    with pytest.raises(domain.PasswordTooShort) as refused:
        domain.check_password("a long passphrase"[:MIN_PASSWORD_LENGTH - 1], min_length=1)
    assert refused.value.min_length == MIN_PASSWORD_LENGTH
