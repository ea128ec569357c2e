"""The one wall clock: aware UTC. Handlers take it as a port (``clock=``) so tests can set the time."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
