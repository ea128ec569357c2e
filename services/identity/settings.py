from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from pydantic import field_validator, model_validator

from shared.settings import MailTokenSettings


MIN_PRODUCTION_ROUNDS = 10  # below, a stolen hash falls to a guesser too fast; tests may use 4 locally


class IdentitySettings(MailTokenSettings):
    # Below the contract's 2 seconds: a database that does not answer costs one connect attempt,
    # then the person sees 503 service_unavailable.
    db_timeout_seconds: float = 1.5
    bcrypt_rounds: int = 12
    # A login whose hash would wait longer than this in the queue is answered 503 at once.
    hash_queue_max_wait_seconds: float = 1.0
    hash_workers: int = 0  # threads that run bcrypt; 0: one per core
    cookie_secure: bool = True
    trusted_proxies: str = ""  # comma-separated addresses or networks whose X-Forwarded-* are believed
    session_idle_seconds: int = 2 * 3600
    session_absolute_seconds: int = 12 * 3600
    remember_idle_seconds: int = 14 * 86400
    remember_absolute_seconds: int = 30 * 86400

    @field_validator("bcrypt_rounds")
    @classmethod
    def _rounds(cls, value: int) -> int:
        if not 4 <= value <= 16:
            raise ValueError("BCRYPT_ROUNDS must be between 4 and 16")
        return value

    @model_validator(mode="after")
    def _production_grade(self) -> IdentitySettings:
        self.refuse_outside_local(None if self.cookie_secure else "COOKIE_SECURE=false sends the session cookie over plain HTTP")
        self.refuse_outside_local(f"BCRYPT_ROUNDS must be at least {MIN_PRODUCTION_ROUNDS}"
                                  if self.bcrypt_rounds < MIN_PRODUCTION_ROUNDS else None)
        return self

    @property
    def cookie_name(self) -> str:
        return self._host_only("portal_session")

    @property
    def csrf_cookie_name(self) -> str:
        return self._host_only("portal_csrf")

    def _host_only(self, name: str) -> str:
        """The __Host- prefix makes browsers refuse the cookie unless it is Secure, Path=/ and
        has no Domain, so no other host (a sibling subdomain) can set or overwrite it."""
        return f"__Host-{name}" if self.cookie_secure else name

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        """A typo here would otherwise surface as a 500 on every request: refuse it at start."""
        for entry in _entries(value):
            try:
                ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or network") from None
        return value

    @cached_property
    def _proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(ip_network(entry, strict=False) for entry in _entries(self.trusted_proxies))

    def is_trusted_proxy(self, address: str | None) -> bool:
        return self._trusted(address or "")

    @cached_property
    def _trusted(self) -> Callable[[str], bool]:
        """Asked for the peer of every request: the answers for the last few thousand peers are
        kept (parsing an address is a tenth of a locked account's 423)."""
        @lru_cache(maxsize=4096)
        def trusted(address: str) -> bool:
            try:
                ip = ip_address(address)
            except ValueError:
                return False
            return any(ip in network for network in self._proxy_networks)
        return trusted


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]
