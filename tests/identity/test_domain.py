"""Identity's rules without any infrastructure: emails, passwords, and when to wait for lockout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.identity import domain
from services.identity.domain import RecentFailures, awaiting_lockout

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_every_character_of_a_long_password_counts() -> None:
    hashed = domain.hash_password("x" * 72 + "y", rounds=4)
    assert domain.verify_password("x" * 72 + "y", hashed)
    assert not domain.verify_password("x" * 72, hashed)
    assert not domain.verify_password("x" * 72 + "z", hashed)


def test_composed_and_decomposed_accents_are_one_password() -> None:
    assert domain.verify_password("cafe\u0301 au lait!", domain.hash_password("caf\u00e9 au lait!", rounds=4))


def test_password_length_is_counted_after_normalization_and_bounded() -> None:
    assert domain.check_password("１２３４５６７８９０１２", min_length=12) == "123456789012"
    with pytest.raises(domain.PasswordTooShort):
        domain.check_password("x" * 13, min_length=14)
    with pytest.raises(domain.PasswordTooLong):
        domain.check_password("x" * 1025, min_length=12)


def test_hash_rounds_are_read_from_the_hash() -> None:
    assert domain.hash_rounds(domain.hash_password("a long password", rounds=5)) == 5


@pytest.mark.parametrize(("from_source", "from_all", "seconds_ago", "wait"), [
    (0, 0, None, None),  # no failures
    (4, 4, 0, None),  # below both thresholds
    (5, 5, 0, 5),  # per-source threshold reached just now: wait for lockout
    (1, 20, 2, 3),  # account-wide threshold reached 2 s ago
    (5, 5, 5, None),  # no lock came within the verdict time: let one more try through
])
def test_identity_waits_for_lockouts_verdict_only_at_a_threshold(from_source: int, from_all: int,
                                                                  seconds_ago: int | None, wait: int | None) -> None:
    latest = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    recent = RecentFailures(from_source=from_source, from_all=from_all, latest=latest)
    until = awaiting_lockout(recent, max_from_source=5, max_from_all=20, now=NOW)
    assert until == (None if wait is None else NOW + timedelta(seconds=wait))


def test_common_password_list_is_offline_and_at_least_ten_thousand_long() -> None:
    assert len(domain.COMMON_PASSWORDS) >= 10_000


@pytest.mark.parametrize("password", ["qwerty123456", "QwErTy123456", "ｑｗｅｒｔｙ１２３４５６"])
def test_common_password_is_refused_after_nfkc_and_case_folding(password: str) -> None:
    with pytest.raises(domain.PasswordTooCommon):
        domain.check_password(password, min_length=12)


def test_length_is_counted_as_typed_not_after_nfkc() -> None:
    with pytest.raises(domain.PasswordTooShort):
        domain.check_password("ﷺ" * 11, min_length=12)
    assert domain.check_password("ﷺ" * 12, min_length=12) == domain.normalize_password("ﷺ" * 12)
