from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class LockoutServiceSettings(ServiceSettings):
    """(Named apart from shared.tenancy.LockoutSettings, an organization's lockout policy.)"""

    expiry_interval_seconds: float = Field(2.0, gt=0, le=60)  # how often ended locks are looked for
