"""Identity's rules, with no framework in them: emails, passwords, tokens, sessions."""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import bcrypt
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from shared.accounts import MIN_PASSWORD_LENGTH

MAX_PASSWORD_CHARS = 1024
# At most this many links of one purpose (confirmation, reset) per account in the window: more
# would let anyone flood a mailbox, and since a new link voids none, asking again voids nothing.
LINKS_PER_WINDOW = 3
LINK_WINDOW = timedelta(minutes=15)
# How long identity waits for lockout's verdict on failures that reached a threshold (see awaiting_lockout).
LOCKOUT_VERDICT = timedelta(seconds=5)


class PasswordTooShort(ValueError):
    def __init__(self, min_length: int) -> None:
        super().__init__(min_length)
        self.min_length = min_length


class PasswordTooLong(ValueError):
    pass


class PasswordTooCommon(ValueError):
    pass


# The 30,000 most used passwords of the leaked sets zxcvbn's authors counted (all lower case),
# shipped inside the package: no network at run time.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


def normalize_password(password: str) -> str:
    """NFKC, so the same password typed on two keyboards (full-width digits, composed accents) matches."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, *, min_length: int) -> str:
    """The normalized password if it meets the policy. The length is counted on the password as
    typed (NFC code points, every character counts): counted after NFKC, one typed character
    such as "ﷺ" (18 after NFKC) would pass the 12-character rule on its own."""
    typed = unicodedata.normalize("NFC", password)
    if len(typed) > MAX_PASSWORD_CHARS:
        raise PasswordTooLong()
    if len(typed) < max(MIN_PASSWORD_LENGTH, min_length):
        raise PasswordTooShort(max(MIN_PASSWORD_LENGTH, min_length))
    normalized = normalize_password(password)
    if is_common(normalized):
        raise PasswordTooCommon()
    return normalized


def is_common(password: str) -> bool:
    """On the list, compared after NFKC and ignoring case ("QWERTY123456", "ｑｗｅｒｔｙ１２３４５６")."""
    return normalize_password(password).casefold() in COMMON_PASSWORDS


def _prehash(password: str) -> bytes:
    """bcrypt reads only 72 bytes: SHA-256 first (base64, 44 bytes) keeps all 1024 characters significant."""
    return base64.b64encode(hashlib.sha256(normalize_password(password).encode()).digest())


def hash_password(password: str, *, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode()


def verify_password(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(_prehash(password), hashed.encode())


def hash_rounds(hashed: str) -> int:
    return int(hashed.split("$")[2])


def parse_address(text: str | None) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it ("203.0.113.9", "203.0.113.9:4711", "[2001:db8::1]:443"),
    or None for anything else: a forwarded hop is believed only when it is an address."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def source_key(address: IPv4Address | IPv6Address) -> str:
    """What counts as one source: an IPv4 address, or an IPv6 address's /64, the block one
    subscriber gets (else one person would have 2^64 sources to spread attempts over)."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(frozen=True)
class SessionPolicy:
    """Idle expiry with an absolute maximum; remember_me lengthens both."""

    idle: timedelta = timedelta(hours=2)
    absolute: timedelta = timedelta(hours=12)
    remember_idle: timedelta = timedelta(days=14)
    remember_absolute: timedelta = timedelta(days=30)

    def limits(self, *, remember: bool) -> tuple[timedelta, timedelta]:
        return (self.remember_idle, self.remember_absolute) if remember else (self.idle, self.absolute)

    def idle_deadline(self, now: datetime, *, remember: bool, absolute_expires_at: datetime) -> datetime:
        return min(now + self.limits(remember=remember)[0], absolute_expires_at)


@dataclass(frozen=True)
class RecentFailures:
    """Failed logins of one account within the organization's lockout window."""

    from_source: int
    from_all: int
    latest: datetime | None


def awaiting_lockout(recent: RecentFailures, *, max_from_source: int, max_from_all: int, now: datetime) -> datetime | None:
    """Until when to refuse further attempts, or None.

    Lockout decides locks from LoginFailed events, a Kafka round trip after each failure; a burst
    faster than that round trip would get more tries than the threshold allows. So once the
    failures identity has seen reach a threshold, it refuses until the lock arrives, or until
    LOCKOUT_VERDICT has passed since the last failure: then lockout decided not to lock (or is
    down), and one more try per LOCKOUT_VERDICT gets through. Lockout stays the one that locks.
    """
    if recent.latest is None or (recent.from_source < max_from_source and recent.from_all < max_from_all):
        return None
    until = recent.latest + LOCKOUT_VERDICT
    return until if until > now else None


class Refused(Exception):
    """A request answered with one of the contract's error codes; ``extra`` joins the body."""

    def __init__(self, code: str, *, retry_after: int | None = None, **extra: object) -> None:
        super().__init__(code)
        self.code, self.retry_after, self.extra = code, retry_after, extra
