"""The mail catcher's directory layout, shared by the catcher process and its handle."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

__all__ = ["FAIL_WITH_FILE", "arrival_time", "is_message_name", "message_name", "message_paths", "read_message"]

#: Holds an SMTP code while the catcher is told to fail every DATA command.
FAIL_WITH_FILE = ".fail-with"
# <arrival time in ns, 20 digits>-<sequence>.eml: sorting the names sorts by arrival.
_MESSAGE_NAME = re.compile(r"^(\d{20})-\d{6}\.eml$")


def message_name(arrival_ns: int, sequence: int) -> str:
    return f"{arrival_ns:020d}-{sequence % 1_000_000:06d}.eml"


def is_message_name(name: str) -> bool:
    return _MESSAGE_NAME.match(name) is not None


def message_paths(directory: Path) -> list[Path]:
    """Stored messages, oldest first (files being written are hidden dot-files)."""
    return sorted(path for path in directory.iterdir() if is_message_name(path.name))


def arrival_time(path: Path) -> datetime:
    match = _MESSAGE_NAME.match(path.name)
    assert match is not None, path
    return datetime.fromtimestamp(int(match.group(1)) / 1e9, tz=UTC).astimezone()  # local time, for the inbox


def read_message(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)  # policy.default always builds EmailMessage
    return message
