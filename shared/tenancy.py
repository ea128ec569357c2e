"""An organization's settings: validated once here, read by every service from its own copy."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field

DAY = 86400


class LockoutSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_failures: int = Field(5, ge=1, le=100)
    max_failures_account: int = Field(20, ge=1, le=100)
    window_seconds: int = Field(900, ge=1, le=DAY)
    lock_seconds: int = Field(900, ge=1, le=DAY)


class PasswordSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_length: int = Field(12, ge=12, le=1024)


class TokenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirmation_ttl_seconds: int = Field(86400, ge=60, le=30 * DAY)
    reset_ttl_seconds: int = Field(1800, ge=60, le=DAY)


class TenantSettings(BaseModel):
    """Settings per organization, with the contract's defaults."""

    model_config = ConfigDict(extra="forbid")

    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    password: PasswordSettings = Field(default_factory=PasswordSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    display_name: str | None = Field(None, max_length=200)
    support_email: EmailStr | None = None
