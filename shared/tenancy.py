"""An organization's settings: validated once here, read by every service from its own copy.

Numbers are strict integers: an admin who sends ``"5"`` or ``true`` gets a 422 naming the setting
rather than a silently converted value. Every bound is the range where the behaviour still makes
sense; the tenant service refuses anything outside it, so the copies never hold it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from shared.accounts import MIN_PASSWORD_LENGTH
from shared.text import PlainText

MINUTE = 60
DAY = 86400
# The highest minimum length an organization may ask for: a higher one would turn away every
# passphrase manager's output. (Passwords themselves may be longer: identity takes up to 1024.)
HIGHEST_MIN_PASSWORD_LENGTH = 128


class LockoutSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_failures: StrictInt = Field(5, ge=1, le=100)
    max_failures_account: StrictInt = Field(20, ge=1, le=100, validate_default=True)  # issue 4: at most 100
    window_seconds: StrictInt = Field(900, ge=1, le=DAY)
    lock_seconds: StrictInt = Field(900, ge=1, le=DAY)

    @field_validator("max_failures_account")
    @classmethod
    def _at_least_per_source(cls, value: int, info: ValidationInfo) -> int:
        # The all-sources bound is the higher one: were it lower, a stranger's failures from
        # many addresses would lock a person out sooner than their own typos do.
        per_source = info.data.get("max_failures")
        if per_source is not None and value < per_source:
            raise PydanticCustomError("less_than_per_source", "must be at least lockout.max_failures ({per_source})",
                                      {"per_source": per_source})
        return value


class PasswordSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_length: StrictInt = Field(MIN_PASSWORD_LENGTH, ge=MIN_PASSWORD_LENGTH, le=HIGHEST_MIN_PASSWORD_LENGTH)


class TokenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirmation_ttl_seconds: StrictInt = Field(DAY, ge=MINUTE, le=30 * DAY)
    reset_ttl_seconds: StrictInt = Field(30 * MINUTE, ge=MINUTE, le=DAY)


class LimitSettings(BaseModel):
    """How much one source address may ask of one organization's portal (see docs/security.md)."""

    model_config = ConfigDict(extra="forbid")

    # Unauthenticated POSTs (login, register, confirm, resend, forgot, reset, ...) per minute.
    requests_per_source_per_minute: StrictInt = Field(60, ge=1, le=100_000)
    # Failed logins on any of the organization's accounts within lockout.window_seconds: one
    # source trying a few passwords on each of many accounts (credential stuffing).
    failed_logins_per_source: StrictInt = Field(30, ge=1, le=100_000)


class TenantSettings(BaseModel):
    """Settings per organization, with the contract's defaults."""

    model_config = ConfigDict(extra="forbid")

    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    password: PasswordSettings = Field(default_factory=PasswordSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    display_name: PlainText | None = Field(None, min_length=1, max_length=200)
    support_email: EmailStr | None = None
